"""Pushes interrupted at random points (an exception, Ctrl-C, a killed process, a dying or
revoked token), then run again with the same frame: every row ends up there exactly once,
with the pushed values, and the second report says which rows were already there."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import d365nb._accessor  # noqa: F401 - registers df.d365
from d365nb import AuthError, D365Error
from d365nb._client import Connection
from d365nb._report import PushReport
from d365nb._transport import RetryPolicy
from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to
from tests._support.ledger import record
from tests._support.oauth import device_code_tokens

from ._helpers import interrupt_after, landed, make_frame, stats
from .conftest import knobs_for

pytestmark = pytest.mark.sandbox

AREA = "reliability/push interrupted"
N = 40
SEEDS = [1, 2, 3]
KEYS: list[tuple[str, bool, str | None]] = [
    ("alternate key", False, "accountnumber"),
    ("primary id", True, None),
]


@pytest.fixture(scope="module")
def wsb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox for these pushes only (every request slowed by 60 ms, every row by 10)."""
    with start(
        data_dir=tmp_path_factory.mktemp("push"),
        database=":memory:",
        rows=10,
        latency_ms=60.0,
        latency_per_row_ms=10.0,
    ) as sb:
        yield sb


def _tag() -> str:
    return "ri" + uuid.uuid4().hex[:8]


def _report(result: Any) -> PushReport:
    assert isinstance(result, PushReport), result
    return result


def _settle(
    test: str,
    conn: Connection,
    frame: pd.DataFrame,
    tag: str,
    *,
    key: str | None,
    faults: int = 1,
) -> PushReport:
    """Push `frame` again, then check the table holds each row once with its values."""
    before = landed(conn, tag)
    there = set(before["accountnumber"])
    second = _report(frame.d365.push("accounts", key=key, conn=conn, batch_size=6, progress=False))
    after = landed(conn, tag)
    lost = len(set(frame["accountnumber"]) - set(after["accountnumber"]))
    duplicates = len(after) - after["accountnumber"].nunique()
    record(AREA, test, faults=faults, operations=2, rows_lost=lost, duplicates=duplicates)
    assert (lost, duplicates) == (0, 0), after
    assert len(after) == len(frame)
    merged = after.set_index("accountnumber").loc[frame["accountnumber"]]
    assert list(merged["name"]) == list(frame["name"])
    assert list(merged["revenue"]) == list(frame["revenue"])
    # The second report: rows already there were not created again, the others were.
    statuses = second.rows["status"]
    was_there = frame["accountnumber"].isin(there)
    shown = second.rows[["status", "code", "message"]]
    assert (statuses[~was_there] == "created").all(), shown[~was_there].to_string()
    assert statuses[was_there].isin(["updated", "unchanged"]).all(), shown[was_there].to_string()
    assert second.ok
    return second


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("kind", "ids", "key"), KEYS, ids=[k[0] for k in KEYS])
def test_push_interrupted_by_an_exception_then_pushed_again(
    wsb: Sandbox, seed: int, kind: str, ids: bool, key: str | None
) -> None:
    rng = random.Random(seed)
    tag = _tag()
    frame = make_frame(tag, N, ids=ids)
    fail_at = rng.randint(1, 6)
    after_send = rng.random() < 0.5  # the service did the work, the answer was lost

    with connect_to(wsb) as conn:
        original = conn.arequest
        writes = 0

        async def arequest(method: str, url: str, **kwargs: Any) -> Any:
            nonlocal writes
            if method == "GET":
                return await original(method, url, **kwargs)
            writes += 1
            if writes == fail_at and not after_send:
                raise RuntimeError("injected: the request never left")
            response = await original(method, url, **kwargs)
            if writes == fail_at:
                raise RuntimeError("injected: the answer was lost")
            return response

        conn.arequest = arequest  # type: ignore[method-assign]
        try:
            first = frame.d365.push("accounts", key=key, conn=conn, batch_size=6, progress=False)
        except Exception as exc:  # an escaping exception is one way to be interrupted
            first = exc
        conn.arequest = original  # type: ignore[method-assign]
        if isinstance(first, PushReport):
            present = set(landed(conn, tag)["accountnumber"])
            created = frame.loc[first.rows["status"].isin(["created", "updated"]), "accountnumber"]
            assert set(created) <= present, "a row reported written is missing"
        _settle(f"exception {kind} {seed}", conn, frame, tag, key=key)


