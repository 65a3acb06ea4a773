"""`d365nb export` streams (issue 18): the read in chunks, each written as it arrives.

A Parquet file gets one row group per chunk (so the writer never held the whole table),
a CSV file one header; either holds exactly the rows and values `read()` gives.  Peak
memory is measured by `benchmarks/chunks.py`, not here.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from d365nb.cli import main
from d365nb.sandbox import Sandbox
from d365nb.sandbox._connect import connect_to

pytestmark = pytest.mark.sandbox

COLUMNS = ["accountid", "name", "revenue", "industrycode", "createdon", "cr_productinterests"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sandbox: Sandbox) -> Path:
    for key in list(os.environ):
        if key.startswith("D365NB_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("D365NB_CONFIG", str(tmp_path / "profiles.toml"))
    monkeypatch.setenv("D365NB_TOKEN_CACHE_DIR", str(tmp_path / "tokens"))
    (tmp_path / "sandbox.json").write_text(json.dumps(sandbox.info()) + "\n", "utf-8")
    return tmp_path


def _argv(env: Path, out: Path, *extra: str) -> list[str]:
    return ["export", "accounts", "-o", str(out), "--sandbox", str(env / "sandbox.json"),
            "--select", ",".join(COLUMNS), "--no-progress", *extra]  # fmt: skip


def _expected(sandbox: Sandbox) -> pd.DataFrame:
    with connect_to(sandbox) as conn:
        frame: pd.DataFrame = conn.read("accounts", select=COLUMNS, progress=False)
    return frame.sort_values("accountid", ignore_index=True)


def test_parquet_is_written_a_chunk_at_a_time(env: Path, sandbox: Sandbox) -> None:
    out = env / "accounts.parquet"
    assert main(_argv(env, out, "--chunksize", "7", "--page-size", "5")) == 0
    expected = _expected(sandbox)
    assert pq.ParquetFile(out).metadata.num_row_groups == math.ceil(len(expected) / 7)
    got = pd.read_parquet(out).sort_values("accountid", ignore_index=True)
    pd.testing.assert_frame_equal(
        got.drop(columns="cr_productinterests"),
        expected.drop(columns="cr_productinterests"),
        check_categorical=False,  # parquet keeps the labels, not unused categories
    )
    lists = got["cr_productinterests"].map(lambda v: None if v is None else list(v))
    assert lists.tolist() == expected["cr_productinterests"].tolist()
    assert [p.name for p in env.iterdir() if p.name.endswith(".partial")] == []


def test_csv_is_appended_a_chunk_at_a_time(env: Path, sandbox: Sandbox) -> None:
    out = env / "accounts.csv"
    assert main(_argv(env, out, "--chunksize", "6", "--parallel", "1")) == 0
    text = out.read_text("utf-8")
    assert text.count("accountid,") == 1  # one header, then every chunk's rows
    expected = _expected(sandbox)
    got = pd.read_csv(out, dtype={"accountid": "string", "name": "string"})
    got = got.sort_values("accountid", ignore_index=True)
    assert got["accountid"].tolist() == expected["accountid"].tolist()
    assert got["name"].tolist() == expected["name"].tolist()
    assert got["revenue"].tolist() == pytest.approx(expected["revenue"].tolist(), nan_ok=True)
    assert got["industrycode"].fillna("").tolist() == (
        expected["industrycode"].astype("string").fillna("").tolist()
    )


def test_an_export_of_no_rows_has_the_columns(env: Path) -> None:
    out = env / "none.parquet"
    assert main(_argv(env, out, "--filter", "name eq 'no such name'", "--chunksize", "5")) == 0
    got = pd.read_parquet(out)
    assert got.empty and list(got.columns) == [*COLUMNS, "_etag"]


def test_a_bad_chunksize_is_refused(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = env / "x.csv"
    assert main(_argv(env, out, "--chunksize", "0")) != 0
    assert "chunksize" in capsys.readouterr().err
    assert not out.exists()
