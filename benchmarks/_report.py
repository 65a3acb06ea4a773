"""`results.md` and `results.png` from the results of a run (the dict in `results.json`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_READ_COLUMNS_HINT = range(23)  # the read scenario's column count (benchmarks._jobs)

#: The targets of issues 10 and 15, checked against the measured figures.
TARGETS = {
    "latency_of_floor": 0.85,  # d365nb >= 85 % of the wire floor (latency-bound, dop >= 8)
    "latency_vs_expert": 1.1,  # and no slower than 1.1x the expert script
    "dop_speedup_of_floor": 0.8,  # dop 4 -> 16 speed-up >= 0.8x the wire floor's
    "cpu_vs_expert": 1.2,  # no latency: typed d365nb <= 1.2x the expert script
    "throttled_vs_expert": 1.2,  # throttled: every row, <= 1.2x the expert script
    "read_vs_sdk": 3.0,
    "read_vs_loop": 3.0,
    "read_efficiency": 0.70,
    "conversion_ratio": 1.5,
    "write_vs_per_row": 20.0,
    "write_vs_sdk": 1.0,
    "memory_over_frame": 2.0,
}


def _spread(entry: dict[str, float] | None, fmt: str = "{:.2f}") -> str:
    if not entry:
        return "-"
    text = fmt.format(entry["median"])
    if entry.get("n", 1) > 1:
        text += f" ({fmt.format(entry['min'])}-{fmt.format(entry['max'])})"
    return text


def _met(ok: bool | None) -> str:
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**missed**"


def _median(entry: dict[str, float] | None) -> str:
    return "-" if not entry else f"{entry['median']:.2f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def target_checks(data: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, verdict text, met) rows."""
    s = data["scenarios"]
    rows: list[tuple[str, str, str, bool | None]] = []
    read = s.get("read", {}).get("contenders", {})
    for name, label, key in (
        ("official-sdk", "Read: d365nb >= 3x faster than the official SDK", "read_vs_sdk"),
        ("httpx-loop", "Read: d365nb >= 3x faster than the plain httpx loop", "read_vs_loop"),
    ):
        value = read.get(name, {}).get("d365nb_speedup")
        ok = None if value is None else value >= TARGETS[key]
        rows.append((label, _ratio(value), _met(ok), ok))
    eff = read.get("d365nb", {}).get("efficiency")
    ok = None if eff is None else eff >= TARGETS["read_efficiency"]
    rows.append(
        (
            "Read: d365nb >= 70% of the concurrency-limited ideal",
            "-" if eff is None else f"{eff:.0%}",
            _met(ok),
            ok,
        )
    )
    lat = s.get("latency", {})
    for dop, entry in sorted(lat.get("by_dop", {}).items(), key=lambda kv: int(kv[0])):
        if int(dop) < 8:
            continue
        of_floor, vs_expert = entry.get("of_floor"), entry.get("vs_expert")
        ok = None if of_floor is None else of_floor >= TARGETS["latency_of_floor"]
        rows.append(
            (
                f"Latency-bound read, dop {dop}: d365nb >= 85% of the wire floor",
                "-" if of_floor is None else f"{of_floor:.0%}",
                _met(ok),
                ok,
            )
        )
        ok = None if vs_expert is None else vs_expert <= TARGETS["latency_vs_expert"]
        rows.append(
            (
                f"Latency-bound read, dop {dop}: d365nb <= 1.1x the expert script's time",
                _ratio(vs_expert),
                _met(ok),
                ok,
            )
        )
    speed = lat.get("speedup_low_to_high", {})
    if "d365nb" in speed and "wire-floor" in speed:
        value = speed["d365nb"] / speed["wire-floor"]
        ok = value >= TARGETS["dop_speedup_of_floor"]
        rows.append(
            (
                "Latency-bound read: dop speed-up >= 0.8x the wire floor's",
                f"{speed['d365nb']:.2f}x vs {speed['wire-floor']:.2f}x ({value:.2f})",
                _met(ok),
                ok,
            )
        )
    cpu = lat.get("cpu") or {}
    if cpu.get("vs_expert") is not None:
        ok = cpu["vs_expert"] <= TARGETS["cpu_vs_expert"]
        rows.append(
            (
                f"CPU-bound read (no latency, dop {cpu['dop']}): d365nb <= 1.2x the expert "
                "script's time",
                _ratio(cpu["vs_expert"]),
                _met(ok),
                ok,
            )
        )
    read_expert = read.get("expert-script", {}).get("seconds")
    read_mine = read.get("d365nb", {}).get("seconds")
    if read_expert and read_mine:
        value = read_mine["median"] / read_expert["median"]
        ok = value <= TARGETS["cpu_vs_expert"]
        rows.append(
            (
                "Read (100 ms): d365nb's time <= 1.2x the expert script's",
                _ratio(value),
                _met(ok),
                ok,
            )
        )
    thr_all = s.get("throttled", {}).get("contenders", {})
    t_mine, t_expert = thr_all.get("d365nb", {}), thr_all.get("expert-script", {})
    if t_mine.get("seconds") and t_expert.get("seconds"):
        value = t_mine["seconds"]["median"] / t_expert["seconds"]["median"]
        ok = value <= TARGETS["throttled_vs_expert"] and t_mine["complete"] == t_mine["runs"]
        rows.append(
            (
                "Throttled read: every row, d365nb's time <= 1.2x the expert script's",
                _ratio(value),
                _met(ok),
                ok,
            )
        )
    conv = s.get("conversion", {}).get("typed_over_floor")
    ok = None if conv is None else conv <= TARGETS["conversion_ratio"]
    rows.append(("Conversion: typed <= 1.5x the untyped floor", _ratio(conv), _met(ok), ok))
    write = s.get("write", {}).get("contenders", {})
    for name, label, key in (
        ("httpx-per-row", "Write: d365nb >= 20x one request per row", "write_vs_per_row"),
        ("official-sdk", "Write (upserts): d365nb >= 1.0x the official SDK", "write_vs_sdk"),
    ):
        value = write.get(name, {}).get("d365nb_speedup")
        if write.get("d365nb", {}).get("failures"):
            value = None
        ok = None if value is None else value >= TARGETS[key]
        rows.append((label, _ratio(value), _met(ok), ok))
    created = s.get("write", {}).get("creates", {}).get("contenders", {})
    value = created.get("official-sdk", {}).get("d365nb_speedup")
    if created.get("d365nb", {}).get("failures"):
        value = None
    if created:
        ok = None if value is None else value >= TARGETS["write_vs_sdk"]
        rows.append(
            ("Write (creates): d365nb >= 1.0x the official SDK", _ratio(value), _met(ok), ok)
        )
    thr = s.get("throttled", {}).get("contenders", {}).get("d365nb")
    if thr:
        ok = thr["complete"] == thr["runs"]
        rows.append(
            (
                "Throttled: d365nb returns every row every time",
                f"{thr['complete']}/{thr['runs']} runs complete",
                _met(ok),
                ok,
            )
        )
    else:
        rows.append(("Throttled: d365nb returns every row every time", "-", _met(None), None))
    growth = s.get("growth", {}).get("sizes", {})
    if growth:
        largest = max(growth, key=int)
        mem = growth[largest].get("memory_over_frame")
        ok = None if mem is None else mem["median"] <= TARGETS["memory_over_frame"]
        rows.append(
            (
                f"Memory: peak RSS above baseline <= 2x the frame ({int(largest):,} rows)",
                _ratio(mem["median"] if mem else None),
                _met(ok),
                ok,
            )
        )
    return rows


