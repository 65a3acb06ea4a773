"""How many requests a push costs: about one per bulk chunk, ids from the answers.

Counted twice: by kind through `Connection.arequest` (the `sent` fixture) and on the
wire through the transport's own count of attempts (retries included).
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any
from urllib.parse import unquote

import pandas as pd
import pytest

from d365nb import _write
from d365nb._batching import BULK_CHUNK, MIN_BULK_CHUNK, UPSERT_CHUNK, chunk_size
from d365nb._client import Connection
from d365nb._exceptions import InvalidFrameError
from d365nb._multipart import MAX_BATCH_OPERATIONS
from d365nb._report import PushPlan, PushReport
from d365nb._sync import run_sync

from .conftest import Knobs

pytestmark = pytest.mark.sandbox

_CREATE = "accounts/Microsoft.Dynamics.CRM.CreateMultiple"
_UPSERT = "accounts/Microsoft.Dynamics.CRM.UpsertMultiple"


def _tag() -> str:
    return "q" + uuid.uuid4().hex[:10]


def _report(result: PushReport | PushPlan) -> PushReport:
    assert isinstance(result, PushReport), result
    return result


async def _attempts(conn: Connection) -> int:
    return int(getattr(conn.transport_stats, "attempts", 0))


async def _limit(conn: Connection) -> int:
    return conn.limiter.limit


async def _throttled(conn: Connection) -> int:
    return int(getattr(conn.transport_stats, "throttled", 0))


def _wire(conn: Connection) -> int:
    """Requests this connection's transport has put on the wire so far."""
    return run_sync(_attempts(conn))


def _warm(conn: Connection) -> None:
    """Metadata fetched before counting: only the push's own requests are counted."""
    run_sync(conn.catalog.table("account"))
    run_sync(conn.catalog.tables())


def _seed(conn: Connection, tag: str, n: int) -> PushReport:
    df = pd.DataFrame(
        {
            "name": [f"{tag} {i:04}" for i in range(n)],
            "accountnumber": [f"{tag}-{i}" for i in range(n)],
        }
    )
    return _report(df.d365.push("accounts", mode="create", conn=conn, progress=False))


def _half_new(tag: str, existing: int, n: int) -> pd.DataFrame:
    """`n` rows by account number, existing and new ones interleaved (even rows exist)."""
    numbers = [f"{tag}-{i // 2}" if i % 2 == 0 else f"{tag}-new-{i}" for i in range(n)]
    assert sum(1 for i in range(n) if i % 2 == 0) == existing
    return pd.DataFrame(
        {
            "accountnumber": numbers,
            "name": [f"{tag} v2 {i:04}" for i in range(n)],
            "revenue": [float(i) for i in range(n)],
        }
    )


def _read(conn: Connection, tag: str) -> pd.DataFrame:
    df = conn.read(
        "accounts",
        select=["accountnumber", "name"],
        filter=f"startswith(name,'{tag}')",
        progress=False,
    )
    return df.set_index("accountnumber")


def test_half_new_upserts_cost_one_lookup_and_one_request_per_chunk(
    conn: Connection, sent: list[tuple[str, str]]
) -> None:
    tag = _tag()
    seeded = _seed(conn, tag, 20)
    _warm(conn)
    df = _half_new(tag, 20, 40)
    sent.clear()
    before = _wire(conn)

    report = _report(
        df.d365.push("accounts", key="accountnumber", conn=conn, batch_size=10, progress=False)
    )
    pushed, wire = list(sent), _wire(conn) - before

    # Exact statuses for interleaved existing and new keys, ids without a read-back.
    expected = ["updated" if i % 2 == 0 else "created" for i in range(40)]
    assert list(report.rows["status"]) == expected, report.rows
    assert list(report.rows["id"][::2]) == list(seeded.rows["id"])
    back = _read(conn, tag)
    assert len(back) == 40
    assert list(back.loc[df["accountnumber"], "accountid"]) == list(report.rows["id"])
    assert list(back.loc[df["accountnumber"], "name"]) == list(df["name"])
    # One look-up for the whole frame, then one request per 10-row chunk: 20 found rows in
    # 2 UpsertMultiple, 20 new ones in 2 CreateMultiple.  Nothing is read back by id.
    kinds = [(m, u.split("?")[0]) for m, u in pushed]
    assert kinds[0] == ("GET", "accounts")
    assert "Microsoft.Dynamics.CRM.In(PropertyName=" in unquote(pushed[0][1])
    assert sorted(kinds[1:]) == [("POST", _CREATE)] * 2 + [("POST", _UPSERT)] * 2
    assert report.requests == 5 == wire


