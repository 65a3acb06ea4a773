"""`d365nb.dask.read` on a LocalCluster (2 worker processes) against the sandbox over HTTPS."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pandas as pd
import pytest

import d365nb.dask
from d365nb._client import Connection
from d365nb.sandbox import Sandbox
from d365nb.sandbox._connect import connect_to
from tests._support.oauth import device_code_tokens

from .conftest import Knobs, gate_totals, kill_busy_worker, reset_gates

pytestmark = pytest.mark.sandbox

PK = "accountid"


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    out: pd.DataFrame = frame.sort_values(PK).reset_index(drop=True)
    return out


def _same_rows(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert got[PK].is_unique, "a row arrived twice"
    pd.testing.assert_frame_equal(_sorted(got), _sorted(expected))


def test_compute_equals_conn_read_and_meta_has_its_dtypes(cluster: Any, conn: Connection) -> None:
    ddf = d365nb.dask.read("accounts", conn=conn, npartitions=4)
    got = ddf.compute()
    _same_rows(got, conn.read("accounts", progress=False))
    # meta: from metadata alone, exactly the dtypes of the computed rows.
    assert ddf._meta.empty
    pd.testing.assert_series_equal(ddf._meta.dtypes, got.dtypes)
    assert ddf.npartitions == 4
    # Partitions balanced by row count: 3,000 rows, 750 each give or take one slice.
    sizes = ddf.map_partitions(len).compute().tolist()
    assert sum(sizes) == len(got) and max(sizes) - min(sizes) < 0.3 * len(got) / 4, sizes


def test_select_filter_and_options_as_in_conn_read(cluster: Any, conn: Connection) -> None:
    options: dict[str, Any] = {
        "select": ["name", "revenue", "industrycode", "createdon", "parentaccountid"],
        "filter": "revenue gt 100000",
        "dtypes": {"industrycode": "Int32"},
        "page_size": 200,
    }
    ddf = d365nb.dask.read("accounts", conn=conn, **options)
    assert ddf.npartitions >= 4  # two per worker thread
    got = ddf.compute()
    _same_rows(got, conn.read("accounts", progress=False, **options))
    pd.testing.assert_series_equal(ddf._meta.dtypes, got.dtypes)
    # The computed frame still knows where it came from: df.d365.push() works on it.
    assert got.attrs["d365nb"]["table"] == "account"
    assert got.attrs["d365nb"]["connection"] == conn.id


def test_options_that_need_the_whole_read_are_refused(conn: Connection) -> None:
    with pytest.raises(d365nb.ConfigError, match="top="):
        d365nb.dask.read("accounts", conn=conn, top=10)
    with pytest.raises(d365nb.ConfigError, match="concurrency"):
        d365nb.dask.read("accounts", conn=conn, concurrency=99)


def _graph_bytes(ddf: Any) -> bytes:
    return cloudpickle.dumps(dict(ddf.__dask_graph__())) + cloudpickle.dumps(ddf)


def test_no_secret_or_token_in_the_pickled_task_graph(
    cluster: Any, conn: Connection, dsb: Sandbox
) -> None:
    # Client credentials: the client secret stays in this process.
    ddf = d365nb.dask.read("accounts", conn=conn, select=["name"])
    blob = _graph_bytes(ddf)
    assert dsb.client_secret.encode() not in blob
    assert conn.auth.current is not None
    assert conn.auth.current.token.encode() not in blob  # even the access token travels apart
    assert len(ddf.compute()) == len(conn.read("accounts", select=["name"], progress=False))

    # A refresh token: neither it nor the access tokens it yields are in the graph.
    tokens = device_code_tokens(dsb)
    delegated = connect_to(dsb, grant="refresh_token", refresh_token=tokens["refresh_token"])
    try:
        ddf = d365nb.dask.read("accounts", conn=delegated, select=["name"])
        blob = _graph_bytes(ddf)
        assert tokens["refresh_token"].encode() not in blob
        assert tokens["access_token"].encode() not in blob
        assert delegated.auth.current is not None
        assert delegated.auth.current.token.encode() not in blob
        assert "refresh" not in repr(ddf.dask).lower()
        got = ddf.compute()
        assert len(got) == len(delegated.read("accounts", select=["name"], progress=False))
    finally:
        delegated.close()


def test_workers_can_sign_in_from_their_own_environment(
    cluster: Any, conn: Connection, dsb: Sandbox
) -> None:
    def set_secret(value: str | None) -> None:
        if value is None:
            os.environ.pop("D365NB_CLIENT_SECRET", None)
        else:
            os.environ["D365NB_CLIENT_SECRET"] = value

    cluster.run(set_secret, dsb.client_secret)
    try:
        ddf = d365nb.dask.read("accounts", conn=conn, select=["name"], credentials="environment")
        assert dsb.client_secret.encode() not in _graph_bytes(ddf)
        got = ddf.compute()
    finally:
        cluster.run(set_secret, None)
    _same_rows(got, conn.read("accounts", select=["name"], progress=False))


def test_to_parquet_job_restarts_from_the_partitions_already_written(
    cluster: Any, conn: Connection, tmp_path: Path
) -> None:
    folder = tmp_path / "accounts"
    ddf = d365nb.dask.read("accounts", conn=conn, npartitions=4, checkpoint=folder)
    # schema=None: each file's own (Dask cannot guess a list column's type from meta).
    ddf.to_parquet(folder, schema=None)
    # The job failed: partition 2 was never written, partition 3 was cut short.
    (folder / "part.2.parquet").unlink()
    (folder / "part.3.parquet").write_bytes(b"PAR1 cut short")
    reset_gates(cluster)
    again = d365nb.dask.read("accounts", conn=conn, checkpoint=folder)
    assert again.npartitions == 4  # the plan kept in the folder, not a new one
    got = again.compute()
    assert gate_totals(cluster)["attempts"] > 0  # partitions 2 and 3 from the service
    _same_rows(got, conn.read("accounts", progress=False))
    pd.testing.assert_series_equal(again._meta.dtypes, got.dtypes)
    # Once every partition is written, a run reads nothing from the service.
    again.to_parquet(folder, schema=None)
    reset_gates(cluster)
    _same_rows(d365nb.dask.read("accounts", conn=conn, checkpoint=folder).compute(), got)
    assert gate_totals(cluster)["attempts"] == 0
    with pytest.raises(d365nb.ConfigError, match="another read"):
        d365nb.dask.read("accounts", conn=conn, select=["name"], checkpoint=folder)


def test_a_worker_killed_mid_read_its_partition_runs_again(
    cluster: Any, conn: Connection, knobs: Knobs
) -> None:
    knobs(latency_ms=60)
    ddf = d365nb.dask.read("accounts", conn=conn, npartitions=4, page_size=100)
    future = cluster.compute(ddf)
    killed = kill_busy_worker(cluster, "d365nb-read-accounts")
    got = future.result(timeout=120)
    assert killed
    knobs(latency_ms=0)
    _same_rows(got, conn.read("accounts", progress=False))
    cluster.wait_for_workers(2, timeout=60)


@pytest.mark.slow
def test_concurrency_limit_of_two_is_never_exceeded_across_the_cluster(
    cluster: Any, conn: Connection, knobs: Knobs
) -> None:
    # The service allows 2 concurrent requests per user and says so (x-ms-dop-hint).
    knobs(max_concurrent_requests=2, dop_hint=2, latency_ms=20)
    reset_gates(cluster)
    # parallel=4 within each partition: without the cluster's budget the two workers
    # would send up to 8 requests at once.
    ddf = d365nb.dask.read("accounts", conn=conn, npartitions=4, page_size=150, parallel=4)
    got = ddf.compute()
    totals = gate_totals(cluster)
    assert totals["attempts"] > 20
    assert totals["throttled"] == 0, "a concurrency 429: the cluster exceeded the limit"
    knobs(max_concurrent_requests=52, dop_hint=4, latency_ms=0)
    _same_rows(got, conn.read("accounts", progress=False))


def _throttle(seconds: float) -> None:
    """On one worker: act as if its last request met a 429 with `Retry-After: seconds`."""
    from d365nb.dask import _budget

    for gate in list(_budget._GATES.values()):
        gate.throttled(seconds)
        gate.pool.submit(lambda: None).result()  # the pause is on the scheduler now


def _pause_seen() -> float:
    """On one worker: how long its gates would wait before the next request."""
    from d365nb.dask import _budget

    time.sleep(2 * _budget._PAUSE_POLL)
    return max((gate._paused_for() for gate in list(_budget._GATES.values())), default=0.0)


@pytest.mark.slow
def test_throttled_cluster_read_finishes_and_a_429_pauses_every_worker(
    cluster: Any, conn: Connection, knobs: Knobs
) -> None:
    reset_gates(cluster)
    ddf = d365nb.dask.read("accounts", conn=conn, npartitions=4, page_size=150)
    expected = conn.read("accounts", progress=False)
    # 25 requests per 4-second window: the read needs about 40, so it meets 429s.
    knobs(max_requests_per_window=25, window_seconds=4)
    got = ddf.compute()
    totals = gate_totals(cluster)
    assert totals["throttled"] > 0, "the limits were reached"
    assert totals["workers_slowed"] == 2, "every worker waited"
    _same_rows(got, expected)

    # A 429 on one worker (its Retry-After) pauses the others before their next request.
    # (As tasks, not client.run(): the gates talk to the scheduler from worker threads.)
    first, second = sorted(cluster.scheduler_info()["workers"])
    cluster.submit(_throttle, 5.0, workers=[first], pure=False).result(timeout=30)
    wait = cluster.submit(_pause_seen, workers=[second], pure=False).result(timeout=30)
    assert 0 < wait <= 5.0
