"""DataFrame -> JSON payloads (`d365nb._payloads`), against a synthetic table of every type."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from d365nb._dtypes import ETAG_COLUMN
from d365nb._exceptions import ConfigError, InvalidFrameError
from d365nb._frames import frame_from_pages
from d365nb._payloads import build_payloads, encode_json, payloads_from_frame
from tests._support.frames import (
    CONTACT,
    ID1,
    ID2,
    LLN,
    PARENT,
    TABLE,
    TABLES,
    USER,
    full_row,
    lookup,
    null_row,
)


@pytest.fixture
def df() -> pd.DataFrame:
    return frame_from_pages([[full_row()], [null_row()]], table=TABLE)


def test_payload_of_a_read_row_for_create(df: pd.DataFrame) -> None:
    payloads = build_payloads(df, table=TABLE, tables=TABLES, mode="create")
    assert payloads.problems == ()
    label, body = payloads.rows[0]
    assert label == 0
    assert body == {
        "accountid": ID1,
        "name": "Adventure Works",
        "description": "Bikes.",
        "numberofemployees": 4300,
        "new_bignumber": -5,
        "revenue": 20000.0,
        "exchangerate": 1.2345,
        "address1_latitude": 47.65539,
        "donotemail": True,
        "new_meeting": "2024-02-29T09:30:00Z",
        "new_founded": "2024-05-01",
        "industrycode": 2,
        "statuscode": 1,
        "new_tags": "1,3",
        "parentaccountid@odata.bind": f"/accounts({PARENT})",
        "ownerid@odata.bind": f"/systemusers({USER})",
        "customerid_contact@odata.bind": f"/contacts({CONTACT})",
        "new_externalid": "a0dbf27c-8efb-e511-80d2-00155db07c77",
    }
    assert payloads.skipped == {
        "versionnumber": "read-only for create",
        "createdon": "read-only for create",
        "statecode": "read-only for create",
        "parentaccountid_name": "derived from lookup 'parentaccountid' (not written)",
        "parentaccountid_table": "derived from lookup 'parentaccountid' (not written)",
        "ownerid_name": "derived from lookup 'ownerid' (not written)",
        "ownerid_table": "derived from lookup 'ownerid' (not written)",
        "customerid_name": "derived from lookup 'customerid' (not written)",
        "customerid_table": "derived from lookup 'customerid' (not written)",
        ETAG_COLUMN: "row version, used for concurrency",
    }
    nulls = payloads.rows[1][1]
    assert nulls["accountid"] == ID2
    assert nulls["name"] is None and nulls["industrycode"] is None and nulls["new_tags"] is None
    assert nulls["parentaccountid@odata.bind"] is None
    json.dumps(body)  # plain JSON types only


def test_update_leaves_the_ids_out_and_sends_statecode(df: pd.DataFrame) -> None:
    payloads = build_payloads(df, table=TABLE, tables=TABLES, mode="update")
    body = payloads.rows[0][1]
    assert "accountid" not in body
    assert body["statecode"] == 0
    assert payloads.skipped["accountid"] == "identifies the row (sent in the URL)"
    upsert = build_payloads(df, table=TABLE, tables=TABLES, mode="upsert", key_columns=["name"])
    assert "name" not in upsert.rows[0][1]
    assert "statecode" not in upsert.rows[0][1]  # not valid for create, so not for upsert


def test_na_omit_leaves_nulls_out(df: pd.DataFrame) -> None:
    rows = payloads_from_frame(df, table=TABLE, tables=TABLES, mode="update", na="omit")
    assert rows[1][1] == {}
    assert "name" in rows[0][1]


def test_new_frame_with_labels_lists_dates_and_dates_only() -> None:
    frame = pd.DataFrame(
        {
            "name": ["A", "B"],
            "industrycode": ["Broadcasting", None],
            "new_tags": [["Green", "Red"], []],
            "new_meeting": pd.DatetimeIndex(["2024-01-01 10:00", None]).tz_localize("Europe/Paris"),
            "new_founded": [dt.date(2020, 2, 29), None],
            "donotemail": [False, None],
            "numberofemployees": [3.0, np.nan],  # integral floats are fine
        },
        index=["r1", "r2"],
    )
    rows = payloads_from_frame(frame, table=TABLE, mode="create")
    assert rows[0] == (
        "r1",
        {
            "name": "A",
            "industrycode": 3,
            "new_tags": "2,1",
            "new_meeting": "2024-01-01T09:00:00Z",
            "new_founded": "2020-02-29",
            "donotemail": False,
            "numberofemployees": 3,
        },
    )
    assert rows[1][1] == {
        "name": "B",
        "industrycode": None,
        "new_tags": None,
        "new_meeting": None,
        "new_founded": None,
        "donotemail": None,
        "numberofemployees": None,
    }


def test_problems_are_collected_with_rows_columns_and_fixes() -> None:
    frame = pd.DataFrame(
        {
            "name": ["ok", "x" * 21, "ok"],
            "industrycode": ["Accounting", "Acounting", "Nope"],
            "new_meeting": pd.DatetimeIndex(["2024-01-01", "2024-01-02", None]),  # naive
            "revenue": [1.0, np.inf, None],
            "createdon": pd.to_datetime(["2024-01-01"] * 3, utc=True),
            "revnue": [1, 2, 3],
        },
        index=pd.Index([10, 11, 12], name="row"),
    )
    with pytest.raises(InvalidFrameError) as info:
        payloads_from_frame(frame, table=TABLE, mode="update", columns=list(frame.columns))
    error = info.value
    assert isinstance(error, ConfigError)
    text = str(error)
    by_column = {p.column: p for p in error.problems}
    assert by_column["name"].rows == (11,)
    assert "maximum of 20 characters" in by_column["name"].message
    assert "str.slice(0, 20)" in by_column["name"].hint
    unknown_labels = [p for p in error.problems if p.column == "industrycode"]
    assert {p.rows for p in unknown_labels} == {(11,), (12,)}
    assert any("Did you mean 'Accounting'" in p.hint for p in unknown_labels)
    assert "tz_localize('UTC')" in by_column["new_meeting"].hint
    assert by_column["revenue"].rows == (11,) and "infinite" in by_column["revenue"].message
    assert "read-only" in by_column["createdon"].message
    assert "Did you mean 'revenue'" in by_column["revnue"].hint
    assert "column 'name', row 11:" in text
    assert "nothing was sent" in text
    assert error.field == "df"


def test_problem_messages_are_capped_but_all_are_kept() -> None:
    frame = pd.DataFrame({f"bad{i}": [1] for i in range(30)})
    with pytest.raises(InvalidFrameError) as info:
        payloads_from_frame(frame, table=TABLE, mode="create", limit=5)
    assert len(info.value.problems) == 30
    assert "and 25 more" in str(info.value)


def test_many_bad_rows_are_counted_not_listed() -> None:
    frame = pd.DataFrame({"name": ["x" * 30] * 12})
    payloads = build_payloads(frame, table=TABLE, mode="create")
    (problem,) = payloads.problems
    assert problem.row_count == 12 and len(problem.rows) == 5
    assert "(and 7 more)" in str(problem)
    assert payloads.rows == []


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("numberofemployees", [1.5], "fractional part"),
        ("numberofemployees", [2**31], "outside"),
        ("numberofemployees", ["seven"], "not a whole number"),
        ("numberofemployees", [True], "booleans"),
        ("revenue", ["lots"], "not a number"),
        ("revenue", [-np.inf], "infinite"),
        ("donotemail", ["yes"], "not True/False"),
        ("name", [42], "not text"),
        ("new_externalid", ["not-a-guid"], "not a GUID"),
        ("new_founded", [pd.Timestamp("2024-01-01 10:00")], "times of day"),
        ("new_meeting", ["not a date"], "does not hold dates"),
        ("new_meeting", [pd.Timestamp("1700-01-01", tz="UTC")], "before 1753"),
        ("new_tags", [["Red", "Purple"]], "'Purple', which is not an option"),
        ("industrycode", [1.5], "label 1.5, which is not an option"),
        ("industrycode", [["Accounting"]], "not labels"),
        ("new_tags", [5], "not a list of labels"),
        ("parentaccountid", ["Fabrikam"], "not a record id"),
    ],
)
def test_bad_values(column: str, values: list[Any], message: str) -> None:
    frame = pd.DataFrame({column: pd.Series(values, dtype=object, index=["first"])})
    (problem,) = build_payloads(frame, table=TABLE, tables=TABLES, mode="create").problems
    assert problem.column == column
    assert message in problem.message
    assert problem.hint


def test_non_string_and_duplicate_column_names() -> None:
    frame = pd.DataFrame([[1, "a", "b"]], columns=[0, "name", "name"])
    problems = build_payloads(frame, table=TABLE, mode="create").problems
    assert [p.column for p in problems] == ["0", "name"]
    assert "not a string column name" in problems[0].message
    assert "more than once" in problems[1].message


def test_the_same_attribute_twice_is_a_problem() -> None:
    frame = pd.DataFrame({"parentaccountid": [PARENT], "_parentaccountid_value": [PARENT]})
    (problem,) = build_payloads(frame, table=TABLE, tables=TABLES, mode="create").problems
    assert problem.column == "_parentaccountid_value"
    assert "a second time" in problem.message


def test_polymorphic_lookups_bind_per_row() -> None:
    frame = pd.DataFrame(
        {
            "customerid": [PARENT, CONTACT, None],
            "customerid_table": ["account", "contact", None],
        }
    )
    rows = payloads_from_frame(frame, table=TABLE, tables=TABLES, mode="create")
    assert rows[0][1] == {"customerid_account@odata.bind": f"/accounts({PARENT})"}
    assert rows[1][1] == {"customerid_contact@odata.bind": f"/contacts({CONTACT})"}
    assert rows[2][1] == {"customerid_account@odata.bind": None}


def test_polymorphic_lookup_problems() -> None:
    no_table = pd.DataFrame({"customerid": [PARENT]})
    (problem,) = build_payloads(no_table, table=TABLE, tables=TABLES, mode="create").problems
    assert "Add a column 'customerid_table'" in problem.hint
    frame = pd.DataFrame(
        {"customerid": [PARENT, CONTACT, CONTACT], "customerid_table": ["lead", None, "contact"]}
    )
    problems = build_payloads(frame, table=TABLE, tables={}, mode="create").problems
    messages = {(p.column, p.rows): p.message for p in problems}
    assert "'lead', which 'customerid' cannot point to" in messages[("customerid_table", (0,))]
    assert "is empty" in messages[("customerid_table", (1,))]
    assert "entity set is unknown" in messages[("customerid", (2,))]


def test_bad_mode_and_na() -> None:
    frame = pd.DataFrame({"name": ["a"]})
    with pytest.raises(ConfigError) as info:
        build_payloads(frame, table=TABLE, mode="delete")  # type: ignore[arg-type]
    assert info.value.field == "mode"
    with pytest.raises(ConfigError):
        build_payloads(frame, table=TABLE, na="skip")  # type: ignore[arg-type]


def test_columns_naming_a_missing_frame_column() -> None:
    frame = pd.DataFrame({"name": ["a"]})
    (problem,) = build_payloads(frame, table=TABLE, columns=["nam"], mode="create").problems
    assert "not a column of the frame" in problem.message
    assert "Did you mean 'name'" in problem.hint


def test_decimals_are_encoded_exactly() -> None:
    frame = pd.DataFrame({"revenue": [decimal.Decimal("922337203685477.1234"), None]})
    rows = payloads_from_frame(frame, table=TABLE, mode="create")
    assert rows[0][1]["revenue"] == decimal.Decimal("922337203685477.1234")
    assert encode_json(rows[0][1]) == b'{"revenue":922337203685477.1234}'
    assert (
        encode_json({"a": "é", "n": np.int64(3), "b": None}) == '{"a":"é","n":3,"b":null}'.encode()
    )
    with pytest.raises(TypeError):
        encode_json({"x": object()})


def test_numeric_choice_columns() -> None:
    ints = pd.DataFrame({"industrycode": pd.array([2, None], dtype="Int32")})
    rows = payloads_from_frame(ints, table=TABLE, mode="create")
    assert [body["industrycode"] for _, body in rows] == [2, None]
    floats = pd.DataFrame({"industrycode": [1.5]})
    (problem,) = build_payloads(floats, table=TABLE, mode="create").problems
    assert "not choice values" in problem.message


# -- round trip ----------------------------------------------------------------------------

GUIDS = st.uuids().map(str)
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
SECONDS = st.datetimes(dt.datetime(1753, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
)
DATES = st.dates(dt.date(1753, 1, 1), dt.date(9999, 12, 31)).map(dt.date.isoformat)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
CHOICE = st.sampled_from([1, 2, 3, 100000000, -7])
MULTI = st.lists(st.sampled_from([1, 2, 3, 42]), min_size=1, max_size=4, unique=True).map(
    lambda v: ",".join(map(str, v))
)
WIRE = {
    "name": TEXT,
    "description": TEXT,
    "numberofemployees": st.integers(-(2**31), 2**31 - 1),
    "new_bignumber": st.integers(-(2**63), 2**63 - 1),
    "revenue": FLOATS,
    "exchangerate": FLOATS,
    "address1_latitude": FLOATS,
    "donotemail": st.booleans(),
    "new_meeting": SECONDS,
    "new_founded": DATES,
    "industrycode": CHOICE,
    "statuscode": st.sampled_from([1, 2, 5]),
    "new_tags": MULTI,
    "new_externalid": GUIDS,
}


@st.composite
def wire_rows(draw: st.DrawFn) -> dict[str, Any]:
    row: dict[str, Any] = {"@odata.etag": 'W/"1"', "accountid": draw(GUIDS)}
    for key, strategy in WIRE.items():
        row[key] = draw(st.none() | strategy)
    parent = draw(st.none() | GUIDS)
    row.update(lookup("parentaccountid", parent, "account", "P"))
    if parent is not None and draw(st.booleans()):  # annotations not asked for
        row = {k: v for k, v in row.items() if "@" not in k or k == "@odata.etag"}
    owner_table = draw(st.sampled_from(["systemuser", "team"]))
    row.update(lookup("ownerid", draw(st.none() | GUIDS), owner_table, "O"))
    customer_table = draw(st.sampled_from(["account", "contact"]))
    row.update(lookup("customerid", draw(st.none() | GUIDS), customer_table, "C"))
    return row


def expected_body(row: dict[str, Any]) -> dict[str, Any]:
    """What a create must send for a wire row: the same values, lookups as binds."""
    body = {key: row[key] for key in ["accountid", *WIRE]}
    sets = {
        "account": "accounts",
        "contact": "contacts",
        "systemuser": "systemusers",
        "team": "teams",
    }
    parent = row["_parentaccountid_value"]
    body["parentaccountid@odata.bind"] = parent and f"/accounts({parent})"
    owner = row["_ownerid_value"]
    body["ownerid@odata.bind"] = owner and f"/{sets[row[f'_ownerid_value{LLN}']]}({owner})"
    customer = row["_customerid_value"]
    if customer is None:
        body["customerid_account@odata.bind"] = None
    else:
        target = row[f"_customerid_value{LLN}"]
        body[f"customerid_{target}@odata.bind"] = f"/{sets[target]}({customer})"
    return body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(wire_rows(), max_size=6), st.integers(1, 4))
def test_round_trip_reproduces_the_wire_values(rows: list[dict[str, Any]], size: int) -> None:
    pages = [rows[i : i + size] for i in range(0, len(rows), size)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = frame_from_pages(pages, table=TABLE)
    payloads = payloads_from_frame(frame, table=TABLE, tables=TABLES, mode="create")
    assert [label for label, _ in payloads] == list(range(len(rows)))
    for row, (_, body) in zip(rows, payloads, strict=True):
        assert body == expected_body(row)
        json.dumps(body, allow_nan=False)