@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize(("kind", "ids", "key"), KEYS, ids=[k[0] for k in KEYS])
def test_push_interrupted_by_ctrl_c_then_pushed_again(
    wsb: Sandbox, seed: int, kind: str, ids: bool, key: str | None
) -> None:
    rng = random.Random(seed)
    tag = _tag()
    frame = make_frame(tag, N, ids=ids)
    with connect_to(wsb) as conn:
        conn.read("accounts", select=["name"], top=1, progress=False)  # metadata, token
        interrupted, _ = interrupt_after(
            rng.uniform(0.1, 0.35),
            lambda: frame.d365.push("accounts", key=key, conn=conn, batch_size=2, progress=False),
        )
        assert interrupted, "the push finished before Ctrl-C"
        finished = False
        _settle(f"ctrl-c {kind} {seed}", conn, frame, tag, key=key, faults=int(not finished))


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_push_in_a_killed_process_then_pushed_again(wsb: Sandbox, seed: int) -> None:
    rng = random.Random(seed)
    tag = _tag()
    job = {
        "info": wsb.info(),
        "tag": tag,
        "n": N,
        "ids": seed % 2 == 1,
        "key": None if seed % 2 == 1 else "accountnumber",
        "batch_size": 3,
    }
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_push_child.py")), json.dumps(job)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # "started": connected, frame built
        assert line.strip() == b"started", child.stderr.read() if child.stderr else line
        time.sleep(rng.uniform(0.2, 0.9))
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL, "the push was killed, not finished"
    frame = make_frame(tag, N, ids=bool(job["ids"]))
    with connect_to(wsb) as conn:
        _settle(f"killed {seed}", conn, frame, tag, key=job["key"])  # type: ignore[arg-type]


def test_push_with_no_key_interrupted_then_pushed_again_reports_rows_already_there(
    wsb: Sandbox,
) -> None:
    """The plainest use: a new frame without ids, `df.d365.push("accounts")`, Ctrl-C, run
    the cell again.  The table has an alternate key on accountnumber, so the service refuses
    second copies; the second report must still say which rows were already there (today:
    `failed`, "Entity Key ... violated", and `report.ok` is False)."""
    tag = _tag()
    frame = make_frame(tag, N, ids=False)
    with connect_to(wsb) as conn:
        conn.read("accounts", select=["name"], top=1, progress=False)
        interrupted, _ = interrupt_after(
            0.4,
            lambda: frame.d365.push(
                "accounts", conn=conn, batch_size=3, parallel=False, progress=False
            ),
        )
        assert interrupted
        _settle("no key, ctrl-c", conn, frame, tag, key=None)


# -- tokens that die or are revoked mid-push ------------------------------------------------


def test_access_token_expiring_mid_push(short: Sandbox) -> None:
    tag = _tag()
    frame = make_frame(tag, 14, ids=False)
    with connect_to(short) as conn:
        began = time.time()
        report = _report(
            frame.d365.push(
                "accounts",
                key="accountnumber",
                conn=conn,
                batch_size=2,
                parallel=False,
                progress=False,
            )
        )
        assert time.time() - began > 2.5, "the push outlived its first token"
        after = landed(conn, tag)
    lost = len(set(frame["accountnumber"]) - set(after["accountnumber"]))
    record(
        AREA,
        "token expiry",
        faults=1,
        operations=1,
        rows_lost=lost,
        duplicates=len(after) - after["accountnumber"].nunique(),
    )
    assert report.ok and (report.rows["status"] == "created").all(), report.rows
    assert lost == 0 and after["accountnumber"].is_unique and len(after) == 14


