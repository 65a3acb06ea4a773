"""OData reads of the F&O environment: entities, paging, companies, filters, enums, dates."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from d365nb.sandbox import Sandbox

from .conftest import PAGE_SIZE, ROWS, fno_root

ENUM = "Microsoft.Dynamics.DataEntities"


def read_all(fno: httpx.Client, path: str, params: dict[str, str], **kw: Any) -> list[Any]:
    """Every row, following `@odata.nextLink` verbatim; asserts each page's size."""
    # httpx replaces a URL's query with `params` whenever `params` is given, even empty.
    response = fno.get(path, params=params, **kw) if params else fno.get(path, **kw)
    rows: list[Any] = []
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        rows += body["value"]
        link = body.get("@odata.nextLink")
        if link is None:
            return rows
        assert len(body["value"]) <= PAGE_SIZE
        response = fno.get(link, **kw)


@pytest.mark.parametrize(
    ("entity_set", "key"),
    [
        ("CustomersV3", "CustomerAccount"),
        ("VendorsV2", "VendorAccountNumber"),
        ("ReleasedProductsV2", "ItemNumber"),
        ("SalesOrderHeadersV2", "SalesOrderNumber"),
        ("SalesOrderLines", "InventoryLotId"),
        ("CustomerGroups", "CustomerGroupId"),
        ("Currencies", "CurrencyCode"),
        ("LegalEntities", "LegalEntityId"),
    ],
)
def test_each_entity_reads(
    fno: httpx.Client, fno_sandbox: Sandbox, entity_set: str, key: str
) -> None:
    body = fno.get(f"/data/{entity_set}", params={"$top": "3"}).json()
    assert body["@odata.context"] == f"{fno_root(fno_sandbox)}/data/$metadata#{entity_set}"
    assert 1 <= len(body["value"]) <= 3
    row = body["value"][0]
    assert row["@odata.etag"].startswith('W/"')
    assert row[key]
    assert "dataAreaId" in row or entity_set in ("Currencies", "LegalEntities")


def test_paging_across_pages_equals_one_page(fno: httpx.Client) -> None:
    params = {"cross-company": "true", "$select": "dataAreaId,CustomerAccount,CreditLimit"}
    first = fno.get("/data/CustomersV3", params=params).json()
    assert len(first["value"]) == PAGE_SIZE
    link = urlsplit(first["@odata.nextLink"])
    assert link.geturl().startswith(str(fno.base_url))  # absolute, same environment
    assert parse_qs(link.query)["$skip"] == [str(PAGE_SIZE)]
    paged = read_all(fno, "/data/CustomersV3", params)
    one = fno.get("/data/CustomersV3", params=params, headers={"Prefer": "odata.maxpagesize=5000"})
    assert "@odata.nextLink" in one.json()  # never past the server's page size
    knobs = fno.get("/_sandbox/knobs").json()
    try:
        fno.post("/_sandbox/knobs", json={"page_size": 10000})
        whole = fno.get("/data/CustomersV3", params=params).json()
    finally:
        fno.post("/_sandbox/knobs", json={"page_size": knobs["page_size"]})
    assert "@odata.nextLink" not in whole
    assert paged == whole["value"]
    assert len(paged) >= ROWS
    keys = [(r["dataAreaId"], r["CustomerAccount"]) for r in paged]
    assert keys == sorted(keys)  # default order: the entity key


def test_maxpagesize_smaller_pages(fno: httpx.Client) -> None:
    response = fno.get(
        "/data/Currencies", headers={"Prefer": "odata.maxpagesize=3"}, params={"$count": "true"}
    )
    body = response.json()
    assert response.headers["preference-applied"] == "odata.maxpagesize=3"
    assert len(body["value"]) == 3 and body["@odata.count"] > 3
    rest = read_all(fno, body["@odata.nextLink"], {}, headers={"Prefer": "odata.maxpagesize=3"})
    everything = fno.get("/data/Currencies").json()["value"]
    assert body["value"] + rest == everything


def test_top_skip_count_and_dollar_count(fno: httpx.Client) -> None:
    params = {"$orderby": "CustomerAccount desc", "$select": "CustomerAccount"}
    all_rows = read_all(fno, "/data/CustomersV3", params)
    top = fno.get(
        "/data/CustomersV3", params={**params, "$top": "40", "$skip": "5", "$count": "true"}
    ).json()
    assert top["@odata.count"] == len(all_rows)
    page = top["value"] + read_all(fno, top["@odata.nextLink"], {})
    assert page == all_rows[5:45]
    count = fno.get("/data/CustomersV3/$count", params={"cross-company": "true"})
    assert count.headers["content-type"].startswith("text/plain")
    assert int(count.text) >= ROWS


