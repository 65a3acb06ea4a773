"""CPU of the typed conversion vs the expert script's untyped parse, on several page shapes.

`python -m benchmarks.conversion_lookups [--rows N] [--reps N] [--shape NAME] [--profile]`

The harness's conversion scenario converts the read's pages (23 columns, no annotations).
This script adds the page shapes a read with lookups sees, where annotations make the
pages larger and the conversion does more work:

| shape | query |
| --- | --- |
| `plain` | the read's 23 columns, no annotations (the harness's pages) |
| `lookups` | the 23 columns and two lookups, `Prefer: odata.include-annotations="*"` |
| `annotated` | every column (no `$select`), `Prefer: odata.include-annotations="*"` |

Contenders, in one process, CPU time (`time.process_time()`) per run, alternated:

* `loads` - `orjson.loads` of every page alone;
* `expert` - the expert script's parse: `orjson.loads` + `pd.DataFrame(page["value"])` per
  page, then one `pd.concat`;
* `typed` - `orjson.loads` + `FrameBuilder.add_page()` per page, then `finish()`.

The page bodies and the table's metadata are captured once from a sandbox seeded like the
read scenario's and cached (pickled) beside the benchmark data
(`~/.cache/d365nb/bench/conversion-<rows>.pkl`).  `--profile` runs pyinstrument on one
`typed` run per shape (pyinstrument must be importable).
"""

from __future__ import annotations

import argparse
import gc
import pickle
import ssl
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from . import _jobs
from .run import LOOKUPS, start_sandbox

SHAPES = ("plain", "lookups", "annotated")


def _queries(service_url: str) -> dict[str, tuple[str, bool]]:
    columns = ",".join(_jobs.READ_COLUMNS)
    lookups = ",".join(f"_{name}_value" for name in LOOKUPS)
    return {
        "plain": (f"{service_url}accounts?$select={columns}", False),
        "lookups": (f"{service_url}accounts?$select={columns},{lookups}", True),
        "annotated": (f"{service_url}accounts", True),
    }


def capture(rows: int, data_root: Path) -> dict[str, Any]:
    """Page bodies of every shape and the account table's metadata, from a sandbox."""
    import httpx

    from d365nb._sync import run_sync
    from d365nb.sandbox._connect import connect_to

    sb = start_sandbox(data_root / f"accounts-{rows}", rows=rows)
    try:
        info = sb.info()
        conn = connect_to(sb)
        try:
            table = run_sync(conn.catalog.table("account"))
        finally:
            conn.close()
        pages: dict[str, list[bytes]] = {}
        context = ssl.create_default_context(cafile=sb.ca_cert)
        with httpx.Client(verify=context, timeout=300, trust_env=False) as client:
            headers = _jobs._odata_headers(_jobs._token(info, client))
            for shape, (url, annotations) in _queries(info["service_url"]).items():
                prefer = f"odata.maxpagesize={_jobs.PAGE_SIZE}"
                if annotations:
                    prefer += ',odata.include-annotations="*"'
                bodies: list[bytes] = []
                next_url: str | None = url
                while next_url:
                    response = client.get(next_url, headers={**headers, "Prefer": prefer})
                    response.raise_for_status()
                    bodies.append(response.content)
                    next_url = orjson.loads(response.content).get("@odata.nextLink")
                pages[shape] = bodies
    finally:
        sb.stop()
    return {"table": table, "pages": pages}


def load(rows: int, data_root: Path) -> dict[str, Any]:
    """The captured pages (from the cache if there)."""
    path = data_root / f"conversion-{rows}.pkl"
    if path.exists():
        with path.open("rb") as fh:
            data: dict[str, Any] = pickle.load(fh)  # noqa: S301 - our own cache file
        return data
    data = capture(rows, data_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(data, fh)
    return data


def contenders(table: Any, bodies: Sequence[bytes], shape: str) -> dict[str, Callable[[], Any]]:
    """The three ways to turn `bodies` into something, by name."""
    from d365nb._frames import FrameBuilder

    select: list[str] | None = list(_jobs.READ_COLUMNS)
    if shape == "lookups":
        select = [*_jobs.READ_COLUMNS, *LOOKUPS]
    elif shape == "annotated":
        select = None

    def loads() -> Any:
        return [orjson.loads(body)["value"] for body in bodies]

    def expert() -> pd.DataFrame:
        frames = [pd.DataFrame(orjson.loads(body)["value"]) for body in bodies]
        return pd.concat(frames, ignore_index=True)

    def typed() -> pd.DataFrame:
        builder = FrameBuilder(table, select=select)
        for body in bodies:
            builder.add_page(orjson.loads(body)["value"])
        return builder.finish()

    return {"loads": loads, "expert": expert, "typed": typed}


def measure(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, list[float]]:
    """CPU seconds of each function, `reps` times, alternated."""
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            gc.collect()
            start = time.process_time()
            result = fn()
            cpu[name].append(time.process_time() - start)
            del result
    return cpu


def profile(fn: Callable[[], Any], shape: str) -> None:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    fn()
    profiler.stop()
    print(f"--- profile of typed, {shape}")
    print(profiler.output_text(unicode=False, color=False, show_all=False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.conversion_lookups")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--shape", action="append", choices=SHAPES)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.data_dir is None:
        import platformdirs

        args.data_dir = Path(platformdirs.user_cache_dir("d365nb")) / "bench"
    data = load(args.rows, args.data_dir)
    print("| shape | pages | MiB | loads CPU s | expert CPU s | typed CPU s | typed / expert |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for shape in args.shape or SHAPES:
        bodies = data["pages"][shape]
        fns = contenders(data["table"], bodies, shape)
        if args.profile:
            profile(fns["typed"], shape)
            continue
        cpu = {name: statistics.median(v) for name, v in measure(fns, args.reps).items()}
        size = sum(len(b) for b in bodies) / 2**20
        print(
            f"| {shape} | {len(bodies)} | {size:.0f} | {cpu['loads']:.2f} | {cpu['expert']:.2f} "
            f"| {cpu['typed']:.2f} | {cpu['typed'] / cpu['expert']:.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
