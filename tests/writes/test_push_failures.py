"""Pushes that meet trouble: bad rows, concurrent edits, dropped connections, throttling."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from d365nb import _write
from d365nb._client import Connection
from d365nb._report import PushPlan, PushReport
from d365nb._sync import run_sync

from .conftest import Knobs

pytestmark = pytest.mark.sandbox


def _tag() -> str:
    return "f" + uuid.uuid4().hex[:10]


def _accounts(conn: Connection, tag: str) -> pd.DataFrame:
    df = conn.read("accounts", filter=f"startswith(name,'{tag}')", progress=False)
    out: pd.DataFrame = df.sort_values("name").reset_index(drop=True)
    return out


def _report(result: PushReport | PushPlan) -> PushReport:
    assert isinstance(result, PushReport), result
    return result


async def _stats(conn: Connection) -> object:
    return conn.transport_stats


@pytest.mark.parametrize("mode", ["create", "upsert"])
def test_one_bad_row_fails_alone(conn: Connection, mode: str) -> None:
    tag = _tag()
    taken = f"{tag}-taken"
    pd.DataFrame({"name": [f"{tag} existing"], "accountnumber": [taken]}).d365.push(
        "accounts", mode="create", conn=conn, progress=False
    )
    df = pd.DataFrame(
        {
            "name": [f"{tag} {i:02}" for i in range(12)],
            "accountnumber": [f"{tag}-{i}" for i in range(12)],
        }
    )
    df.loc[5, "accountnumber"] = taken  # violates the alternate key
    df["parentaccountid"] = pd.array([None] * 12, dtype="string")
    df.loc[9, "parentaccountid"] = str(uuid.uuid4())  # points to nothing

    report = _report(df.d365.push("accounts", mode=mode, conn=conn, batch_size=4, progress=False))

    statuses = report.rows["status"]
    assert statuses[5] == "failed" and report.rows["code"][5] == "0x80060892"
    assert statuses[9] == "failed" and report.rows["code"][9] == "0x80040217"
    assert (statuses.drop([5, 9]) == "created").all(), report.rows
    assert list(report.failed.index) == [5, 9]
    assert report.failed.loc[5, "accountnumber"] == taken
    landed = _accounts(conn, tag)
    assert len(landed) == 11  # 10 good rows + the existing one
    assert set(report.rows["id"].drop([5, 9])) <= set(landed["accountid"])
    # Fix and push again: the failed rows carry their ids, so nothing is duplicated.
    fixed = report.failed.assign(
        accountnumber=[f"{tag}-5", f"{tag}-9"],
        parentaccountid=pd.array([None, None], dtype="string"),
    )
    again = _report(fixed.d365.push(mode=mode, progress=False))  # table, conn from the report
    assert again.counts["created"] == 2
    assert len(_accounts(conn, tag)) == 13


def test_one_bad_row_in_a_full_size_chunk_fails_alone(
    conn: Connection, sent: list[tuple[str, str]]
) -> None:
    """A 5,000-row CreateMultiple (the default chunk, one request at a time) that one row
    fails is sent again row by row: the 4,999 others land, nothing is lost or doubled."""
    tag = _tag()
    taken = f"{tag}-taken"
    pd.DataFrame({"name": [f"{tag} existing"], "accountnumber": [taken]}).d365.push(
        "accounts", mode="create", conn=conn, progress=False
    )
    n = 6000
    df = pd.DataFrame(
        {
            "name": [f"{tag} {i:05}" for i in range(n)],
            "accountnumber": [f"{tag}-{i}" for i in range(n)],
        }
    )
    df.loc[4321, "accountnumber"] = taken  # violates the alternate key: the chunk fails whole

    sent.clear()
    report = _report(
        df.d365.push("accounts", mode="create", conn=conn, parallel=False, progress=False)
    )

    assert list(report.failed.index) == [4321]
    assert report.rows["code"][4321] == "0x80060892"
    assert report.counts["created"] == n - 1
    # Two bulk calls (5,000 + 1,000 rows), the failed chunk again as 20 $batch requests of
    # 250 parts, and one $batch that reads the refused row back by its id (a 412 on a
    # create may be an earlier run's copy of this very row: it is not, so it stays failed).
    assert [u for _, u in sent].count("accounts/Microsoft.Dynamics.CRM.CreateMultiple") == 2
    assert [u for _, u in sent].count("$batch") == 5000 // 250 + 1 == report.requests - 2
    landed = _accounts(conn, tag)
    assert len(landed) == n and landed["accountid"].is_unique  # n - 1 new + the existing
    assert set(report.rows["id"].drop([4321])) <= set(landed["accountid"])


def test_etag_conflict_is_reported_not_overwritten(conn: Connection) -> None:
    tag = _tag()
    pd.DataFrame({"name": [f"{tag} {i}" for i in range(4)], "revenue": 1.0}).d365.push(
        "accounts", mode="create", conn=conn, progress=False
    )
    df = _accounts(conn, tag)
    # Someone else edits row 1 and deletes row 3 after our read.
    other = df["accountid"][1]
    run_sync(conn.arequest("PATCH", f"accounts({other})", json={"revenue": 99.0}))
    run_sync(conn.arequest("DELETE", f"accounts({df['accountid'][3]})"))
    df["revenue"] = 2.0

    report = _report(df.d365.push(progress=False))

    assert list(report.rows["status"]) == ["updated", "conflict", "updated", "conflict"]
    assert report.rows["code"][1] == "0x80060882"
    assert report.rows["code"][3] == "0x80040217"
    assert list(report.conflicts.index) == [1, 3] and report.failed.empty
    assert not report.ok
    back = _accounts(conn, tag).set_index("accountid")
    assert back.loc[other, "revenue"] == 99.0  # the other change survived
    assert (back.drop(other)["revenue"] == 2.0).all()

    forced = _report(df.d365.push(force=True, progress=False))

    assert list(forced.rows["status"]) == ["updated", "updated", "updated", "created"]
    assert (_accounts(conn, tag)["revenue"] == 2.0).all()


def test_update_mode_with_etags_conflicts_too(conn: Connection) -> None:
    tag = _tag()
    pd.DataFrame({"name": [f"{tag} a"]}).d365.push(
        "accounts", mode="create", conn=conn, progress=False
    )
    df = _accounts(conn, tag)
    run_sync(conn.arequest("PATCH", f"accounts({df['accountid'][0]})", json={"telephone1": "1"}))

    report = _report(df.assign(telephone1="2").d365.push(mode="update", progress=False))
    deleted = _report(df.d365.push(mode="delete", progress=False))

    assert list(report.rows["status"]) == ["conflict"]
    assert list(deleted.rows["status"]) == ["conflict"]
    assert _accounts(conn, tag)["telephone1"][0] == "1"


def test_dropped_connections_neither_duplicate_nor_lose_rows(
    conn: Connection, knobs: Knobs
) -> None:
    tag = _tag()
    n = 240
    df = pd.DataFrame(
        {
            "name": [f"{tag} {i:03}" for i in range(n)],
            "accountnumber": [f"{tag}-{i}" for i in range(n)],
        }
    )
    run_sync(conn.catalog.table("account"))
    knobs(fault_drop_rate=0.2, fault_seed=11)

    created = _report(
        df.d365.push("accounts", mode="create", conn=conn, batch_size=20, progress=False)
    )

    assert created.counts["created"] == n, created
    knobs(fault_drop_rate=0.0)
    back = _accounts(conn, tag)
    assert len(back) == n and back["accountid"].is_unique
    assert set(back["accountid"]) == set(created.rows["id"])
    assert created.rows["message"].notna().any()  # some creates landed on a lost attempt

    back["revenue"] = 7.0
    knobs(fault_drop_rate=0.2, fault_seed=12)
    updated = _report(back.d365.push(batch_size=20, progress=False))
    deleted = _report(
        back[["accountid"]].d365.push(
            "accounts", mode="delete", conn=conn, batch_size=20, progress=False
        )
    )
    knobs(fault_drop_rate=0.0)

    assert updated.counts["updated"] == n, updated
    assert deleted.counts["deleted"] == n, deleted
    assert _accounts(conn, tag).empty


def test_throttling_storm_is_waited_out(
    conn: Connection, knobs: Knobs, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = _tag()
    run_sync(conn.catalog.table("account"))
    run_sync(conn.catalog.tables())
    knobs(max_requests_per_window=2, window_seconds=1, retry_after_seconds=1)
    df = pd.DataFrame({"name": [f"{tag} {i}" for i in range(24)]})

    report = _report(df.d365.push("accounts", mode="create", conn=conn, batch_size=4))

    shown = capsys.readouterr().err
    stats = run_sync(_stats(conn))
    knobs(max_requests_per_window=6000, window_seconds=300)
    assert report.counts["created"] == 24, report
    assert getattr(stats, "throttled", 0) > 0
    assert "throttled by the service: waiting 1 s" in shown  # on the progress bar
    assert len(_accounts(conn, tag)) == 24


def test_pushing_failed_rows_again_after_lost_answers_creates_no_duplicates(
    conn: Connection, knobs: Knobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_write, "_ATTEMPTS", 2)  # give up quickly: this is about re-pushing
    tag = _tag()
    df = pd.DataFrame({"name": [f"{tag} {i:02}" for i in range(20)], "revenue": 3.0})
    run_sync(conn.catalog.table("account"))
    run_sync(conn.catalog.tables())
    knobs(fault_drop_rate=1.0, fault_seed=1)  # every answer is lost; the work is done

    lost = _report(df.d365.push("accounts", mode="create", conn=conn, progress=False))

    knobs(fault_drop_rate=0.0)
    assert lost.counts["failed"] == 20 and set(lost.rows["code"]) == {"network"}
    assert len(_accounts(conn, tag)) == 20  # they did land
    again = _report(lost.failed.d365.push("accounts", mode="create", conn=conn, progress=False))
    assert again.counts["unchanged"] == 20, again
    back = _accounts(conn, tag)
    assert len(back) == 20 and set(back["accountid"]) == set(lost.rows["id"])
    changed = lost.failed.assign(revenue=4.0)
    clash = _report(changed.d365.push("accounts", mode="create", conn=conn, progress=False))
    assert clash.counts["failed"] == 20 and set(clash.rows["code"]) == {"0x80040237"}
