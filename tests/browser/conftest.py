"""Real-browser fixtures: Debian's chromium (no browser download), JupyterLab, a sandbox.

Run these tests in their own pytest process (after Playwright's sync API has run, asyncio
tests in the same process fail):

    python -m pytest tests/browser -m browser -p no:asyncio

Needs `apt-get install chromium fonts-dejavu-core` and
`pip install playwright pytest-playwright jupyterlab` (no `playwright install`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from d365nb.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "d365nb-browser-test"


@pytest.fixture(scope="session")
def base_url() -> str | None:
    """Replaces pytest-playwright's fallback fixture (a plugin-object method, which pytest 9
    deprecates, and `filterwarnings = error` turns that into a failure)."""
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's chromium, with the switches that keep it off the network."""
    assert Path(CHROMIUM).exists(), "apt-get install -y chromium"
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    """The sandbox's pages use a certificate from its own throw-away CA."""
    return {
        **browser_context_args,
        "ignore_https_errors": True,
        "viewport": {"width": 1280, "height": 1000},
    }


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots and the server log go (test-artifacts/ is gitignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    return ARTIFACTS


SETUP_CELL = "import d365nb\npanel = d365nb.setup(token_cache=False)"
NOTEBOOK = "setup.ipynb"


def write_setup_notebook(root: Path, name: str = NOTEBOOK) -> Path:
    """A one-cell notebook that shows the setup panel."""
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "cells": [
            {
                "cell_type": "code",
                "id": "setup",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": SETUP_CELL,
            }
        ],
    }
    path = root / name
    path.write_text(json.dumps(notebook))
    return path


@dataclass
class Server:
    """A Jupyter server (JupyterLab or Voila) on loopback."""

    base: str
    token: str
    root: Path

    def url(self, path: str) -> str:
        return f"{self.base}/{path}?token={self.token}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _settings(folder: Path) -> None:
    """Save widget state in the notebook (the case to prove safe); no news, no updates."""
    files = {
        "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings": {"saveState": True},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))


def _kernel_env(tmp: pytest.TempPathFactory, sb: Sandbox, root: Path) -> dict[str, str]:
    """The server's (and so its kernels') environment: this working tree's d365nb, the
    sandbox described only by `D365NB_SANDBOX` (a file, as Binder's start script writes)."""
    info = root.parent / f"{root.name}-sandbox.json"
    info.write_text(json.dumps(sb.info()) + "\n")
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("D365NB_")]:
        env.pop(key)
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp.mktemp("jupyter-config")),
        D365NB_SANDBOX=str(info),
        D365NB_TOKEN_CACHE_DIR=str(tmp.mktemp("tokens")),
        D365NB_CONFIG=str(root.parent / f"{root.name}-profiles.toml"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    return env


@contextlib.contextmanager
def _serve(cmd: list[str], env: dict[str, str], log: Path, ready: str) -> Iterator[None]:
    """Run a server until the test session ends; wait (at most 60 s) until `ready` (a URL,
    or `host:port` to wait for the port to listen) answers."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if ready.startswith("http"):
                        urllib.request.urlopen(ready, timeout=1)
                    else:  # host:port: only wait for the port to listen
                        host, port = ready.rsplit(":", 1)
                        socket.create_connection((host, int(port)), timeout=1).close()
                    break
                except OSError:
                    assert proc.poll() is None, f"the server exited; see {log}"
                    assert time.monotonic() < deadline, f"no answer in 60 s; see {log}"
                    time.sleep(0.3)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def lab(
    tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox, artifacts: Path
) -> Iterator[Server]:
    """JupyterLab on loopback, saving widget state in notebooks."""
    root = tmp_path_factory.mktemp("lab")
    settings = tmp_path_factory.mktemp("settings")
    _settings(settings)
    port = _free_port()
    env = _kernel_env(tmp_path_factory, sandbox, root)
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path_factory.mktemp("workspaces")),
    )
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.extension_manager=readonly",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:  # CI runs as root; Voila has no such switch (nor needs it)
        cmd.append("--allow-root")
    base = f"http://127.0.0.1:{port}"
    ready = f"{base}/api/status?token={TOKEN}"
    with _serve(cmd, env, artifacts / "jupyterlab.log", ready):
        yield Server(base=base, token=TOKEN, root=root)


@pytest.fixture(scope="session")
def voila(
    tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox, artifacts: Path
) -> Iterator[Server]:
    """Voila serving the setup notebook as an app (no code shown)."""
    root = tmp_path_factory.mktemp("voila")
    notebook = write_setup_notebook(root)
    port = _free_port()
    env = _kernel_env(tmp_path_factory, sandbox, root)
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--port={port}",
        f"--token={TOKEN}",
    ]
    base = f"http://127.0.0.1:{port}"
    ready = f"127.0.0.1:{port}"
    with _serve(cmd, env, artifacts / "voila.log", ready):
        yield Server(base=base, token=TOKEN, root=root)
