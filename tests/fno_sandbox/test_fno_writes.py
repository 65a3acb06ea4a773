"""Writes by natural key with `dataAreaId`: create, update, upsert by hand, delete, ETags,
F&O-shaped errors, and `$batch` change sets."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from d365nb._multipart import (
    BatchRequest,
    ChangeSet,
    ChangeSetResponse,
    decode_batch_response,
    encode_batch_request,
)

from .conftest import ROWS

WRITE_EXCEPTION = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"


def customer_url(company: str, account: str) -> str:
    return f"/data/CustomersV3(dataAreaId='{company}',CustomerAccount='{account}')"


def new_account() -> str:
    return f"T-{uuid.uuid4().hex[:8].upper()}"


def assert_write_failed(response: httpx.Response, *fragments: str) -> None:
    assert response.status_code == 500, response.text
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("", "An error has occurred.")
    inner = error["innererror"]
    assert inner["type"] == WRITE_EXCEPTION
    assert inner["message"].startswith("Write failed for table row of type '")
    for fragment in fragments:
        assert fragment in inner["message"]


def test_create_in_another_company_by_natural_key(fno: httpx.Client) -> None:
    account = new_account()
    body = {
        "@odata.type": "#Microsoft.Dynamics.DataEntities.CustomerV3",
        "dataAreaId": "USRT",
        "CustomerAccount": account,
        "OrganizationName": "Northwind Test",
        "CustomerGroupId": "20",
        "SalesCurrencyCode": "USD",
        "CreditLimitIsMandatory": "Yes",
        "CreditLimit": 1500,
    }
    created = fno.post("/data/CustomersV3", json=body)
    assert created.status_code == 201, created.text
    row = created.json()
    assert row["dataAreaId"] == "usrt"  # stored lower-case
    assert row["PartyType"] == "Organization"  # defaulted
    assert row["PersonGender"] == "Unknown"
    assert row["ModifiedDateTime"] != "1900-01-01T00:00:00Z"
    assert created.headers["location"].endswith(customer_url("usrt", account))
    read = fno.get(customer_url("usrt", account)).json()
    assert read["@odata.etag"] == row["@odata.etag"]
    assert read["CreditLimit"] == 1500
    # Not in the caller's default company (usmf), so a plain read does not show it...
    found = fno.get("/data/CustomersV3", params={"$filter": f"CustomerAccount eq '{account}'"})
    assert found.json()["value"] == []
    # ...but cross-company does.
    found = fno.get(
        "/data/CustomersV3",
        params={"$filter": f"CustomerAccount eq '{account}'", "cross-company": "true"},
    )
    assert len(found.json()["value"]) == 1


def test_number_sequence_and_default_company(fno: httpx.Client) -> None:
    created = fno.post(
        "/data/SalesOrderHeadersV2",
        json={"OrderingCustomerAccountNumber": "US-000001", "CurrencyCode": "USD"},
    )
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["dataAreaId"] == "usmf"  # the caller's default company
    assert order["SalesOrderNumber"].startswith("US-SO")
    assert order["SalesOrderStatus"] == "Backorder"
    assert order["RequestedShippingDate"] == "1900-01-01T12:00:00Z"
    line = fno.post(
        "/data/SalesOrderLines",
        json={
            "SalesOrderNumber": order["SalesOrderNumber"],
            "ItemNumber": "A00001",
            "OrderedSalesQuantity": 4,
            "SalesPrice": 2.5,
            "RequestedShippingDate": "2025-03-04T00:00:00Z",
        },
    ).json()
    assert line["LineAmount"] == 10
    assert line["RequestedShippingDate"] == "2025-03-04T12:00:00Z"  # X++ dates at noon


def test_update_then_upsert_by_hand_then_delete(fno: httpx.Client) -> None:
    account = new_account()
    url = customer_url("usmf", account)
    missing = fno.patch(url, json={"OrganizationName": "Nobody"})
    assert missing.status_code == 404  # PATCH does not create
    row: dict[str, Any] = {
        "dataAreaId": "usmf",
        "CustomerAccount": account,
        "OrganizationName": "Upsert Ltd.",
        "CustomerGroupId": "10",
        "SalesCurrencyCode": "USD",
    }
    assert fno.post("/data/CustomersV3", json=row).status_code == 201
    again = fno.post("/data/CustomersV3", json=row)
    assert_write_failed(again, "Cannot create a record in Customers (CustTable)", "already exists")
    updated = fno.patch(url, json={"CreditLimit": 99.5, "PersonGender": "Female"})
    assert updated.status_code == 204
    current = fno.get(url).json()
    assert (current["CreditLimit"], current["PersonGender"]) == (99.5, "Female")
    assert current["OrganizationName"] == "Upsert Ltd."  # only sent fields change
    rename = fno.patch(url, json={"CustomerAccount": "OTHER"})
    assert rename.status_code == 400
    assert fno.delete(url).status_code == 204
    assert fno.get(url).status_code == 404
    assert fno.delete(url).status_code == 404


def test_etag_conflict_gives_412(fno: httpx.Client) -> None:
    account = new_account()
    url = customer_url("usmf", account)
    created = fno.post(
        "/data/CustomersV3",
        json={"CustomerAccount": account, "CustomerGroupId": "10", "SalesCurrencyCode": "USD"},
    ).json()
    first = created["@odata.etag"]
    ok = fno.patch(url, json={"NameAlias": "ONE"}, headers={"If-Match": first})
    assert ok.status_code == 204
    assert ok.headers["etag"] != first
    stale = fno.patch(url, json={"NameAlias": "TWO"}, headers={"If-Match": first})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == ""
    assert fno.get(url).json()["NameAlias"] == "ONE"
    assert fno.delete(url, headers={"If-Match": first}).status_code == 412
    assert fno.delete(url, headers={"If-Match": "*"}).status_code == 204


def test_business_rule_failures_are_500_with_the_infolog(fno: httpx.Client) -> None:
    base = {"CustomerAccount": new_account(), "SalesCurrencyCode": "USD"}
    bad_group = fno.post("/data/CustomersV3", json={**base, "CustomerGroupId": "Local"})
    assert_write_failed(
        bad_group,
        "The value 'Local' in field 'Customer group' is not found in the related table",
        "validateField failed on field 'CustCustomerV3Entity.CustomerGroupId'",
    )
    assert_write_failed(
        fno.post("/data/CustomersV3", json=base), "Field 'Customer group' must be filled in."
    )
    (order,) = fno.get("/data/SalesOrderHeadersV2", params={"$top": "1"}).json()["value"]
    used = fno.delete(customer_url("usmf", order["OrderingCustomerAccountNumber"]))
    assert_write_failed(used, "cannot be deleted")
    # Payload problems are 400, not 500.
    unknown = fno.post("/data/CustomersV3", json={**base, "Colour": "red"})
    assert unknown.status_code == 400
    assert (
        "does not exist on type 'Microsoft.Dynamics.DataEntities.CustomerV3'"
        in (unknown.json()["error"]["message"])
    )
    wrong_enum = fno.post(
        "/data/CustomersV3", json={**base, "CustomerGroupId": "10", "PartyType": "Robot"}
    )
    assert wrong_enum.status_code == 400
    assert fno.post("/data/Currencies('XYZ')", json={}).status_code == 405


def batch(fno: httpx.Client, items: list[Any]) -> list[Any]:
    content_type, body = encode_batch_request(items, boundary=f"batch_{uuid.uuid4()}")
    response = fno.post("/data/$batch", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    return decode_batch_response(response.content, response.headers["content-type"])


def test_change_set_with_one_bad_row_rolls_back(fno: httpx.Client) -> None:
    good = [new_account(), new_account()]
    rows = [
        {"CustomerAccount": good[0], "CustomerGroupId": "10", "SalesCurrencyCode": "USD"},
        {"CustomerAccount": good[1], "CustomerGroupId": "10", "SalesCurrencyCode": "USD"},
        {"CustomerAccount": new_account(), "CustomerGroupId": "Local", "SalesCurrencyCode": "USD"},
    ]
    requests = [
        BatchRequest.from_json("POST", "CustomersV3", row, content_id=str(i + 1))
        for i, row in enumerate(rows)
    ]
    (answer,) = batch(fno, [ChangeSet(requests)])
    assert not isinstance(answer, ChangeSetResponse)  # the set answers with its one error
    assert answer.status == 500 and answer.content_id == "3"
    assert "not found in the related table" in answer.json()["error"]["innererror"]["message"]
    for account in good:
        assert fno.get(customer_url("usmf", account)).status_code == 404


def test_change_set_commits_and_gets_run_after(fno: httpx.Client) -> None:
    account = new_account()
    url = f"{fno.base_url}/data/CustomersV3"
    create = BatchRequest.from_json(
        "POST",
        url,
        {"CustomerAccount": account, "CustomerGroupId": "90", "SalesCurrencyCode": "USD"},
        content_id="1",
    )
    patch = BatchRequest.from_json("PATCH", "$1", {"NameAlias": "BATCHED"}, content_id="2")
    read = BatchRequest("GET", f"CustomersV3(dataAreaId='usmf',CustomerAccount='{account}')")
    changes, got = batch(fno, [ChangeSet([create, patch]), read])
    assert isinstance(changes, ChangeSetResponse)
    assert [r.status for r in changes.responses] == [201, 204]
    assert got.status == 200 and got.json()["NameAlias"] == "BATCHED"


def test_reset_reseeds_the_environment(fno: httpx.Client) -> None:
    account = new_account()
    row = {"CustomerAccount": account, "CustomerGroupId": "10", "SalesCurrencyCode": "USD"}
    assert fno.post("/data/CustomersV3", json=row).status_code == 201
    before = fno.get("/data/CustomersV3/$count", params={"cross-company": "true"}).text
    reset = fno.post("/_sandbox/reset", json={})
    assert reset.status_code == 200 and reset.json()["rows"] == ROWS
    assert fno.get(customer_url("usmf", account)).status_code == 404
    after = fno.get("/data/CustomersV3/$count", params={"cross-company": "true"}).text
    assert int(after) < int(before)
