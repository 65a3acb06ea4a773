"""`_filters`: OData filters read back (round trip) and written as FetchXML (no I/O)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

import d365nb
from d365nb._filters import fetch_filter, parse_filter, to_text

FILTERS = [
    "name eq 'O''Bryan'",
    "revenue gt 5 and (statecode eq 0 or _parentaccountid_value eq null)",
    "not contains(name,'x') and startswith(name,'a')",
    'Microsoft.Dynamics.CRM.In(PropertyName=\'statuscode\',PropertyValues=["1","2"])',
    "Microsoft.Dynamics.CRM.LastXDays(PropertyName='createdon',PropertyValue=30)",
    "Account_Tasks/any(t:t/statecode eq 1)",
]


@pytest.mark.parametrize("text", FILTERS)
def test_the_text_of_the_tree_reads_back_to_the_same_tree(text: str) -> None:
    tree = parse_filter(text)
    assert parse_filter(to_text(tree)) == tree


def _conditions(xml: str) -> list[tuple[str, str, str | None]]:
    root = ET.fromstring(xml)
    return [
        (c.get("attribute", ""), c.get("operator", ""), c.get("value"))
        for c in root.iter("condition")
    ]


def test_fetchxml_conditions() -> None:
    flt = d365nb.where(revenue__ge=5, name__startswith="a", createdon__lastxdays=30)
    assert _conditions(fetch_filter(flt, str)) == [
        ("revenue", "ge", "5"),
        ("name", "begins-with", "a"),
        ("createdon", "last-x-days", "30"),
    ]


def test_not_is_pushed_into_the_conditions() -> None:
    xml = fetch_filter(
        "not (revenue gt 5 or contains(name,'x')) and _parentaccountid_value ne null", str
    )
    root = ET.fromstring(xml)
    assert root.get("type") == "and"
    assert _conditions(xml) == [
        ("revenue", "le", "5"),
        ("name", "not-like", "%x%"),
        ("parentaccountid", "not-null", None),
    ]
    assert [f.get("type") for f in root.iter("filter")] == ["and", "and"]


def test_lists_become_value_elements() -> None:
    xml = fetch_filter(d365nb.where(statuscode__in=[1, 2]), str)
    assert [v.text for v in ET.fromstring(xml).iter("value")] == ["1", "2"]


@pytest.mark.parametrize(
    "text", ["primarycontactid/fullname eq 'x'", FILTERS[-1], "revenue eq cost"]
)
def test_what_fetchxml_cannot_say_is_a_config_error(text: str) -> None:
    with pytest.raises(d365nb.ConfigError, match="FetchXML"):
        fetch_filter(text, str)


def test_an_unterminated_string_is_a_config_error() -> None:
    with pytest.raises(d365nb.ConfigError):
        parse_filter("name eq 'x")
