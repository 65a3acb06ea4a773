"""Change tracking over HTTPS: `Prefer: odata.track-changes`, deltaLink, `$deletedEntity`."""

from __future__ import annotations

from urllib.parse import unquote

import httpx
import pytest

from d365nb.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


def test_delta_returns_changes_then_deletions(api: httpx.Client, sandbox: Sandbox) -> None:
    r = api.get("leads?$select=fullname,companyname", headers={"Prefer": "odata.track-changes"})
    assert r.status_code == 200
    assert "odata.track-changes" in r.headers["preference-applied"]
    body = r.json()
    link = body["@odata.deltaLink"]
    assert link.startswith(f"{sandbox.service_url}leads?$select=fullname,companyname&$deltatoken=")
    token = unquote(link.split("$deltatoken=")[1])
    assert "!" in token and token.split("!")[0].isdigit()
    old = body["value"][0]["leadid"]
    gone = body["value"][1]["leadid"]
    assert api.patch(f"leads({old})", json={"companyname": "Changed Ltd"}).status_code == 204
    new = api.post("leads", json={"lastname": "Delta"}).headers["odata-entityid"]
    assert api.delete(f"leads({gone})").status_code == 204

    delta = api.get(link)
    assert delta.status_code == 200
    data = delta.json()
    assert data["@odata.context"] == (
        f"{sandbox.service_url}$metadata#leads(fullname,companyname)/$delta"
    )
    ids = [row.get("leadid") for row in data["value"]]
    assert old in ids and new.split("(")[1][:-1] in ids
    deleted = data["value"][-1]
    assert deleted == {
        "@odata.context": f"{sandbox.service_url}$metadata#leads/$deletedEntity",
        "id": gone,
        "reason": "deleted",
    }
    changed = next(row for row in data["value"] if row.get("leadid") == old)
    assert changed["companyname"] == "Changed Ltd"
    again = api.get(data["@odata.deltaLink"]).json()
    assert again["value"] == []


def test_track_changes_pages_and_ends_with_delta_link(api: httpx.Client) -> None:
    headers = {"Prefer": "odata.track-changes,odata.maxpagesize=1"}
    body = api.get("businessunits?$select=name", headers=headers).json()
    pages = 1
    while "@odata.nextLink" in body:
        assert "istracking=%22True%22" in body["@odata.nextLink"]
        body = api.get(body["@odata.nextLink"], headers=headers).json()
        pages += 1
    assert pages == 3
    assert "@odata.deltaLink" in body


def test_track_changes_refuses_filter(api: httpx.Client) -> None:
    r = api.get("accounts?$filter=statecode eq 0", headers={"Prefer": "odata.track-changes"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == (
        'The "$filter" query parameter isn\'t supported when Change Tracking is enabled.'
    )
