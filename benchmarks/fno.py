"""F&O benchmark: a 100k-row read (d365nb vs a plain paging loop vs the wire floor), and the
package API's export vs the OData read of the same rows.

Run from the repository root (the sandbox seeds `--rows` customers across three companies,
about a minute for 100,000, then runs each contender `--reps` times, alternating):

```bash
python -m benchmarks.fno                  # 100,000 customers, 3 repetitions
python -m benchmarks.fno --rows 20000 --reps 1
```

Writes `benchmarks/results-fno.md` (or `--out`).  Contenders:

* **d365nb** - `conn.read("CustomersV3", cross_company=True)`: typed DataFrame, parallel in
  key ranges; and the same with `parallel=False`;
* **plain loop** - httpx, follow `@odata.nextLink`, `json`, `pd.DataFrame(rows)` at the end
  (untyped: enums and dates stay strings);
* **wire floor** - httpx, follow `@odata.nextLink`, `orjson` only (no frame at all);
* **package export** - `conn.export_package("Export-CustomersV3", company=...)` vs
  `conn.read("CustomersV3", company=...)` for the same company.

Wall-clock ratios only; the sandbox runs in its own process but shares the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd

from d365nb.sandbox import Sandbox, start

ENTITY = "CustomersV3"


def _token(sb: Sandbox) -> str:
    root = sb.fno_service_url.removesuffix("/data/")
    response = httpx.post(
        sb.token_uri,
        data={
            "grant_type": "client_credentials",
            "client_id": sb.confidential_client_id,
            "client_secret": sb.client_secret,
            "scope": f"{root}/.default",
        },
        verify=ssl.create_default_context(cafile=sb.ca_cert),
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _pages(sb: Sandbox, parse: Callable[[bytes], Any]) -> list[Any]:
    url: str | None = f"{sb.fno_service_url}{ENTITY}?cross-company=true"
    headers = {"Authorization": f"Bearer {_token(sb)}", "Accept": "application/json"}
    rows: list[Any] = []
    with httpx.Client(
        verify=ssl.create_default_context(cafile=sb.ca_cert), headers=headers, timeout=300
    ) as http:
        while url:
            body = parse(http.get(url).content)
            rows.extend(body["value"])
            url = body.get("@odata.nextLink")
    return rows


def plain_loop(sb: Sandbox) -> int:
    frame = pd.DataFrame(_pages(sb, json.loads))
    return len(frame)


def wire_floor(sb: Sandbox) -> int:
    return len(_pages(sb, orjson.loads))


def d365nb_read(sb: Sandbox, *, parallel: bool) -> int:
    with sb.connect(service="fno") as conn:
        return len(conn.read(ENTITY, cross_company=True, parallel=parallel, progress=False))


def d365nb_company(sb: Sandbox, company: str) -> int:
    with sb.connect(service="fno") as conn:
        return len(conn.read(ENTITY, company=company, progress=False))


def package_export(sb: Sandbox, company: str) -> int:
    with sb.connect(service="fno") as conn:
        package = conn.export_package(f"Export-{ENTITY}", company=company, poll=0.2, progress=False)
        return len(package[ENTITY])


def _run(
    contenders: dict[str, Callable[[], int]], reps: int
) -> tuple[dict[str, list[float]], dict[str, int], dict[str, list[float]]]:
    """Wall-clock and client CPU seconds of each contender (the sandbox runs in its own
    process, so `process_time()` counts the client alone: steadier on a loaded machine)."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    rows: dict[str, int] = {}
    for _ in range(reps):
        for name, run in contenders.items():  # alternating: drifts hit everyone alike
            started, used = time.perf_counter(), time.process_time()
            rows[name] = run()
            times[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - used)
    return times, rows, cpu


def _table(
    title: str,
    measured: tuple[dict[str, list[float]], dict[str, int], dict[str, list[float]]],
    bases: list[str],
) -> str:
    times, rows, cpu = measured
    references = {base: statistics.median(times[base]) for base in bases}
    lines = [
        f"### {title}",
        "",
        "| contender | rows | median s | "
        + " | ".join(f"vs {b}" for b in bases)
        + " | client CPU s |",
        "|---|---|---|" + "---|" * len(bases) + "---|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        ratios = " | ".join(f"{median / references[b]:.2f}x" for b in bases)
        used = statistics.median(cpu[name])
        lines.append(f"| {name} | {rows[name]:,} | {median:.2f} | {ratios} | {used:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results-fno.md")
    parser.add_argument(
        "--scenario", choices=("all", "read", "package"), default="all", help="what to run"
    )
    args = parser.parse_args(argv)
    report = f"# F&O benchmark ({args.rows:,} customers, {args.reps} repetition(s))\n\n"
    with (
        tempfile.TemporaryDirectory() as folder,
        start(
            data_dir=folder,
            database=":memory:",
            rows=10,
            fno=True,
            fno_rows=args.rows,
            subprocess=True,
        ) as sb,
    ):
        if args.scenario in ("all", "read"):
            report += _read_scenario(sb, args.reps)
        if args.scenario in ("all", "package"):
            report += _package_scenario(sb, args.reps)
    args.out.write_text(report, "utf-8")
    print(report)


def _read_scenario(sb: Sandbox, reps: int) -> str:
    """d365nb, parallel and sequential, vs the plain loop and the wire floor."""
    measured = _run(
        {
            "d365nb (parallel key ranges)": lambda: d365nb_read(sb, parallel=True),
            "d365nb (sequential)": lambda: d365nb_read(sb, parallel=False),
            "plain loop (json + DataFrame)": lambda: plain_loop(sb),
            "wire floor (orjson only)": lambda: wire_floor(sb),
        },
        reps,
    )
    assert len(set(measured[1].values())) == 1, measured[1]
    with sb.connect(service="fno") as conn:  # the parallel read equals the sequential one
        parallel = conn.read(ENTITY, cross_company=True, progress=False)
        sequential = conn.read(ENTITY, cross_company=True, parallel=False, progress=False)
    pd.testing.assert_frame_equal(parallel, sequential)
    del parallel, sequential
    return (
        _table(
            f"Read {ENTITY} across companies",
            measured,
            ["plain loop (json + DataFrame)", "wire floor (orjson only)"],
        )
        + "\n"
    )


def _package_scenario(sb: Sandbox, reps: int) -> str:
    """The package export vs the OData read of one company."""
    measured = _run(
        {
            "OData read (usmf)": lambda: d365nb_company(sb, "usmf"),
            "package export (usmf)": lambda: package_export(sb, "usmf"),
        },
        reps,
    )
    assert len(set(measured[1].values())) == 1, measured[1]
    return _table("Package export vs OData read", measured, ["OData read (usmf)"])


if __name__ == "__main__":
    main()
