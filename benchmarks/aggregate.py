"""Revenue by industry: `conn.aggregate()` on the server vs a full read + pandas groupby.

```bash
python -m benchmarks.aggregate              # 200,000 accounts (past the 50,000-row limit)
python -m benchmarks.aggregate --rows 20000
```

Prints seconds and response bytes (the `Content-Length` of every Web API answer) for each
way, and checks that both give the same figures.  One run each, in one process, against a
sandbox in its own process: indicative figures, not the alternating harness of `run.py`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd

from d365nb.sandbox import start
from d365nb.sandbox._connect import connect_to

__all__ = ["main"]

_received = [0]
_original = httpx.AsyncHTTPTransport.handle_async_request


async def _counting(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
    response = await _original(self, request)
    _received[0] += int(response.headers.get("content-length", 0))
    return response


def _measure(work: Callable[[], pd.DataFrame]) -> tuple[pd.DataFrame, float, int]:
    _received[0] = 0
    begin = time.perf_counter()
    frame = work()
    return frame, time.perf_counter() - begin, _received[0]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the comparison; returns the figures (also printed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args(argv)
    httpx.AsyncHTTPTransport.handle_async_request = _counting  # type: ignore[method-assign]
    named = {"total": ("revenue", "sum"), "n": ("accountid", "count")}
    with (
        tempfile.TemporaryDirectory() as data_dir,
        start(subprocess=True, data_dir=data_dir, database=":memory:", rows=args.rows) as sb,
    ):
        conn = connect_to(sb, grant="client_credentials")
        try:
            conn.read("accounts", top=1, progress=False)  # sign-in and metadata, not timed
            server, server_s, server_bytes = _measure(
                lambda: conn.aggregate("accounts", by="industrycode", **named)
            )

            def full_read() -> pd.DataFrame:
                df = conn.read("accounts", select=["industrycode", "revenue"], progress=False)
                out: pd.DataFrame = df.groupby(
                    "industrycode", dropna=False, observed=True, sort=True
                ).agg(**named)
                return out

            local, local_s, local_bytes = _measure(full_read)
        finally:
            conn.close()
    pd.testing.assert_frame_equal(
        server.sort_index(), local.sort_index(), check_dtype=False, check_index_type=False
    )
    figures = {
        "rows": args.rows,
        "aggregate_seconds": round(server_s, 3),
        "aggregate_bytes": server_bytes,
        "read_groupby_seconds": round(local_s, 3),
        "read_groupby_bytes": local_bytes,
    }
    for key, value in figures.items():
        print(f"{key:>22}: {value:,}")
    return figures


if __name__ == "__main__":
    main()
