"""Every notebook runs top to bottom against a sandbox started by this test session.

The sandbox runs in a thread of the test process; its description (the JSON line
`d365nb sandbox` prints) is written to a file and handed to each kernel as
`D365NB_SANDBOX`, the contract the notebooks (`d365nb.sandbox.notebook()`) and the
setup panel read.  nbclient executes with `store_widget_state=False`, as CI must (it would
otherwise save widget state, secrets included, into the notebook).

Executed copies and the plot of `02_explore` go to `test-artifacts/` (gitignored).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from d365nb.sandbox import Sandbox, start

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "test-artifacts"
EXPECTED = (
    "00_start_here",
    "01_connect",
    "02_explore",
    "03_write_back",
    "04_workshop",
    "05_performance",
    "06_finance_operations",
    "07_incremental",
)
# 05_performance reads this many accounts in CI (100,000 by default): enough pages to show
# parallel reading and throttling, small enough to run in well under a minute.
PERFORMANCE_ROWS = "20000"
CELL_TIMEOUT = 300
# A JWT (access or id token) starts with the base64 of '{"': never in an output.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")


def _notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


@pytest.fixture(scope="module")
def notebook_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Path]]:
    """A sandbox for the notebooks (its own: they write), and the file describing it."""
    folder = tmp_path_factory.mktemp("notebook-sandbox")
    with start(
        data_dir=folder, database=":memory:", rows=300, auto_approve=True, fno=True, fno_rows=300
    ) as sb:
        info = folder / "sandbox.json"
        info.write_text(json.dumps(sb.info()) + "\n", "utf-8")
        yield sb, info


def _kernel_env(info: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("D365NB_")}
    env.update(
        D365NB_SANDBOX=str(info),
        D365NB_NOTEBOOK_ROWS=PERFORMANCE_ROWS,
        # Profiles and token caches of the notebooks stay in the test's folders.
        D365NB_CONFIG=str(home / "profiles.toml"),
        D365NB_TOKEN_CACHE_DIR=str(home / "tokens"),
        MPLBACKEND="module://matplotlib_inline.backend_inline",
    )
    return env


def _outputs_text(nb: Any) -> str:
    parts: list[str] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                parts.append(str(output["text"]))
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/") or mime.endswith("json"):
                    parts.append(value if isinstance(value, str) else json.dumps(value))
            parts.extend(output.get("traceback", []))
    return "\n".join(parts)


def _images(nb: Any) -> list[bytes]:
    return [
        base64.b64decode(output["data"]["image/png"])
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]


def test_the_notebooks_are_there() -> None:
    assert tuple(p.stem for p in _notebook_paths()) == EXPECTED


@pytest.mark.parametrize("path", _notebook_paths(), ids=lambda p: p.stem)
def test_committed_notebook_is_stripped(path: Path) -> None:
    """No outputs, no execution counts, no widget state in the notebooks kept in git."""
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs"
            assert cell.execution_count is None, f"{path.name}: a cell has an execution count"
        assert "widgets" not in cell.metadata
        assert "execution" not in cell.metadata


@pytest.mark.sandbox
@pytest.mark.slow
@pytest.mark.parametrize("path", _notebook_paths(), ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(
    path: Path, notebook_sandbox: tuple[Sandbox, Path], tmp_path: Path
) -> None:
    sb, info = notebook_sandbox
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        store_widget_state=False,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute(env=_kernel_env(info, tmp_path))
    finally:  # the executed copy, also when a cell failed
        (ARTIFACTS / "notebooks").mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, ARTIFACTS / "notebooks" / path.name)  # type: ignore[no-untyped-call]

    assert "widgets" not in nb.metadata  # store_widget_state=False
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    text = _outputs_text(nb)
    # The sandbox's secret is published in its JSON line only; never in an output.
    assert sb.client_secret not in text
    assert not _JWT.search(text)
    assert "Traceback" not in text
    if path.stem == "02_explore":
        _check_plot(nb)


# -- a sandbox that does not approve device codes by itself ---------------------------------

_ZERO_ROWS = re.compile(r"(?<![\d,])0 rows")
_APPROVING = "Sandbox sign-in: approving device code"


@pytest.fixture(scope="module")
def manual_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Path]]:
    """A sandbox started without auto-approve (the README's `d365nb sandbox` form)."""
    folder = tmp_path_factory.mktemp("manual-sandbox")
    with start(data_dir=folder, database=":memory:", rows=300, auto_approve=False) as sb:
        info = folder / "sandbox.json"
        info.write_text(json.dumps(sb.info()) + "\n", "utf-8")
        yield sb, info


def _execute(nb: Any, env: dict[str, str], folder: Path, *, timeout: int = CELL_TIMEOUT) -> None:
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        store_widget_state=False,
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute(env=env)


@pytest.mark.sandbox
@pytest.mark.slow
@pytest.mark.parametrize("name", ["00_start_here", "02_explore", "04_workshop"])
def test_notebook_approves_its_own_device_code(
    name: str, manual_sandbox: tuple[Sandbox, Path], tmp_path: Path
) -> None:
    """Against a sandbox that does not approve device codes, the first cell approves its
    own through the sandbox's approval route, and the notebook runs to the end.  (Were the
    route refused, the cell would stop at once with the command to run: see
    tests/notebooks/test_sandbox_helpers.py.)  A cell that waited for a person would fail
    the 60 s cell timeout."""
    sb, info = manual_sandbox
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    try:
        _execute(nb, _kernel_env(info, tmp_path), tmp_path, timeout=60)
    finally:
        (ARTIFACTS / "notebooks-manual").mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, ARTIFACTS / "notebooks-manual" / f"{name}.ipynb")  # type: ignore[no-untyped-call]
    first = "".join(o.get("text", "") for o in nb.cells[_first_code(nb)].outputs)
    assert _APPROVING in first and "Approved as alex@" in first
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    if name == "04_workshop":  # "Run All" solves nothing: each check says so
        assert _outputs_text(nb).count("No answer yet") == 6  # text and HTML
    else:
        _check_progress_outputs(nb)
    assert sb.running


