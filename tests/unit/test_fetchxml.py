"""FetchXML paging (`_fetchxml`): page attributes, paging cookies, and the errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from d365nb import ConfigError, TransportError
from d365nb._fetchxml import fetchxml_with_page, paging_cookie_from_annotation

FETCH = (
    "<fetch mapping='logical'><entity name='contact'><attribute name='fullname'/></entity></fetch>"
)

# The annotation as printed by Microsoft (PA/fetchxml/page-results), GUIDs shortened.
ANNOTATION = (
    '<cookie pagenumber="2" pagingcookie="%253ccookie%2520page%253d%25221%2522%253e'
    "%253ccontactid%2520last%253d%2522%257bD5026A4D-0001%257d%2522%2520first%253d"
    '%2522%257b49B0BE2E-0002%257d%2522%2520%252f%253e%253c%252fcookie%253e" istracking="False" />'
)
COOKIE = '<cookie page="1"><contactid last="{D5026A4D-0001}" first="{49B0BE2E-0002}" /></cookie>'


def test_paging_cookie_is_decoded_twice() -> None:
    assert paging_cookie_from_annotation(ANNOTATION) == COOKIE


def test_fetchxml_with_page_sets_attributes_and_escapes_the_cookie() -> None:
    xml = fetchxml_with_page(FETCH, page=2, count=500, paging_cookie=COOKIE)
    assert 'paging-cookie="&lt;cookie page=&quot;1&quot;&gt;' in xml
    root = ET.fromstring(xml)
    assert root.attrib == {
        "mapping": "logical",
        "page": "2",
        "count": "500",
        "paging-cookie": COOKIE,
    }
    assert root.find("entity/attribute").get("name") == "fullname"  # type: ignore[union-attr]
    # The next page replaces the values; no cookie drops the attribute.
    again = ET.fromstring(fetchxml_with_page(xml, page=3, count=500, paging_cookie=None))
    assert again.get("page") == "3" and "paging-cookie" not in again.attrib


@pytest.mark.parametrize(
    ("xml", "kwargs", "message"),
    [
        ("<fetch><entity", {}, "not well-formed"),
        ("<entity name='a'/>", {}, "root element is <entity>"),
        ("<fetch top='5'><entity name='a'/></fetch>", {}, "with top cannot be paged"),
        (FETCH, {"page": 0}, "positive whole numbers"),
        (FETCH, {"count": 5001}, "above the service's 5,000"),
    ],
)
def test_fetchxml_errors(xml: str, kwargs: dict[str, int], message: str) -> None:
    options = {"page": 1, "count": 10, "paging_cookie": None} | kwargs
    with pytest.raises(ConfigError, match=message):
        fetchxml_with_page(xml, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["not xml", '<cookie pagenumber="2" />'])
def test_unreadable_paging_cookie(value: str) -> None:
    with pytest.raises(TransportError, match="paging cookie"):
        paging_cookie_from_annotation(value)


def test_module_exports_are_sorted_and_present() -> None:
    import d365nb._fetchxml as module

    assert module.__all__ == sorted(module.__all__)
    assert all(hasattr(module, name) for name in module.__all__)
