"""Change tracking through the client (issue 18): tracked reads, `changes()`, `refresh()`.

Another client writes through every path the service has (single create/update/upsert/
delete, CreateMultiple/UpdateMultiple/UpsertMultiple, `$batch`); `conn.changes()` must
return exactly those rows, typed like the read, and `df.d365.refresh()` must equal a fresh
full read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from d365nb import ConfigError, Connection
from d365nb._changes import Changes, DeltaExpiredError
from d365nb._multipart import BatchRequest, ChangeSet, encode_batch_request
from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to
from tests.sandbox.conftest import app_token, tls

pytestmark = pytest.mark.sandbox

SELECT = ["lastname", "companyname", "revenue", "industrycode", "transactioncurrencyid"]
LEAD = {"@odata.type": "Microsoft.Dynamics.CRM.lead"}


@pytest.fixture(scope="module")
def other(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """Another client (raw HTTPS, the application user) that edits leads."""
    headers = {"Authorization": f"Bearer {app_token(sandbox)}"}
    with httpx.Client(base_url=sandbox.service_url, verify=tls(sandbox), headers=headers) as c:
        yield c


def _edit_through_every_path(api: httpx.Client, existing: list[str]) -> tuple[set[str], set[str]]:
    """Writes through each path; returns (ids created or changed, ids deleted)."""
    tag = uuid.uuid4().hex[:8]
    created = api.post(
        "leads/Microsoft.Dynamics.CRM.CreateMultiple",
        json={"Targets": [{**LEAD, "lastname": f"{tag} {n}"} for n in range(3)]},
    ).json()["Ids"]
    single = api.post("leads", json={"lastname": f"{tag} single", "revenue": 12.5})
    single_id = single.headers["odata-entityid"].split("(")[1][:-1]
    bulk_updated, single_updated, batch_updated, upsert_updated = existing[:4]
    deleted_single, deleted_batch = existing[4:6]
    r = api.post(
        "leads/Microsoft.Dynamics.CRM.UpdateMultiple",
        json={"Targets": [{**LEAD, "leadid": bulk_updated, "companyname": f"{tag} bulk"}]},
    )
    assert r.status_code == 204
    fresh = str(uuid.uuid4())
    r = api.post(
        "leads/Microsoft.Dynamics.CRM.UpsertMultiple",
        json={
            "Targets": [
                {**LEAD, "leadid": upsert_updated, "companyname": f"{tag} upsert"},
                {**LEAD, "leadid": fresh, "lastname": f"{tag} upserted"},
            ]
        },
    )
    assert r.status_code == 204
    upsert_new = str(uuid.uuid4())
    assert api.patch(f"leads({upsert_new})", json={"lastname": f"{tag} p"}).status_code == 204
    assert api.patch(f"leads({single_updated})", json={"revenue": 99.0}).status_code == 204
    assert api.delete(f"leads({deleted_single})").status_code == 204
    content_type, body = encode_batch_request(
        [
            ChangeSet(
                [
                    BatchRequest.from_json(
                        "PATCH",
                        f"/api/data/v9.2/leads({batch_updated})",
                        {"companyname": f"{tag} batch"},
                        content_id="1",
                    ),
                    BatchRequest(
                        "DELETE", f"/api/data/v9.2/leads({deleted_batch})", content_id="2"
                    ),
                    BatchRequest.from_json(
                        "DELETE", f"/api/data/v9.2/leads({created[2]})", None, content_id="3"
                    ),
                ]
            )
        ]
    )
    assert api.post("$batch", content=body, headers={"Content-Type": content_type}).is_success
    changed = {*created[:2], single_id, bulk_updated, single_updated, batch_updated}
    changed |= {upsert_updated, fresh, upsert_new}
    # A row created and deleted between the tokens is reported as deleted.
    return changed, {deleted_single, deleted_batch, created[2]}


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    out: pd.DataFrame = df.sort_values("leadid").reset_index(drop=True)
    return out


def test_changes_and_refresh_follow_every_write_path(conn: Connection, other: httpx.Client) -> None:
    df = conn.read("leads", select=SELECT, track_changes=True)
    assert df.d365.delta_link and "$deltatoken=" in df.d365.delta_link
    assert df.attrs["d365nb"]["delta_link"] == df.d365.delta_link
    assert len(df) >= 8
    existing = list(df["leadid"].iloc[1:7])
    changed, deleted = _edit_through_every_path(other, existing)

    ch = conn.changes(df.d365.delta_link)
    assert isinstance(ch, Changes)
    assert set(ch.upserted["leadid"]) == changed
    assert set(ch.deleted) == deleted
    assert list(ch.upserted.columns) == list(df.columns)
    assert ch.upserted.dtypes.to_dict() == df.dtypes.to_dict()
    assert ch.since is not None and ch.until is not None and ch.since <= ch.until
    assert ch.delta_link != df.d365.delta_link

    refreshed = df.d365.refresh()
    fresh = conn.read("leads", select=SELECT)
    pd.testing.assert_frame_equal(_sorted(refreshed), _sorted(fresh))
    assert refreshed.d365.delta_link not in (None, df.d365.delta_link)
    # Surviving rows keep their index label; the frame read is not changed.
    first = df["leadid"].iloc[0]
    assert refreshed.loc[0, "leadid"] == first
    label = df.index[df["leadid"] == existing[0]][0]
    assert refreshed.loc[label, "leadid"] == existing[0]
    assert existing[4] in set(df["leadid"])
    # Nothing changed since the refresh: an empty delta, and refresh() is a no-op.
    again = conn.changes(refreshed.d365.delta_link)
    assert len(again.upserted) == 0 and again.deleted == ()
    pd.testing.assert_frame_equal(refreshed.d365.refresh(), refreshed)


def test_refresh_of_a_read_of_every_column(conn: Connection, other: httpx.Client) -> None:
    df = conn.read("leads", track_changes=True, formatted=True)
    target = df["leadid"].iloc[3]
    assert other.patch(f"leads({target})", json={"industrycode": 2}).status_code == 204
    assert other.post("leads", json={"lastname": "Everything"}).status_code == 204
    refreshed = df.d365.refresh()
    fresh = conn.read("leads", formatted=True)
    pd.testing.assert_frame_equal(_sorted(refreshed), _sorted(fresh))


def test_changes_of_a_table_name_is_a_first_tracked_read(conn: Connection) -> None:
    ch = conn.changes("lead")
    assert ch.reread and ch.deleted == () and "$deltatoken=" in ch.delta_link
    assert len(ch.upserted) > 0


def test_tracked_read_refuses_filter_and_untracked_frames(conn: Connection) -> None:
    with pytest.raises(ConfigError, match="cannot take filter="):
        conn.read("leads", filter="statecode eq 0", track_changes=True)
    plain = conn.read("leads", select=["lastname"], top=1)
    assert plain.d365.delta_link is None
    with pytest.raises(ConfigError, match="no delta link"):
        plain.d365.refresh()


@pytest.fixture(scope="module")
def expiring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox whose delta links expire as soon as they are issued."""
    data_dir: Path = tmp_path_factory.mktemp("changes")
    with start(data_dir=data_dir, database=":memory:", rows=5, change_tracking_days=0) as sb:
        yield sb