def _first_code(nb: Any) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")


def _check_progress_outputs(nb: Any) -> None:
    """Progress bars are plain outputs left with their final count: no widget (Voila and a
    reopened notebook would say "model not found"), never "0 rows" in the saved file."""
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    bars = [
        o["data"]
        for o in outputs
        if "<div class='d365nb-progress'" in str(o.get("data", {}).get("text/html", ""))
    ]
    assert bars, "no progress bar in the outputs"
    for data in bars:
        assert "rows" in data["text/plain"] and not _ZERO_ROWS.search(data["text/plain"])


_PROBE_CELLS = (
    "import d365nb, d365nb.sandbox\n"
    "sb = d365nb.sandbox.notebook()\n"
    'conn = d365nb.sandbox.connect(sb, grant="device_code", approve_as="alex", token_cache=True)\n'
    "conn.sign_in()",
    "print(conn.whoami().user_id, conn.auth.cache.path.parent.name)",
)


@pytest.mark.sandbox
@pytest.mark.slow
def test_second_notebook_signs_in_from_the_token_cache(
    manual_sandbox: tuple[Sandbox, Path], tmp_path: Path
) -> None:
    """Two notebooks (two kernels), same user and sandbox: the second signs in silently from
    the token cache, which lives in a folder named after the sandbox's CA."""
    _, info = manual_sandbox
    env = _kernel_env(info, tmp_path)
    outputs = []
    for _ in range(2):
        nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
        nb.cells = [nbformat.v4.new_code_cell(c) for c in _PROBE_CELLS]  # type: ignore[no-untyped-call]
        _execute(nb, env, tmp_path, timeout=60)
        outputs.append(["".join(o.get("text", "") for o in c.outputs) for c in nb.cells])
    (first_sign_in, first_who), (second_sign_in, second_who) = outputs
    assert _APPROVING in first_sign_in
    assert second_sign_in == ""  # no device code, nothing to approve
    assert first_who == second_who and "sandbox-" in second_who
    folders = list((tmp_path / "tokens").iterdir())
    assert [f.name for f in folders] == [second_who.split()[-1]]


