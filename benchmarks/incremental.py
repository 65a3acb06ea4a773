"""Incremental refresh vs a full re-read: 1 % of 200,000 accounts changed by someone else.

```bash
python -m benchmarks.incremental              # 200,000 accounts, 2,000 changed
python -m benchmarks.incremental --rows 20000 --changed 0.05
```

A tracked read (`track_changes=True`) of a few columns, then another connection updates
1 % of the rows (`UpdateMultiple`), deletes a few and creates a few; then, measured:
`df.d365.refresh()` (the delta link: only the changes) and a full tracked re-read.  Prints
requests, response bytes (each answer's `Content-Length`) and seconds for each way, and
checks that both give the same frame.  One run each, in one process, against a sandbox in
its own process: indicative figures, not the alternating harness of `run.py`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pandas as pd

from d365nb._sync import run_sync
from d365nb.sandbox import start
from d365nb.sandbox._connect import connect_to

__all__ = ["main"]

COLUMNS = ["name", "accountnumber", "revenue", "industrycode", "numberofemployees"]
_seen = {"requests": 0, "bytes": 0}
_original = httpx.AsyncHTTPTransport.handle_async_request


async def _counting(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
    response = await _original(self, request)
    _seen["requests"] += 1
    _seen["bytes"] += int(response.headers.get("content-length", 0))
    return response


def _measure(work: Callable[[], pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, Any]]:
    _seen.update(requests=0, bytes=0)
    begin = time.perf_counter()
    frame = work()
    took = time.perf_counter() - begin
    return frame, {"requests": _seen["requests"], "bytes": _seen["bytes"], "seconds": took}


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    out: pd.DataFrame = df.sort_values("accountid", ignore_index=True)
    out.attrs = {}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the comparison; returns the figures (also printed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of rows updated")
    args = parser.parse_args(argv)
    httpx.AsyncHTTPTransport.handle_async_request = _counting  # type: ignore[method-assign]
    with (
        tempfile.TemporaryDirectory() as data_dir,
        start(subprocess=True, data_dir=data_dir, database=":memory:", rows=args.rows) as sb,
    ):
        conn = connect_to(sb, grant="client_credentials")
        other = connect_to(sb, grant="client_credentials")
        try:
            df = conn.read("accounts", select=COLUMNS, track_changes=True, progress=False)
            rows = len(df)
            n = max(1, int(rows * args.changed))
            rng = np.random.default_rng(18)
            picked = df.iloc[rng.choice(rows, size=n + 20, replace=False)]
            edits = picked.iloc[:n][["accountid"]].copy()
            edits["revenue"] = rng.uniform(1e3, 1e7, size=n).round(2)
            other.push(edits, "accounts", key="accountid", mode="update", progress=False)
            for gone in picked.iloc[n:]["accountid"]:  # 20 deletions
                run_sync(other.arequest("DELETE", f"accounts({gone})"))
            other.push(
                pd.DataFrame({"name": [f"new account {i}" for i in range(20)]}),
                "accounts",
                mode="create",
                progress=False,
            )
            refreshed, incremental = _measure(lambda: df.d365.refresh())
            fresh, full = _measure(
                lambda: conn.read("accounts", select=COLUMNS, track_changes=True, progress=False)
            )
        finally:
            conn.close()
            other.close()
    pd.testing.assert_frame_equal(_sorted(refreshed), _sorted(fresh))
    figures: dict[str, Any] = {
        "rows": rows,
        "changed_rows": n + 40,
        "refresh_requests": incremental["requests"],
        "refresh_bytes": incremental["bytes"],
        "refresh_seconds": round(incremental["seconds"], 3),
        "reread_requests": full["requests"],
        "reread_bytes": full["bytes"],
        "reread_seconds": round(full["seconds"], 3),
        "bytes_ratio": round(incremental["bytes"] / max(full["bytes"], 1), 4),
        "seconds_ratio": round(incremental["seconds"] / max(full["seconds"], 1e-9), 4),
    }
    for key, value in figures.items():
        print(f"{key:>18}: {value:,}")
    return figures


if __name__ == "__main__":
    main()
