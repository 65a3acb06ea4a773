"""`d365nb sync TABLE -o FILE.parquet`: a full read first, then only the changes (issue 18)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from d365nb.cli import main
from d365nb.sandbox import Sandbox
from d365nb.sandbox._connect import connect_to
from tests.sandbox.conftest import app_token, tls

pytestmark = pytest.mark.sandbox

SELECT = "lastname,companyname,revenue,industrycode"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sandbox: Sandbox) -> Path:
    """No D365NB_* from outside; the session sandbox's JSON line in a file."""
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


def _run(env: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, int], str]:
    argv = ["sync", "leads", "-o", str(out), "--select", SELECT, "--no-progress"]
    assert main([*argv, "--sandbox", str(env / "sandbox.json")]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out.strip().splitlines()[-1]), captured.err.strip()


def _expected(sandbox: Sandbox, tmp: Path) -> pd.DataFrame:
    with connect_to(sandbox) as conn:
        fresh = conn.read("leads", select=SELECT.split(","), progress=False)
    fresh.attrs = {}
    fresh.to_parquet(tmp, index=False)
    return pd.read_parquet(tmp).sort_values("leadid", ignore_index=True)


def test_sync_writes_then_applies_only_changes(
    sandbox: Sandbox, env: Path, other: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    out = env / "copy" / "leads.parquet"
    first, line = _run(env, out, capsys)
    assert first["added"] == first["rows"] > 0 and first["updated"] == first["removed"] == 0
    assert line.startswith(f"+{first['rows']:,} ~0 -0 rows in ") and line.endswith(" s")
    state = json.loads((env / "copy" / "leads.parquet.d365sync.json").read_text("utf-8"))
    assert set(state) == {"table", "select", "delta_link"}
    assert "$deltatoken=" in state["delta_link"] and "eyJ" not in json.dumps(state)
    got = pd.read_parquet(out).sort_values("leadid", ignore_index=True)
    pd.testing.assert_frame_equal(
        got, _expected(sandbox, env / "a.parquet"), check_categorical=False
    )

    ids = list(got["leadid"])
    assert (
        other.patch(f"leads({ids[0]})", json={"companyname": uuid.uuid4().hex}).status_code == 204
    )
    assert other.delete(f"leads({ids[1]})").status_code == 204
    assert other.post("leads", json={"lastname": "Synced"}).status_code == 204
    second, line = _run(env, out, capsys)
    assert (second["added"], second["updated"], second["removed"]) == (1, 1, 1)
    assert line.startswith("+1 ~1 -1 rows in ")
    got = pd.read_parquet(out).sort_values("leadid", ignore_index=True)
    pd.testing.assert_frame_equal(
        got, _expected(sandbox, env / "b.parquet"), check_categorical=False
    )
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]

    third, line = _run(env, out, capsys)
    assert line.startswith("+0 ~0 -0 rows in ")
