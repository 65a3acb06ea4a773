"""`d365nb.dask.push` on a LocalCluster: exact statuses, exactly once, ETags across partitions."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import dask.dataframe as dd
import pandas as pd
import pytest

import d365nb.dask
from d365nb._client import Connection

from .conftest import Knobs, kill_busy_worker

pytestmark = pytest.mark.sandbox


def _landed(conn: Connection, prefix: str) -> pd.DataFrame:
    frame: pd.DataFrame = conn.read(
        "accounts", select=["name"], filter=f"startswith(name,'{prefix}')", progress=False
    )
    return frame


@pytest.mark.slow
def test_push_of_50k_rows_from_4_partitions_exact_and_exactly_once_after_a_killed_worker(
    cluster: Any, pconn: Connection, push_knobs: Knobs
) -> None:
    n = 50_000
    frame = pd.DataFrame(
        {
            "name": [f"dask-k-{i:05d}" for i in range(n)],
            "revenue": [float(i) for i in range(n)],
            "numberofemployees": pd.array([i % 500 for i in range(n)], dtype="Int32"),
        }
    )
    ddf = dd.from_pandas(frame, npartitions=4)
    assert ddf.npartitions == 4
    # ~100 ms per 1,000-row request, in 1,000-row chunks (the default fills the limiter's
    # slots with fewer, larger ones and a partition lands in one wave): time to kill.
    push_knobs(latency_per_row_ms=0.1)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["report"] = d365nb.dask.push(ddf, "accounts", conn=pconn, batch_size=1000)
        except BaseException as exc:  # reported below
            result["error"] = exc

    pusher = threading.Thread(target=run)
    pusher.start()
    # Kill a worker once rows have landed: its partition runs again on a new worker.
    while pusher.is_alive() and len(_landed(pconn, "dask-k-").head(1)) == 0:
        pass
    killed = kill_busy_worker(cluster, "d365nb-push-", timeout=30)
    pusher.join(timeout=240)
    assert killed and not pusher.is_alive()
    assert "error" not in result, result.get("error")
    report = result["report"]
    # Exact statuses: every row once, every one created (a retried partition's rows that
    # the lost attempt had landed are "created" too, as a retried request's are).
    assert len(report.rows) == n and report.rows.index.is_unique
    assert report.counts["created"] == n, report.counts
    assert report.ok
    # Nothing created twice: the service holds each row once.
    landed = _landed(pconn, "dask-k-")
    assert len(landed) == n and landed["name"].is_unique
    assert set(report.rows["id"]) == set(landed["accountid"])
    cluster.wait_for_workers(2, timeout=60)

    # Running the same job again continues its attempt (issue 16's rule, per job and
    # partition): its rows are found, reported as landed by the earlier run, and nothing
    # is created twice.  A new run_id= would be a new attempt.
    push_knobs(latency_per_row_ms=0.0)
    again = d365nb.dask.push(ddf, "accounts", conn=pconn, batch_size=1000)  # the same job
    assert again.ok and len(again.rows) == n, again.counts
    assert again.counts["created"] + again.counts["unchanged"] == n, again.counts
    assert set(again.rows["id"]) == set(report.rows["id"])
    assert len(_landed(pconn, "dask-k-")) == n


def test_etags_hold_across_partitions(cluster: Any, pconn: Connection) -> None:
    select = ["name", "revenue"]
    ddf = d365nb.dask.read(
        "accounts",
        conn=pconn,
        select=select,
        filter="not startswith(name,'dask-')",
        npartitions=2,
    ).persist()
    rows = ddf.compute()
    assert ddf.npartitions == 2 and len(rows) == 50
    # Someone else changes one row after the read.
    other = rows.head(1).copy()
    other["revenue"] = 123.0
    assert pconn.push(other[["accountid", "revenue"]], "accounts", progress=False).ok
    changed = ddf.assign(revenue=ddf.revenue.fillna(0) + 1)
    report = d365nb.dask.push(changed, conn=pconn)  # the table: from the read
    assert report.counts["conflict"] == 1 and report.counts["updated"] == 49, report.counts
    (label,) = report.conflicts.index
    assert report.conflicts.loc[label, "accountid"] == other["accountid"].iloc[0]
    # The conflicting row kept the other writer's value.
    after = pconn.read(
        "accounts",
        select=select,
        filter=f"accountid eq {other['accountid'].iloc[0]}",
        progress=False,
    )
    assert after["revenue"].iloc[0] == 123.0


def test_push_without_a_table_or_with_a_bad_key_fails_before_any_task(
    cluster: Any, pconn: Connection
) -> None:
    ddf = dd.from_pandas(pd.DataFrame({"name": ["a", "b"]}), npartitions=1)
    with pytest.raises(d365nb.ConfigError, match="table"):
        d365nb.dask.push(ddf, conn=pconn)
    with pytest.raises(d365nb.ConfigError, match="pandas"):
        d365nb.dask.push(pd.DataFrame({"name": ["a"]}), "accounts", conn=pconn)
    with pytest.raises(d365nb.ConfigError, match="key"):
        d365nb.dask.push(ddf, "accounts", conn=pconn, key="nosuchcolumn", mode="update")


@pytest.mark.slow
def test_a_retried_partition_reports_its_own_etag_guarded_writes_as_updated(
    cluster: Any, pconn: Connection, push_knobs: Knobs
) -> None:
    n = 2000
    seed = pd.DataFrame({"name": [f"dask-e-{i:04d}" for i in range(n)], "revenue": 1.0})
    # Two halves a second apart: createdon (whole seconds) can then split them in two.
    assert pconn.push(seed.iloc[: n // 2], "accounts", progress=False).ok
    time.sleep(1.1)
    assert pconn.push(seed.iloc[n // 2 :], "accounts", progress=False).ok
    select = ["name", "revenue", "description"]
    where = "startswith(name,'dask-e-')"
    ddf = d365nb.dask.read("accounts", conn=pconn, select=select, filter=where, npartitions=2)
    assert ddf.npartitions == 2
    # The input must outlive a worker (here: in the graph), or a retried partition would
    # read its own first attempt's writes again and apply `+ 1` twice (see push()).
    rows = ddf.assign(revenue=ddf.revenue + 1, description="v2").compute()
    changed = dd.from_pandas(rows, npartitions=2, sort=False)
    members = [set(changed.partitions[i].compute()["accountid"]) for i in range(2)]
    assert sum(map(len, members)) == n and all(members)
    push_knobs(latency_ms=600)  # per request (a 250-row $batch among them): time to kill
    result: dict[str, Any] = {}

    def run() -> None:
        try:  # If-Match: the read's ETags
            # One 100-row $batch at a time per partition: ~6 s per partition.
            result["report"] = d365nb.dask.push(changed, conn=pconn, parallel=1, batch_size=100)
        except BaseException as exc:  # reported below
            result["error"] = exc

    pusher = threading.Thread(target=run)
    pusher.start()
    # Kill the worker of a partition that has written rows (their ETags changed): its
    # second attempt meets its own first attempt's writes.
    pids = cluster.run(os.getpid)
    killed = None
    while pusher.is_alive() and killed is None:
        done = set(
            pconn.read(
                "accounts",
                select=["name"],
                filter=f"{where} and description eq 'v2'",
                progress=False,
            )["accountid"]
        )
        for address, keys in cluster.processing().items():
            parts = [int(str(k).split("-")[2]) for k in keys if str(k).startswith("d365nb-push-")]
            if any(done & members[i] for i in parts):
                os.kill(pids[address], signal.SIGKILL)
                killed = address
                break
    assert killed, "the push ended before a partition could be interrupted"
    pusher.join(timeout=240)
    assert not pusher.is_alive()
    push_knobs(latency_ms=0)
    assert "error" not in result, result.get("error")
    report = result["report"]
    assert report.counts["updated"] == n and report.ok, report.counts
    after = pconn.read("accounts", select=select, filter=where, progress=False)
    assert (after["revenue"] == 2.0).all() and (after["description"] == "v2").all()
    cluster.wait_for_workers(2, timeout=60)
