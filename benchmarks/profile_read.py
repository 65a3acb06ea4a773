"""Where a large d365nb read spends its time: ``python -m benchmarks.profile_read``.

Reads N accounts (default 100,000) from a sandbox in a child process with no injected
latency, and splits the cost:

1. End to end, per read shape (all columns as d365nb asks for them by default, with
   annotations; the benchmark's 23 columns), parallel and sequential: wall time, the client
   process's CPU time and the sandbox process's CPU time.
2. The wire: bytes per row and the sandbox's time per 5,000-row page with d365nb's
   `Prefer: odata.include-annotations` list, with only `lookuplogicalname`, and with none.
3. The client, offline on captured page bodies: `orjson.loads` vs `FrameBuilder` (the rest
   of the client's CPU time is HTTP/TLS/asyncio).
4. The memory `FrameBuilder` holds before and after `finish()`.
5. With ``--py-spy``: the sandbox's hottest functions during a default read (needs py-spy).

Writes ``benchmarks/profile.md`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import _jobs

HERE = Path(__file__).resolve().parent


def _cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _end_to_end(sb: Any, lines: list[str]) -> None:
    import d365nb.sandbox

    pid = sb._process.pid
    conn = d365nb.sandbox.connect(sb)
    try:
        conn.read("accounts", top=10, progress=False)  # token and metadata, not measured
        lines += [
            "| read | wall s | client CPU s | sandbox CPU s | rows/s |",
            "| --- | --- | --- | --- | --- |",
        ]
        for label, options in (
            ("all columns (default), parallel", {}),
            ("all columns (default), sequential", {"parallel": False}),
            ("23 columns, parallel", {"select": list(_jobs.READ_COLUMNS)}),
            ("23 columns, sequential", {"select": list(_jobs.READ_COLUMNS), "parallel": False}),
        ):
            server, client, wall = _cpu(pid), time.process_time(), time.perf_counter()
            df = conn.read("accounts", progress=False, **options)
            wall = time.perf_counter() - wall
            client = time.process_time() - client
            server = _cpu(pid) - server
            lines.append(
                f"| {label} | {wall:.2f} | {client:.2f} | {server:.2f} | {len(df) / wall:,.0f} |"
            )
            print(lines[-1], flush=True)
            del df
    finally:
        conn.close()


def _wire(sb: Any, lines: list[str]) -> list[bytes]:
    """Per-page size and serving time for three annotation choices; returns the default
    read's page bodies (all columns, d365nb's annotations)."""
    import httpx
    import orjson

    from d365nb._readplan import FORMATTED, LOOKUP_TABLE

    _ANNOTATIONS = f"{FORMATTED},{LOOKUP_TABLE}"  # what a read with lookups asks for

    info = sb.info()
    pid = sb._process.pid
    bodies: list[bytes] = []
    lines += [
        "",
        "| page of 5,000 rows, all columns | bytes/row | sandbox CPU ms/page "
        "| wall ms/page | orjson.loads ms/page |",
        "| --- | --- | --- | --- | --- |",
    ]
    with httpx.Client(
        verify=ssl.create_default_context(cafile=sb.ca_cert), timeout=300, trust_env=False
    ) as client:
        headers = _jobs._odata_headers(_jobs._token(info, client))
        for label, annotations in (
            ("d365nb's annotations (FormattedValue + lookups)", _ANNOTATIONS),
            ("lookuplogicalname only", "Microsoft.Dynamics.CRM.lookuplogicalname"),
            ("no annotations", None),
        ):
            prefer = "odata.maxpagesize=5000"
            if annotations:
                prefer += f',odata.include-annotations="{annotations}"'
            url = f"{info['service_url']}accounts"
            server, wall = _cpu(pid), time.perf_counter()
            reps = 3
            for _ in range(reps):
                response = client.get(url, headers={**headers, "Prefer": prefer})
            wall = (time.perf_counter() - wall) / reps
            server = (_cpu(pid) - server) / reps
            parse = time.perf_counter()
            body = orjson.loads(response.content)
            parse = time.perf_counter() - parse
            size = len(response.content) / len(body["value"])
            lines.append(
                f"| {label} | {size:,.0f} | {server * 1000:.0f} | {wall * 1000:.0f} "
                f"| {parse * 1000:.0f} |"
            )
            print(lines[-1], flush=True)
            if annotations == _ANNOTATIONS:
                next_url: str | None = url
                while next_url:
                    page = client.get(next_url, headers={**headers, "Prefer": prefer})
                    bodies.append(page.content)
                    next_url = orjson.loads(page.content).get("@odata.nextLink")
    return bodies


def _client_offline(sb: Any, bodies: list[bytes], lines: list[str]) -> None:
    import orjson

    import d365nb.sandbox
    from d365nb._frames import FrameBuilder
    from d365nb._sync import run_sync

    conn = d365nb.sandbox.connect(sb)
    try:
        table = run_sync(conn.catalog.table("account"))
    finally:
        conn.close()
    parse = time.process_time()
    pages = [orjson.loads(b)["value"] for b in bodies]
    parse = time.process_time() - parse
    build = time.process_time()
    builder = FrameBuilder(table)
    for page in pages:
        builder.add_page(page)
    df = builder.finish()
    build = time.process_time() - build
    rows = sum(len(p) for p in pages)
    lines += [
        "",
        f"Client, offline on the default read's {len(bodies)} page bodies "
        f"({sum(map(len, bodies)) / 2**20:.0f} MiB, {rows:,} rows, {len(df.columns)} columns):",
        "",
        "| step | CPU s | us/row |",
        "| --- | --- | --- |",
        f"| orjson.loads | {parse:.2f} | {parse / rows * 1e6:.1f} |",
        f"| FrameBuilder.add_page + finish | {build:.2f} | {build / rows * 1e6:.1f} |",
    ]
    print("\n".join(lines[-4:]), flush=True)


def _memory(sb: Any, lines: list[str]) -> None:
    """Resident memory held by `FrameBuilder` before and after `finish()` (23 columns)."""
    import gc

    import httpx
    import orjson

    import d365nb.sandbox
    from d365nb._frames import FrameBuilder
    from d365nb._sync import run_sync

    info = sb.info()
    conn = d365nb.sandbox.connect(sb)
    try:
        table = run_sync(conn.catalog.table("account"))
    finally:
        conn.close()
    bodies: list[bytes] = []
    with httpx.Client(
        verify=ssl.create_default_context(cafile=sb.ca_cert), timeout=300, trust_env=False
    ) as client:
        headers = _jobs._odata_headers(_jobs._token(info, client))
        headers["Prefer"] = f"odata.maxpagesize={_jobs.PAGE_SIZE}"
        url: str | None = f"{info['service_url']}accounts?$select={','.join(_jobs.READ_COLUMNS)}"
        while url:
            response = client.get(url, headers=headers)
            bodies.append(response.content)
            url = orjson.loads(response.content).get("@odata.nextLink")
    gc.collect()
    base = _jobs.rss_bytes()
    builder = FrameBuilder(table, select=list(_jobs.READ_COLUMNS))
    for body in bodies:
        builder.add_page(orjson.loads(body)["value"])
    gc.collect()
    chunks = _jobs.rss_bytes() - base
    df = builder.finish()
    gc.collect()
    finished = _jobs.rss_bytes() - base
    frame = int(df.memory_usage(deep=True).sum())
    mib = 2**20
    lines += [
        "",
        f"Memory of the typed conversion, 23 columns, {len(df):,} rows (RSS above the "
        "process before the first page; the page bodies themselves excluded):",
        "",
        "| point | MiB | x the final frame |",
        "| --- | --- | --- |",
        f"| after every add_page (chunks held) | {chunks / mib:.0f} | {chunks / frame:.2f} |",
        f"| after finish() (chunks + frame) | {finished / mib:.0f} | {finished / frame:.2f} |",
        f"| the DataFrame (deep) | {frame / mib:.0f} | 1.00 |",
    ]
    print("\n".join(lines[-5:]), flush=True)


def _py_spy(sb: Any, lines: list[str], top: int) -> None:
    import d365nb.sandbox

    conn = d365nb.sandbox.connect(sb)
    try:
        conn.read("accounts", top=10, progress=False)
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "server.txt"
            spy = subprocess.Popen(
                [
                    _py_spy_path(),
                    "record",
                    "--pid",
                    str(sb._process.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "--nonblocking",
                    "-o",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
            conn.read("accounts", progress=False)
            time.sleep(0.5)
            spy.send_signal(2)
            spy.wait(timeout=60)
            own, inclusive, total = _collapse(raw.read_text())
    finally:
        conn.close()
    lines += [
        "",
        f"Sandbox process during a default read (py-spy, {total} samples of busy threads):",
        "",
        "| self % | function |",
        "| --- | --- |",
    ]
    lines += [f"| {n / total:.1%} | `{f}` |" for f, n in own.most_common(top)]
    lines += ["", "| inclusive % | function |", "| --- | --- |"]
    lines += [
        f"| {n / total:.1%} | `{f}` |"
        for f, n in inclusive.most_common(top * 3)
        if "d365nb/" in f or "orjson" in f or "ssl" in f.lower()
    ][:top]


def _py_spy_path() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else (shutil.which("py-spy") or "py-spy")


def _collapse(text: str) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [
            re.sub(r"\(/.*?/(site-packages|python3\.\d+|main)/", "(", f) for f in stack.split(";")
        ]
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return own, inclusive, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_read")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--py-spy", action="store_true", help="sample the sandbox with py-spy")
    parser.add_argument("--out", type=Path, default=HERE / "profile.md")
    args = parser.parse_args(argv)
    if args.data_dir is None:
        import platformdirs

        args.data_dir = Path(platformdirs.user_cache_dir("d365nb")) / "bench"
    import d365nb.sandbox

    from .run import machine_info

    machine = machine_info()
    lines = [
        f"# Profile of a {args.rows:,}-row read",
        "",
        "Generated by `python -m benchmarks.profile_read"
        + (" --py-spy" if args.py_spy else "")
        + f"`; sandbox in a child process, no injected latency. Machine: {machine['cpu']}, "
        f"{machine['cores']} cores, load average at start {machine['load_at_start']}.",
        "",
    ]
    sb = d365nb.sandbox.start(
        data_dir=args.data_dir / f"accounts-{args.rows}", rows=args.rows, subprocess=True
    )
    try:
        memory: list[str] = []
        _memory(sb, memory)  # first, while this process has not allocated much yet
        _end_to_end(sb, lines)
        bodies = _wire(sb, lines)
        _client_offline(sb, bodies, lines)
        del bodies
        lines += memory
        if args.py_spy:
            _py_spy(sb, lines, 15)
    finally:
        sb.stop()
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
