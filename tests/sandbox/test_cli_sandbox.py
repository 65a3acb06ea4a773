"""`d365nb sandbox` from a shell: JSON line on stdout, a token, clean stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from d365nb import cli
from d365nb.sandbox import _cli as sandbox_cli
from d365nb.sandbox._server import make_options

pytestmark = pytest.mark.sandbox

KEYS = {
    "service_url",
    "authority",
    "token_uri",
    "auth_uri",
    "tenant",
    "ca_cert",
    "public_client_id",
    "confidential_client_id",
    "client_secret",
    "approve_url",
    "base_url",
    "device_login_url",
}


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("d365nb")
    assert script.exists(), "install the package (pip install -e .) to get the d365nb command"
    return [str(script), "sandbox"]


def run_until_json(command: list[str]) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    timer = threading.Timer(60, process.kill)  # never hang the test run
    timer.start()
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
    finally:
        timer.cancel()
    assert line, process.communicate()[1]
    return process, json.loads(line)


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["sandbox", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--port",
        "--host",
        "--data-dir",
        "--memory",
        "--reset",
        "--rows",
        "--seed",
        "--latency-ms",
        "--auto-approve",
        "--token-lifetime",
        "--max-requests",
        "--window",
        "--max-concurrent",
        "--retry-after",
        "--fault-503-rate",
        "--fault-drop-rate",
    ):
        assert flag in text, flag
    assert "--options-json" not in text


def test_flags_map_to_options(tmp_path):
    args = cli.build_parser().parse_args(
        [
            "sandbox",
            "--port=0",
            "--data-dir",
            str(tmp_path),
            "--memory",
            "--reset",
            "--rows=7",
            "--seed=3",
            "--latency-ms=2.5",
            "--auto-approve",
            "--token-lifetime=600",
            "--max-requests=10",
            "--window=30",
            "--max-concurrent=4",
            "--retry-after=1.5",
            "--fault-503-rate=0.1",
            "--fault-drop-rate=0.05",
        ]
    )
    options = make_options(**sandbox_cli._sandbox_knobs(args))
    assert options.data_dir == tmp_path
    assert options.database == ":memory:"
    assert options.reset and options.auto_approve
    assert (options.rows, options.seed, options.latency_ms) == (7, 3, 2.5)
    assert options.access_token_lifetime == 600
    assert options.max_requests_per_window == 10
    assert options.window_seconds == 30
    assert options.max_concurrent_requests == 4
    assert options.retry_after_seconds == 1.5
    assert (options.fault_503_rate, options.fault_drop_rate) == (0.1, 0.05)
    # Flags not given keep the defaults.
    bare = make_options(**sandbox_cli._sandbox_knobs(cli.build_parser().parse_args(["sandbox"])))
    assert bare.database is None and not bare.auto_approve and bare.rows == 2000


@pytest.mark.slow
def test_console_script_end_to_end(tmp_path):
    process, info = run_until_json(
        [*console_script(), "--data-dir", str(tmp_path), "--memory", "--rows", "5"]
    )
    try:
        assert KEYS <= set(info)
        assert Path(info["ca_cert"]) == tmp_path / "ca.pem"
        context = ssl.create_default_context(cafile=info["ca_cert"])
        with httpx.Client(verify=context, trust_env=False) as client:
            response = client.post(
                info["token_uri"],
                data={
                    "grant_type": "client_credentials",
                    "client_id": info["confidential_client_id"],
                    "client_secret": info["client_secret"],
                    "scope": f"{info['base_url']}/.default",
                },
            )
        assert response.status_code == 200, response.text
        assert response.json()["access_token"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert f"running at {info['base_url']}" in stderr
    assert "stopped" in stderr
    assert response.json()["access_token"] not in stderr


@pytest.mark.slow
def test_python_dash_m_with_auto_approve(tmp_path):
    command = [sys.executable, "-m", "d365nb.sandbox", "--data-dir", str(tmp_path), "--memory"]
    process, info = run_until_json([*command, "--rows", "5", "--auto-approve"])
    try:
        context = ssl.create_default_context(cafile=info["ca_cert"])
        with httpx.Client(verify=context, trust_env=False) as client:
            flow = client.post(
                f"{info['authority']}/oauth2/v2.0/devicecode",
                data={
                    "client_id": info["public_client_id"],
                    "scope": f"{info['base_url']}/user_impersonation",
                },
            ).json()
            response = client.post(
                info["token_uri"],
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                    "client_id": info["public_client_id"],
                    "device_code": flow["device_code"],
                },
            )
        assert response.status_code == 200, response.text
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    # The sandbox may log user codes (never tokens) for the person running it.
    assert flow["user_code"] in stderr


def test_busy_port_exits_with_a_message(sandbox, tmp_path, capsys):
    port = sandbox.base_url.rsplit(":", 1)[1]
    code = cli.main(["sandbox", "--port", port, "--data-dir", str(tmp_path), "--memory"])
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_unknown_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["sandbox", "--rowz", "5"])
    assert info.value.code == 2
    assert "unrecognized arguments: --rowz" in capsys.readouterr().err
