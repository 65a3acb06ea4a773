"""A `d365nb sync` killed mid-write leaves the previous complete state (issue 18).

The sync runs in a child process and is SIGKILLed at a known moment of its write: the
documented test hook `D365NB_SYNC_TEST_PAUSE` (`_export.SYNC_PAUSE_ENV`) makes it print
the point's name and wait there.  Killed after its temporary files are written, the
previous copy and link file are untouched; killed between its two renames, the copy is
new and carries its own link.  Either way the next run converges to a fresh export.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from d365nb._export import SYNC_PAUSE_ENV
from d365nb.cli import main
from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to
from tests.sandbox.conftest import app_token, tls

pytestmark = pytest.mark.sandbox

SELECT = "lastname,companyname,revenue"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Its own sandbox: the test deletes leads, which other tests expect seeded."""
    with start(data_dir=tmp_path_factory.mktemp("sync-kill"), database=":memory:", rows=50) as sb:
        yield sb


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sandbox: Sandbox) -> Path:
    for key in list(os.environ):
        if key.startswith("D365NB_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("D365NB_CONFIG", str(tmp_path / "profiles.toml"))
    monkeypatch.setenv("D365NB_TOKEN_CACHE_DIR", str(tmp_path / "tokens"))
    (tmp_path / "sandbox.json").write_text(json.dumps(sandbox.info()) + "\n", "utf-8")
    return tmp_path


@pytest.fixture
def other(sandbox: Sandbox) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {app_token(sandbox)}"}
    with httpx.Client(base_url=sandbox.service_url, verify=tls(sandbox), headers=headers) as c:
        yield c


def _argv(env: Path, out: Path) -> list[str]:
    return ["sync", "leads", "-o", str(out), "--select", SELECT, "--no-progress",
            "--sandbox", str(env / "sandbox.json")]  # fmt: skip


def _killed_at(point: str, argv: list[str]) -> None:
    """Run the sync in a child process and SIGKILL it when it reports `point`."""
    code = "import sys; from d365nb.cli import main; sys.exit(main(sys.argv[1:]))"
    child = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, SYNC_PAUSE_ENV: point},
        text=True,
    )
    seen: list[str] = []
    try:
        assert child.stderr is not None
        for line in child.stderr:  # blocks until the child reports (or ends)
            seen.append(line)
            if line.strip() == f"sync paused: {point}":
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.wait(timeout=60)
        if child.stderr is not None:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL, f"the sync was not killed at {point}: {seen}"


def _fresh(sandbox: Sandbox) -> pd.DataFrame:
    with connect_to(sandbox) as conn:
        frame = conn.read("leads", select=SELECT.split(","), progress=False)
    return frame.sort_values("leadid", ignore_index=True)


def _copy(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out).sort_values("leadid", ignore_index=True)


def _same_rows(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert got["leadid"].astype(str).tolist() == expected["leadid"].astype(str).tolist()
    for column in ("lastname", "companyname"):
        assert got[column].astype("string").fillna("").tolist() == (
            expected[column].astype("string").fillna("").tolist()
        )
    assert got["revenue"].tolist() == pytest.approx(expected["revenue"].tolist(), nan_ok=True)


def _edit(other: httpx.Client, ids: list[str]) -> None:
    tag = uuid.uuid4().hex[:8]
    assert other.patch(f"leads({ids[0]})", json={"companyname": tag}).status_code == 204
    assert other.delete(f"leads({ids[1]})").status_code == 204
    assert other.post("leads", json={"lastname": f"killed sync {tag}"}).status_code == 204


@pytest.mark.parametrize("point", ["after-temp", "between-renames"])
def test_a_killed_sync_leaves_a_complete_state_and_converges(
    sandbox: Sandbox,
    env: Path,
    other: httpx.Client,
    capsys: pytest.CaptureFixture[str],
    point: str,
) -> None:
    out = env / "copy" / "leads.parquet"
    link_file = out.with_name(out.name + ".d365sync.json")
    assert main(_argv(env, out)) == 0
    capsys.readouterr()
    before_rows, before_link = out.read_bytes(), link_file.read_bytes()
    _edit(other, list(_fresh(sandbox)["leadid"].astype(str)))

    _killed_at(point, _argv(env, out))
    leftovers = [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    if point == "after-temp":  # the previous copy and link file, byte for byte
        assert out.read_bytes() == before_rows and link_file.read_bytes() == before_link
        assert leftovers, "the kill should have landed after the temporary files were written"
    else:  # the new copy, carrying its own link; the link file beside it still the old one
        assert out.read_bytes() != before_rows and link_file.read_bytes() == before_link
        _same_rows(_copy(out), _fresh(sandbox))
    pd.read_parquet(out)  # whole, readable
    json.loads(link_file.read_text("utf-8"))

    _edit(other, list(_fresh(sandbox)["leadid"].astype(str)))
    assert main(_argv(env, out)) == 0  # the next run converges to a fresh export
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    if point == "between-renames":  # only the second edits were applied
        assert (summary["added"], summary["updated"], summary["removed"]) == (1, 1, 1)
    _same_rows(_copy(out), _fresh(sandbox))
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    state = json.loads(link_file.read_text("utf-8"))
    assert set(state) == {"table", "select", "delta_link"}
    with connect_to(sandbox) as conn:  # the stored link is current: nothing changed since
        assert conn.changes(state["delta_link"]).upserted.empty
