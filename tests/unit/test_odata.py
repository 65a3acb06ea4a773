"""Literal quoting, filter builders, Query and FetchXML paging helpers (pure code)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
import uuid
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from odata_query import ast
from odata_query.grammar import ODataLexer, ODataParser

from d365nb import ConfigError
from d365nb._odata import (
    F,
    Query,
    check_name,
    in_,
    literal,
    where,
)


def parse(expression: str) -> ast._Node:
    node: ast._Node = ODataParser().parse(ODataLexer().tokenize(expression))
    return node


def literals(node: Any) -> list[ast._Literal]:
    """Every literal node in an odata-query AST."""
    found: list[ast._Literal] = []
    if isinstance(node, ast._Literal):
        found.append(node)
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            found.extend(literals(getattr(node, f.name)))
    elif isinstance(node, (list, tuple)):
        for item in node:
            found.extend(literals(item))
    return found


NAME = ast.Identifier("name")
CITY = ast.Identifier("address1_city")


# --- literal -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Contoso", "'Contoso'"),
        ("O'Bryan", "'O''Bryan'"),
        ("''", "''''''"),
        ("", "''"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-42, "-42"),
        (1_000_000, "1000000"),
        (1.5, "1.5"),
        (1e16, "1e16"),
        (-2.5e-7, "-2.5e-07"),
        (Decimal("2.50"), "2.50"),
        (Decimal("1E+3"), "1000"),
        (uuid.UUID("4026be43-6b69-e111-8f65-78e7d1620f5e"), "4026be43-6b69-e111-8f65-78e7d1620f5e"),
        (dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), "2024-01-01T00:00:00Z"),
        (
            dt.datetime(2024, 1, 1, 2, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2024-01-01T00:30:00Z",
        ),
        (
            dt.datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=dt.timezone.utc),
            "2024-01-01T00:00:00.123456Z",
        ),
        (dt.date(2024, 1, 1), "2024-01-01"),
        (None, "null"),
        (["O'Brian", "O'Bryan"], '["O\'Brian","O\'Bryan"]'),
        ([5, 2000], '["5","2000"]'),
    ],
)
def test_literal(value: object, expected: str) -> None:
    assert literal(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.int64(5), "5"),
        (np.float64(1.5), "1.5"),
        (np.bool_(False), "false"),
        (np.datetime64("2024-01-01"), "2024-01-01"),
        (
            pd.Timestamp("2024-01-01 10:00:00.123456789", tz="Europe/Berlin"),
            "2024-01-01T09:00:00.123456Z",
        ),
    ],
)
def test_literal_takes_pandas_and_numpy_scalars(value: object, expected: str) -> None:
    assert literal(value) == expected


@pytest.mark.parametrize("value", [pd.NA, pd.NaT])
def test_missing_values_point_to_isnull(value: object) -> None:
    with pytest.raises(ConfigError, match="__isnull=True"):
        literal(value)


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), -float("inf"), Decimal("NaN"), Decimal("Infinity")]
)
def test_literal_refuses_non_finite_numbers(value: object) -> None:
    with pytest.raises(ConfigError, match="no NaN or infinity") as info:
        literal(value)
    assert info.value.field == "filter"


def test_literal_refuses_naive_datetime_and_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="no time zone.*tzinfo=timezone.utc"):
        literal(dt.datetime(2024, 1, 1))


@pytest.mark.parametrize("value", [b"bytes", object(), {"a": 1}, [], [None], [[1]]])
def test_literal_refuses_other_values(value: object) -> None:
    with pytest.raises(ConfigError):
        literal(value)


@pytest.mark.parametrize(
    ("value", "node"),
    [
        (42, ast.Integer("42")),
        (True, ast.Boolean("true")),
        (None, ast.Null()),
        (dt.date(2024, 1, 1), ast.Date("2024-01-01")),
        (dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), ast.DateTime("2024-01-01T00:00:00Z")),
        (uuid.UUID(int=1), ast.GUID("00000000-0000-0000-0000-000000000001")),
    ],
)
def test_literals_parse_as_their_odata_type(value: object, node: ast._Literal) -> None:
    assert parse(f"x eq {literal(value)}") == ast.Compare(ast.Eq(), ast.Identifier("x"), node)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_literals_round_trip(value: float) -> None:
    (node,) = literals(parse(f"x eq {literal(value)}"))
    assert "+" not in literal(value)
    assert float(node.val) == value  # type: ignore[attr-defined]


@given(st.text())
def test_no_string_changes_a_querys_meaning(value: str) -> None:
    tree = parse(f"name eq {literal(value)}")
    assert tree == ast.Compare(ast.Eq(), NAME, ast.String(value))
    assert literals(tree) == [ast.String(value)]


@given(st.text(), st.text())
def test_template_values_stay_values(a: str, b: str) -> None:
    tree = parse(F("name eq {} and address1_city eq {city}", a, city=b))
    assert tree == ast.BoolOp(
        ast.And(),
        ast.Compare(ast.Eq(), NAME, ast.String(a)),
        ast.Compare(ast.Eq(), CITY, ast.String(b)),
    )
    assert literals(tree) == [ast.String(a), ast.String(b)]


@given(st.text())
def test_function_arguments_stay_values(value: str) -> None:
    tree = parse(where(name__contains=value))
    assert tree == ast.Call(ast.Identifier("contains"), [NAME, ast.String(value)])


@settings(max_examples=50)
@given(st.text())
def test_percent_encoded_query_decodes_to_the_same_filter(value: str) -> None:
    text = str(Query("accounts").filter(name=value).top(5))
    pairs = [pair.split("=", 1) for pair in text.split("&")]
    assert [k for k, _ in pairs] == ["$filter", "$top"]
    assert " " not in text and "+" not in text.replace("%2B", "")
    decoded = urllib.parse.unquote(pairs[0][1])
    assert literals(parse(decoded)) == [ast.String(value)]


# --- where / F / in_ -------------------------------------------------------------------


def test_where_keyword_form() -> None:
    assert (
        where(name="Contoso", revenue__gt=1_000_000, statecode=0)
        == "name eq 'Contoso' and revenue gt 1000000 and statecode eq 0"
    )


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({"a__ne": 1}, "a ne 1"),
        ({"a__ge": 1.5}, "a ge 1.5"),
        ({"a__lt": dt.date(2024, 1, 1)}, "a lt 2024-01-01"),
        ({"a__le": 3}, "a le 3"),
        ({"a__eq": None}, "a eq null"),
        ({"name__startswith": "Co"}, "startswith(name,'Co')"),
        ({"name__endswith": "so"}, "endswith(name,'so')"),
        ({"a__isnull": True}, "a eq null"),
        ({"a__isnull": False}, "a ne null"),
        (
            {"name__in": ["O'Brian", 'x"y']},
            'Microsoft.Dynamics.CRM.In(PropertyName=\'name\',PropertyValues=["O\'Brian","x\\"y"])',
        ),
        ({"primarycontactid/fullname": "Ann"}, "primarycontactid/fullname eq 'Ann'"),
    ],
)
def test_where_operators(conditions: dict[str, object], expected: str) -> None:
    assert where(conditions) == expected


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ({"name__like": "x"}, "Unknown filter operator 'like'"),
        ({"name__contains": 5}, "needs a string"),
        ({"name__in": "abc"}, "needs a list"),
        ({"name__in": []}, "empty list"),
        ({"name__isnull": "yes"}, "True or False"),
        ({"name or 1 eq 1": "x"}, "not a valid column name"),
        ({}, "at least one condition"),
    ],
)
def test_where_errors_name_the_problem(conditions: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        where(conditions)


def test_in_and_not_in() -> None:
    assert in_("statecode", [0, 1]) == (
        'Microsoft.Dynamics.CRM.In(PropertyName=\'statecode\',PropertyValues=["0","1"])'
    )
    assert in_("statecode", (0,), negate=True).startswith("Microsoft.Dynamics.CRM.NotIn(")


def test_template_positional_indexed_and_escaped_braces() -> None:
    assert F("a eq {1} or b eq {0} or c eq {{x}}", 1, "two") == "a eq 'two' or b eq 1 or c eq {x}"


@pytest.mark.parametrize(
    ("template", "args", "kwargs", "message"),
    [
        ("a eq {}", (), {}, "more {} placeholders"),
        ("a eq {2}", (1,), {}, "has no value"),
        ("a eq {x}", (), {}, "Pass x="),
        ("a eq {!r}", (1,), {}, "conversion or format spec"),
        ("a eq {:>5}", (1,), {}, "conversion or format spec"),
        ("a eq {x.y}", (), {"x": 1}, "not a plain name"),
        ("a eq {x[0]}", (), {"x": [1]}, "not a plain name"),
    ],
)
def test_template_errors(
    template: str, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        F(template, *args, **kwargs)


# --- Query -----------------------------------------------------------------------------


def test_query_renders_params_and_string() -> None:
    q = (
        Query("accounts")
        .select("name", "revenue")
        .filter(F("name eq {}", "A & B's"), revenue__gt=1000)
        .orderby("revenue desc", "-createdon", "name")
        .top(50)
        .expand("primarycontactid($select=fullname)")
        .count()
    )
    assert q.to_params() == {
        "$select": "name,revenue",
        "$filter": "(name eq 'A & B''s') and (revenue gt 1000)",
        "$orderby": "revenue desc,createdon desc,name",
        "$top": "50",
        "$expand": "primarycontactid($select=fullname)",
        "$count": "true",
    }
    assert str(q) == (
        "$select=name,revenue"
        "&$filter=(name%20eq%20'A%20%26%20B''s')%20and%20(revenue%20gt%201000)"
        "&$orderby=revenue%20desc,createdon%20desc,name&$top=50"
        "&$expand=primarycontactid($select=fullname)&$count=true"
    )
    assert q.url("https://x.crm.dynamics.com/api/data/v9.2/") == (
        "https://x.crm.dynamics.com/api/data/v9.2/accounts?" + str(q)
    )


def test_query_is_immutable_and_chainable() -> None:
    base = Query("accounts").select(["name"])
    limited = base.top(10)
    assert base.limit is None and limited.limit == 10
    assert base != limited and base == Query("accounts").select("name")
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.limit = 3  # type: ignore[misc]
    assert limited.top(None).to_params() == {"$select": "name"}
    assert Query("accounts").filter().filter_expr is None
    assert Query("accounts").apply("groupby((statecode))").to_params() == {
        "$apply": "groupby((statecode))"
    }
    assert Query("accounts").url("https://x/api/data/v9.2") == "https://x/api/data/v9.2/accounts"


@pytest.mark.parametrize(
    "build",
    [
        lambda: Query("accounts; drop"),
        lambda: Query("accounts").select("name,revenue"),
        lambda: Query("accounts").select("na me"),
        lambda: Query("accounts").orderby("name sideways"),
        lambda: Query("accounts").orderby("name);x"),
        lambda: Query("accounts").expand("bad nav"),
        lambda: Query("accounts").expand("nav($select=a"),
        lambda: Query("accounts").top(0),
        lambda: Query("accounts").top(True),
    ],
)
def test_query_validates_names(build: Any) -> None:
    with pytest.raises(ConfigError):
        build()


def test_bad_name_is_named_in_the_error() -> None:
    with pytest.raises(ConfigError, match="'re venue' is not a valid column name") as info:
        Query("accounts").select("name", "re venue")
    assert info.value.field == "column_name"
    assert check_name("_parentcustomerid_value") == "_parentcustomerid_value"
    assert check_name("a/b_c", path=True) == "a/b_c"


# --- FetchXML --------------------------------------------------------------------------


def test_module_exports_are_sorted_and_present() -> None:
    import d365nb._odata as module

    assert module.__all__ == sorted(module.__all__)
    assert all(hasattr(module, name) for name in module.__all__)
