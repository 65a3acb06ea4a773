"""Fixtures of the Dask tests: a sandbox of their own and one `LocalCluster` for all.

The cluster has two worker processes with one thread each (as the issue asks), and a
short semaphore lease timeout, so that a lease held by a worker the tests kill comes back
in seconds rather than the default 30.
"""

from __future__ import annotations

import os
import signal
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import httpx
import pytest

from d365nb._client import Connection
from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to

distributed = pytest.importorskip("distributed")

Knobs = Callable[..., dict[str, Any]]

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="package")
def dsb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox only the Dask tests use (3,000 accounts, in memory)."""
    with start(data_dir=tmp_path_factory.mktemp("dask"), database=":memory:", rows=3000) as sb:
        yield sb


@pytest.fixture(scope="package")
def psb(dsb: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox only the push tests change (50 accounts): the reads keep theirs."""
    with start(data_dir=tmp_path_factory.mktemp("dask-push"), database=":memory:", rows=50) as sb:
        yield sb


@pytest.fixture(scope="package")
def cluster(dsb: Sandbox, psb: Sandbox) -> Iterator[Any]:
    """A `distributed.Client` on a LocalCluster: 2 worker processes, 1 thread each.

    Started after the sandboxes and stopped before them, so no worker still holds a
    connection when a sandbox stops.
    """
    settings = {
        "distributed.scheduler.locks.lease-timeout": "3s",
        "distributed.scheduler.locks.lease-validation-interval": "1s",
    }
    root = str(Path(__file__).resolve().parents[2])
    with dask.config.set(settings):
        with distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            env={"PYTHONPATH": root},
        ) as local:
            with distributed.Client(local) as client:
                yield client


def knobs_for(sb: Sandbox) -> Iterator[Knobs]:
    context = ssl.create_default_context(cafile=sb.ca_cert)
    url = f"{sb.base_url}/_sandbox/knobs/"
    with httpx.Client(verify=context, trust_env=False, timeout=30) as client:
        original = client.get(url).json()

        def change(**values: Any) -> dict[str, Any]:
            response = client.post(url, json=values)
            assert response.status_code == 200, response.text
            return dict(response.json())

        try:
            yield change
        finally:
            client.post(url, json=original).raise_for_status()
            client.delete(url).raise_for_status()


@pytest.fixture
def knobs(dsb: Sandbox) -> Iterator[Knobs]:
    """`knobs(latency_ms=50, ...)` on the Dask sandbox; undone (counters cleared) after."""
    yield from knobs_for(dsb)


@pytest.fixture
def conn(dsb: Sandbox) -> Iterator[Connection]:
    """A client-credentials connection of the test process (the Dask client's side)."""
    connection = connect_to(dsb)
    try:
        yield connection
    finally:
        connection.close()


def gate_totals(client: Any) -> dict[str, float]:
    """What every worker's budget gates saw, added up; `workers_slowed`: how many
    workers met a 429 or waited out another worker's."""
    from d365nb.dask._budget import gate_stats

    totals = {"attempts": 0.0, "throttled": 0.0, "paused": 0.0, "workers_slowed": 0.0}
    for per_worker in client.run(gate_stats).values():
        slowed = 0.0
        for stats in per_worker.values():
            totals["attempts"] += stats["attempts"]
            totals["throttled"] += stats["throttled"]
            totals["paused"] += stats["paused"]
            slowed += stats["paused"] + stats["throttled"]
        totals["workers_slowed"] += 1 if slowed > 0 else 0
    return totals


def reset_gates(client: Any) -> None:
    """Forget the workers' gate counters (each test reads its own)."""

    def clear() -> None:
        from d365nb.dask import _budget

        for gate in list(_budget._GATES.values()):
            gate.stats = _budget.GateStats()

    client.run(clear)


def kill_busy_worker(client: Any, prefix: str, *, timeout: float = 60.0) -> str:
    """SIGKILL the process of a worker running a task whose key starts with `prefix`.

    Its nanny starts a new worker process; the scheduler runs the lost task again.
    Returns the worker's address.
    """
    pids = client.run(os.getpid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for address, keys in client.processing().items():
            if any(str(k).startswith(prefix) or prefix in str(k) for k in keys):
                os.kill(pids[address], signal.SIGKILL)
                return str(address)
        time.sleep(0.05)
    raise AssertionError(f"no worker ran a {prefix} task within {timeout} s")


@pytest.fixture
def push_knobs(psb: Sandbox) -> Iterator[Knobs]:
    """`push_knobs(...)` on the push sandbox; undone after."""
    yield from knobs_for(psb)


@pytest.fixture
def pconn(psb: Sandbox) -> Iterator[Connection]:
    """A client-credentials connection to the push sandbox."""
    connection = connect_to(psb)
    try:
        yield connection
    finally:
        connection.close()
