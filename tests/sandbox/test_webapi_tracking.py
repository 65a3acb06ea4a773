"""Change tracking over HTTPS: `Prefer: odata.track-changes`, deltaLink, `$deletedEntity`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from d365nb._multipart import BatchRequest, ChangeSet, encode_batch_request
from d365nb.sandbox import Sandbox, start

from .conftest import app_token, tls

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


def _ids(body: dict[str, object]) -> tuple[set[str], set[str]]:
    """(changed ids, deleted ids) of a delta response on `leads`."""
    rows = body["value"]
    assert isinstance(rows, list)
    changed = {r["leadid"] for r in rows if "leadid" in r}
    deleted = {r["id"] for r in rows if r.get("reason") == "deleted"}
    return changed, deleted


def test_every_write_path_is_tracked(api: httpx.Client, sandbox: Sandbox) -> None:
    link = api.get("leads?$select=lastname", headers={"Prefer": "odata.track-changes"}).json()[
        "@odata.deltaLink"
    ]
    tag = uuid.uuid4().hex[:8]
    target = {"@odata.type": "Microsoft.Dynamics.CRM.lead"}
    created = api.post(
        "leads/Microsoft.Dynamics.CRM.CreateMultiple",
        json={"Targets": [{**target, "lastname": f"{tag} {n}"} for n in range(3)]},
    ).json()["Ids"]
    bulk_updated, bulk_upserted, single_deleted = created
    assert (
        api.post(
            "leads/Microsoft.Dynamics.CRM.UpdateMultiple",
            json={"Targets": [{**target, "leadid": bulk_updated, "lastname": f"{tag} u"}]},
        ).status_code
        == 204
    )
    fresh = str(uuid.uuid4())
    r = api.post(
        "leads/Microsoft.Dynamics.CRM.UpsertMultiple",
        json={
            "Targets": [
                {**target, "leadid": bulk_upserted, "lastname": f"{tag} v"},
                {**target, "leadid": fresh, "lastname": f"{tag} new"},
            ]
        },
    )
    assert r.status_code == 204
    upserted = str(uuid.uuid4())
    assert api.patch(f"leads({upserted})", json={"lastname": f"{tag} p"}).status_code == 204
    assert api.delete(f"leads({single_deleted})").status_code == 204
    batch_id = str(uuid.uuid4())
    content_type, body = encode_batch_request(
        [
            ChangeSet(
                [
                    BatchRequest.from_json(
                        "PATCH",
                        f"/api/data/v9.2/leads({batch_id})",
                        {"lastname": f"{tag} b"},
                        content_id="1",
                    ),
                    BatchRequest("DELETE", f"/api/data/v9.2/leads({fresh})", content_id="2"),
                ]
            )
        ]
    )
    assert api.post("$batch", content=body, headers={"Content-Type": content_type}).is_success

    counted = api.get(link.replace("leads?", "leads/$count?"))
    assert counted.status_code == 200
    delta = api.get(link).json()
    assert int(counted.content.decode("utf-8-sig")) == len(delta["value"]) == 6
    changed, deleted = _ids(delta)
    assert changed == {bulk_updated, bulk_upserted, upserted, batch_id}
    assert deleted == {single_deleted, fresh}
    rows = [r for r in delta["value"] if "leadid" in r]
    assert all(set(r) == {"@odata.etag", "lastname", "leadid"} for r in rows)
    # New and updated rows come before deletions.
    kinds = ["deleted" if "reason" in r else "row" for r in delta["value"]]
    assert kinds == sorted(kinds, key=lambda k: k == "deleted")


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox of its own where delta tokens expire at once and a table is untracked."""
    data_dir: Path = tmp_path_factory.mktemp("tracking")
    with start(data_dir=data_dir, database=":memory:", rows=5, change_tracking_days=0) as sb:
        yield sb


@pytest.fixture(scope="module")
def own_api(own: Sandbox) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {app_token(own)}"}
    with httpx.Client(base_url=own.service_url, verify=tls(own), headers=headers) as api:
        yield api


def test_expired_delta_token_is_refused(own_api: httpx.Client) -> None:
    link = own_api.get("leads?$select=lastname", headers={"Prefer": "odata.track-changes"})
    r = own_api.get(link.json()["@odata.deltaLink"])
    assert r.status_code == 400
    assert "has expired" in r.json()["error"]["message"]
    assert own_api.get("leads?$deltatoken=abc").status_code == 400


def test_table_without_change_tracking_is_refused(own_api: httpx.Client) -> None:
    label = {"LocalizedLabels": [{"Label": "Gadget", "LanguageCode": 1033}]}
    body = {
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": "new_Gadget",
        "DisplayName": label,
        "DisplayCollectionName": label,
        "OwnershipType": "UserOwned",
        "HasActivities": False,
        "Attributes": [
            {
                "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
                "SchemaName": "new_Name",
                "IsPrimaryName": True,
                "MaxLength": 100,
                "DisplayName": label,
            }
        ],
    }
    assert own_api.post("EntityDefinitions", json=body).status_code == 204
    meta = own_api.get("EntityDefinitions(LogicalName='new_gadget')?$select=ChangeTrackingEnabled")
    assert meta.json()["ChangeTrackingEnabled"] is False
    seeded = own_api.get("EntityDefinitions(LogicalName='lead')?$select=ChangeTrackingEnabled")
    assert seeded.json()["ChangeTrackingEnabled"] is True
    r = own_api.get("new_gadgets", headers={"Prefer": "odata.track-changes"})
    assert r.status_code == 400
    assert "not enabled for change tracking" in r.json()["error"]["message"]
    assert own_api.get("new_gadgets").status_code == 200
    annotated = own_api.get("$metadata?annotations=true").text
    gadget = annotated.split('<EntitySet Name="new_gadgets"')[1].split("</EntitySet>")[0]
    assert "ChangeTracking" not in gadget
