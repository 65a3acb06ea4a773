"""Counters the reliability and security tests record, and the table they end up in.

Each test records what it injected and what it measured (`record(...)`) *before* it
asserts, so a failing run still shows the bad numbers.  At the end of the session
`write_report()` puts one row per test module into `test-artifacts/reliability.md`.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COLUMNS", "record", "totals", "write_report"]

COLUMNS = (
    "tests",
    "faults",
    "operations",
    "rows_lost",
    "duplicates",
    "lost_updates",
    "leaks",
    "checks",
)


@dataclass
class _Row:
    tests: int = 0
    faults: int = 0
    operations: int = 0
    rows_lost: int = 0
    duplicates: int = 0
    lost_updates: int = 0
    leaks: int = 0
    checks: int = 0


_ROWS: dict[str, _Row] = defaultdict(_Row)
_SEEN: set[tuple[str, str]] = set()
_STARTED = time.monotonic()


def record(
    area: str,
    test: str,
    *,
    faults: int = 0,
    operations: int = 0,
    rows_lost: int = 0,
    duplicates: int = 0,
    lost_updates: int = 0,
    leaks: int = 0,
    checks: int = 0,
) -> None:
    """Add a test's numbers to its area's row (`area`: e.g. `reliability/read faults`)."""
    row = _ROWS[area]
    if (area, test) not in _SEEN and test:
        _SEEN.add((area, test))
        row.tests += 1
    row.faults += faults
    row.operations += operations
    row.rows_lost += rows_lost
    row.duplicates += duplicates
    row.lost_updates += lost_updates
    row.leaks += leaks
    row.checks += checks


def totals() -> dict[str, int]:
    """The sums over every area."""
    return {c: sum(getattr(r, c) for r in _ROWS.values()) for c in COLUMNS}


def write_report(path: Path | None = None, *, outcome: str = "") -> Path | None:
    """Write the table (markdown) to `path` (default `test-artifacts/reliability.md`)."""
    if not _ROWS:
        return None
    path = path or Path(os.environ.get("D365NB_ARTIFACTS", "test-artifacts")) / "reliability.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "| area | scenarios | faults injected | operations run | rows lost | duplicates "
        "| lost updates | leaks | secret checks |"
    )
    lines = [
        "# d365nb reliability and security suite",
        "",
        f"Session outcome: {outcome or 'unknown'}; wall time {time.monotonic() - _STARTED:.0f} s.",
        "",
        header,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for area in sorted(_ROWS):
        r = _ROWS[area]
        lines.append(
            f"| {area} | {r.tests} | {r.faults} | {r.operations} | {r.rows_lost} "
            f"| {r.duplicates} | {r.lost_updates} | {r.leaks} | {r.checks} |"
        )
    t = totals()
    lines.append(
        f"| **total** | {t['tests']} | {t['faults']} | {t['operations']} | {t['rows_lost']} "
        f"| {t['duplicates']} | {t['lost_updates']} | {t['leaks']} | {t['checks']} |"
    )
    lines += [
        "",
        "*faults injected*: 429s, 503s, dropped or cut connections, answers held past the "
        "timeout, restarts, expired or revoked tokens, interrupts, killed processes, forged "
        "tokens and foreign URLs, as counted by the tests (retries seen by the transport "
        "where the sandbox drew the faults).  *rows lost* / *duplicates*: rows of a frame "
        "missing from / doubled in the table or the read after the operation.  *lost "
        "updates*: another writer's change overwritten, or the user's change not written.  "
        "*leaks*: a secret or token found in any output, a request that reached another "
        "host, or a forged token accepted.  *secret checks*: (secret, output) pairs searched.",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
