"""Server-driven paging: `Prefer: odata.maxpagesize`, nextLink and Microsoft's paging cookie."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from d365nb.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


def _all_pages(api: httpx.Client, url: str, size: int) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    links: list[str] = []
    headers = {"Prefer": f"odata.maxpagesize={size}"}
    while url:
        r = api.get(url, headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["preference-applied"] == f"odata.maxpagesize={size}"
        body = r.json()
        assert len(body["value"]) <= size
        rows.extend(body["value"])
        url = body.get("@odata.nextLink", "")
        if url:
            assert list(body)[-1] == "@odata.nextLink"
            links.append(url)
    return rows, links


def _group(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    assert m is not None
    return m.group(1)


def test_paging_reads_every_row_once_in_order(api: httpx.Client) -> None:
    everything = api.get("contacts?$select=fullname").json()["value"]
    rows, links = _all_pages(api, "contacts?$select=fullname", 7)
    assert len(links) == (len(everything) - 1) // 7
    assert [r["contactid"] for r in rows] == [r["contactid"] for r in everything]
    assert [r["contactid"] for r in rows] == sorted(r["contactid"] for r in rows)


def test_paging_with_orderby_and_filter_keeps_them(api: httpx.Client) -> None:
    url = "accounts?$select=name,revenue&$filter=statecode eq 0&$orderby=revenue desc,name"
    expected = api.get(url).json()["value"]
    rows, links = _all_pages(api, url, 4)
    assert [r["accountid"] for r in rows] == [r["accountid"] for r in expected]
    assert links and all(
        "$filter=statecode%20eq%200&$orderby=revenue%20desc,name&" in link for link in links
    )


def test_next_link_cookie_is_microsofts_format(api: httpx.Client, sandbox: Sandbox) -> None:
    body = api.get("contacts?$select=fullname", headers={"Prefer": "odata.maxpagesize=2"}).json()
    first, last = body["value"][0]["contactid"], body["value"][1]["contactid"]
    link = body["@odata.nextLink"]
    prefix = f"{sandbox.service_url}contacts?$select=fullname&$skiptoken="
    assert link.startswith(prefix)
    token = link[len(prefix) :]
    # One encoding layer outside ('=' and '/' literal), lower-case double encoding inside.
    expected = (
        "%3Ccookie%20pagenumber=%222%22%20pagingcookie=%22"
        "%253ccookie%2520page%253d%25221%2522%253e%253ccontactid%2520last%253d%2522%257b"
        f"{last.upper()}%257d%2522%2520first%253d%2522%257b{first.upper()}%257d%2522%2520"
        "%252f%253e%253c%252fcookie%253e%22%20istracking=%22False%22%20/%3E"
    )
    assert token == expected
    decoded = unquote(token)
    assert decoded.startswith('<cookie pagenumber="2" pagingcookie="%3ccookie%20page%3d%221%22')
    assert unquote(_group(r'pagingcookie="([^"]+)"', decoded)) == (
        f'<cookie page="1"><contactid last="{{{last.upper()}}}" '
        f'first="{{{first.upper()}}}" /></cookie>'
    )
    second = api.get(link, headers={"Prefer": "odata.maxpagesize=2"}).json()
    assert "pagenumber=%223%22" in second["@odata.nextLink"]
    assert "page%253d%25222%2522" in second["@odata.nextLink"]


def test_cookie_carries_sort_values_first(api: httpx.Client) -> None:
    body = api.get(
        "accounts?$select=name&$orderby=name", headers={"Prefer": "odata.maxpagesize=3"}
    ).json()
    inner = unquote(unquote(body["@odata.nextLink"].split("$skiptoken=")[1]))
    assert re.search(
        r'<cookie page="1"><name last="[^"]+" first="[^"]+" />'
        r'<accountid last="\{[0-9A-F-]+\}" first="\{[0-9A-F-]+\}" /></cookie>',
        inner,
    )


def test_max_page_size_above_5000_is_capped(api: httpx.Client) -> None:
    r = api.get("leads?$select=fullname", headers={"Prefer": "odata.maxpagesize=9000"})
    assert r.headers["preference-applied"] == "odata.maxpagesize=5000"


def test_top_wins_over_maxpagesize(api: httpx.Client) -> None:
    body = api.get("accounts?$select=name&$top=5", headers={"Prefer": "odata.maxpagesize=2"}).json()
    assert len(body["value"]) == 5
    assert "@odata.nextLink" not in body


def test_combined_prefer_header_like_the_python_sdk(api: httpx.Client) -> None:
    r = api.get(
        "accounts?$select=industrycode&$filter=industrycode ne null",
        headers={
            "Prefer": "odata.maxpagesize=3,odata.include-annotations="
            '"OData.Community.Display.V1.FormattedValue"'
        },
    )
    body = r.json()
    assert len(body["value"]) == 3 and "@odata.nextLink" in body
    assert "industrycode@OData.Community.Display.V1.FormattedValue" in body["value"][0]


def test_bad_skiptoken_is_400(api: httpx.Client) -> None:
    r = api.get("accounts?$select=name&$skiptoken=nonsense")
    assert r.status_code == 400
