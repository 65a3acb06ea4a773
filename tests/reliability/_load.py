"""Reads and pushes run at once, each in its own thread with its own connection."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import d365nb
import d365nb._accessor  # noqa: F401 - registers df.d365
from d365nb import D365Error

from ._helpers import make_frame

DEADLINE = 150.0  # seconds for every operation of one process together


def _connect(info: dict[str, str]) -> d365nb.Connection:
    return d365nb.connect(
        service_url=info["service_url"],
        token_uri=info["token_uri"],
        client_id=info["confidential_client_id"],
        client_secret=info["client_secret"],
        grant="client_credentials",
        verify=info["ca_cert"],
        token_cache=False,
    )


def _seen(conn: d365nb.Connection) -> dict[str, int]:
    """How many 429s and retries this connection's transport met."""
    from ._helpers import stats

    counters = stats(conn)
    return {"throttled": counters.throttled, "retries": counters.retries}


def _read(info: dict[str, str], i: int) -> dict[str, Any]:
    with _connect(info) as conn:
        frame = conn.read(
            "contacts",
            select=["fullname", "emailaddress1"],
            page_size=7,
            parallel=i % 2 == 0 or 3,
            progress=False,
        )
        return {"rows": len(frame), "ids": sorted(frame["contactid"].astype(str)), **_seen(conn)}


def _push(info: dict[str, str], tag: str, n: int) -> dict[str, Any]:
    with _connect(info) as conn:
        report = make_frame(tag, n, ids=False).d365.push(
            "accounts", key="accountnumber", conn=conn, batch_size=5, progress=False
        )
        return {"counts": report.counts, "ok": report.ok, **_seen(conn)}


def operations(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Run `reads` reads and `pushes` pushes at once; an outcome per operation."""
    info, tag = job["info"], job["tag"]
    calls: list[tuple[str, Any]] = [(f"read {i}", (_read, info, i)) for i in range(job["reads"])]
    calls += [(f"push {i}", (_push, info, f"{tag}p{i}", job["rows"])) for i in range(job["pushes"])]
    outcomes: list[dict[str, Any]] = []
    if "barrier" in job:  # several processes: start together, so the limits are reached
        _wait_for_all(Path(job["barrier"]), tag, job["parties"])
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [(name, pool.submit(fn, *args)) for name, (fn, *args) in calls]
        for name, future in futures:
            left = max(0.1, DEADLINE - (time.monotonic() - began))
            try:
                outcomes.append({"op": name, **future.result(timeout=left)})
            except D365Error as exc:
                outcomes.append(
                    {"op": name, "error": type(exc).__name__, "message": str(exc), "hint": exc.hint}
                )
            except TimeoutError:
                outcomes.append({"op": name, "error": "deadlock", "message": "no answer"})
            except Exception as exc:  # anything else is a bug
                outcomes.append(
                    {"op": name, "error": "unexpected " + type(exc).__name__, "message": repr(exc)}
                )
    return outcomes


def _wait_for_all(folder: Path, tag: str, parties: int, *, timeout: float = 60.0) -> None:
    """Mark this process ready in `folder`, then wait until `parties` are (a file barrier:
    under load, processes started at once reach this point seconds apart)."""
    (folder / tag).touch()
    deadline = time.monotonic() + timeout
    while len(list(folder.iterdir())) < parties and time.monotonic() < deadline:
        time.sleep(0.01)
