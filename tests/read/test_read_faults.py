"""Reads that meet throttling, 503s, dying tokens and interrupts still end whole."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from d365nb import PartialReadError
from d365nb._sync import run_sync
from d365nb._transport import RetryPolicy
from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to

pytestmark = pytest.mark.sandbox


def _knobs(sb: Sandbox, **changes: Any) -> None:
    response = httpx.post(
        f"{sb.base_url}/_sandbox/knobs/",
        json=changes,
        verify=ssl.create_default_context(cafile=sb.ca_cert),
    )
    assert response.status_code < 300, response.text


async def _stats(conn: Any) -> Any:
    return conn.transport_stats


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with start(data_dir=tmp_path_factory.mktemp("faulty"), database=":memory:", rows=80) as sb:
        yield sb


def test_throttling_and_503s_mid_read_end_with_every_row(faulty: Sandbox) -> None:
    reference = connect_to(faulty)
    expected = reference.read("accounts", select=["name"], progress=False)
    _knobs(
        faulty,
        max_requests_per_window=8,
        window_seconds=1.0,
        retry_after_seconds=1,
        fault_503_rate=0.2,
        fault_seed=11,
    )
    try:
        conn = connect_to(faulty)
        got = conn.read("accounts", select=["name"], page_size=10, parallel=3, progress=False)
        stats = run_sync(_stats(conn))
    finally:
        _knobs(
            faulty,
            max_requests_per_window=6000,
            window_seconds=300.0,
            retry_after_seconds=None,
            fault_503_rate=0.0,
        )
    assert stats.throttled > 0, "the read met 429s"
    assert got["accountid"].is_unique
    assert sorted(got["accountid"]) == sorted(expected["accountid"])
    conn.close()
    reference.close()


def test_partial_read_resumes_to_the_full_result(faulty: Sandbox) -> None:
    conn = connect_to(faulty, retry=RetryPolicy(max_attempts=1))
    expected = conn.read("accounts", select=["name"], page_size=10, progress=False)
    _knobs(faulty, fault_503_rate=0.35, fault_seed=5)
    errors = 0
    try:
        try:
            conn.read("accounts", select=["name"], page_size=10, parallel=False, progress=False)
            raise AssertionError("a read with no retries should have met a 503")
        except PartialReadError as exc:
            err = exc
        assert err.partial.attrs["d365nb"]["partial"] is True
        assert len(err.partial) < len(expected)
        assert err.hint and "resume" in err.hint
        result = None
        for _ in range(100):  # each resume fetches more; faults are random
            try:
                result = err.resume()
                break
            except PartialReadError as again:
                errors += 1
                err = again
        assert result is not None
    finally:
        _knobs(faulty, fault_503_rate=0.0)
    assert result.attrs["d365nb"]["partial"] is False
    pd.testing.assert_frame_equal(
        result.sort_values("accountid", ignore_index=True),
        expected.sort_values("accountid", ignore_index=True),
    )
    conn.close()


def test_dropped_connections_mid_read_are_retried(faulty: Sandbox) -> None:
    conn = connect_to(faulty)
    expected = conn.read("accounts", select=["name"], progress=False)
    _knobs(faulty, fault_drop_rate=0.25, fault_seed=2)
    try:
        got = conn.read("accounts", select=["name"], page_size=10, parallel=False, progress=False)
    finally:
        _knobs(faulty, fault_drop_rate=0.0)
    assert sorted(got["accountid"]) == sorted(expected["accountid"])
    assert got["accountid"].is_unique
    conn.close()


def test_token_expiring_mid_read(tmp_path: Path) -> None:
    with start(
        data_dir=tmp_path, database=":memory:", rows=40, access_token_lifetime=2, latency_ms=300
    ) as sb:
        conn = connect_to(sb)
        begin = time.time()
        df = conn.read("accounts", select=["name"], page_size=4, parallel=False, progress=False)
        assert time.time() - begin > 2.5, "the read outlived its first token"
        assert len(df) == 40 and df["accountid"].is_unique
        assert conn.auth.current is not None and conn.auth.current.expires_on > begin + 2
        conn.close()


def test_interrupt_becomes_a_partial_read(faulty: Sandbox) -> None:
    """Ctrl-C / the Stop button mid-read: the rows so far, and a way to finish."""
    import _thread
    import threading

    conn = connect_to(faulty)
    expected = conn.read("accounts", select=["name"], progress=False)
    _knobs(faulty, latency_ms=250)
    try:
        timer = threading.Timer(1.2, _thread.interrupt_main)
        timer.start()
        with pytest.raises(PartialReadError) as info:
            conn.read("accounts", select=["name"], page_size=5, parallel=False, progress=False)
        timer.join()
    finally:
        _knobs(faulty, latency_ms=0.0)
    err = info.value
    assert 0 < len(err.partial) < len(expected)
    full = err.resume()
    assert sorted(full["accountid"]) == sorted(expected["accountid"])
    conn.close()


@pytest.mark.slow
def test_parallel_partitions_equal_a_sequential_read_on_100k_rows(tmp_path: Path) -> None:
    with start(data_dir=tmp_path, database=":memory:", rows=100_000) as sb:
        conn = connect_to(sb)
        columns = ["name", "accountnumber", "revenue", "industrycode", "createdon"]
        split = conn.read("accounts", select=columns, parallel=True, progress=False)
        serial = conn.read("accounts", select=columns, parallel=False, progress=False)
        conn.close()
    assert len(split) == len(serial) >= 100_000
    assert split["accountid"].is_unique
    pd.testing.assert_frame_equal(
        split.sort_values("accountid", ignore_index=True),
        serial.sort_values("accountid", ignore_index=True),
    )
