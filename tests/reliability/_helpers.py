"""Shared helpers: comparing frames (rows lost, duplicates), tokens by plain OAuth, stats."""

from __future__ import annotations

from typing import Any

import pandas as pd

from d365nb._client import Connection
from d365nb._sync import run_sync

KEY = "accountid"


def lost_and_duplicated(
    got: pd.DataFrame, expected: pd.DataFrame, key: str = KEY
) -> tuple[int, int]:
    """Rows of `expected` missing from `got`, and rows of `got` beyond one per key."""
    lost = len(set(expected[key]) - set(got[key]))
    duplicated = len(got) - got[key].nunique()
    return lost, duplicated


def assert_same_frame(got: pd.DataFrame, expected: pd.DataFrame, key: str = KEY) -> None:
    """The same rows and values, whatever the order."""
    pd.testing.assert_frame_equal(
        got.sort_values(key, ignore_index=True), expected.sort_values(key, ignore_index=True)
    )


async def _stats(conn: Connection) -> Any:
    return conn.transport_stats


def stats(conn: Connection) -> Any:
    """The transport counters of the connection's (background-loop) client."""
    return run_sync(_stats(conn))


def make_frame(tag: str, n: int, *, ids: bool) -> pd.DataFrame:
    """`n` new accounts named `<tag> NNN` with account numbers `<tag>-NNN` (and, with
    `ids`, primary ids derived from the tag: the same frame in every process)."""
    import uuid

    frame: pd.DataFrame = pd.DataFrame(
        {
            "name": [f"{tag} {i:03}" for i in range(n)],
            "accountnumber": [f"{tag}-{i:03}" for i in range(n)],
            "revenue": [float(i) * 10 for i in range(n)],
        }
    )
    if ids:
        frame.insert(0, KEY, [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}/{i}")) for i in range(n)])
    return frame


def landed(conn: Connection, tag: str) -> pd.DataFrame:
    """The accounts whose name starts with `tag`, as the service has them now."""
    from d365nb import where

    frame: pd.DataFrame = conn.read(
        "accounts",
        select=["name", "accountnumber", "revenue"],
        filter=where(name__startswith=tag),
        parallel=False,
        progress=False,
    )
    return frame


def interrupt_after(delay: float, work: Any) -> tuple[bool, Any]:
    """Run `work()`, pressing Ctrl-C (`KeyboardInterrupt` in the main thread) after `delay`
    seconds if it is still running.  Returns `(interrupted, result or exception)`.

    The interrupt is delivered at the main thread's next check, so everything after the
    timer may fire sits inside one `try`: a late interrupt never escapes into pytest.
    """
    import _thread
    import threading
    import time

    lock = threading.Lock()
    state = {"running": True, "fired": False}

    def fire() -> None:
        with lock:
            if state["running"]:
                state["fired"] = True
                _thread.interrupt_main()

    timer = threading.Timer(delay, fire)
    result: Any = None
    try:
        timer.start()
        try:
            result = work()
        except Exception as exc:  # e.g. PartialReadError made from the interrupt
            result = exc
        finally:
            with lock:
                state["running"] = False
        if state["fired"]:
            time.sleep(2.0)  # the pending interrupt arrives here at the latest
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
    finally:
        timer.cancel()
        timer.join()
    if isinstance(result, BaseException) and not isinstance(result, KeyboardInterrupt):
        interrupted = interrupted or bool(state["fired"])
    return interrupted, result
