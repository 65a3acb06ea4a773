"""The setup panel in a real ipykernel: "Run All" with a sign-in in the first cell.

Three cells are sent at once, as the browser does for "Run All".  The first shows the
panel, signs in through its button (a task on the kernel's loop, awaited at top level)
and reads through the sync API; the others must run too.  The kernel finds the sandbox
only through `D365NB_SANDBOX`, as on Binder.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from d365nb.sandbox import Sandbox

from .test_run_all import CELL_TIMEOUT, Kernel, _start, _stop

pytestmark = pytest.mark.sandbox

CELL_1 = """
import d365nb
panel = d365nb.setup(token_cache=False)
panel.controller.use_sandbox(method="client_credentials")
panel.sign_in_button.click()          # what the button does in the browser
await panel.controller.task           # top-level await: the kernel loop runs the task
conn = d365nb.connection()
print("cell1", panel.controller.state, conn.whoami().user_id)   # the sync API
"""
CELL_2 = "print('cell2', 6 * 7)"
CELL_3 = "print('cell3', d365nb.connection().whoami().organization_id)"


@pytest.fixture(params=["thread", "nest"])
def kernel(
    request: pytest.FixtureRequest,
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Kernel]:
    info = tmp_path / "sandbox.json"
    info.write_text(json.dumps(sandbox.info()) + "\n")
    monkeypatch.setenv("D365NB_SANDBOX", str(info))
    monkeypatch.setenv("D365NB_TOKEN_CACHE_DIR", str(tmp_path / "tokens"))
    k = _start(request.param)
    try:
        yield k
    finally:
        _stop(k)


def test_run_all_with_sign_in_in_the_first_cell(kernel: Kernel, sandbox: Sandbox) -> None:
    from d365nb.sandbox._directory import CONFIDENTIAL_CLIENT_ID, ORG_ID, app_by_id

    app_user = app_by_id(CONFIDENTIAL_CLIENT_ID).application_user_id  # type: ignore[union-attr]
    cells = kernel.run(CELL_1, CELL_2, CELL_3, timeout=CELL_TIMEOUT)
    assert [c.errors for c in cells] == [[], [], []], [c.output for c in cells]
    assert all(c.idle for c in cells), [c.output for c in cells]
    assert cells[0].output == f"cell1 connected {app_user}\n"
    assert cells[1].output == "cell2 42\n"
    assert cells[2].output == f"cell3 {ORG_ID}\n"


def _messages(kernel: Kernel, code: str) -> list[dict[str, Any]]:
    """Every iopub message of one cell, until it is idle (bounded by CELL_TIMEOUT)."""
    msg_id = kernel.kc.execute(code)
    deadline = time.monotonic() + CELL_TIMEOUT
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            msg = kernel.kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        found.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return found
    raise AssertionError(f"the cell did not finish in {CELL_TIMEOUT} s")


def test_errors_show_as_message_and_fix(kernel: Kernel) -> None:
    found = _messages(
        kernel, "import d365nb\nd365nb.setup(show=False, sandbox=False)\nd365nb.connection()"
    )
    name, lines, page = _short_error(kernel, found)
    assert name == "AuthError" and len(lines) == 3
    assert "Not signed in yet." in lines[0] and "d365nb.setup()" in lines[1]
    assert "Not signed in yet." in page and "d365nb.setup()" in page and "<details" in page


def test_setup_as_the_last_expression_shows_the_panel_once(kernel: Kernel) -> None:
    found = _messages(kernel, "import d365nb\nd365nb.setup(sandbox=False)")
    views = [
        m
        for m in found
        if m["msg_type"] in ("display_data", "execute_result")
        and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]
    ]
    assert len(views) == 1, [m["msg_type"] for m in found]
    assert not [m for m in found if m["msg_type"] in ("error", "execute_result")]


def _error_lines(kernel: Kernel, code: str) -> tuple[str, list[str]]:
    errors = [m["content"] for m in _messages(kernel, code) if m["msg_type"] == "error"]
    assert len(errors) == 1, errors
    return errors[0]["ename"], errors[0]["traceback"]


def _short_error(kernel: Kernel, found: list[dict[str, Any]]) -> tuple[str, list[str], str]:
    """A `D365Error` shown short: its reply's name, its text lines and its HTML.

    One output only (no separate error output repeating the message); the execute reply
    still says "error", so "Run All" stops there.
    """
    assert not [m for m in found if m["msg_type"] == "error"], found
    shown = [m["content"]["data"] for m in found if m["msg_type"] == "display_data"]
    assert len(shown) == 1 and set(shown[0]) == {"text/plain", "text/html"}, shown
    msg_id = found[0]["parent_header"]["msg_id"]
    while (reply := kernel.kc.get_shell_msg(timeout=CELL_TIMEOUT))["parent_header"].get(
        "msg_id"
    ) != msg_id:
        continue
    content = reply["content"]
    assert content["status"] == "error"
    lines: list[str] = content["traceback"]
    assert shown[0]["text/plain"] == "\n".join(lines)
    return content["ename"], lines, shown[0]["text/html"]


def _traceback_in(page: str) -> str:
    """The text of the folded `<details>` in `page` (an error's HTML)."""
    assert page.count("<details") == 1 and "<details open" not in page, page
    folded = page[page.index("<details") : page.index("</details>")]
    assert "<summary" in folded and "Full traceback" in folded, folded
    return folded


def test_plain_import_shows_errors_as_one_line_and_the_fix(kernel: Kernel) -> None:
    """No `setup()`: `import d365nb` alone makes a `D365Error` short in a notebook.

    Jupyter shows HTML: the one line and the fix, the full traceback one click away in a
    folded `<details>`; the text form (terminals, saved text) stays one line, fix, `%tb`.
    """
    found = _messages(
        kernel, "import d365nb\nraise d365nb.ConfigError('Bad Service URL.', hint='Use https.')"
    )
    name, lines, page = _short_error(kernel, found)
    assert name == "ConfigError" and len(lines) == 3
    assert "Bad Service URL." in lines[0] and "Use https." in lines[1] and "%tb" in lines[2]
    assert not any("Traceback" in line for line in lines)
    before = page[: page.index("<details")]
    assert "ConfigError" in before and "Bad Service URL." in before
    assert "Fix:" in before and "Use https." in before
    folded = _traceback_in(page)
    assert "raise d365nb.ConfigError(" in folded and "ConfigError" in folded
    assert "\x1b[" not in page
    # Other errors keep IPython's full traceback.
    name, lines = _error_lines(kernel, "1 / 0")
    assert name == "ZeroDivisionError" and any("Traceback" in line for line in lines)


def test_push_error_in_a_plain_notebook_is_one_line_with_its_fix(
    kernel: Kernel, sandbox: Sandbox
) -> None:
    code = f"""
import d365nb, pandas as pd
conn = d365nb.connect(
    service_url={sandbox.service_url!r}, tenant={sandbox.tenant!r},
    client_id={sandbox.info()["confidential_client_id"]!r},
    client_secret={sandbox.info()["client_secret"]!r},
    verify={sandbox.info()["ca_cert"]!r}, token_cache=False,
)
pd.DataFrame({{"no_such_column": [1]}}).d365.push("accounts", conn=conn)
"""
    name, lines, page = _short_error(kernel, _messages(kernel, code))
    assert name == "InvalidFrameError" and len(lines) == 3, lines
    assert "no_such_column" in lines[0] and "Fix:" in lines[1]
    assert not any("Traceback" in line or "File " in line for line in lines)
    before = page[: page.index("<details")]
    assert "no_such_column" in before and "Fix:" in before
    assert "push(" in _traceback_in(page)


def test_plain_python_import_loads_no_ipython() -> None:
    """Outside IPython nothing changes: importing d365nb does not even import IPython."""
    import subprocess
    import sys

    code = "import sys, d365nb; print('IPython' in sys.modules, 'ipywidgets' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "False"]
