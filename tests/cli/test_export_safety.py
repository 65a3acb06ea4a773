"""Issue 16 items 3 and 12: an interrupted `d365nb export` never destroys the previous
file, and `--resume` continues a killed export where it stopped (no row lost or doubled)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from d365nb.cli import main
from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to
from tests._support.ledger import record

pytestmark = pytest.mark.sandbox

AREA = "reliability/nothing lost"
ROWS = 90


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Its own sandbox: 90 accounts, every request slowed (so a kill lands mid-export)."""
    with start(
        data_dir=tmp_path_factory.mktemp("export"),
        database=":memory:",
        rows=ROWS,
        latency_ms=60.0,
    ) as sb:
        yield sb


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, slow: Sandbox) -> Path:
    for key in list(os.environ):
        if key.startswith("D365NB_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("D365NB_CONFIG", str(tmp_path / "profiles.toml"))
    monkeypatch.setenv("D365NB_TOKEN_CACHE_DIR", str(tmp_path / "tokens"))
    (tmp_path / "sandbox.json").write_text(json.dumps(slow.info()) + "\n", "utf-8")
    return tmp_path


def _argv(env: Path, out: Path, *extra: str) -> list[str]:
    return ["export", "accounts", "-o", str(out), "--sandbox", str(env / "sandbox.json"),
            "--select", "accountid,name,revenue", "--no-progress", *extra]  # fmt: skip


def _expected(sb: Sandbox) -> pd.DataFrame:
    with connect_to(sb) as conn:
        frame: pd.DataFrame = conn.read(
            "accounts", select=["accountid", "name", "revenue"], progress=False
        )
    return frame


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_export_interrupted_mid_write_leaves_the_old_file_intact(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    out = cli_env / f"accounts.{fmt}"
    out.write_bytes(b"the previous export\n" * 50)
    # The export streams chunks: CSV through DataFrame.to_csv, Parquet row groups through
    # pyarrow's ParquetWriter.write_table.
    owner: Any = pd.DataFrame if fmt == "csv" else pq.ParquetWriter
    method = "to_csv" if fmt == "csv" else "write_table"
    real = getattr(owner, method)

    def half_then_killed(self: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
        if fmt == "csv":
            real(self.head(len(self) // 2), data, *args, **kwargs)  # half the file is out...
        else:
            real(self, data.slice(0, data.num_rows // 2), *args, **kwargs)
        raise KeyboardInterrupt  # ... when the user presses Ctrl-C (or the kernel dies)

    monkeypatch.setattr(owner, method, half_then_killed)
    assert main(_argv(cli_env, out)) == 130  # interrupted
    intact = out.read_bytes() == b"the previous export\n" * 50
    leftovers = [p.name for p in cli_env.iterdir() if p.name.endswith(".partial")]
    record(AREA, f"export interrupted mid-write ({fmt})", faults=1, operations=1,
           rows_lost=0 if intact else ROWS)  # fmt: skip
    assert intact, "the previous file was replaced by a truncated one"
    assert leftovers == []


def test_a_killed_export_resumes_where_it_stopped(cli_env: Path, slow: Sandbox) -> None:
    out = cli_env / "all.csv"
    state = out.with_name(out.name + ".d365nb-export") / "state.json"
    argv = _argv(cli_env, out, "--resume", "--checkpoint-rows", "10")
    code = "import sys; from d365nb.cli import main; sys.exit(main(sys.argv[1:]))"
    child = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    ranges = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            if state.exists():
                ranges = len(json.loads(state.read_text())["ranges"])
                if ranges >= 2:
                    break
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        if child.stderr is not None:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL, "the export finished before the kill"
    assert 2 <= ranges < ROWS // 10 and not out.exists()

    assert main(argv) == 0
    got = pd.read_csv(out, dtype={"accountid": "string"})
    expected = _expected(slow)
    lost = len(set(expected["accountid"]) - set(got["accountid"]))
    duplicates = len(got) - got["accountid"].nunique()
    record(AREA, "export killed, then --resume", faults=1, operations=2, rows_lost=lost,
           duplicates=duplicates)  # fmt: skip
    assert (lost, duplicates) == (0, 0) and len(got) == len(expected)
    assert list(got.columns) == list(expected.columns)
    assert not state.parent.exists(), "the checkpoint is removed once the file is whole"


def test_resume_refuses_a_checkpoint_of_another_query(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = cli_env / "q.parquet"
    folder = out.with_name(out.name + ".d365nb-export")
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps({"query": "other", "ranges": []}))
    assert main(_argv(cli_env, out, "--resume")) == 2
    assert "another query" in capsys.readouterr().err
