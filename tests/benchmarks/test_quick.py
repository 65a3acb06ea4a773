"""The benchmark harness's quick mode as a smoke test: it runs, and the contenders agree.

Runs ``python -m benchmarks --quick`` exactly as the README says (in a child process, as
the harness starts its own sandboxes and child processes), then checks the results files
and that every contender returned the same data.  No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.sandbox


def test_quick_mode_runs_and_contenders_agree(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--out",
            str(out),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for suffix in ("json", "md", "png"):
        path = out / f"results-quick.{suffix}"
        assert path.exists() and path.stat().st_size > 0, path
    results = json.loads((out / "results-quick.json").read_text())
    s = results["scenarios"]

    read = s["read"]
    for name, entry in read["contenders"].items():
        assert entry["failures"] == 0, (name, [r.get("error") for r in read["runs"]])
        assert entry["rows"] == [read["rows"]], name
    assert read["identical"], {n: e["fingerprints"] for n, e in read["contenders"].items()}

    latency = s["latency"]
    for dop, entry in latency["by_dop"].items():
        for name, e in entry["contenders"].items():
            assert e["failures"] == 0, (dop, name, [r.get("error") for r in entry["runs"]])
            assert e["rows"] == [latency["rows"]], (dop, name)
        assert entry["identical"], dop
        assert 0 < entry["of_floor"], dop
        for name, e in entry["contenders"].items():
            # CPU of the client's process and of the sandbox's, measured per run.
            assert e["cpu_seconds"]["median"] > 0, (dop, name)
            assert e["service_cpu_seconds"]["median"] > 0, (dop, name)
    assert "| client CPU s | sandbox CPU s |" in (out / "results-quick.md").read_text()

    conversion = s["conversion"]
    assert conversion["identical"]
    assert conversion["rows"] == read["rows"]

    write = s["write"]
    errors = [(r["contender"], r.get("error")) for r in write["runs"] if r.get("error")]
    assert write["identical"], errors

    throttled = s["throttled"]["contenders"]
    assert throttled["d365nb"]["complete"] == throttled["d365nb"]["runs"]
    assert any(t for t in throttled["d365nb"]["throttled"]), "the limits should produce 429s"
    complete = [n for n, e in throttled.items() if e["complete"]]
    prints = {fp for n in complete for fp in throttled[n]["fingerprints"]}
    assert len(prints) == 1, prints

    growth = s["growth"]["sizes"]
    assert all(entry["complete"] for entry in growth.values())

    markdown = (out / "results-quick.md").read_text()
    assert "## Targets" in markdown and "## Read" in markdown
