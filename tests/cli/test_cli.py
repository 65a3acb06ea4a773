"""The `d365nb` command end to end: demo, login, whoami and export against real sandboxes.

`demo` runs as the console script in a child process (the README's main-job command);
the others run `d365nb.cli.main` in this process against sandboxes started here, and
their files are read back and compared with `conn.read`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from d365nb.cli import build_parser, main
from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to
from d365nb.sandbox._directory import CONFIDENTIAL_CLIENT_SECRET

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")
COMMANDS = ("demo", "sandbox", "login", "whoami", "token", "export")


def _no_secrets(*texts: str) -> None:
    for text in texts:
        assert CONFIDENTIAL_CLIENT_SECRET not in text
        assert not _JWT.search(text)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No D365NB_* from outside; profiles and token caches in a temporary folder."""
    for key in list(os.environ):
        if key.startswith("D365NB_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("D365NB_CONFIG", str(tmp_path / "profiles.toml"))
    monkeypatch.setenv("D365NB_TOKEN_CACHE_DIR", str(tmp_path / "tokens"))
    return tmp_path


@pytest.fixture
def sandbox_file(sandbox: Sandbox, tmp_path: Path) -> Path:
    """The session sandbox's JSON line in a file, as `d365nb sandbox > file` leaves it."""
    path = tmp_path / "sandbox.json"
    path.write_text(json.dumps(sandbox.info()) + "\n", "utf-8")
    return path


@pytest.fixture(scope="module")
def approving_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox whose device codes approve themselves, for `login` in a test."""
    folder = tmp_path_factory.mktemp("cli-sandbox")
    with start(data_dir=folder, database=":memory:", rows=20, auto_approve=True) as sb:
        yield sb


# -- help -------------------------------------------------------------------------------------


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s", text, re.M), name


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: d365nb {command}")
    if command in ("login", "whoami", "export"):
        assert "--profile" in text and "--sandbox" in text and "D365NB_CLIENT_SECRET" in text
        assert "--client-secret" not in text  # secrets never on the command line


def test_sandbox_flags_are_kept() -> None:
    args = build_parser().parse_args(
        ["sandbox", "--reset", "--rows", "7", "--latency-ms", "2.5", "--max-requests", "9",
         "--window", "3", "--max-concurrent", "4", "--retry-after", "1", "--memory",
         "--auto-approve", "--fault-503-rate", "0.1", "--fault-drop-rate", "0.2"]
    )  # fmt: skip
    assert (args.reset, args.rows, args.latency_ms, args.max_requests) == (True, 7, 2.5, 9)
    assert (args.window, args.max_concurrent, args.retry_after) == (3.0, 4, 1.0)
    assert args.memory and args.auto_approve
    assert (args.fault_503_rate, args.fault_drop_rate) == (0.1, 0.2)


# -- demo -------------------------------------------------------------------------------------


@pytest.mark.sandbox
@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """`d365nb demo` (the console script): signs in, reads, fixes, pushes, checks."""
    script = Path(sys.executable).parent / "d365nb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("D365NB_")}
    env["D365NB_TOKEN_CACHE_DIR"] = str(tmp_path / "tokens")
    done = subprocess.run(
        [str(script), "demo", "--rows", "300"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "signed in as Alex Wilber (contoso-sandbox)" in out
    assert "enter the code" in out  # the device-code step is shown
    assert "300 rows x 9 columns" in out
    assert re.search(r"industrycode\s+category", out)
    assert re.search(r"createdon\s+datetime64\[\w+, UTC\]", out)
    missing = int(re.search(r"(\d+) accounts have no email address", out)[1])  # type: ignore[index]
    assert missing > 0
    assert f"dry run: {missing} update (nothing sent)" in out
    assert f"pushed:  {missing} updated" in out
    assert "accounts without an email now: 0" in out
    assert "In Progress" in out and "Won" in out
    assert f"d365nb demo OK: read 300 accounts, fixed {missing} of {missing} missing emails" in out
    _no_secrets(done.stdout, done.stderr)


# -- export -----------------------------------------------------------------------------------


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    result: pd.DataFrame = frame.sort_values("accountid", ignore_index=True)
    return result


@pytest.mark.sandbox
def test_export_parquet_matches_read(
    sandbox: Sandbox, sandbox_file: Path, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = cli_env / "accounts.parquet"
    assert main(["export", "accounts", "-o", str(out), "--sandbox", str(sandbox_file)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with connect_to(sandbox) as conn:
        expected = conn.read("accounts", progress=False)
    assert summary == {
        "table": "accounts",
        "rows": len(expected),
        "columns": expected.shape[1],
        "format": "parquet",
        "path": str(out),
    }
    got = pd.read_parquet(out)
    pd.testing.assert_frame_equal(
        _sorted(got).drop(columns="cr_productinterests"),
        _sorted(expected).drop(columns="cr_productinterests"),
        check_categorical=False,  # parquet keeps the labels, not unused categories
    )
    as_lists = _sorted(got)["cr_productinterests"].map(lambda v: None if v is None else list(v))
    assert as_lists.tolist() == _sorted(expected)["cr_productinterests"].tolist()


@pytest.mark.sandbox
def test_export_csv_with_a_query_matches_read(
    sandbox: Sandbox, sandbox_file: Path, cli_env: Path
) -> None:
    out = cli_env / "big.csv"
    columns = ["accountid", "name", "revenue", "numberofemployees", "industrycode", "createdon",
               "cr_productinterests", "creditonhold"]  # fmt: skip
    argv = ["export", "accounts", "-o", str(out), "--sandbox", str(sandbox_file),
            "--select", ",".join(columns), "--filter", "revenue gt 1000000",
            "--orderby", "revenue desc", "--top", "12", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    with connect_to(sandbox) as conn:
        expected = conn.read(
            "accounts",
            select=columns,
            filter="revenue gt 1000000",
            orderby="revenue desc",
            top=12,
            progress=False,
        )
    got = pd.read_csv(out, dtype={"accountid": "string", "name": "string"})
    assert len(got) == len(expected) > 0  # at most 12
    assert got["accountid"].tolist() == expected["accountid"].tolist()  # same order
    assert got["name"].tolist() == expected["name"].tolist()
    assert got["revenue"].tolist() == pytest.approx(expected["revenue"].tolist())
    assert got["numberofemployees"].astype("Int32").equals(expected["numberofemployees"])
    assert got["industrycode"].fillna("").tolist() == (
        expected["industrycode"].astype("string").fillna("").tolist()
    )
    created = pd.to_datetime(got["createdon"], utc=True)
    assert (created == expected["createdon"]).all()
    assert got["creditonhold"].tolist() == expected["creditonhold"].astype(bool).tolist()
    lists = got["cr_productinterests"].map(lambda v: [] if pd.isna(v) else v.split(";"))
    assert (
        lists.tolist()
        == expected["cr_productinterests"].map(lambda v: [] if v is None else list(v)).tolist()
    )


def test_export_names_pyarrow_when_it_is_missing(
    monkeypatch: pytest.MonkeyPatch, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object, **kwargs: object) -> object:
        return None if name == "pyarrow" else real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    code = main(["export", "accounts", "-o", str(cli_env / "a.parquet"),
                 "--service-url", "https://contoso.crm.dynamics.com"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "pyarrow" in err and "pip install pyarrow" in err and ".csv" in err
    assert not (cli_env / "a.parquet").exists()


def test_export_refuses_an_unknown_file_type(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["export", "accounts", "-o", str(cli_env / "a.xlsx"),
                 "--service-url", "https://contoso.crm.dynamics.com"])  # fmt: skip
    assert code == 2
    assert "--format csv|parquet" in capsys.readouterr().err


def test_bad_settings_are_explained(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["whoami", "--service-url", "http://contoso.crm.dynamics.com"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("d365nb: ") and "service_url" in err


def test_sandbox_option_without_a_sandbox(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["whoami", "--sandbox"]) == 2
    assert "D365NB_SANDBOX" in capsys.readouterr().err


# -- login / whoami ---------------------------------------------------------------------------


@pytest.mark.sandbox
def test_login_saves_a_profile_that_whoami_uses_silently(
    approving_sandbox: Sandbox,
    cli_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sb = approving_sandbox
    info = cli_env / "sandbox.json"
    info.write_text(json.dumps(sb.info()) + "\n", "utf-8")
    assert main(["login", "--sandbox", str(info), "--save-as", "sbx"]) == 0
    out, err = capsys.readouterr()
    assert "user:           Alex Wilber" in out
    assert "enter the code" in err  # the device code, as a terminal shows it
    assert "Saved profile 'sbx'" in err
    profile = (cli_env / "profiles.toml").read_text()
    assert "[profiles.sbx]" in profile and 'grant = "device_code"' in profile
    assert "secret" not in profile.lower() and "token =" not in profile
    assert list((cli_env / "tokens").glob("*.json"))  # the token cache holds the sign-in
    _no_secrets(out, err, profile)

    # whoami from the profile: the cached token signs in silently (no new device code).
    # The sandbox's CA is found through D365NB_SANDBOX (same address as the profile).
    monkeypatch.setenv("D365NB_SANDBOX", str(info))
    assert main(["whoami", "-p", "sbx", "--json"]) == 0
    out, err = capsys.readouterr()
    who = json.loads(out)
    assert who["name"] == "Alex Wilber" and who["grant"] == "device_code"
    assert who["environment"] == sb.base_url
    assert "enter the code" not in err


@pytest.mark.sandbox
def test_whoami_with_client_credentials_from_the_environment(
    sandbox: Sandbox, cli_env: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("D365NB_CLIENT_SECRET", sandbox.client_secret)
    argv = ["whoami", "--service-url", sandbox.service_url, "--tenant", sandbox.tenant,
            "--client-id", sandbox.confidential_client_id, "--ca-cert", sandbox.ca_cert,
            "--no-token-cache"]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "grant:          client_credentials (v2 endpoints)" in out
    assert "confidential client" in out  # the application user's name
    assert not (cli_env / "tokens").exists()
    _no_secrets(out, err)


@pytest.mark.sandbox
def test_login_then_whoami_uses_the_saved_ca_and_the_default_profile(
    approving_sandbox: Sandbox, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = approving_sandbox
    info = cli_env / "sandbox.json"
    info.write_text(json.dumps(sb.info()) + "\n", "utf-8")
    assert main(["login", "--sandbox", str(info)]) == 0
    _, err = capsys.readouterr()
    assert "Saved profile 'default'" in err and "whoami -p default" in err
    profile = (cli_env / "profiles.toml").read_text()
    assert f'ca_cert = "{sb.ca_cert}"' in profile
    # No D365NB_SANDBOX: the CA comes from the profile alone.
    assert "D365NB_SANDBOX" not in os.environ
    for argv in (["whoami", "-p", "default", "--json"], ["whoami", "--json"]):
        assert main(argv) == 0, capsys.readouterr().err
        out, err = capsys.readouterr()
        who = json.loads(out)
        assert who["name"] == "Alex Wilber" and who["environment"] == sb.base_url
        assert "enter the code" not in err
    # export, with nothing but the table and the file: the default profile again.
    target = cli_env / "accounts.csv"
    assert main(["export", "accounts", "-o", str(target), "--select", "name"]) == 0
    assert len(pd.read_csv(target)) == 20
    assert "enter the code" not in capsys.readouterr().err


# -- token ------------------------------------------------------------------------------------


@pytest.mark.sandbox
def test_token_prints_a_token_the_web_api_accepts(
    sandbox: Sandbox, sandbox_file: Path, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import httpx

    from tests._support.oauth import tls

    assert main(["token", "--sandbox", str(sandbox_file), "--no-token-cache"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert _JWT.match(token) and token.count(".") == 2 and token not in err
    answer = httpx.get(f"{sandbox.service_url}WhoAmI", verify=tls(sandbox),
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert answer.status_code == 200, answer.text


@pytest.mark.sandbox
def test_token_json_has_expires_on_and_the_resource(
    sandbox: Sandbox, sandbox_file: Path, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from d365nb._auth import jwt_claims

    argv = ["token", "--sandbox", str(sandbox_file), "--no-token-cache", "--json",
            "--resource", sandbox.base_url + "/"]  # fmt: skip
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    claims = jwt_claims(payload["accessToken"])
    assert payload["expires_on"] == claims["exp"] > time.time()
    assert payload["expiresOn"] == time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(claims["exp"]))
    assert payload["tokenType"] == "Bearer"
    assert payload["resource"] == sandbox.base_url
    assert claims["aud"].rstrip("/") == sandbox.base_url
    assert payload["tenant"] == sandbox.tenant


@pytest.mark.sandbox
def test_token_resource_on_v1_is_explained(
    sandbox: Sandbox, sandbox_file: Path, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v1 = f"{sandbox.base_url}/{sandbox.tenant}/oauth2/token"
    argv = ["token", "--sandbox", str(sandbox_file), "--token-uri", v1, "--auth-uri",
            v1.replace("/token", "/authorize"), "--resource", "https://other.example"]  # fmt: skip
    assert main(argv) == 2
    assert "--resource needs v2" in capsys.readouterr().err


@pytest.mark.sandbox
def test_sandbox_option_keeps_the_grant_of_the_profile(
    approving_sandbox: Sandbox, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = approving_sandbox
    info = cli_env / "sandbox.json"
    info.write_text(json.dumps(sb.info()) + "\n", "utf-8")
    assert main(["login", "--sandbox", str(info), "--save-as", "me"]) == 0
    capsys.readouterr()
    # whoami's own default is client credentials; the profile says device_code.
    assert main(["whoami", "--sandbox", str(info), "-p", "me", "--json"]) == 0
    who = json.loads(capsys.readouterr().out)
    assert who["grant"] == "device_code" and who["name"] == "Alex Wilber"
    assert main(["whoami", "--sandbox", str(info), "--json"]) == 0  # nothing chosen
    assert json.loads(capsys.readouterr().out)["grant"] == "client_credentials"
