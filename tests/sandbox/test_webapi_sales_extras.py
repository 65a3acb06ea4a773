"""The optional Customer Service table, FetchXML between, column and relationship listing
(issue 20: Microsoft's examples run)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from d365nb.sandbox import start

from .conftest import app_token, tls

pytestmark = pytest.mark.sandbox


def test_incident_is_served_and_seeded(api: httpx.Client) -> None:
    r = api.get(
        "incidents?$select=title,ticketnumber,prioritycode,_customerid_value&$top=3",
        headers={"Prefer": 'odata.include-annotations="*"'},
    )
    assert r.status_code == 200, r.text
    rows = r.json()["value"]
    assert len(rows) == 3
    assert rows[0]["prioritycode@OData.Community.Display.V1.FormattedValue"] in (
        "High",
        "Normal",
        "Low",
    )
    lookup = "_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"
    assert rows[0][lookup] == "account"
    account = rows[0]["_customerid_value"]
    cases = api.get(f"accounts({account})/incident_customer_accounts?$select=title").json()
    assert any(c["incidentid"] == rows[0]["incidentid"] for c in cases["value"])
    meta = api.get("EntityDefinitions(LogicalName='incident')?$select=EntitySetName").json()
    assert meta["EntitySetName"] == "incidents"
    assert api.delete("EntityDefinitions(LogicalName='incident')").status_code == 400


def test_customer_service_can_be_left_out(tmp_path: Path) -> None:
    with start(data_dir=tmp_path, database=":memory:", rows=5, customer_service=False) as sb:
        headers = {"Authorization": f"Bearer {app_token(sb)}"}
        with httpx.Client(base_url=sb.service_url, verify=tls(sb), headers=headers) as api:
            assert api.get("incidents").status_code == 404
            assert "incidents" not in {s["name"] for s in api.get("").json()["value"]}


def test_fetchxml_between_and_not_between(api: httpx.Client) -> None:
    def fetch(op: str) -> list[int]:
        xml = (
            "<fetch><entity name='account'><attribute name='numberofemployees'/>"
            f"<filter><condition attribute='numberofemployees' operator='{op}'>"
            "<value>100</value><value>500</value></condition></filter></entity></fetch>"
        )
        r = api.get(f"accounts?fetchXml={quote(xml)}")
        assert r.status_code == 200, r.text
        return [row["numberofemployees"] for row in r.json()["value"]]

    inside, outside = fetch("between"), fetch("not-between")
    assert inside and all(100 <= n <= 500 for n in inside)
    assert outside and all(n < 100 or n > 500 for n in outside)
    one = (
        "<fetch><entity name='account'><filter><condition attribute='numberofemployees' "
        "operator='between'><value>1</value></condition></filter></entity></fetch>"
    )
    assert api.get(f"accounts?fetchXml={quote(one)}").status_code == 400


def test_activities_regarding_any_sales_row(api: httpx.Client) -> None:
    account = api.get("accounts?$select=name&$top=1").json()["value"][0]["accountid"]
    lead = api.get("leads?$select=fullname&$top=1").json()["value"][0]["leadid"]
    task = api.post(
        "tasks",
        json={
            "subject": "Call back about renewal",
            "prioritycode": 2,
            "regardingobjectid_account_task@odata.bind": f"/accounts({account})",
        },
    )
    assert task.status_code == 204, task.text
    call = api.post(
        "phonecalls",
        json={
            "subject": "Intro call",
            "directioncode": True,
            "regardingobjectid_lead_phonecall@odata.bind": f"/leads({lead})",
        },
    )
    assert call.status_code == 204, call.text
    expanded = api.get(
        f"accounts({account})?$select=name&$expand=Account_Tasks($select=subject)"
    ).json()
    assert [t["subject"] for t in expanded["Account_Tasks"]] == ["Call back about renewal"]
    row = api.get(
        f"{call.headers['odata-entityid']}?$select=_regardingobjectid_value",
        headers={"Prefer": 'odata.include-annotations="*"'},
    ).json()
    assert row["_regardingobjectid_value"] == lead
    assert row["_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "lead"


def test_account_originating_lead(api: httpx.Client) -> None:
    lead = api.get("leads?$select=fullname&$top=1").json()["value"][0]["leadid"]
    r = api.post(
        "accounts",
        json={"name": "Converted", "originatingleadid@odata.bind": f"/leads({lead})"},
    )
    assert r.status_code == 204, r.text
    row = api.get(f"{r.headers['odata-entityid']}?$select=_originatingleadid_value").json()
    assert row["_originatingleadid_value"] == lead