def write_markdown(data: dict[str, Any], path: Path, *, chart: str) -> None:
    m = data["machine"]
    cfg = data["config"]
    s = data["scenarios"]
    out: list[str] = []
    add = out.append
    title = "quick smoke run" if cfg["quick"] else "full run"
    add(f"# d365nb benchmarks ({title})")
    add("")
    add("Generated by `benchmarks/run.py`; do not edit by hand. Times are wall-clock seconds,")
    add("shown as median (min-max) over the repetitions; every contender ran in alternation")
    add("against one sandbox per scenario, each run in a fresh child process. Ratios are")
    add("d365nb's throughput divided by the contender's (how many times faster d365nb is).")
    add("")
    add(f"- Command: `{m.get('command')}` (from the repository root)")
    add(f"- Started: {m.get('started')}; took {m.get('duration_s')} s")
    add(
        f"- Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB; "
        f"{m.get('platform')}; Python {m.get('python')}"
    )
    add(
        f"- Load average (1, 5, 15 min) at start {m.get('load_at_start')}, at end "
        f"{m.get('load_at_end')} (the machine was shared with other work)"
    )
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    add(f"- Versions: {versions}")
    add("- The sandbox runs in its own process (`start(subprocess=True)`), on the same cores.")
    add("")
    add(f"![results]({chart})")
    add("")
    add("## Targets")
    add("")
    add("| target | measured | verdict |")
    add("| --- | --- | --- |")
    for label, measured, verdict, _ in target_checks(data):
        add(f"| {label} | {measured} | {verdict} |")
    add("")

    if "read" in s:
        r = s["read"]
        add("## Read")
        add("")
        add(
            f"{r['rows']:,} accounts, {len(r['columns'])} columns of mixed types, "
            f"{r['latency_ms']:g} ms injected latency per request, {r['page_size']:,}-row "
            f"pages, x-ms-dop-hint {r['allowed_concurrency']}. Ideal time = {r['pages']} pages "
            f"x {r['latency_ms']:g} ms / {r['allowed_concurrency']} = "
            f"{r['ideal_seconds']:.2f} s. Same data from every contender: "
            f"**{'yes' if r['identical'] else 'NO'}**."
        )
        add("")
        add(
            "| contender | seconds | rows/s | d365nb speed-up | efficiency vs ideal "
            "| peak RSS MiB | RSS above baseline MiB | frame MiB | failures |"
        )
        add("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, e in r["contenders"].items():
            add(
                f"| {name} | {_spread(e.get('seconds'))} "
                f"| {_spread(e.get('rows_per_s'), '{:,.0f}')} "
                f"| {_ratio(e.get('d365nb_speedup'))} "
                f"| {'-' if 'efficiency' not in e else format(e['efficiency'], '.0%')} "
                f"| {_spread(e.get('peak_rss_mib'), '{:.0f}')} "
                f"| {_spread(e.get('rss_above_baseline_mib'), '{:.0f}')} "
                f"| {_spread(e.get('frame_mib'), '{:.0f}')} | {e['failures']}/{e['runs']} |"
            )
        add("")
        add(
            "Frames differ in size because d365nb's are typed (categories, nullable ints, "
            "datetimes, string dtype) and the others hold JSON values (object columns, ISO "
            "strings)."
        )
        add("")

    if "conversion" in s:
        c = s["conversion"]
        add("## Conversion CPU")
        add("")
        add(
            f"The read's {c['pages']} page bodies ({c['rows']:,} rows, "
            f"{c['bytes'] / 2**20:.0f} MiB of JSON) captured once and converted in one "
            "process: d365nb's `FrameBuilder` (orjson parse + typed columns) vs the floor "
            f"(orjson parse + `pd.DataFrame(records)`, untyped). Same data: "
            f"**{'yes' if c['identical'] else 'NO'}**."
        )
        add("")
        add("| conversion | seconds | CPU seconds | shape |")
        add("| --- | --- | --- | --- |")
        for name, e in c["contenders"].items():
            add(
                f"| {name} | {_spread(e['seconds'], '{:.3f}')} "
                f"| {_spread(e['cpu_seconds'], '{:.3f}')} | {e['shape'][0]:,} x {e['shape'][1]} |"
            )
        add("")
        add(
            f"Typed / floor: **{c['typed_over_floor']:.2f}x** in CPU time "
            f"({c['typed_over_floor_wall']:.2f}x in wall time)."
        )
        add("")

    if "write" in s:
        w = s["write"]
        add("## Write")
        add("")
        add(
            f"{w['rows']:,} rows upserted by the alternate key `accountnumber` (half update "
            f"seeded accounts, half create new ones), {w['latency_ms']:g} ms injected latency. "
            f"The one-PATCH-per-row loop writes a sample of {w['per_row_sample']:,} rows "
            "(the full 20,000 would take over 1,000 s per run) and is compared by rows/s. "
            "Every run's rows were read back and compared with the frame written: "
            f"**{'all identical' if w['identical'] else 'SOME DIFFER OR FAILED'}**."
        )
        add("")
        add("| contender | rows | seconds | rows/s | d365nb speed-up | requests | failures |")
        add("| --- | --- | --- | --- | --- | --- | --- |")
        for name, e in w["contenders"].items():
            reqs = sorted({r.get("requests") for r in w["runs"] if r["contender"] == name}, key=str)
            add(
                f"| {name} | {', '.join(f'{n:,}' for n in e.get('rows', [])) or '-'} "
                f"| {_spread(e.get('seconds'))} | {_spread(e.get('rows_per_s'), '{:,.0f}')} "
                f"| {_ratio(e.get('d365nb_speedup'))} | {', '.join(map(str, reqs))} "
                f"| {e['failures']}/{e['runs']} |"
            )
        errors = sorted({r["error"] for r in w["runs"] if r.get("error")})
        for error in errors:
            add(f"\n- error: `{error[:300]}`")
        creates = w.get("creates")
        if creates:  # 20,000 new rows: d365nb and the SDK, both by CreateMultiple
            add("")
            add(f"{creates['rows']:,} rows created, same latency:")
            add("")
            add("| contender | seconds | d365nb speed-up | requests | failures |")
            add("| --- | --- | --- | --- | --- |")
            for name, e in creates["contenders"].items():
                reqs = sorted(
                    {r.get("requests") for r in creates["runs"] if r["contender"] == name}, key=str
                )
                add(
                    f"| {name} | {_spread(e.get('seconds'))} | {_ratio(e.get('d365nb_speedup'))} "
                    f"| {', '.join(map(str, reqs))} | {e['failures']}/{e['runs']} |"
                )
        add("")

    if "latency" in s:
        lat = s["latency"]
        add("## Latency-bound read against the strongest alternatives")
        add("")
        add(
            f"{lat['rows']:,} accounts, {len(_READ_COLUMNS_HINT)}+ columns plus the lookups "
            f"{', '.join(lat['lookups'])}, {lat['latency_ms']:g} ms injected latency per "
            "request, at several `x-ms-dop-hint` values, and once with no injected latency "
            "(CPU-bound: the sandbox's work and the client's, on the same cores). "
            "`expert-script` and `wire-floor` are "
            "`benchmarks/_expert.py`: concurrent `createdon` ranges at the service's allowed "
            "concurrency, orjson and one untyped DataFrame per page (expert), or bytes only "
            "(floor). CPU columns: seconds of CPU the client's process spent in the read, "
            "and the sandbox's process while serving it (medians); the sandbox is one "
            "Python process, so its CPU time is what a read cannot go below."
        )
        add("")
        add(
            "| dop | contender | seconds | rows/s | client CPU s | sandbox CPU s "
            "| d365nb as % of floor | d365nb time / expert | same data |"
        )
        add("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        entries = sorted(lat["by_dop"].items(), key=lambda kv: int(kv[0]))
        if lat.get("cpu"):
            entries.append((f"{lat['cpu']['dop']}, no latency", lat["cpu"]))
        for dop, entry in entries:
            of_floor = entry.get("of_floor")
            vs_expert = entry.get("vs_expert")
            for name, e in entry["contenders"].items():
                mine = name == "d365nb"
                floor_text = "-" if of_floor is None else f"{of_floor:.0%}"
                add(
                    f"| {dop} | {name} | {_spread(e.get('seconds'))} "
                    f"| {_spread(e.get('rows_per_s'), '{:,.0f}')} "
                    f"| {_median(e.get('cpu_seconds'))} | {_median(e.get('service_cpu_seconds'))} "
                    f"| {floor_text if mine else ''} | {_ratio(vs_expert) if mine else ''} "
                    f"| {'yes' if entry['identical'] else 'NO'} |"
                )
        speed = lat.get("speedup_low_to_high", {})
        if speed:
            add("")
            add(
                f"Speed-up from dop {min(lat['dops'])} to dop {max(lat['dops'])}: "
                + ", ".join(f"{k} {v:.2f}x" for k, v in speed.items())
            )
        add("")

    if "throttled" in s:
        t = s["throttled"]
        add("## Throttled read")
        add("")
        add(
            f"{t['rows']:,} accounts; service protection set to {t['max_requests_per_window']} "
            f"requests per {t['window_seconds']:g} s window and "
            f"{t['max_concurrent_requests']} concurrent requests (Retry-After: until the "
            "window frees a slot)."
        )
        add("")
        add("| contender | complete runs | seconds (complete runs) | 429s received | requests |")
        add("| --- | --- | --- | --- | --- |")
        for name, e in t["contenders"].items():
            add(
                f"| {name} | {e['complete']}/{e['runs']} | {_spread(e['seconds'])} "
                f"| {', '.join(map(str, e['throttled']))} | {', '.join(map(str, e['requests']))} |"
            )
        for name, e in t["contenders"].items():
            for error in e["errors"]:
                add(f"\n- {name}: `{error[:300]}`")
        add("")

    if "growth" in s:
        g = s["growth"]
        add("## Growth")
        add("")
        add(
            "d365nb default read (all 23 columns as in Read), no injected latency, one "
            "sandbox per size. Marginal: the cost of each row added since the previous "
            "size (fixed costs such as sign-in and metadata cancel out)."
        )
        add("")
        add(
            "| rows | seconds | rows/s | us per row | marginal us per row "
            "| peak RSS above baseline MiB | frame MiB | RSS above baseline / frame |"
        )
        add("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for size, e in g["sizes"].items():
            marginal = e.get("marginal_us_per_row")
            add(
                f"| {int(size):,} | {_spread(e.get('seconds'))} "
                f"| {_spread(e.get('rows_per_s'), '{:,.0f}')} "
                f"| {e.get('us_per_row', float('nan')):.1f} "
                f"| {'-' if marginal is None else format(marginal, '.1f')} "
                f"| {_spread(e.get('rss_above_baseline_mib'), '{:.0f}')} "
                f"| {_spread(e.get('frame_mib'), '{:.0f}')} "
                f"| {_spread(e.get('memory_over_frame'))} |"
            )
        add("")

    if data.get("notes"):
        add("## Notes")
        add("")
        for note in data["notes"]:
            add(f"- {note}")
    path.write_text("\n".join(out) + "\n")


def write_chart(data: dict[str, Any], path: Path) -> None:
    """Four panels: read and write throughput, throttled time, growth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = data["scenarios"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))

    def bars(ax: Any, contenders: dict[str, Any], key: str, title: str, log: bool) -> None:
        names = [n for n, e in contenders.items() if e.get(key)]
        med = [contenders[n][key]["median"] for n in names]
        low = [m - contenders[n][key]["min"] for n, m in zip(names, med, strict=True)]
        high = [contenders[n][key]["max"] - m for n, m in zip(names, med, strict=True)]
        colors = ["tab:blue" if n.startswith("d365nb") else "tab:gray" for n in names]
        ax.bar(names, med, yerr=[low, high], color=colors, capsize=4)
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
        ax.tick_params(axis="x", labelrotation=15)

    if "read" in s:
        r = s["read"]
        bars(
            axes[0][0],
            r["contenders"],
            "rows_per_s",
            f"Read {r['rows']:,} rows, {r['latency_ms']:g} ms/request: rows/s",
            False,
        )
    if "write" in s:
        w = s["write"]
        bars(
            axes[0][1],
            w["contenders"],
            "rows_per_s",
            f"Upsert {w['rows']:,} rows, {w['latency_ms']:g} ms/request: rows/s (log)",
            True,
        )
    if "throttled" in s:
        t = s["throttled"]
        ax = axes[1][0]
        names = list(t["contenders"])
        secs = [(t["contenders"][n]["seconds"] or {}).get("median", 0.0) for n in names]
        colors = [
            "tab:blue"
            if t["contenders"][n]["complete"] == t["contenders"][n]["runs"]
            else "tab:red"
            for n in names
        ]
        ax.bar(names, secs, color=colors)
        for i, name in enumerate(names):
            entry = t["contenders"][name]
            if entry["complete"] < entry["runs"]:
                ax.text(
                    i,
                    max(secs + [1.0]) * 0.02,
                    f"failed\n{entry['runs'] - entry['complete']}/{entry['runs']} runs",
                    ha="center",
                    va="bottom",
                    color="tab:red",
                )
        ax.set_title("Throttled read: seconds (red: did not return every row)")
        ax.tick_params(axis="x", labelrotation=15)
    if "growth" in s:
        g = s["growth"]["sizes"]
        ax = axes[1][1]
        sizes = [int(k) for k, e in g.items() if e.get("seconds")]
        secs = [g[str(k)]["seconds"]["median"] for k in sizes]
        rss = [g[str(k)]["rss_above_baseline_mib"]["median"] for k in sizes]
        frame = [g[str(k)]["frame_mib"]["median"] for k in sizes]
        ax.loglog(sizes, secs, "o-", color="tab:blue", label="seconds")
        ax.set_xlabel("rows")
        ax.set_ylabel("seconds")
        ax2 = ax.twinx()
        ax2.loglog(sizes, rss, "s--", color="tab:orange", label="peak RSS above baseline MiB")
        ax2.loglog(sizes, frame, "^:", color="tab:green", label="frame MiB")
        ax2.set_ylabel("MiB")
        ax.set_title("Growth: d365nb read time and memory")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