def test_expired_delta_link(expiring: Sandbox) -> None:
    with connect_to(expiring, grant="client_credentials") as c:
        df = c.read("leads", select=["lastname"], track_changes=True)
        with pytest.raises(DeltaExpiredError) as caught:
            c.changes(df.d365.delta_link)
        assert "read the table again with track_changes=True" in str(caught.value)
        ch = c.changes(df, on_expired="reread")
        assert ch.reread and ch.since is not None
        refreshed = df.d365.refresh(on_expired="reread")
        pd.testing.assert_frame_equal(
            _sorted(refreshed), _sorted(c.read("leads", select=["lastname"]))
        )
        assert refreshed.d365.delta_link


def test_table_without_change_tracking(expiring: Sandbox) -> None:
    label = {"LocalizedLabels": [{"Label": "Gizmo", "LanguageCode": 1033}]}
    body = {
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": "new_Gizmo",
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
    headers = {"Authorization": f"Bearer {app_token(expiring)}"}
    with httpx.Client(base_url=expiring.service_url, verify=tls(expiring), headers=headers) as api:
        assert api.post("EntityDefinitions", json=body).status_code == 204
    with connect_to(expiring, grant="client_credentials") as c:
        with pytest.raises(ConfigError, match="ChangeTrackingEnabled") as caught:
            c.read("new_gizmos", track_changes=True)
        assert "new_gizmo" in str(caught.value)
        assert len(c.read("new_gizmos")) == 0


@pytest.fixture(scope="module")
def small_pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox serving at most 7 rows a page, so a delta of 30 changes spans pages."""
    data_dir: Path = tmp_path_factory.mktemp("delta-pages")
    with start(data_dir=data_dir, database=":memory:", rows=100, max_page_size=7) as sb:
        yield sb


def test_a_large_delta_comes_in_pages(small_pages: Sandbox) -> None:
    headers = {"Authorization": f"Bearer {app_token(small_pages)}"}
    with (
        connect_to(small_pages, grant="client_credentials") as c,
        httpx.Client(base_url=small_pages.service_url, verify=tls(small_pages)) as api,
    ):
        api.headers.update(headers)
        df = c.read("leads", select=["lastname", "revenue"], track_changes=True)
        ids = [str(i) for i in df["leadid"]]
        assert len(ids) > 20
        for n, lead in enumerate(ids[:15]):  # 15 updates
            assert api.patch(f"leads({lead})", json={"revenue": 1000.0 + n}).status_code == 204
        for lead in ids[15:20]:  # 5 deletions
            assert api.delete(f"leads({lead})").status_code == 204
        created = api.post(
            "leads/Microsoft.Dynamics.CRM.CreateMultiple",
            json={"Targets": [{**LEAD, "lastname": f"new {n}"} for n in range(10)]},
        ).json()["Ids"]
        # The raw pages: nextLinks (no deltaLink) until the last, which has only the deltaLink.
        url: str | None = df.d365.delta_link
        pages: list[dict[str, object]] = []
        while url is not None:
            body = api.get(url).json()
            pages.append(body)
            assert ("@odata.nextLink" in body) != ("@odata.deltaLink" in body)
            url = body.get("@odata.nextLink")  # type: ignore[assignment]
        assert len(pages) == 5  # 30 changes, 7 a page
        assert [len(p["value"]) for p in pages] == [7, 7, 7, 7, 2]  # type: ignore[arg-type]
        served = [r for p in pages for r in p["value"]]  # type: ignore[attr-defined]
        gone = [r["id"] for r in served if r.get("reason") == "deleted"]
        assert sorted(gone) == sorted(ids[15:20])
        assert served[-5:] == [r for r in served if r.get("reason") == "deleted"]  # rows first
        count = api.get(df.d365.delta_link.replace("leads?", "leads/$count?"))
        assert count.text.lstrip("\ufeff") == "30"
        # The client follows the pages.
        ch = c.changes(df)
        assert len(ch.upserted) == 25 and len(ch.deleted) == 5
        assert {str(i) for i in ch.upserted["leadid"]} == set(ids[:15]) | set(created)
        assert set(ch.deleted) == set(ids[15:20])
        refreshed = df.d365.refresh()
        fresh = c.read("leads", select=["lastname", "revenue"])
        pd.testing.assert_frame_equal(_sorted(refreshed), _sorted(fresh))
        assert c.changes(refreshed).upserted.empty  # the last page's link is current
