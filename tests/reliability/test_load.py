"""Ten reads and pushes at once, from one process and from several, against one sandbox
with tight service-protection limits: no deadlock, nothing lost or doubled, and every
operation completes or fails with a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to
from tests._support.ledger import record

from ._helpers import landed
from ._load import operations

pytestmark = pytest.mark.sandbox

AREA = "reliability/load"
ROWS = 10  # per push


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Realistic limits, scaled to a test: few concurrent requests per user, a small
    window, some latency."""
    with start(
        data_dir=tmp_path_factory.mktemp("load"),
        database=":memory:",
        rows=40,
        latency_ms=15.0,
        max_concurrent_requests=6,
        max_requests_per_window=100,
        window_seconds=2.0,
    ) as sb:
        yield sb


@pytest.fixture(scope="module")
def contacts(busy: Sandbox) -> list[str]:
    with connect_to(busy) as conn:
        frame = conn.read("contacts", select=["fullname"], parallel=False, progress=False)
    return sorted(frame["contactid"].astype(str))


def _judge(
    test: str, busy: Sandbox, outcomes: list[dict[str, Any]], contacts: list[str], tags: list[str]
) -> None:
    errors = [o for o in outcomes if "error" in o]
    unclear = [o for o in errors if not (o.get("hint") and o["error"].endswith("Error"))]
    reads = [o for o in outcomes if o["op"].startswith("read") and "error" not in o]
    wrong_reads = [o["op"] for o in reads if o["ids"] != contacts]
    lost = duplicates = 0
    with connect_to(busy) as conn:
        for tag, outcome in zip(
            tags, [o for o in outcomes if o["op"].startswith("push")], strict=True
        ):
            rows = landed(conn, tag)
            duplicates += len(rows) - rows["accountnumber"].nunique()
            if "error" not in outcome:
                lost += ROWS - rows["accountnumber"].nunique()
    record(
        AREA,
        test,
        operations=len(outcomes),
        rows_lost=lost,
        duplicates=duplicates,
        faults=sum(o.get("retries", 0) for o in outcomes),
    )
    assert unclear == [], unclear
    assert not any(o["error"] == "deadlock" for o in errors)
    assert wrong_reads == [], "a read lost or doubled rows"
    assert (lost, duplicates) == (0, 0)
    pushes = [o for o in outcomes if o["op"].startswith("push") and "error" not in o]
    assert all(p["ok"] and p["counts"]["created"] == ROWS for p in pushes), pushes
    assert len(errors) <= 2, errors  # retries absorb the limits; a rare clear error is allowed
    assert sum(o.get("throttled", 0) for o in outcomes) > 0, "the limits were reached"


def test_ten_reads_and_pushes_at_once_in_one_process(busy: Sandbox, contacts: list[str]) -> None:
    tag = "ld" + uuid.uuid4().hex[:6]
    outcomes = operations({"info": busy.info(), "tag": tag, "reads": 5, "pushes": 5, "rows": ROWS})
    _judge("one process", busy, outcomes, contacts, [f"{tag}p{i}" for i in range(5)])


def test_reads_and_pushes_from_three_processes_at_once(
    busy: Sandbox, contacts: list[str], tmp_path: Path
) -> None:
    jobs = [
        {
            "info": busy.info(),
            "tag": "lp" + uuid.uuid4().hex[:6],
            "reads": 2,
            "pushes": 2,
            "rows": ROWS,
            "barrier": str(tmp_path),
            "parties": 3,
        }
        for _ in range(3)
    ]
    script = str(Path(__file__).with_name("_load_child.py"))
    children = [
        subprocess.Popen(
            [sys.executable, script, json.dumps(job)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        for job in jobs
    ]
    outcomes: list[dict[str, Any]] = []
    tags: list[str] = []
    try:
        for job, child in zip(jobs, children, strict=True):
            out, err = child.communicate(timeout=180)
            assert child.returncode == 0, err.decode()[-2000:]
            outcomes += json.loads(out.decode().strip().splitlines()[-1])
            tags += [f"{job['tag']}p{i}" for i in range(2)]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    _judge("three processes", busy, outcomes, contacts, tags)
