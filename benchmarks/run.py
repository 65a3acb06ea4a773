"""The benchmark runner: ``python -m benchmarks [--quick]``.

Every scenario starts one sandbox (in a child process, so that it does not share the
client's GIL) with fixed knobs, then runs its contenders in alternation (A B C A B C...),
each run in a fresh child process (`benchmarks._jobs`) so that peak memory is that
contender's alone.  The results go to ``results.json`` (every run), ``results.md``
(medians, spreads and ratios to d365nb) and ``results.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _jobs
from ._report import write_chart, write_markdown

HERE = Path(__file__).resolve().parent
READ_CONTENDERS = (
    "d365nb",
    "d365nb-sequential",
    "expert-script",
    "wire-floor",
    "official-sdk",
    "httpx-loop",
)
#: The latency scenario's contenders: d365nb against the strongest alternatives only.
LATENCY_CONTENDERS = ("d365nb", "expert-script", "wire-floor")
#: Lookups the latency scenario selects (d365nb's names, and the wire names scripts use).
LOOKUPS = ("parentaccountid", "primarycontactid")
WRITE_CONTENDERS = ("d365nb", "official-sdk", "httpx-per-row")
SCENARIOS = ("read", "latency", "conversion", "write", "throttled", "growth")


@dataclass
class Config:
    """Sizes, knobs and repetitions of one run of the benchmarks."""

    quick: bool = False
    read_rows: int = 200_000
    read_latency_ms: float = 100.0
    read_reps: int = 5
    dop_hint: int = 4  # the sandbox's x-ms-dop-hint (and so d365nb's ceiling)
    max_concurrent_requests: int = 52  # Dataverse's default
    conversion_reps: int = 5
    write_rows: int = 20_000
    write_per_row_rows: int = 1_000  # the one-PATCH-per-row contender writes a sample
    write_latency_ms: float = 50.0
    write_reps: int = 11  # d365nb and the SDK: runs under 1 s vary by a third on a busy machine
    write_per_row_reps: int = 2  # the one-PATCH-per-row loop (about 55 s a run)
    throttled_rows: int = 50_000
    throttled_window_seconds: float = 5.0
    throttled_max_requests: int = 8
    throttled_max_concurrent: int = 2
    throttled_reps: int = 3
    throttled_contenders: tuple[str, ...] = (
        "d365nb",
        "d365nb-sequential",
        "expert-script",
        "official-sdk",
        "httpx-loop",
    )
    latency_rows: int = 200_000
    latency_ms: float = 300.0
    latency_dops: tuple[int, ...] = (4, 8, 16)
    latency_reps: int = 5  # medians of 3 moved 10% between runs (the floor above the expert)
    cpu_dop: int = 8  # the CPU-bound read: the latency scenario's read, no latency
    growth_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    growth_reps: int = 3
    growth_reps_largest: int = 2
    job_timeout: float = 900.0

    @classmethod
    def quick_config(cls) -> Config:
        return cls(
            quick=True,
            read_rows=12_000,
            read_latency_ms=20.0,
            read_reps=1,
            conversion_reps=2,
            write_rows=300,
            write_per_row_rows=60,
            write_latency_ms=5.0,
            write_reps=1,
            write_per_row_reps=1,
            throttled_rows=30_000,  # 6 pages: more than one window allows, for everyone
            # 3 per 2 s: d365nb now reads it in ~8 requests (2 for cold metadata), so a
            # looser window would not throttle it at all.
            throttled_window_seconds=2.0,
            throttled_max_requests=3,
            throttled_reps=1,
            throttled_contenders=("d365nb", "expert-script", "official-sdk", "httpx-loop"),
            latency_rows=12_000,
            latency_ms=20.0,
            latency_dops=(4, 16),
            latency_reps=1,
            growth_sizes=(2_000, 6_000),
            growth_reps=1,
            growth_reps_largest=1,
            job_timeout=120.0,
        )


@dataclass
class Results:
    config: Config
    machine: dict[str, Any] = field(default_factory=dict)
    scenarios: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.config),
            "machine": self.machine,
            "scenarios": self.scenarios,
            "notes": self.notes,
        }


# -- helpers ------------------------------------------------------------------------------


def _log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median and spread (min, max) of `values`."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - Windows
        return []


def machine_info() -> dict[str, Any]:
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    try:
        import psutil

        memory = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        pass
    versions = {}
    for name in (
        "d365nb",
        "pandas",
        "httpx",
        "orjson",
        "PowerPlatform-Dataverse-Client",
        "azure-identity",
        "uvicorn",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "versions": versions,
        "load_at_start": _load(),
        "started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def start_sandbox(data_dir: Path, **knobs: Any) -> Any:
    """A sandbox in a child process.  A file database that is not seeded yet is seeded in
    this process first: `start(subprocess=True)` gives the child 60 s to print its address,
    and seeding 1M accounts takes longer than that."""
    import d365nb.sandbox

    if knobs.get("database") is None:
        seeded = data_dir / "seeded.json"
        wanted = json.dumps({"rows": knobs.get("rows")})
        if not seeded.exists() or seeded.read_text() != wanted:
            _log(f"seeding {knobs.get('rows'):,} accounts in {data_dir} (once)")
            d365nb.sandbox.start(data_dir=data_dir, rows=knobs.get("rows")).stop()
            seeded.write_text(wanted)
    return d365nb.sandbox.start(data_dir=data_dir, subprocess=True, **knobs)


def _reset_counters(sb: Any) -> None:
    """Forget the service-protection history, so every run starts with a fresh window."""
    import httpx

    context = ssl.create_default_context(cafile=sb.ca_cert)
    with httpx.Client(verify=context, trust_env=False) as client:
        client.delete(f"{sb.base_url}/_sandbox/knobs/").raise_for_status()


def run_job(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one job in a fresh child process; its measurements, or the failure."""
    with tempfile.TemporaryDirectory(prefix="d365nb-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", "benchmarks._jobs", str(spec_path), str(out_path)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {
                "kind": spec["kind"],
                "contender": spec["contender"],
                "error": f"timed out after {timeout:.0f} s",
                "seconds": timeout,
                "rows": 0,
            }
        if proc.returncode != 0 or not out_path.exists():
            return {
                "kind": spec["kind"],
                "contender": spec["contender"],
                "error": f"child exited {proc.returncode}: {proc.stderr[-800:]}",
                "seconds": float("nan"),
                "rows": 0,
            }
        result: dict[str, Any] = json.loads(out_path.read_text())
        return result


def _alternate(
    contenders: Sequence[str],
    reps: int,
    make_spec: Callable[[str, int], dict[str, Any]],
    *,
    before: Callable[[], None] | None,
    timeout: float,
    label: str,
    service: Any = None,
) -> list[dict[str, Any]]:
    """Each contender's job `reps` times, alternated; with `service` (a sandbox running in a
    child process), the CPU seconds that process spent on each job too."""
    service_cpu = _cpu_clock(service)
    runs: list[dict[str, Any]] = []
    for rep in range(reps):
        for contender in contenders:
            if before is not None:
                before()
            spent = service_cpu() if service_cpu is not None else 0.0
            result = run_job(make_spec(contender, rep), timeout)
            if service_cpu is not None:
                result["service_cpu_seconds"] = service_cpu() - spent
            result["rep"] = rep
            runs.append(result)
            state = f"ERROR {result['error']}" if result.get("error") else "ok"
            _log(
                f"{label} rep {rep + 1}/{reps} {contender}: {result.get('seconds', 0):.2f} s, "
                f"{result.get('rows', 0)} rows, {state}"
            )
    return runs


def _cpu_clock(sandbox: Any) -> Callable[[], float] | None:
    """CPU seconds (user + system) the sandbox's own process has used so far; None when it
    runs in a thread of this process, or psutil is missing."""
    process = getattr(sandbox, "_process", None)
    if process is None:
        return None
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is in the bench extra
        return None
    child = psutil.Process(process.pid)

    def clock() -> float:
        times = child.cpu_times()
        return float(times.user + times.system)

    return clock


def _by_contender(runs: list[dict[str, Any]], contenders: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in contenders:
        mine = [r for r in runs if r["contender"] == name]
        ok = [r for r in mine if not r.get("error")]
        entry: dict[str, Any] = {"runs": len(mine), "failures": len(mine) - len(ok)}
        if ok:
            entry["seconds"] = summary([r["seconds"] for r in ok])
            entry["rows_per_s"] = summary([r["rows"] / r["seconds"] for r in ok])
            if "peak_rss" in ok[0]:
                entry["peak_rss_mib"] = summary([r["peak_rss"] / 2**20 for r in ok])
                entry["rss_above_baseline_mib"] = summary(
                    [(r["peak_rss"] - r["baseline_rss"]) / 2**20 for r in ok]
                )
            if "frame_bytes" in ok[0]:
                entry["frame_mib"] = summary([r["frame_bytes"] / 2**20 for r in ok])
            for key in ("cpu_seconds", "service_cpu_seconds"):
                if all(key in r for r in ok):
                    entry[key] = summary([r[key] for r in ok])
            entry["rows"] = sorted({r["rows"] for r in ok})
            entry["fingerprints"] = sorted({str(r.get("fingerprint")) for r in ok})
        out[name] = entry
    base = out.get(contenders[0], {}).get("rows_per_s")
    for name in contenders:
        mine = out[name].get("rows_per_s")
        if base and mine:
            # How many times faster d365nb is than this contender (throughput ratio).
            out[name]["d365nb_speedup"] = base["median"] / mine["median"]
    return out


# -- scenarios ----------------------------------------------------------------------------


def scenario_read(
    cfg: Config, data_root: Path, results: Results, *, read: bool = True, conversion: bool = True
) -> None:
    """200k accounts, 100 ms per request, 5,000-row pages; four contenders.

    The conversion scenario runs on the same sandbox (the same page bodies)."""
    sb = start_sandbox(
        data_root / f"accounts-{cfg.read_rows}",
        rows=cfg.read_rows,
        latency_ms=cfg.read_latency_ms,
        dop_hint=cfg.dop_hint,
        max_concurrent_requests=cfg.max_concurrent_requests,
    )
    try:
        if read:
            _read_contenders(cfg, sb, results)
        if conversion:
            scenario_conversion(cfg, sb, results)
    finally:
        sb.stop()


def _read_contenders(cfg: Config, sb: Any, results: Results) -> None:
    info = sb.info()

    def spec(contender: str, rep: int) -> dict[str, Any]:
        return {"kind": "read", "contender": contender, "sandbox": info}

    runs = _alternate(
        READ_CONTENDERS,
        cfg.read_reps,
        spec,
        before=lambda: _reset_counters(sb),
        service=sb,
        timeout=cfg.job_timeout,
        label="read",
    )
    summary_ = _by_contender(runs, READ_CONTENDERS)
    pages = -(-cfg.read_rows // _jobs.PAGE_SIZE)
    allowed = min(cfg.dop_hint, cfg.max_concurrent_requests)
    ideal = pages * cfg.read_latency_ms / 1000 / allowed
    for entry in summary_.values():
        if "seconds" in entry:
            entry["efficiency"] = ideal / entry["seconds"]["median"]
    results.scenarios["read"] = {
        "rows": cfg.read_rows,
        "latency_ms": cfg.read_latency_ms,
        "page_size": _jobs.PAGE_SIZE,
        "pages": pages,
        "allowed_concurrency": allowed,
        "ideal_seconds": ideal,
        "columns": list(_jobs.READ_COLUMNS),
        "contenders": summary_,
        "runs": runs,
        "identical": _identical(summary_),
    }


def _identical(summary_: dict[str, Any]) -> bool:
    # The wire floor parses nothing, so it has row counts but no fingerprint.
    prints = {
        fp
        for name, entry in summary_.items()
        if name != "wire-floor"
        for fp in entry.get("fingerprints", [])
    }
    rows = {n for entry in summary_.values() for n in entry.get("rows", [])}
    complete = all(entry.get("failures", 1) == 0 for entry in summary_.values())
    return complete and len(prints) == 1 and len(rows) == 1


def scenario_latency(cfg: Config, data_root: Path, results: Results) -> None:
    """Latency-bound reads with lookups selected, at several `x-ms-dop-hint` values:
    d365nb against the expert's script and the wire floor (issue 15's contenders)."""
    by_dop = {str(dop): _latency_at(cfg, data_root, dop) for dop in cfg.latency_dops}
    lo, hi = str(min(cfg.latency_dops)), str(max(cfg.latency_dops))
    speedups: dict[str, float] = {}
    for name in LATENCY_CONTENDERS:
        a = by_dop[lo]["contenders"].get(name, {}).get("seconds")
        b = by_dop[hi]["contenders"].get(name, {}).get("seconds")
        if a and b:
            speedups[name] = a["median"] / b["median"]
    results.scenarios["latency"] = {
        "rows": cfg.latency_rows,
        "latency_ms": cfg.latency_ms,
        "lookups": list(LOOKUPS),
        "dops": list(cfg.latency_dops),
        "by_dop": by_dop,
        "speedup_low_to_high": speedups,
        # The same read with no injected latency: the client's CPU (and the sandbox's,
        # on the same cores) is all there is to wait for.
        "cpu": {
            "dop": cfg.cpu_dop,
            **_latency_at(cfg, data_root, cfg.cpu_dop, latency_ms=0.0, label="cpu-bound"),
        },
    }


def _latency_at(
    cfg: Config,
    data_root: Path,
    dop: int,
    *,
    latency_ms: float | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """One `x-ms-dop-hint` value of the latency scenario (`latency_ms`: another latency)."""
    sb = start_sandbox(
        data_root / f"accounts-{cfg.latency_rows}",
        rows=cfg.latency_rows,
        latency_ms=cfg.latency_ms if latency_ms is None else latency_ms,
        dop_hint=dop,
        max_concurrent_requests=cfg.max_concurrent_requests,
    )
    try:
        info = sb.info()

        def spec(contender: str, rep: int) -> dict[str, Any]:
            names = LOOKUPS if contender.startswith("d365nb") else [f"_{n}_value" for n in LOOKUPS]
            columns = [*_jobs.READ_COLUMNS, *names]
            return {
                "kind": "read",
                "contender": contender,
                "sandbox": info,
                "params": {"columns": columns},
            }

        runs = _alternate(
            LATENCY_CONTENDERS,
            cfg.latency_reps,
            spec,
            before=lambda: _reset_counters(sb),
            service=sb,
            timeout=cfg.job_timeout,
            label=label or f"latency dop {dop}",
        )
    finally:
        sb.stop()
    summary_ = _by_contender(runs, LATENCY_CONTENDERS)
    floor = summary_.get("wire-floor", {}).get("seconds")
    expert = summary_.get("expert-script", {}).get("seconds")
    mine = summary_.get("d365nb", {}).get("seconds")
    return {
        "contenders": summary_,
        "runs": runs,
        "identical": _identical(summary_),
        "of_floor": floor["median"] / mine["median"] if floor and mine else None,
        "vs_expert": mine["median"] / expert["median"] if expert and mine else None,
    }


def capture_pages(sb: Any) -> list[bytes]:
    """Every page body of the read scenario's query, as the service sent it."""
    import httpx

    info = sb.info()
    _reset_counters(sb)
    bodies: list[bytes] = []
    with httpx.Client(
        verify=ssl.create_default_context(cafile=sb.ca_cert), timeout=300, trust_env=False
    ) as client:
        headers = _jobs._odata_headers(_jobs._token(info, client))
        headers["Prefer"] = f"odata.maxpagesize={_jobs.PAGE_SIZE}"
        url: str | None = f"{info['service_url']}accounts?$select={','.join(_jobs.READ_COLUMNS)}"
        while url:
            response = client.get(url, headers=headers)
            response.raise_for_status()
            bodies.append(response.content)
            import orjson

            url = orjson.loads(response.content).get("@odata.nextLink")
    return bodies


def scenario_conversion(cfg: Config, sb: Any, results: Results) -> None:
    """The same page bodies: d365nb's typed FrameBuilder vs orjson + pd.DataFrame."""
    import orjson
    import pandas as pd

    import d365nb.sandbox
    from d365nb._frames import FrameBuilder
    from d365nb._sync import run_sync

    bodies = capture_pages(sb)
    conn = d365nb.sandbox.connect(sb)
    try:
        table = run_sync(conn.catalog.table("account"))
    finally:
        conn.close()

    def typed() -> pd.DataFrame:
        builder = FrameBuilder(table, select=list(_jobs.READ_COLUMNS))
        for body in bodies:
            builder.add_page(orjson.loads(body)["value"])
        return builder.finish()

    def floor() -> pd.DataFrame:
        records: list[dict[str, Any]] = []
        for body in bodies:
            records.extend(orjson.loads(body)["value"])
        return pd.DataFrame(records)

    contenders: dict[str, Callable[[], pd.DataFrame]] = {
        "d365nb-typed": typed,
        "orjson+DataFrame": floor,
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    shapes: dict[str, tuple[int, int]] = {}
    prints: dict[str, str] = {}
    for rep in range(cfg.conversion_reps):
        for name, fn in contenders.items():
            gc.collect()
            wall, proc = time.perf_counter(), time.process_time()
            df = fn()
            times[name].append(time.perf_counter() - wall)
            cpu[name].append(time.process_time() - proc)
            shapes[name] = df.shape
            if rep == 0:
                prints[name] = _jobs.fingerprint(df, _jobs.FINGERPRINT_COLUMNS)
            del df
        _log(
            f"conversion rep {rep + 1}/{cfg.conversion_reps}: "
            + ", ".join(f"{n} {times[n][-1]:.2f} s" for n in contenders)
        )
    rows = sum(len(orjson.loads(b)["value"]) for b in bodies)
    out = {
        name: {
            "seconds": summary(times[name]),
            "cpu_seconds": summary(cpu[name]),
            "shape": list(shapes[name]),
            "fingerprint": prints[name],
        }
        for name in contenders
    }
    # CPU time of this process: robust to other load on the machine; wall time alongside.
    ratio = (
        out["d365nb-typed"]["cpu_seconds"]["median"]
        / out["orjson+DataFrame"]["cpu_seconds"]["median"]
    )
    wall_ratio = (
        out["d365nb-typed"]["seconds"]["median"] / out["orjson+DataFrame"]["seconds"]["median"]
    )
    results.scenarios["conversion"] = {
        "pages": len(bodies),
        "rows": rows,
        "bytes": sum(len(b) for b in bodies),
        "contenders": out,
        "typed_over_floor": ratio,
        "typed_over_floor_wall": wall_ratio,
        "identical": len(set(prints.values())) == 1,
    }


def scenario_write(cfg: Config, data_root: Path, results: Results) -> None:
    """20,000 rows upserted by alternate key (half updates, half creates), then 20,000
    rows created (d365nb and the SDK), 50 ms latency."""
    sb = start_sandbox(
        data_root / "write",
        database=":memory:",
        rows=cfg.write_rows,
        latency_ms=cfg.write_latency_ms,
        dop_hint=cfg.dop_hint,
        max_concurrent_requests=cfg.max_concurrent_requests,
    )
    try:
        info = sb.info()
        results.scenarios["write"] = _write_runs(cfg, sb, info, "upsert", WRITE_CONTENDERS)
        results.scenarios["write"]["creates"] = _write_runs(
            cfg, sb, info, "create", WRITE_CONTENDERS[:2]
        )
        results.scenarios["write"]["reps"] = {
            "d365nb": cfg.write_reps,
            "official-sdk": cfg.write_reps,
            "httpx-per-row": cfg.write_per_row_reps,
        }
    finally:
        sb.stop()


def _write_runs(
    cfg: Config, sb: Any, info: dict[str, Any], mode: str, contenders: Sequence[str]
) -> dict[str, Any]:
    """One write mode's runs, contenders in alternation; `create` writes only new rows."""

    def spec(contender: str, rep: int) -> dict[str, Any]:
        rows = cfg.write_per_row_rows if contender == "httpx-per-row" else cfg.write_rows
        letter = "W" if mode == "upsert" else "C"
        tag = f"{letter}{rep}{WRITE_CONTENDERS.index(contender)}"
        existing = cfg.write_rows if mode == "upsert" else 0
        return {
            "kind": "write",
            "contender": contender,
            "sandbox": info,
            "params": {"rows": rows, "existing": existing, "tag": tag, "mode": mode},
        }

    # The per-row loop (about 55 s a run) alternates with the others for its own
    # (fewer) reps; d365nb and the SDK go on alternating for the rest of theirs.
    slow = min(cfg.write_per_row_reps, cfg.write_reps) if "httpx-per-row" in contenders else 0
    fast = [c for c in contenders if c != "httpx-per-row"]
    label = "write" if mode == "upsert" else "create"
    runs = _alternate(
        contenders,
        slow,
        spec,
        before=lambda: _reset_counters(sb),
        service=sb,
        timeout=cfg.job_timeout,
        label=label,
    )
    more = _alternate(
        fast,
        cfg.write_reps - slow,
        lambda contender, rep: spec(contender, rep + slow),
        before=lambda: _reset_counters(sb),
        service=sb,
        timeout=cfg.job_timeout,
        label=f"{label} (after rep {slow})",
    )
    for run in more:
        run["rep"] += slow
    runs += more
    for run in runs:
        run["complete"] = bool(
            not run.get("error") and run.get("fingerprint") == run.get("expected_fingerprint")
        )
        if not run["complete"] and not run.get("error"):
            run["error"] = "read-back differs from the frame written"
    return {
        "rows": cfg.write_rows,
        "per_row_sample": cfg.write_per_row_rows,
        "latency_ms": cfg.write_latency_ms,
        "mode": mode,
        "contenders": _by_contender(runs, contenders),
        "runs": runs,
        "identical": all(r["complete"] for r in runs),
    }


def scenario_throttled(cfg: Config, data_root: Path, results: Results) -> None:
    """Tight service-protection limits: who gets every row, how fast, after how many 429s."""
    sb = start_sandbox(
        data_root / f"accounts-{cfg.throttled_rows}",
        rows=cfg.throttled_rows,
        window_seconds=cfg.throttled_window_seconds,
        max_requests_per_window=cfg.throttled_max_requests,
        max_concurrent_requests=cfg.throttled_max_concurrent,
        dop_hint=cfg.dop_hint,
    )
    try:
        info = sb.info()

        def spec(contender: str, rep: int) -> dict[str, Any]:
            return {"kind": "read", "contender": contender, "sandbox": info}

        runs = _alternate(
            cfg.throttled_contenders,
            cfg.throttled_reps,
            spec,
            before=lambda: _reset_counters(sb),
            service=sb,
            timeout=cfg.job_timeout,
            label="throttled",
        )
        for run in runs:
            run["complete"] = not run.get("error") and run.get("rows") == cfg.throttled_rows
        out: dict[str, Any] = {}
        for name in cfg.throttled_contenders:
            mine = [r for r in runs if r["contender"] == name]
            ok = [r for r in mine if r["complete"]]
            out[name] = {
                "runs": len(mine),
                "complete": len(ok),
                "seconds": summary([r["seconds"] for r in ok]) if ok else None,
                "throttled": [r.get("throttled") for r in mine],
                "requests": [r.get("requests") for r in mine],
                "errors": sorted({r["error"] for r in mine if r.get("error")}),
                "fingerprints": sorted({str(r.get("fingerprint")) for r in ok}),
            }
        results.scenarios["throttled"] = {
            "rows": cfg.throttled_rows,
            "window_seconds": cfg.throttled_window_seconds,
            "max_requests_per_window": cfg.throttled_max_requests,
            "max_concurrent_requests": cfg.throttled_max_concurrent,
            "contenders": out,
            "runs": runs,
        }
    finally:
        sb.stop()


def scenario_growth(cfg: Config, data_root: Path, results: Results) -> None:
    """d365nb's read time and peak memory at growing sizes (no injected latency)."""
    sizes: dict[str, Any] = {}
    for size in cfg.growth_sizes:
        reps = cfg.growth_reps_largest if size == max(cfg.growth_sizes) else cfg.growth_reps
        sizes[str(size)] = _growth_size(cfg, data_root, size, reps)
    previous: tuple[int, float] | None = None
    for size in sorted(cfg.growth_sizes):
        entry = sizes[str(size)]
        if "seconds" not in entry:
            continue
        seconds = entry["seconds"]["median"]
        entry["us_per_row"] = seconds / size * 1e6
        if previous is not None:
            # Cost of each extra row since the previous size: flat when growth is linear.
            entry["marginal_us_per_row"] = (seconds - previous[1]) / (size - previous[0]) * 1e6
        previous = (size, seconds)
    results.scenarios["growth"] = {"latency_ms": 0, "sizes": sizes}


def _growth_size(cfg: Config, data_root: Path, size: int, reps: int) -> dict[str, Any]:
    sb = start_sandbox(data_root / f"accounts-{size}", rows=size, dop_hint=cfg.dop_hint)
    try:
        info = sb.info()

        def spec(contender: str, rep: int) -> dict[str, Any]:
            return {"kind": "read", "contender": contender, "sandbox": info, "fingerprint": False}

        runs = _alternate(
            ("d365nb",),
            reps,
            spec,
            before=lambda: _reset_counters(sb),
            service=sb,
            timeout=cfg.job_timeout,
            label=f"growth {size}",
        )
    finally:
        sb.stop()
    entry = _by_contender(runs, ("d365nb",))["d365nb"]
    ok = [r for r in runs if not r.get("error")]
    if ok:
        entry["memory_over_frame"] = summary(
            [(r["peak_rss"] - r["baseline_rss"]) / r["frame_bytes"] for r in ok]
        )
    entry["complete"] = all(r.get("rows") == size for r in runs)
    entry["runs_detail"] = runs
    return entry


# -- main ---------------------------------------------------------------------------------


def _notes(results: Results) -> list[str]:
    """Observations that explain the figures, derived from this run's data."""
    notes: list[str] = []
    s = results.scenarios
    throttled = s.get("throttled", {}).get("contenders", {})
    sdk = throttled.get("official-sdk")
    if sdk and sdk["complete"] < sdk["runs"]:
        notes.append(
            "Throttled: the official SDK raises `HttpError` on the first 429 and returns "
            "nothing; it does not retry (its `DataverseConfig.http_retries` is documented as "
            "'reserved for future use'). The plain httpx loop has no retry by design."
        )
    write = s.get("write", {})
    if write:
        for name in ("d365nb", "official-sdk"):
            runs = [r for r in write["runs"] if r["contender"] == name and not r.get("error")]
            if runs:
                notes.append(
                    f"Write: {name} sent {runs[0].get('requests')} Web API requests for "
                    f"{runs[0]['rows']:,} rows (metadata included)."
                )
    read = s.get("read")
    if read:
        notes.append(
            "Read: the ideal assumes the service costs nothing but its injected latency; on "
            "this machine the sandbox's own CPU time (SQLite, row dicts, JSON, TLS) and the "
            "client's share the same 2 cores, so no contender can approach it. "
            "`python -m benchmarks.profile_read` (profile.md) splits the cost."
        )
    return notes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run (default: all of {','.join(SCENARIOS)})",
    )
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the results files")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the sandboxes keep their seeded databases (re-used between runs)",
    )
    parser.add_argument("--reps", type=int, default=None, help="override every repetition count")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config.quick_config() if args.quick else Config()
    if args.reps is not None:
        for name in (
            "read_reps",
            "conversion_reps",
            "write_reps",
            "write_per_row_reps",
            "throttled_reps",
            "growth_reps",
            "growth_reps_largest",
            "latency_reps",
        ):
            setattr(cfg, name, args.reps)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.data_dir is not None:
        data_root = args.data_dir
    else:
        import platformdirs

        data_root = Path(platformdirs.user_cache_dir("d365nb")) / "bench"
    data_root.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    results = Results(config=cfg, machine=machine_info())
    results.machine["command"] = " ".join(
        ["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)]
    )
    started = time.perf_counter()
    if "read" in chosen or "conversion" in chosen:
        scenario_read(
            cfg, data_root, results, read="read" in chosen, conversion="conversion" in chosen
        )
    if "latency" in chosen:
        scenario_latency(cfg, data_root, results)
    if "write" in chosen:
        scenario_write(cfg, data_root, results)
    if "throttled" in chosen:
        scenario_throttled(cfg, data_root, results)
    if "growth" in chosen:
        scenario_growth(cfg, data_root, results)
    results.notes.extend(_notes(results))
    results.machine["load_at_end"] = _load()
    results.machine["duration_s"] = round(time.perf_counter() - started, 1)

    stem = "results-quick" if cfg.quick else "results"
    (args.out / f"{stem}.json").write_text(json.dumps(results.to_json(), indent=1, default=str))
    write_markdown(results.to_json(), args.out / f"{stem}.md", chart=f"{stem}.png")
    write_chart(results.to_json(), args.out / f"{stem}.png")
    _log(f"wrote {args.out / stem}.{{json,md,png}} in {results.machine['duration_s']} s")
    return 0
