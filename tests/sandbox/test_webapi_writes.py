"""Writes over HTTPS: create, upsert, conditional updates, delete, binds, validation, bulk."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from d365nb.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

REP = {"Prefer": "return=representation"}


def _create(api: httpx.Client, entity_set: str, body: dict[str, Any]) -> str:
    r = api.post(entity_set, json=body)
    assert r.status_code == 204, r.text
    url = r.headers["odata-entityid"]
    return url[url.index("(") + 1 : -1]


def test_create_answers_204_with_entity_id(api: httpx.Client, sandbox: Sandbox) -> None:
    r = api.post(
        "accounts",
        json={"name": "Write Test One", "revenue": 1234.5, "industrycode": 7, "creditonhold": True},
    )
    assert r.status_code == 204
    assert r.content == b""
    url = r.headers["odata-entityid"]
    assert url.startswith(f"{sandbox.service_url}accounts(")
    row = api.get(url[len(sandbox.service_url) :]).json()
    assert row["name"] == "Write Test One" and row["revenue"] == 1234.5
    assert row["creditonhold"] is True and row["statecode"] == 0 and row["statuscode"] == 1
    assert row["_transactioncurrencyid_value"] == "cc000000-0000-4000-8000-000000000001"
    who = api.get("WhoAmI").json()["UserId"]
    assert row["_ownerid_value"] == who and row["_createdby_value"] == who


def test_create_with_representation_answers_201(api: httpx.Client, sandbox: Sandbox) -> None:
    r = api.post(
        "accounts?$select=name,accountnumber",
        json={"name": "Rep", "accountnumber": f"R-{uuid.uuid4().hex[:8]}"},
        headers=REP,
    )
    assert r.status_code == 201
    assert r.headers["preference-applied"] == "return=representation"
    body = r.json()
    assert body["@odata.context"] == (
        f"{sandbox.service_url}$metadata#accounts(name,accountnumber)/$entity"
    )
    assert r.headers["etag"] == body["@odata.etag"]
    assert body["name"] == "Rep" and "accountid" in body
    assert "odata-entityid" not in r.headers


def test_client_supplied_primary_key_and_duplicate(api: httpx.Client) -> None:
    new_id = str(uuid.uuid4())
    assert _create(api, "contacts", {"contactid": new_id, "lastname": "Keyed"}) == new_id
    assert api.get(f"contacts({new_id})?$select=fullname").json()["fullname"] == "Keyed"
    r = api.post("contacts", json={"contactid": new_id, "lastname": "Again"})
    assert r.status_code == 412
    assert r.json()["error"] == {
        "code": "0x80040237",
        "message": "A record with matching key values already exists.",
    }


def test_patch_updates_and_upserts(api: httpx.Client) -> None:
    new_id = str(uuid.uuid4())
    r = api.patch(f"accounts({new_id})", json={"name": "Upserted"}, headers=REP)
    assert r.status_code == 201
    r = api.patch(f"accounts({new_id})", json={"name": "Updated"}, headers=REP)
    assert r.status_code == 200 and r.json()["name"] == "Updated"
    r = api.patch(f"accounts({new_id})", json={"telephone1": "+1-555-0100"})
    assert r.status_code == 204
    assert r.headers["odata-entityid"].endswith(f"accounts({new_id})")
    row = api.get(f"accounts({new_id})?$select=name,telephone1").json()
    assert (row["name"], row["telephone1"]) == ("Updated", "+1-555-0100")


def test_if_match_star_only_updates(api: httpx.Client) -> None:
    missing = str(uuid.uuid4())
    r = api.patch(f"accounts({missing})", json={"name": "x"}, headers={"If-Match": "*"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "0x80040217"
    assert api.get(f"accounts({missing})").status_code == 404


def test_if_none_match_star_only_creates(api: httpx.Client) -> None:
    new_id = _create(api, "accounts", {"name": "Exists"})
    r = api.patch(f"accounts({new_id})", json={"name": "x"}, headers={"If-None-Match": "*"})
    assert r.status_code == 412
    assert r.json()["error"]["code"] == "0x80040237"
    # `If-None-Match: null` is the anti-cache literal, not a condition.
    r = api.patch(f"accounts({new_id})", json={"name": "y"}, headers={"If-None-Match": "null"})
    assert r.status_code == 204


def test_optimistic_concurrency_with_etag(api: httpx.Client) -> None:
    new_id = _create(api, "accounts", {"name": "Versioned"})
    etag = api.get(f"accounts({new_id})?$select=name").json()["@odata.etag"]
    assert (
        api.patch(
            f"accounts({new_id})", json={"name": "v2"}, headers={"If-Match": etag}
        ).status_code
        == 204
    )
    r = api.patch(f"accounts({new_id})", json={"name": "v3"}, headers={"If-Match": etag})
    assert r.status_code == 412
    assert r.json()["error"] == {
        "code": "0x80060882",
        "message": "The version of the existing "
        "record doesn't match the RowVersion property provided.",
    }
    r = api.delete(f"accounts({new_id})", headers={"If-Match": etag})
    assert r.status_code == 412


def test_upsert_by_alternate_key_and_composite_key(api: httpx.Client) -> None:
    number = f"K-{uuid.uuid4().hex[:8]}"
    r = api.patch(f"accounts(accountnumber='{number}')", json={"name": "By key"}, headers=REP)
    assert r.status_code == 201 and r.json()["accountnumber"] == number
    r = api.patch(
        f"accounts(accountnumber='{number}')", json={"name": "By key 2", "accountnumber": "IGNORED"}
    )
    assert r.status_code == 204
    assert r.headers["odata-entityid"].endswith(f"accounts(accountnumber='{number}')")
    row = api.get(f"accounts(accountnumber='{number}')?$select=name,accountnumber").json()
    assert (row["name"], row["accountnumber"]) == ("By key 2", number)
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    key = f"contacts(firstname='Jo',emailaddress1='{email}')"
    assert api.patch(key, json={"lastname": "Composite"}).status_code == 204
    assert api.get(key + "?$select=fullname").json()["fullname"] == "Jo Composite"
    r = api.get("accounts(name='x')")
    assert r.status_code == 400


def test_alternate_key_uniqueness(api: httpx.Client) -> None:
    number = f"U-{uuid.uuid4().hex[:8]}"
    _create(api, "accounts", {"name": "First", "accountnumber": number})
    r = api.post("accounts", json={"name": "Second", "accountnumber": number})
    assert r.status_code == 412
    assert r.json()["error"]["code"] == "0x80060892"


def test_delete_and_missing_delete(api: httpx.Client) -> None:
    new_id = _create(api, "leads", {"lastname": "Gone"})
    assert api.delete(f"leads({new_id})").status_code == 204
    assert api.get(f"leads({new_id})").status_code == 404
    r = api.delete(f"leads({new_id})")
    assert r.status_code == 404
    assert r.json()["error"]["message"] == f"Entity 'lead' With Id = {new_id} Does Not Exist"


def test_odata_bind_sets_lookups_including_polymorphic(api: httpx.Client, sandbox: Sandbox) -> None:
    parent = _create(api, "accounts", {"name": "Parent"})
    child = _create(
        api, "accounts", {"name": "Child", "parentaccountid@odata.bind": f"/accounts({parent})"}
    )
    row = api.get(f"accounts({child})?$select=_parentaccountid_value").json()
    assert row["_parentaccountid_value"] == parent
    contact = _create(
        api,
        "contacts",
        {
            "lastname": "Bound",
            "parentcustomerid_account@odata.bind": f"{sandbox.service_url}accounts({parent})",
        },
    )
    opp = _create(
        api,
        "opportunities",
        {"name": "Deal", "customerid_contact@odata.bind": f"contacts({contact})"},
    )
    r = api.get(
        f"opportunities({opp})?$select=_customerid_value",
        headers={"Prefer": 'odata.include-annotations="*"'},
    )
    body = r.json()
    assert body["_customerid_value"] == contact
    assert body["_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "contact"
    assert body["_customerid_value@OData.Community.Display.V1.FormattedValue"] == "Bound"
    children = api.get(f"accounts({parent})/contact_customer_accounts?$select=fullname").json()
    assert [c["contactid"] for c in children["value"]] == [contact]
    number = f"B-{uuid.uuid4().hex[:6]}"
    api.patch(f"accounts({parent})", json={"accountnumber": number})
    api.patch(
        f"accounts({child})",
        json={"parentaccountid@odata.bind": f"accounts(accountnumber='{number}')"},
    )
    api.patch(f"accounts({child})", json={"parentaccountid@odata.bind": None})
    assert api.get(f"accounts({child})/_parentaccountid_value").json()["value"] is None


def test_wrong_navigation_property_name(api: httpx.Client) -> None:
    r = api.post(
        "contacts",
        json={
            "lastname": "x",
            "parentcustomerid@odata.bind": "/accounts(00000000-0000-0000-0000-000000000001)",
        },
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "0x80048d19"
    assert (
        "An undeclared property 'parentcustomerid' which only has property annotations"
        in (error["message"])
    )


def test_unknown_property_and_string_too_long(api: httpx.Client) -> None:
    r = api.post("accounts", json={"Name": "x"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "0x0"
    assert (
        "Invalid property 'Name' was found in entity 'Microsoft.Dynamics.CRM.account'"
        in (r.json()["error"]["message"])
    )
    r = api.post("accounts", json={"name": "x" * 161})
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": "0x80044331",
        "message": (
            "A validation error occurred.  The length of the 'name' attribute of the 'account' "
            "entity exceeded the maximum allowed length of '160'."
        ),
    }
    r = api.post("accounts", json={"name": "x", "industrycode": 999})
    assert r.status_code == 400 and r.json()["error"]["code"] == "0x8004431a"
    r = api.post("accounts", json={"name": "x", "numberofemployees": "many"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "0x80048d19"


def test_dates_are_stored_in_utc_and_date_only(api: httpx.Client) -> None:
    new_id = _create(
        api,
        "accounts",
        {
            "name": "Dated",
            "lastonholdtime": "2024-03-01T10:00:00-08:00",
            "cr_foundedon": "1999-12-31",
        },
    )
    row = api.get(f"accounts({new_id})?$select=lastonholdtime,cr_foundedon").json()
    assert row["lastonholdtime"] == "2024-03-01T18:00:00Z"
    assert row["cr_foundedon"] == "1999-12-31"


def test_put_and_delete_a_single_property(api: httpx.Client) -> None:
    new_id = _create(api, "accounts", {"name": "Props", "description": "text"})
    assert api.put(f"accounts({new_id})/name", json={"value": "Renamed"}).status_code == 204
    assert api.delete(f"accounts({new_id})/description").status_code == 204
    row = api.get(f"accounts({new_id})?$select=name,description").json()
    assert (row["name"], row["description"]) == ("Renamed", None)


def test_collection_patch_is_405(api: httpx.Client) -> None:
    assert api.patch("accounts", json={}).status_code == 405


def test_create_multiple(api: httpx.Client, sandbox: Sandbox) -> None:
    targets = [
        {"@odata.type": "Microsoft.Dynamics.CRM.account", "name": f"Bulk {i}"} for i in range(3)
    ]
    r = api.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})
    assert r.status_code == 200
    body = r.json()
    assert body["@odata.context"] == (
        f"{sandbox.service_url}$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse"
    )
    assert len(body["Ids"]) == 3
    names = [api.get(f"accounts({i})/name").json()["value"] for i in body["Ids"]]
    assert names == ["Bulk 0", "Bulk 1", "Bulk 2"]


def test_create_multiple_is_all_or_nothing(api: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    targets = [
        {"@odata.type": "Microsoft.Dynamics.CRM.account", "name": f"Atomic {tag}"},
        {"@odata.type": "Microsoft.Dynamics.CRM.account", "name": "x" * 200},
    ]
    r = api.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})
    assert r.status_code == 400
    found = api.get("accounts", params={"$filter": f"name eq 'Atomic {tag}'"}).json()["value"]
    assert found == []
    r = api.post(
        "accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": [{"name": "no type"}]}
    )
    assert r.status_code == 400


def test_create_multiple_with_targets_of_different_columns(api: httpx.Client) -> None:
    """Targets are stored as runs of rows with the same columns: each row keeps its own
    values, ids (given or made) come back in the targets' order, and an alternate key
    that clashes in a later run rolls back the rows of the earlier runs too."""
    tag = uuid.uuid4().hex[:8]
    given = str(uuid.uuid4())
    account = "Microsoft.Dynamics.CRM.account"
    targets: list[dict[str, Any]] = [
        {"@odata.type": account, "name": f"Mix {tag} 0", "revenue": 1.5},
        {"@odata.type": account, "name": f"Mix {tag} 1", "revenue": 2.5},
        {"@odata.type": account, "name": f"Mix {tag} 2", "accountnumber": f"{tag}-2"},
        {"@odata.type": account, "accountid": given, "name": f"Mix {tag} 3"},
        {"@odata.type": account, "name": f"Mix {tag} 4", "revenue": 4.5},
    ]
    r = api.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})
    assert r.status_code == 200, r.text
    ids = r.json()["Ids"]
    assert len(set(ids)) == 5 and ids[3] == given
    rows = [
        api.get(f"accounts({i})?$select=name,revenue,accountnumber,createdon").json() for i in ids
    ]
    assert [row["name"] for row in rows] == [t["name"] for t in targets]
    assert [row["revenue"] for row in rows] == [1.5, 2.5, None, None, 4.5]
    assert [row["accountnumber"] for row in rows] == [None, None, f"{tag}-2", None, None]
    assert all(uuid.UUID(i).version == 4 for i in ids[:3] + ids[4:])

    clash = [
        {"@odata.type": account, "name": f"Clash {tag} 0", "revenue": 1.0},
        {"@odata.type": account, "name": f"Clash {tag} 1", "revenue": 2.0},
        {"@odata.type": account, "name": f"Clash {tag} 2", "accountnumber": f"{tag}-2"},
    ]
    r = api.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": clash})
    assert r.status_code == 412, r.text
    assert "accountnumber" in r.json()["error"]["message"]
    found = api.get("accounts", params={"$filter": f"startswith(name,'Clash {tag}')"}).json()
    assert found["value"] == []


def test_update_and_upsert_multiple(api: httpx.Client) -> None:
    ids = api.post(
        "accounts/Microsoft.Dynamics.CRM.CreateMultiple",
        json={
            "Targets": [
                {"@odata.type": "Microsoft.Dynamics.CRM.account", "name": "U1"},
                {"@odata.type": "Microsoft.Dynamics.CRM.account", "name": "U2"},
            ]
        },
    ).json()["Ids"]
    r = api.post(
        "accounts/Microsoft.Dynamics.CRM.UpdateMultiple",
        json={
            "Targets": [
                {"@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": i, "revenue": 5.0}
                for i in ids
            ]
        },
    )
    assert r.status_code == 204
    assert all(api.get(f"accounts({i})/revenue").json()["value"] == 5.0 for i in ids)
    number = f"UM-{uuid.uuid4().hex[:6]}"
    r = api.post(
        "accounts/Microsoft.Dynamics.CRM.UpsertMultiple",
        json={
            "Targets": [
                {
                    "@odata.type": "Microsoft.Dynamics.CRM.account",
                    "@odata.id": f"accounts(accountnumber='{number}')",
                    "name": "Upsert new",
                },
                {
                    "@odata.type": "Microsoft.Dynamics.CRM.account",
                    "accountid": ids[0],
                    "name": "U1b",
                },
            ]
        },
    )
    assert r.status_code == 204
    assert api.get(f"accounts(accountnumber='{number}')/name").json()["value"] == "Upsert new"
    assert api.get(f"accounts({ids[0]})/name").json()["value"] == "U1b"


def test_duplicate_detection_only_when_asked(api: httpx.Client) -> None:
    name = f"Twin {uuid.uuid4().hex[:8]}"
    _create(api, "accounts", {"name": name})
    assert api.post("accounts", json={"name": name.upper()}).status_code == 204
    r = api.post(
        "accounts", json={"name": name}, headers={"MSCRM.SuppressDuplicateDetection": "false"}
    )
    assert r.status_code == 500
    assert r.json()["error"] == {
        "code": "0x80040333",
        "message": (
            "A record was not created or updated because a duplicate of the current record "
            "already exists."
        ),
    }
    found = api.get("accounts", params={"$filter": f"name eq '{name}'"}).json()["value"]
    assert len(found) == 2