def _check_plot(nb: Any) -> None:
    """02_explore's plots come out as a real PNG image, kept in test-artifacts/."""
    import matplotlib.image

    images = _images(nb)
    assert images, "02_explore shows no image"
    png = ARTIFACTS / "02_explore_plot.png"
    png.write_bytes(images[0])
    assert images[0][:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(png)
    height, width = pixels.shape[:2]
    assert width > 600 and height > 200
    # Not a blank canvas: bars in two colours, text and axes on white.
    assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::97]}) > 5


# -- Binder ---------------------------------------------------------------------------------

BINDER = ROOT / "binder"
_PROBE = """
import json
import d365nb.sandbox
from d365nb.sandbox._info import find_sandbox

sb = d365nb.sandbox.notebook()           # must attach to Binder's sandbox, not start one
preset = find_sandbox()                  # what d365nb.setup() offers
with d365nb.sandbox.connect(sb, grant="device_code") as conn:
    conn.sign_in()                       # device code, approved by --auto-approve
    who = conn.whoami()
    rows = len(conn.read("accounts", select=["name"], progress=False))
with d365nb.sandbox.connect(sb, service="fno") as fno:  # notebook 06's environment
    companies = len(fno.companies())
print(json.dumps({"base_url": sb.base_url, "preset": preset.service_url, "running":
                  sb.running, "user": who.name, "rows": rows, "companies": companies}))
"""


def test_binder_config_follows_repo2docker() -> None:
    """requirements/runtime/postBuild/start as repo2docker reads them (jupyter-ux.md §5)."""
    assert (BINDER / "runtime.txt").read_text().strip().startswith("python-3.")
    requirements = (BINDER / "requirements.txt").read_text()
    assert "matplotlib" in requirements
    post_build = (BINDER / "postBuild").read_text()
    assert post_build.startswith("#!/bin/bash") and "set -euo pipefail" in post_build
    assert '".[sandbox,notebook]"' in post_build
    start_script = (BINDER / "start").read_text()
    assert start_script.startswith("#!/bin/bash")
    assert start_script.rstrip().endswith('exec "$@"')
    assert "--auto-approve" in start_script and "D365NB_SANDBOX=" in start_script
    for name in ("postBuild", "start"):
        assert os.access(BINDER / name, os.X_OK), f"binder/{name} must be executable"
    assert not (ROOT / ".binder").exists()  # both folders at once is an error


def _wait_gone(pid: int) -> None:
    import signal
    import time

    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return
        if state == "Z":  # exited; its new parent reaps it
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@pytest.mark.sandbox
@pytest.mark.slow
def test_binder_start_runs_a_sandbox_the_notebooks_find(tmp_path: Path) -> None:
    """binder/start starts the sandbox; a kernel's code finds it through D365NB_SANDBOX."""
    import subprocess
    import sys

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("D365NB_")}
    env.update(
        HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        D365NB_SANDBOX_ROWS="40",
    )
    state = home / ".d365nb-sandbox"
    try:
        done = subprocess.run(
            ["bash", str(BINDER / "start"), sys.executable, "-c", _PROBE],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        pid_file = state / "sandbox.pid"
        if pid_file.exists():
            _wait_gone(int(pid_file.read_text()))
    assert done.returncode == 0, done.stderr
    info = json.loads((state / "sandbox.json").read_text().splitlines()[0])
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["base_url"] == info["base_url"]
    assert found["preset"] == info["service_url"]
    assert found["running"] is True
    assert found["user"] == "Alex Wilber"
    assert found["rows"] == 40
    assert found["companies"] >= 1  # binder/start serves F&O too (notebook 06)