def test_refresh_token_revoked_mid_push_is_clear_and_nothing_is_half_written(
    short: Sandbox,
) -> None:
    tag = _tag()
    frame = make_frame(tag, 24, ids=False)
    tokens = device_code_tokens(short, "alex")
    with connect_to(short, grant="refresh_token", refresh_token=tokens["refresh_token"]) as conn:
        conn.read("accounts", select=["name"], top=1, progress=False)
        timer = threading.Timer(0.5, short.revoke_refresh_tokens, kwargs={"user": "alex"})
        timer.start()
        try:
            outcome: Any = frame.d365.push(
                "accounts",
                key="accountnumber",
                conn=conn,
                batch_size=2,
                parallel=False,
                progress=False,
            )
        except D365Error as exc:
            outcome = exc
        timer.join()
    with connect_to(short) as reader:
        present = set(landed(reader, tag)["accountnumber"])
        if isinstance(outcome, PushReport):
            status = outcome.rows["status"]
            written = set(frame.loc[status.isin(["created", "updated"]), "accountnumber"])
            failed = outcome.rows[status == "failed"]
            assert len(failed) > 0, "the revoked token stopped the push"
            assert failed["message"].str.contains("AuthError|sign|token", case=False).all()
            assert written <= present, "a row reported written is missing"
            assert (present - written) <= set(frame.loc[failed.index, "accountnumber"]), (
                "only rows whose answer was lost may be there without being reported"
            )
        else:
            assert isinstance(outcome, AuthError), repr(outcome)
        assert tokens["refresh_token"] not in str(
            outcome if not isinstance(outcome, PushReport) else outcome.rows.to_string()
        )
        _settle("revoked refresh token", reader, frame, tag, key="accountnumber")


def test_push_through_connections_cut_after_the_service_answered(wsb: Sandbox) -> None:
    """Every third write's answer is lost after the service did the work: the push sends
    again and settles each row; nothing is created twice, nothing is missing."""
    from tests._support.proxy import Action, Proxy

    from .conftest import through

    tag = _tag()
    frame = make_frame(tag, 30, ids=False)
    with Proxy(wsb) as proxy:
        cuts = 0

        def rule(n: int, method: str, path: str) -> Action | None:
            nonlocal cuts
            if method != "GET" and n % 3 == 0 and cuts < 6:
                cuts += 1
                return Action(cut=True)
            return None

        proxy.rule = rule
        with through(wsb, proxy) as conn:
            report = _report(
                frame.d365.push("accounts", mode="create", conn=conn, batch_size=5, progress=False)
            )
    with connect_to(wsb) as conn:
        after = landed(conn, tag)
    lost = len(set(frame["accountnumber"]) - set(after["accountnumber"]))
    duplicates = len(after) - after["accountnumber"].nunique()
    record(AREA, "cut answers", faults=cuts, operations=1, rows_lost=lost, duplicates=duplicates)
    assert cuts > 0
    assert (lost, duplicates) == (0, 0)
    shown = report.rows[["status", "code", "message"]].to_string()
    assert (report.rows["status"] == "created").all(), shown


def test_push_without_any_key_interrupted_then_pushed_again_creates_no_duplicates(
    wsb: Sandbox,
) -> None:
    """No ids and no alternate-key column: `df.d365.push("accounts")`, Ctrl-C, run the cell
    again.  Every row must end up there once (today the ids are random per run, so the
    rows of the first run are created a second time)."""
    tag = _tag()
    frame = make_frame(tag, N, ids=False).drop(columns=["accountnumber"])
    with connect_to(wsb) as conn:
        conn.read("accounts", select=["name"], top=1, progress=False)
        interrupted, _ = interrupt_after(
            0.4,
            lambda: frame.d365.push(
                "accounts", conn=conn, batch_size=3, parallel=False, progress=False
            ),
        )
        assert interrupted
        first = len(landed(conn, tag))
        frame.d365.push("accounts", conn=conn, batch_size=6, progress=False)
        after = landed(conn, tag)
    lost = len(set(frame["name"]) - set(after["name"]))
    duplicates = len(after) - after["name"].nunique()
    record(
        AREA, "no key at all, ctrl-c", faults=1, operations=2, rows_lost=lost, duplicates=duplicates
    )
    assert 0 < first < N, "the first run was interrupted part-way"
    assert (lost, duplicates) == (0, 0), f"{duplicates} rows created twice"


