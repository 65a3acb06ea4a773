"""Reads under 429 storms, 503s, drops, slow answers, restarts, dying tokens and interrupts.

Every read is compared with a fault-free read of the same query: nothing lost, nothing
twice, the very same values; or it fails with a clear error (and the rows so far).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from d365nb import AuthError, PartialReadError, ThrottledError, TransportError
from d365nb._transport import RetryPolicy
from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to
from tests._support.ledger import record
from tests._support.oauth import device_code_tokens
from tests._support.proxy import Action, Proxy, answer

from ._helpers import (
    assert_same_frame,
    interrupt_after,
    lost_and_duplicated,
    stats,
)
from .conftest import Knobs, through

pytestmark = pytest.mark.sandbox

AREA = "reliability/read faults"
COLUMNS = ["name", "accountnumber", "revenue", "industrycode", "createdon", "parentaccountid"]
FAST = RetryPolicy(backoff_base=0.05, backoff_cap=0.5)


@pytest.fixture(scope="module")
def expected(rsb: Sandbox) -> pd.DataFrame:
    """The fault-free, strictly sequential read every faulty read must equal."""
    with connect_to(rsb) as conn:
        return conn.read("accounts", select=COLUMNS, parallel=False, progress=False)


def _check(
    test: str, got: pd.DataFrame, expected: pd.DataFrame, *, faults: int, ops: int = 1
) -> None:
    lost, dup = lost_and_duplicated(got, expected)
    record(AREA, test, faults=faults, operations=ops, rows_lost=lost, duplicates=dup)
    assert (lost, dup) == (0, 0)
    assert_same_frame(got, expected)


def _data(path: str) -> bool:
    return path.endswith("/accounts")


def test_429_storm_with_growing_retry_after_ends_with_every_row(
    rsb: Sandbox, proxy: Proxy, expected: pd.DataFrame
) -> None:
    waits = iter(["0", "1", "1", "2"])  # the storm; then the proxy forwards again
    storm: list[str] = []

    def rule(n: int, method: str, path: str) -> Action | None:
        if _data(path) and n % 2 == 0:
            wait = next(waits, None)
            if wait is not None:
                storm.append(wait)
                return answer(
                    429, {"error": {"code": "0x80072322", "message": "slow"}}, Retry_After=wait
                )
        return None

    proxy.rule = rule
    with through(rsb, proxy) as conn:
        got = conn.read("accounts", select=COLUMNS, page_size=15, parallel=4, progress=False)
        counters = stats(conn)
    assert storm == ["0", "1", "1", "2"]
    assert counters.throttled == 4 and counters.waited >= 4.0
    _check("429 storm", got, expected, faults=len(storm))


def test_429_storm_outlasting_the_budget_is_a_clear_throttled_error(
    rsb: Sandbox, proxy: Proxy, expected: pd.DataFrame
) -> None:
    count = 0

    def rule(n: int, method: str, path: str) -> Action | None:
        nonlocal count
        if _data(path) and "skiptoken" in path + "" or (_data(path) and n > 6):
            count += 1
            return answer(
                429,
                {"error": {"code": "0x80072322", "message": "no"}},
                Retry_After=str(min(count, 3)),
            )
        return None

    proxy.rule = rule
    began = time.monotonic()
    with through(rsb, proxy, retry=RetryPolicy(max_total_wait=2.5)) as conn:
        with pytest.raises(PartialReadError) as info:
            conn.read("accounts", select=COLUMNS, page_size=10, parallel=False, progress=False)
    elapsed = time.monotonic() - began
    err = info.value
    cause = err.__cause__
    record(AREA, "429 budget", faults=count, operations=1)
    assert isinstance(cause, ThrottledError), repr(cause)
    assert cause.retry_after is not None and cause.retry_after >= 2
    assert "429" in str(cause) and cause.hint
    assert "ThrottledError" in str(err) and err.partial["accountid"].is_unique
    assert elapsed < 30  # bounded by the policy, not by the storm


@pytest.mark.parametrize("seed", [3, 8])
def test_partitioned_read_under_mixed_faults_equals_the_sequential_read(
    rsb: Sandbox, knobs: Knobs, expected: pd.DataFrame, seed: int
) -> None:
    knobs(
        fault_503_rate=0.06,  # each 503 says Retry-After: 1
        fault_drop_rate=0.15,
        fault_seed=seed,
        max_requests_per_window=40,
        window_seconds=1.0,
        retry_after_seconds=1,
    )
    with connect_to(rsb, retry=FAST) as conn:
        got = conn.read("accounts", select=COLUMNS, page_size=8, parallel=5, progress=False)
        counters = stats(conn)
    assert counters.retries > 0, "the read met faults"
    _check(f"mixed faults {seed}", got, expected, faults=counters.retries)


def test_responses_slower_than_the_timeout_are_retried(
    rsb: Sandbox, proxy: Proxy, expected: pd.DataFrame
) -> None:
    slow = 0

    def rule(n: int, method: str, path: str) -> Action | None:
        nonlocal slow
        if _data(path) and n % 3 == 0 and slow < 3:
            slow += 1
            return Action(delay=1.2)  # then forwarded: too late for the client
        return None

    proxy.rule = rule
    with through(rsb, proxy, timeout=0.5, retry=FAST) as conn:
        got = conn.read("accounts", select=COLUMNS, page_size=20, parallel=False, progress=False)
        counters = stats(conn)
    assert slow == 3 and counters.retries >= 3
    _check("slow answers", got, expected, faults=slow)


def test_a_service_always_slower_than_the_timeout_fails_clearly(rsb: Sandbox, proxy: Proxy) -> None:
    proxy.rule = lambda n, m, p: Action(delay=0.8) if _data(p) else None
    with through(
        rsb, proxy, timeout=0.3, retry=RetryPolicy(max_attempts=2, backoff_base=0.05)
    ) as conn:
        began = time.monotonic()
        with pytest.raises(PartialReadError) as info:
            conn.read("accounts", select=COLUMNS, page_size=20, parallel=False, progress=False)
    record(AREA, "always slow", faults=proxy.injected, operations=1)
    cause = info.value.__cause__
    assert isinstance(cause, TransportError) and "Timeout" in str(cause)
    assert cause.hint
    assert time.monotonic() - began < 10


def test_connections_cut_mid_answer_by_the_proxy_are_retried(
    rsb: Sandbox, proxy: Proxy, expected: pd.DataFrame
) -> None:
    proxy.rule = lambda n, m, p: Action(cut=True) if _data(p) and n % 4 == 1 else None
    with through(rsb, proxy, retry=FAST) as conn:
        got = conn.read("accounts", select=COLUMNS, page_size=12, parallel=3, progress=False)
    assert proxy.injected > 0
    _check("cut answers", got, expected, faults=proxy.injected)


def test_sandbox_restarted_mid_read(tmp_path: Path) -> None:
    """The server goes away mid-read and comes back on the same port: the read finishes."""
    options: dict[str, Any] = {"data_dir": tmp_path, "rows": 60, "latency_ms": 120.0}
    sb = start(subprocess=True, **options)
    current = [sb]
    try:
        with connect_to(sb) as conn:
            reference = conn.read("accounts", select=COLUMNS, parallel=False, progress=False)
        port = int(sb.base_url.rsplit(":", 1)[1])
        restarted = threading.Event()

        def restart() -> None:
            current[0].stop()
            current[0] = start(subprocess=True, port=port, **options)
            restarted.set()

        with connect_to(sb, retry=RetryPolicy(backoff_base=0.5, backoff_cap=2)) as conn:
            conn.read("accounts", select=["name"], top=1, progress=False)  # metadata, token
            timer = threading.Timer(0.6, restart)
            timer.start()
            # 30 pages of 2 rows at 120 ms (about 1.3 s with 3 ranges): the restart at 0.6 s
            # lands mid-read whatever the read plan sends before its first data page.
            got = conn.read("accounts", select=COLUMNS, page_size=2, parallel=3, progress=False)
            timer.join()
            counters = stats(conn)
        assert restarted.is_set()
    finally:
        current[0].stop()
    assert counters.retries > 0, "the read met the restart"
    _check("restart", got, reference, faults=1)


def test_refresh_token_revoked_mid_read_is_a_clear_auth_error(short: Sandbox) -> None:
    tokens = device_code_tokens(short)
    conn = connect_to(short, grant="refresh_token", refresh_token=tokens["refresh_token"])
    with conn:
        conn.read("accounts", select=["name"], top=1, progress=False)
        timer = threading.Timer(0.4, short.revoke_refresh_tokens)
        timer.start()
        with pytest.raises(PartialReadError) as info:
            conn.read("accounts", select=["name"], page_size=4, parallel=False, progress=False)
        timer.join()
    err = info.value
    record(AREA, "revoked refresh token", faults=1, operations=1)
    assert isinstance(err.__cause__, AuthError), repr(err.__cause__)
    assert "AuthError" in str(err) and err.__cause__.hint
    assert tokens["refresh_token"] not in str(err) and tokens["access_token"] not in str(err)
    assert 0 < len(err.partial) < 40 and err.partial["accountid"].is_unique


def test_interrupted_partitioned_read_resumes_to_the_identical_frame(
    rsb: Sandbox, knobs: Knobs, expected: pd.DataFrame
) -> None:
    knobs(latency_ms=150.0)
    with connect_to(rsb) as conn:
        conn.read("accounts", select=["name"], top=1, progress=False)
        interrupted, err = interrupt_after(
            0.8,
            lambda: conn.read("accounts", select=COLUMNS, page_size=5, parallel=4, progress=False),
        )
        knobs(latency_ms=0.0)
        assert interrupted and isinstance(err, PartialReadError), repr(err)
        assert 0 < len(err.partial) < len(expected)
        got = err.resume()
    _check("interrupt + resume", got, expected, faults=1, ops=2)


def test_drops_without_retries_resume_to_the_identical_frame(
    rsb: Sandbox, knobs: Knobs, expected: pd.DataFrame
) -> None:
    """No retries: every drop stops the read, even before its first row, with the rows so
    far and `resume()`; resuming until done gives the very same frame."""
    stops = 0
    got: pd.DataFrame | None = None
    with connect_to(rsb, retry=RetryPolicy(max_attempts=1)) as conn:
        conn.read("accounts", select=["name"], top=1, progress=False)
        knobs(fault_drop_rate=0.3, fault_seed=21)
        err: PartialReadError | None = None
        for _ in range(60):  # bounded: each resume fetches more
            try:
                if err is None:
                    got = conn.read(
                        "accounts", select=COLUMNS, page_size=6, parallel=4, progress=False
                    )
                else:
                    got = err.resume()
                break
            except PartialReadError as stopped:
                assert stopped.partial["accountid"].is_unique
                assert isinstance(stopped.__cause__, TransportError)
                err = stopped
            stops += 1
    assert got is not None and stops > 0, "the read met dropped connections"
    _check("drops + resume", got, expected, faults=stops, ops=stops + 1)
