"""`d365nb export` on F&O: the package API past `--package-threshold`, OData below it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from d365nb.cli import main
from d365nb.sandbox import Sandbox

from .conftest import Seen

PACKAGE = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."


@pytest.fixture
def cli(fno_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The connection options of an F&O export (client credentials from the environment)."""
    for key in list(os.environ):
        if key.startswith("D365NB_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("D365NB_CONFIG", str(tmp_path / "profiles.toml"))
    monkeypatch.setenv("D365NB_TOKEN_CACHE_DIR", str(tmp_path / "tokens"))
    info = tmp_path / "sandbox.json"
    info.write_text(json.dumps(fno_sandbox.info()) + "\n", "utf-8")
    return ["--sandbox", str(info), "--service-url", fno_sandbox.fno_service_url,
            "--no-token-cache", "--no-progress"]  # fmt: skip


def _export(
    cli: list[str], out: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> dict[str, object]:
    assert main(["export", "CustomersV3", "-o", str(out), *extra, *cli]) == 0
    captured = capsys.readouterr()
    assert "secret" not in (captured.out + captured.err).lower()
    summary: dict[str, object] = json.loads(captured.out.strip().splitlines()[-1])
    return summary


def test_a_big_export_goes_through_the_package_api(
    cli: list[str], tmp_path: Path, seen: Seen, capsys: pytest.CaptureFixture[str]
) -> None:
    packaged = tmp_path / "package.parquet"
    summary = _export(cli, packaged, capsys, "--package-threshold", "50")
    calls = [(r["method"], str(r["path"])) for r in seen()]
    assert summary["via"] == "package API" and summary["rows"] == 60  # usmf, the default
    assert ("GET", "/data/CustomersV3/$count") in calls
    for action in ("ExportToPackage", "GetExecutionSummaryStatus", "GetExportedPackageUrl"):
        assert ("POST", PACKAGE + action) in calls, calls
    assert any(path.startswith("/_blob/dmf/") for _, path in calls)
    assert ("GET", "/data/CustomersV3") not in calls  # no OData page read

    odata = tmp_path / "odata.parquet"
    summary = _export(cli, odata, capsys, "--package-threshold", "0")
    assert "via" not in summary
    expected = pd.read_parquet(odata).drop(columns="_etag")
    pd.testing.assert_frame_equal(pd.read_parquet(packaged), expected)


def test_a_small_export_uses_odata(
    cli: list[str], tmp_path: Path, seen: Seen, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "small.csv"
    summary = _export(cli, out, capsys, "--package-threshold", "1000")
    paths = [str(r["path"]) for r in seen()]
    assert "via" not in summary and summary["rows"] == 60
    assert "/data/CustomersV3/$count" in paths and "/data/CustomersV3" in paths
    assert not any(p.startswith(PACKAGE) for p in paths)
    assert len(pd.read_csv(out)) == 60


def test_select_picks_package_columns_and_a_query_stays_on_odata(
    cli: list[str], tmp_path: Path, seen: Seen, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "some.csv"
    options = ("--package-threshold", "10", "--select", "OrganizationName")
    summary = _export(cli, out, capsys, *options)
    assert summary["via"] == "package API"
    assert list(pd.read_csv(out).columns) == ["dataAreaId", "CustomerAccount", "OrganizationName"]
    seen_before = len(seen())
    summary = _export(cli, out, capsys, *options, "--filter", "CustomerGroupId eq '10'")
    assert "via" not in summary
    assert not any(str(r["path"]).startswith(PACKAGE) for r in seen()[seen_before:])