# -- pushes under service faults ------------------------------------------------------------


@pytest.mark.parametrize(("mode", "key"), [("create", None), ("upsert", "accountnumber")])
def test_push_under_503s_drops_and_429s_lands_every_row_once(
    wsb: Sandbox, mode: str, key: str | None, tmp_path: Path
) -> None:
    tag = _tag()
    frame = make_frame(tag, 30, ids=False)
    client, url = knobs_for(wsb)
    with client:
        original = client.get(url).json()
        client.post(
            url,
            json={
                "fault_503_rate": 0.06,  # each 503 says Retry-After: 1
                "fault_drop_rate": 0.15,
                "fault_seed": 5,
                "max_requests_per_window": 20,
                "window_seconds": 1.0,
                "retry_after_seconds": 1,
            },
        ).raise_for_status()
        try:
            # A cold metadata cache, as before metadata was shared: its requests come
            # first, so the seeded faults land on the push's chunks.
            with connect_to(
                wsb, retry=RetryPolicy(backoff_base=0.05, backoff_cap=0.5), metadata_cache=tmp_path
            ) as conn:
                report = _report(
                    frame.d365.push(
                        "accounts", mode=mode, key=key, conn=conn, batch_size=5, progress=False
                    )
                )
                counters = stats(conn)
        finally:
            client.post(url, json=original).raise_for_status()
            client.delete(url).raise_for_status()
    with connect_to(wsb) as conn:
        after = landed(conn, tag)
    lost = len(set(frame["accountnumber"]) - set(after["accountnumber"]))
    duplicates = len(after) - after["accountnumber"].nunique()
    record(
        AREA,
        f"503/drop/429 {mode}",
        faults=counters.retries + report.requests // 10,
        operations=1,
        rows_lost=lost,
        duplicates=duplicates,
    )
    assert counters.retries > 0, "the push met faults"
    assert (lost, duplicates) == (0, 0)
    shown = report.rows[["status", "code", "message"]].to_string()
    # Every row was new.  An upsert whose answer was lost and that is sent again finds its
    # own first attempt and is told "updated": the service cannot say otherwise.
    expected = ["created"] if mode == "create" else ["created", "updated"]
    assert report.rows["status"].isin(expected).all(), shown
    assert report.ok


def test_push_whose_answers_come_after_the_timeout(wsb: Sandbox) -> None:
    """Writes held past the client's timeout still reach the service (late): the push
    sends them again, and each row still ends up there once, with its values."""
    from tests._support.proxy import Action, Proxy

    from .conftest import through

    tag = _tag()
    frame = make_frame(tag, 24, ids=False)
    with Proxy(wsb) as proxy:
        held = 0

        def rule(n: int, method: str, path: str) -> Action | None:
            nonlocal held
            if method != "GET" and n % 3 == 0 and held < 3:
                held += 1
                return Action(delay=1.0)  # then forwarded: the service does the work late
            return None

        proxy.rule = rule
        with through(wsb, proxy, timeout=0.6) as conn:
            conn.read("accounts", select=["name"], top=1, progress=False)
            report = _report(
                frame.d365.push(
                    "accounts", key="accountnumber", conn=conn, batch_size=4, progress=False
                )
            )
        time.sleep(1.2)  # let the late originals land before looking
    with connect_to(wsb) as conn:
        after = landed(conn, tag)
    lost = len(set(frame["accountnumber"]) - set(after["accountnumber"]))
    duplicates = len(after) - after["accountnumber"].nunique()
    record(
        AREA,
        "answers after the timeout",
        faults=held,
        operations=1,
        rows_lost=lost,
        duplicates=duplicates,
    )
    assert held > 0 and (lost, duplicates) == (0, 0)
    merged = after.set_index("accountnumber").loc[frame["accountnumber"]]
    assert list(merged["name"]) == list(frame["name"])
    shown = report.rows[["status", "code", "message"]].to_string()
    assert report.rows["status"].isin(["created", "updated"]).all(), shown
