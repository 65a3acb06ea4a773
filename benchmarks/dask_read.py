"""Dask read benchmark: `conn.read()` vs `d365nb.dask.read()` on 1 and 2 worker processes.

```bash
python -m benchmarks.dask_read                      # 1,000,000 accounts (seeded once, ~1 min)
python -m benchmarks.dask_read --rows 200000 --out results-dask.json
```

One sandbox in its own process (100 ms latency per request, 5,000-row pages,
`x-ms-dop-hint` 4), then, in turn:

* `conn.read` - the single-machine engine in this process (parallel `createdon` ranges);
* `dask-1w` - `d365nb.dask.read()` on a LocalCluster of 1 worker process x 4 threads;
* `dask-2w` - the same on 2 worker processes x 2 threads (the same 4 partition reads at
  once, the same request budget: only the processes differ);
* `throttled` - `conn.read` and `dask-2w` again with a request window the read outlasts
  (service-protection 429s), to show that every row arrives and what the pause costs.

For the Dask contenders two times are given: `persist` (every partition read and held by
the workers: the scale-out case, where the next step runs there) and `compute` (plus
gathering the whole frame into this process).  CPU seconds of the sandbox, the workers
and this process show where the time goes.  Every result is checked against
`conn.read()`'s rows (same ids, same count).  No figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_cpu() -> float:
    return time.process_time()


class _Meter:
    """Wall time and the CPU seconds each process spent during one run."""

    def __init__(self, sandbox_pid: int, client: Any | None) -> None:
        self.sandbox_pid = sandbox_pid
        self.client = client

    def _workers(self) -> float:
        if self.client is None:
            return 0.0
        return float(sum(self.client.run(_worker_cpu).values()))

    def run(self, work: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
        sandbox, workers, own = _cpu_of(self.sandbox_pid), self._workers(), time.process_time()
        started = time.perf_counter()
        result = work()
        wall = time.perf_counter() - started
        return result, {
            "seconds": wall,
            "cpu_sandbox": _cpu_of(self.sandbox_pid) - sandbox,
            "cpu_workers": self._workers() - workers,
            "cpu_client": time.process_time() - own,
        }


def _throttled(conn: Any) -> int:
    """429s the connection's transport has met so far (this process's event loop)."""
    from d365nb._sync import run_sync

    async def count() -> int:
        return int(conn.transport_stats.throttled)

    return run_sync(count)


def _ids(frame: pd.DataFrame) -> np.ndarray[Any, Any]:
    return np.sort(frame["accountid"].to_numpy(dtype=str))


def _dask_runs(
    conn: Any, meter: _Meter, expected: np.ndarray[Any, Any], name: str
) -> list[dict[str, Any]]:
    import d365nb.dask

    client = meter.client
    runs = []

    def persist() -> Any:
        ddf = d365nb.dask.read("accounts", conn=conn).persist()
        from distributed import wait

        wait(ddf)
        return ddf

    ddf, persisted = meter.run(persist)
    frame, computed = meter.run(ddf.compute)
    from d365nb.dask._budget import gate_stats

    throttled = sum(
        stats["throttled"] for per in client.run(gate_stats).values() for stats in per.values()
    )
    runs.append(
        {
            "contender": name,
            "rows": len(frame),
            "partitions": ddf.npartitions,
            "same_rows": bool(np.array_equal(_ids(frame), expected)),
            "persist": persisted,
            "compute": {k: persisted[k] + computed[k] for k in persisted},
            "throttled": throttled,
        }
    )
    del frame, ddf
    client.cancel(list(client.futures))
    return runs


def _cluster(workers: int, threads: int) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        dashboard_address=None,
        memory_limit=0,
        env={"PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())},
    )
    return cluster, Client(cluster)


def _reset_gates(client: Any) -> None:
    def clear() -> None:
        from d365nb.dask import _budget

        for gate in list(_budget._GATES.values()):
            gate.stats = _budget.GateStats()

    client.run(clear)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    import d365nb.sandbox

    data_dir = Path(args.data_dir).expanduser() / f"accounts-{args.rows}"
    seeded = time.perf_counter()
    d365nb.sandbox.start(data_dir=data_dir, rows=args.rows).stop()  # seeds once, then reuses
    seed_seconds = time.perf_counter() - seeded
    sb = d365nb.sandbox.start(
        data_dir=data_dir,
        rows=args.rows,
        subprocess=True,
        latency_ms=args.latency_ms,
        dop_hint=4,
    )
    knobs_url = f"{sb.base_url}/_sandbox/knobs/"
    http = httpx.Client(verify=sb.ca_cert, trust_env=False, timeout=60)
    original = http.get(knobs_url).json()
    assert sb._process is not None
    sandbox_pid = sb._process.pid
    results: dict[str, Any] = {
        "rows": args.rows,
        "latency_ms": args.latency_ms,
        "seed_seconds": seed_seconds,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "load_at_start": list(os.getloadavg()),
        "runs": [],
    }
    conn = sb.connect(token_cache=False)
    try:
        meter = _Meter(sandbox_pid, None)
        http.delete(knobs_url)
        frame, single = meter.run(lambda: conn.read("accounts", progress=False))
        expected = _ids(frame)
        results["runs"].append(
            {"contender": "conn.read", "rows": len(frame), "same_rows": True, "compute": single}
        )
        del frame
        for name, workers, threads in (("dask-1w", 1, 4), ("dask-2w", 2, 2)):
            started = time.perf_counter()
            cluster, client = _cluster(workers, threads)
            try:
                results[f"{name}_cluster_start_seconds"] = time.perf_counter() - started
                for _ in range(args.reps):
                    http.delete(knobs_url)
                    _reset_gates(client)
                    results["runs"] += _dask_runs(conn, _Meter(sandbox_pid, client), expected, name)
                if name == "dask-2w":
                    # Throttled: a request window the read outlasts (about 240 requests).
                    limits = {"max_requests_per_window": args.window_requests, "window_seconds": 10}
                    http.post(knobs_url, json=limits).raise_for_status()
                    http.delete(knobs_url)
                    _reset_gates(client)
                    results["runs"] += _dask_runs(
                        conn, _Meter(sandbox_pid, client), expected, "throttled dask-2w"
                    )
                    http.delete(knobs_url)
                    before = _throttled(conn)
                    frame, slow = _Meter(sandbox_pid, None).run(
                        lambda: conn.read("accounts", progress=False)
                    )
                    results["runs"].append(
                        {
                            "contender": "throttled conn.read",
                            "rows": len(frame),
                            "same_rows": bool(np.array_equal(_ids(frame), expected)),
                            "compute": slow,
                            "throttled": _throttled(conn) - before,
                        }
                    )
                    del frame
                    http.post(knobs_url, json=original).raise_for_status()
            finally:
                client.close()
                cluster.close()
    finally:
        conn.close()
        http.close()
        sb.stop()
    results["load_at_end"] = list(os.getloadavg())
    return results


def markdown(results: dict[str, Any]) -> str:
    """The runs as a Markdown table (seconds, rows/s, speed-up over conn.read, CPU)."""
    base = next(r for r in results["runs"] if r["contender"] == "conn.read")["compute"]["seconds"]
    lines = [
        f"{results['rows']:,} accounts, {results['latency_ms']:.0f} ms latency per request, "
        f"{results['machine']}; load at start {results['load_at_start'][0]:.1f}.",
        "",
        "| contender | to | seconds | rows/s | vs conn.read | CPU s sandbox / workers / "
        "client | 429s | same rows |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["runs"]:
        for stage in ("persist", "compute"):
            if stage not in r:
                continue
            m = r[stage]
            where = "workers" if stage == "persist" else "this process"
            lines.append(
                f"| {r['contender']} | {where} | {m['seconds']:.1f} | "
                f"{r['rows'] / m['seconds']:,.0f} | {base / m['seconds']:.2f}x | "
                f"{m['cpu_sandbox']:.0f} / {m['cpu_workers']:.0f} / {m['cpu_client']:.0f} | "
                f"{r.get('throttled', 0) or 0} | {'yes' if r['same_rows'] else 'NO'} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument(
        "--window-requests",
        type=int,
        default=80,
        help="requests per 10-second window in the throttled case",
    )
    parser.add_argument(
        "--data-dir",
        default=os.path.join("~", ".cache", "d365nb", "bench"),
        help="where the seeded sandbox databases live (reused between runs)",
    )
    parser.add_argument("--out", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    results = run(args)
    print(markdown(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
