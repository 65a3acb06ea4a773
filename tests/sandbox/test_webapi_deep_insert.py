"""Deep insert and RetrieveTotalRecordCount (issue 20, item 5)."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = pytest.mark.sandbox


def test_deep_insert_creates_related_rows_in_one_request(api: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    body = {
        "name": f"Deep {tag}",
        "primarycontactid": {"firstname": "Pri", "lastname": f"Mary {tag}"},
        "opportunity_customer_accounts": [
            {"name": f"Opp A {tag}"},
            {"name": f"Opp B {tag}"},
        ],
        "contact_customer_accounts": [{"firstname": "Kid", "lastname": f"One {tag}"}],
    }
    r = api.post("accounts", json=body)
    assert r.status_code == 204, r.text
    url = r.headers["odata-entityid"]
    account = api.get(
        f"{url}?$select=name&$expand=primarycontactid($select=lastname),"
        "opportunity_customer_accounts($select=name),contact_customer_accounts($select=lastname)"
    ).json()
    assert account["name"] == f"Deep {tag}"
    assert account["primarycontactid"]["lastname"] == f"Mary {tag}"
    opps = sorted(o["name"] for o in account["opportunity_customer_accounts"])
    assert opps == [f"Opp A {tag}", f"Opp B {tag}"]
    assert [c["lastname"] for c in account["contact_customer_accounts"]] == [f"One {tag}"]


def test_a_failed_deep_insert_creates_nothing(api: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    body = {
        "name": f"Broken {tag}",
        "contact_customer_accounts": [
            {"lastname": f"Fine {tag}"},
            {"lastname": "x" * 500},  # over the column's maximum length
        ],
    }
    r = api.post("accounts", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "0x80044331"
    found = api.get(f"accounts?$select=name&$filter=name eq 'Broken {tag}'").json()["value"]
    assert found == []
    kids = api.get(f"contacts?$select=lastname&$filter=lastname eq 'Fine {tag}'").json()
    assert kids["value"] == []


def test_deep_insert_needs_objects(api: httpx.Client) -> None:
    r = api.post("accounts", json={"name": "x", "contact_customer_accounts": {"lastname": "y"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "0x80048d19"


def test_retrieve_total_record_count(api: httpx.Client) -> None:
    names = '["account","contact"]'
    r = api.get(f"RetrieveTotalRecordCount(EntityNames={names})")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["@odata.context"].endswith(
        "$metadata#Microsoft.Dynamics.CRM.RetrieveTotalRecordCountResponse"
    )
    collection = body["EntityRecordCountCollection"]
    assert collection["Count"] == 2 and collection["IsReadOnly"] is False
    assert collection["Keys"] == ["account", "contact"]
    accounts = api.get("accounts/$count").text.lstrip("\ufeff")
    assert collection["Values"][0] == int(accounts)
    aliased = api.get("RetrieveTotalRecordCount(EntityNames=@p1)", params={"@p1": '["lead"]'})
    assert aliased.json()["EntityRecordCountCollection"]["Keys"] == ["lead"]
    unknown = api.get('RetrieveTotalRecordCount(EntityNames=["nosuchtable"])')
    assert unknown.status_code == 404