def test_default_company_vs_cross_company(fno: httpx.Client) -> None:
    params = {"$select": "dataAreaId"}
    default = read_all(fno, "/data/CustomersV3", params)
    assert {r["dataAreaId"] for r in default} == {"usmf"}
    everywhere = read_all(fno, "/data/CustomersV3", {**params, "cross-company": "true"})
    assert {r["dataAreaId"] for r in everywhere} == {"usmf", "usrt", "demf"}
    one = read_all(
        fno,
        "/data/CustomersV3",
        {**params, "cross-company": "true", "$filter": "dataAreaId eq 'USRT'"},
    )
    assert one and {r["dataAreaId"] for r in one} == {"usrt"}
    # Shared entities ignore both.
    assert len(fno.get("/data/Currencies").json()["value"]) == len(
        fno.get("/data/Currencies", params={"cross-company": "true"}).json()["value"]
    )


def test_company_filter_without_cross_company_returns_nothing(fno: httpx.Client) -> None:
    response = fno.get("/data/CustomersV3", params={"$filter": "dataAreaId eq 'usrt'"})
    assert response.status_code == 200
    assert response.json()["value"] == []


def test_enum_literals_in_filters(fno: httpx.Client) -> None:
    person = f"PartyType eq {ENUM}.DirPartyBaseType'Person'"
    rows = read_all(fno, "/data/CustomersV3", {"$filter": person, "cross-company": "true"})
    assert rows and {r["PartyType"] for r in rows} == {"Person"}
    no = fno.get(
        "/data/Currencies",
        params={"$filter": f"ReferenceCurrencyForTriangulation ne {ENUM}.NoYes'No'"},
    ).json()["value"]
    assert [r["CurrencyCode"] for r in no] == ["EUR"]
    for bad in (
        "PartyType eq 'Person'",  # a bare string is not an enum literal
        f"PartyType gt {ENUM}.DirPartyBaseType'Organization'",  # eq/ne only
        f"PartyType eq {ENUM}.DirPartyBaseType'Robot'",
    ):
        response = fno.get("/data/CustomersV3", params={"$filter": bad})
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == ""


def test_wildcard_contains_and_unsupported_operators(fno: httpx.Client) -> None:
    params = {"cross-company": "true", "$select": "OrganizationName"}
    rows = read_all(fno, "/data/CustomersV3", {**params, "$filter": "OrganizationName eq '*INC*'"})
    assert rows and all("inc" in r["OrganizationName"].lower() for r in rows)
    starts = read_all(fno, "/data/CustomersV3", {**params, "$filter": "NameAlias eq 'B*'"})
    assert len(starts) == len(
        read_all(fno, "/data/CustomersV3", {**params, "$filter": "startswith(NameAlias,'B')"})
    )
    for bad in ("CustomerGroupId in ('10','20')", "PartyType has 'x'", "Nope eq 1"):
        assert fno.get("/data/CustomersV3", params={"$filter": bad}).status_code == 400, bad
    wrong_case = fno.get("/data/CustomersV3", params={"$select": "customeraccount"})
    assert wrong_case.status_code == 400
    for option in ("$apply", "$search", "$skiptoken"):
        assert fno.get("/data/CustomersV3", params={option: "x"}).status_code == 400, option


def test_dates_and_the_empty_date(fno: httpx.Client) -> None:
    params = {"cross-company": "true", "$select": "ItemNumber,SellStartDate"}
    rows = read_all(fno, "/data/ReleasedProductsV2", params)
    assert all(r["SellStartDate"].endswith("T12:00:00Z") for r in rows)
    empty = [r for r in rows if r["SellStartDate"] == "1900-01-01T12:00:00Z"]
    assert empty  # the "no date" sentinel, not null
    later = read_all(
        fno,
        "/data/ReleasedProductsV2",
        {**params, "$filter": "SellStartDate gt 2024-06-01T00:00:00Z"},
    )
    assert later and all(r["SellStartDate"] > "2024-06-01" for r in later)
    assert len(later) < len(rows) - len(empty)


def test_first_level_expand_and_read_by_key(fno: httpx.Client) -> None:
    body = fno.get(
        "/data/SalesOrderHeadersV2", params={"$top": "2", "$expand": "SalesOrderLines"}
    ).json()
    for order in body["value"]:
        assert order["SalesOrderLines"]
        assert {line["SalesOrderNumber"] for line in order["SalesOrderLines"]} == {
            order["SalesOrderNumber"]
        }
    nested = fno.get("/data/SalesOrderHeadersV2", params={"$expand": "SalesOrderLines/x"})
    assert nested.status_code == 400
    account = body["value"][0]["OrderingCustomerAccountNumber"]
    one = fno.get(f"/data/CustomersV3(dataAreaId='usmf',CustomerAccount='{account}')")
    assert one.status_code == 200 and one.json()["CustomerAccount"] == account
    assert one.headers["etag"] == one.json()["@odata.etag"]
    partial = fno.get(f"/data/CustomersV3(CustomerAccount='{account}')")
    assert partial.status_code == 400  # every key field, dataAreaId included
    assert fno.get("/data/Currencies('USD')").json()["Name"] == "US Dollar"