def test_creates_cost_one_request_per_chunk_with_ids_from_the_answer(
    conn: Connection, sent: list[tuple[str, str]]
) -> None:
    tag = _tag()
    _warm(conn)
    df = pd.DataFrame({"name": [f"{tag} {i:03}" for i in range(30)]})
    sent.clear()
    before = _wire(conn)

    report = _report(
        df.d365.push("accounts", mode="create", conn=conn, batch_size=10, progress=False)
    )

    assert list(report.rows["status"]) == ["created"] * 30
    assert sent == [("POST", _CREATE)] * 3
    assert report.requests == 3 == _wire(conn) - before
    back = conn.read("accounts", filter=f"startswith(name,'{tag}')", progress=False)
    assert sorted(back["accountid"]) == sorted(report.rows["id"])


def test_one_lookup_request_per_slice_of_keys(
    conn: Connection, sent: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = _tag()
    _seed(conn, tag, 30)
    _warm(conn)
    monkeypatch.setattr(_write, "LOOKUP_ROWS", 20)  # slices of 20 rows: 3 look-ups for 60
    df = _half_new(tag, 30, 60)
    sent.clear()

    report = _report(
        df.d365.push("accounts", key="accountnumber", conn=conn, batch_size=5, progress=False)
    )

    assert list(report.rows["status"]) == [
        "updated" if i % 2 == 0 else "created" for i in range(60)
    ]
    lookups = [u for m, u in sent if m == "GET"]
    bulk = [u for m, u in sent if m == "POST" and u in (_CREATE, _UPSERT)]
    # Each slice of 20 rows: 10 found (2 UpsertMultiple of 5), 10 new (2 CreateMultiple).
    assert len(lookups) == 3 and len(bulk) == 12 and len(sent) == 15
    assert report.requests == 15


def test_keys_beyond_one_url_are_looked_up_in_one_batch_request(
    conn: Connection, sent: list[tuple[str, str]]
) -> None:
    tag = _tag()
    n = 1200  # about 29 characters per key in the URL: more than one 7,500-character GET
    _seed(conn, tag, n // 2)
    _warm(conn)
    df = _half_new(tag, n // 2, n)
    sent.clear()

    report = _report(df.d365.push("accounts", key="accountnumber", conn=conn, progress=False))

    assert list(report.rows["status"]) == ["updated" if i % 2 == 0 else "created" for i in range(n)]
    keys = [{"accountnumber": k} for k in df["accountnumber"]]
    table = run_sync(conn.catalog.table("account"))
    assert len(_write._lookup_urls(table, ["accountnumber"], keys)) > 1  # beyond one GET
    others = [(m, u) for m, u in sent if u not in (_CREATE, _UPSERT)]
    assert others == [("POST", "$batch")]  # every key in one look-up request
    bulk = len(sent) - 1
    limit = run_sync(_limit(conn))
    # The limiter's slots shared by all 1,200 upserts: found and new keys each in chunks.
    size = chunk_size("UpsertMultiple", None, rows=n, limit=limit)
    assert bulk == 2 * math.ceil((n // 2) / size) <= 2 * math.ceil((n // 2) / MIN_BULK_CHUNK)


def test_throttled_upserts_finish_with_every_row_accounted_for(
    conn: Connection, knobs: Knobs
) -> None:
    tag = _tag()
    _seed(conn, tag, 20)
    _warm(conn)
    before = run_sync(_throttled(conn))
    knobs(max_requests_per_window=2, window_seconds=1, retry_after_seconds=1)
    df = _half_new(tag, 20, 40)

    report = _report(
        df.d365.push("accounts", key="accountnumber", conn=conn, batch_size=5, progress=False)
    )

    throttled = run_sync(_throttled(conn)) - before
    knobs(max_requests_per_window=6000, window_seconds=300)
    assert throttled > 0  # the service did refuse some requests
    assert list(report.rows["status"]) == [
        "updated" if i % 2 == 0 else "created" for i in range(40)
    ]
    back = _read(conn, tag)
    assert list(back.loc[df["accountnumber"], "accountid"]) == list(report.rows["id"])


def test_chunks_follow_the_limiter() -> None:
    # A push too small to fill the limiter's slots with full chunks is cut finer, never
    # below MIN_BULK_CHUNK; one request at a time keeps full chunks.
    assert chunk_size("CreateMultiple", None, rows=20_000, limit=16) == 1250
    assert chunk_size("CreateMultiple", None, rows=20_000, limit=4) == BULK_CHUNK == 5000
    assert chunk_size("UpsertMultiple", None, rows=20_000, limit=4) == UPSERT_CHUNK == 5000
    assert chunk_size("CreateMultiple", None, rows=200_000, limit=4) == BULK_CHUNK
    assert chunk_size("CreateMultiple", None, rows=2_000, limit=4) == 500
    assert chunk_size("UpsertMultiple", None, rows=2_000, limit=16) == MIN_BULK_CHUNK
    assert chunk_size("CreateMultiple", None, rows=20_000, limit=1) == BULK_CHUNK
    assert chunk_size("CreateMultiple", 7, rows=2_000, limit=16) == 7
    assert chunk_size("CreateMultiple", 8000, rows=20_000, limit=16) == 8000
    assert chunk_size("$batch", None, rows=2_000, limit=16) == 250
    # A $batch holds at most 1,000 requests, whatever batch_size asks for bulk actions.
    assert chunk_size("$batch", 8000, rows=20_000, limit=16) == MAX_BATCH_OPERATIONS


def test_parallel_option_sets_the_chunk_size(conn: Connection, sent: list[tuple[str, str]]) -> None:
    tag = _tag()
    _warm(conn)
    df = pd.DataFrame({"name": [f"{tag} {i:03}" for i in range(600)]})
    sent.clear()

    one = _report(
        df.d365.push("accounts", mode="create", conn=conn, parallel=False, progress=False)
    )
    assert sent == [("POST", _CREATE)]  # one at a time: one full chunk
    sent.clear()
    two = _report(df.d365.push("accounts", mode="create", conn=conn, parallel=2, progress=False))

    assert sent == [("POST", _CREATE)] * 2  # two slots: two chunks of 300, side by side
    assert one.counts["created"] == two.counts["created"] == 600


def test_key_lookups_are_answered_while_the_frame_is_planned(
    conn: Connection, sent: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upsert's look-ups go out before its plan is done (`_lookahead`): the plan here
    waits for the first look-up to be sent, which a plan that holds the event loop (or
    comes before the look-ups) would wait for in vain."""
    tag = _tag()
    _seed(conn, tag, 10)
    _warm(conn)
    df = _half_new(tag, 10, 20)
    sent.clear()
    seen_by_plan: list[bool] = []
    plan_push = _write.plan_push

    def planning(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + 20
        while not any(m == "GET" for m, _ in sent) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_by_plan.append(any(m == "GET" for m, _ in sent))
        return plan_push(*args, **kwargs)

    monkeypatch.setattr(_write, "plan_push", planning)
    report = _report(
        df.d365.push("accounts", key="accountnumber", conn=conn, batch_size=5, progress=False)
    )

    assert seen_by_plan == [True]
    assert list(report.rows["status"]) == [
        "updated" if i % 2 == 0 else "created" for i in range(20)
    ]
    # Answered ahead, not asked again by the slice: one look-up, 2 + 2 bulk calls.
    assert [m for m, _ in sent].count("GET") == 1
    assert report.requests == 5 == len(sent)
    assert _read(conn, tag)["name"].str.contains(" v2 ").sum() == 20


def test_an_upsert_the_plan_refuses_sends_its_lookups_and_no_write(
    conn: Connection, sent: list[tuple[str, str]]
) -> None:
    tag = _tag()
    _seed(conn, tag, 4)
    _warm(conn)
    df = _half_new(tag, 4, 8).assign(numberofemployees=["many"] + [1] * 7)
    sent.clear()

    with pytest.raises(InvalidFrameError, match="numberofemployees"):
        df.d365.push("accounts", key="accountnumber", conn=conn, progress=False)

    assert sent and all(m == "GET" for m, _ in sent)  # the look-up went ahead; no write
    assert not _read(conn, tag)["name"].str.contains(" v2 ").any()
    # The connection is whole: the same push, fixed, lands.
    report = _report(
        df.assign(numberofemployees=1).d365.push(
            "accounts", key="accountnumber", conn=conn, progress=False
        )
    )
    assert report.counts["updated"] == 4 and report.counts["created"] == 4


def test_ctrl_c_while_the_lookups_are_out_writes_nothing_and_loses_nothing(
    conn: Connection, sent: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands while the look-ups are on the wire and the frame is being planned: no
    write goes out, every row comes back `unsent`, and the same push then lands whole."""
    import _thread

    from d365nb import PushError

    tag = _tag()
    _seed(conn, tag, 6)
    _warm(conn)
    df = _half_new(tag, 6, 12)
    plan_push = _write.plan_push

    def planning(*args: Any, **kwargs: Any) -> Any:
        _thread.interrupt_main()  # Ctrl-C, as the kernel's Stop button sends it
        time.sleep(1.0)  # the main thread takes it while the push is running
        return plan_push(*args, **kwargs)

    monkeypatch.setattr(_write, "plan_push", planning)
    sent.clear()
    result: Any = None
    try:
        try:
            df.d365.push("accounts", key="accountnumber", conn=conn, progress=False)
        except PushError as exc:
            result = exc
        time.sleep(1.0)  # a late interrupt would arrive here, inside this try
    except KeyboardInterrupt as exc:  # pragma: no cover - only if the push ignored it
        result = exc

    assert isinstance(result, PushError), repr(result)
    report = result.report
    assert len(report.rows) == 12 and set(report.rows["code"]) == {"unsent"}
    assert sent and all(m == "GET" for m, _ in sent)  # the look-up, and no write
    assert not _read(conn, tag)["name"].str.contains(" v2 ").any()
    monkeypatch.setattr(_write, "plan_push", plan_push)
    again = _report(df.d365.push("accounts", key="accountnumber", conn=conn, progress=False))
    assert again.counts["updated"] == 6 and again.counts["created"] == 6
    assert _read(conn, tag)["name"].str.contains(" v2 ").sum() == 12


def test_a_round_trip_looks_up_only_the_rows_it_sends(
    conn: Connection, sent: list[tuple[str, str]]
) -> None:
    """A frame read from the table and pushed back sends only its changed rows: no key
    look-up goes ahead for the whole frame, only the changed row's key is looked up."""
    tag = _tag()
    _seed(conn, tag, 20)
    _warm(conn)
    df = conn.read(
        "accounts",
        select=["accountnumber", "name"],
        filter=f"startswith(name,'{tag}')",
        progress=False,
    ).drop(columns=["_etag"], errors="ignore")
    changed = df.index[3]
    df.loc[changed, "name"] = f"{tag} v2 changed"
    sent.clear()

    report = _report(df.d365.push(key="accountnumber", conn=conn, progress=False))

    assert report.counts["updated"] == 1 and report.counts["unchanged"] == 19
    lookups = [unquote(u) for m, u in sent if m == "GET"]
    assert len(lookups) == 1 and df.loc[changed, "accountnumber"] in lookups[0]
    others = [n for n in df["accountnumber"] if n != df.loc[changed, "accountnumber"]]
    assert not any(f'"{n}"' in lookups[0] for n in others)
