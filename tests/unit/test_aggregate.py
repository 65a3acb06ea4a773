"""The pure side of `conn.aggregate()` (`_aggregate`) and of query functions (`_functions`)."""

from __future__ import annotations

import datetime as dt

import pytest

import d365nb
from d365nb import ConfigError
from d365nb._aggregate import apply_text
from d365nb._functions import query_function


def test_apply_text_groupby_aggregate_and_filter() -> None:
    items = [("total", "estimatedvalue", "sum"), ("n", "", "$count")]
    assert apply_text(["statuscode", "_parentaccountid_value"], items, "statecode eq 0") == (
        "filter(statecode eq 0)/groupby((statuscode,_parentaccountid_value),"
        "aggregate(estimatedvalue with sum as total,$count as n))"
    )
    assert apply_text([], [("m", "revenue", "average")]) == "aggregate(revenue with average as m)"


def test_apply_text_refuses_unsafe_names() -> None:
    with pytest.raises(ConfigError):
        apply_text(["statuscode)"], [("n", "", "$count")])
    with pytest.raises(ConfigError):
        apply_text([], [("n as x", "", "$count")])


@pytest.mark.parametrize(
    ("keywords", "text"),
    [
        (
            {"createdon__lastxdays": 30},
            "Microsoft.Dynamics.CRM.LastXDays(PropertyName='createdon',PropertyValue=30)",
        ),
        (
            {"createdon__thisyear": True},
            "Microsoft.Dynamics.CRM.ThisYear(PropertyName='createdon')",
        ),
        (
            {"createdon__on": dt.date(2024, 2, 29)},
            "Microsoft.Dynamics.CRM.On(PropertyName='createdon',PropertyValue='2024-02-29')",
        ),
        (
            {"revenue__between": (1, 5)},
            'Microsoft.Dynamics.CRM.Between(PropertyName=\'revenue\',PropertyValues=["1","5"])',
        ),
        (
            {"name__notin": ["O'Brien"]},
            "Microsoft.Dynamics.CRM.NotIn(PropertyName='name',PropertyValues=[\"O'Brien\"])",
        ),
    ],
)
def test_where_builds_query_functions(keywords: dict[str, object], text: str) -> None:
    assert d365nb.where(**keywords) == text


@pytest.mark.parametrize(
    ("name", "value"),
    [("thisyear", 3), ("between", (1,)), ("under", None), ("nosuch", 1), ("notin", "ab")],
)
def test_query_function_errors(name: str, value: object) -> None:
    with pytest.raises(ConfigError):
        query_function(name, "createdon", value)
