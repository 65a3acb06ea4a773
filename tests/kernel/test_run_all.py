"""Queued "Run All" and the Stop button, in a real ipykernel, under both sync runners.

The browser sends every cell of "Run All" at once; nbclient waits for each reply, so only
a kernel driven directly over ZMQ reproduces the queue (reference/jupyter-ux.md §2.3, §4.3).
Every wait is bounded: a hang fails the test instead of blocking CI.
"""

from __future__ import annotations

import http.server
import os
import queue
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

CELL_TIMEOUT = 60.0  # generous: a hang is what this guards against, not slowness


_release_slow = threading.Event()


class _Pong(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/slow":  # a read that does not end before the Stop button
            _release_slow.wait(60)
        body = b"pong"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@dataclass
class HttpsServer:
    url: str
    ca_file: str


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsServer]:
    """A tiny HTTPS server on loopback with a throw-away CA (trustme)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pong)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HttpsServer(f"https://127.0.0.1:{server.server_port}/ping", str(ca_file))
    finally:
        _release_slow.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Cell:
    msg_id: str
    output: str = ""
    errors: list[str] = field(default_factory=list)
    idle: bool = False


class Kernel:
    """A started kernel and a client; helpers that never wait without a deadline."""

    def __init__(self, km: KernelManager, kc: BlockingKernelClient, runner: str | None) -> None:
        self.km, self.kc, self.runner = km, kc, runner

    def send(self, *codes: str) -> list[Cell]:
        """Send every cell at once, as "Run All" does, without waiting for replies."""
        return [Cell(self.kc.execute(code)) for code in codes]

    def drain(self, cells: list[Cell], *, timeout: float, until: str | None = None) -> None:
        """Collect output until every cell is idle (or `until` shows up), at most `timeout` s."""
        by_id = {cell.msg_id: cell for cell in cells}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(cell.idle for cell in cells):
                return
            if until is not None and any(until in cell.output for cell in cells):
                return
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            cell = by_id.get(msg["parent_header"].get("msg_id"))
            if cell is None:
                continue
            content = msg["content"]
            if msg["msg_type"] == "stream":
                cell.output += content["text"]
            elif msg["msg_type"] == "error":
                cell.errors.append(content["ename"])
            elif msg["msg_type"] == "status" and content["execution_state"] == "idle":
                cell.idle = True

    def run(self, *codes: str, timeout: float = CELL_TIMEOUT) -> list[Cell]:
        cells = self.send(*codes)
        self.drain(cells, timeout=timeout)
        return cells


def _start(runner: str | None) -> Kernel:
    env = dict(os.environ)
    env.pop("D365NB_RUNNER", None)
    if runner is not None:
        env["D365NB_RUNNER"] = runner
    # The kernel must import this working tree's d365nb, installed or not.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60, env=env)
    return Kernel(km, kc, runner)


def _stop(kernel: Kernel) -> None:
    kernel.kc.stop_channels()
    kernel.km.shutdown_kernel(now=True)


@pytest.fixture(params=["thread", "nest"])
def kernel(request: pytest.FixtureRequest) -> Iterator[Kernel]:
    k = _start(request.param)
    try:
        yield k
    finally:
        _stop(k)


# Cell 1 reads through the sync API: real async I/O (a sleep and an HTTPS request) run by
# run_sync.  It reports which thread the coroutine ran on, to prove which runner ran it.
CELL_1 = """
import asyncio, ssl, threading
import httpx
from d365nb._sync import resolve_runner, run_sync

async def read():
    await asyncio.sleep(0.2)
    context = ssl.create_default_context(cafile={ca_file!r})
    async with httpx.AsyncClient(verify=context) as client:
        response = await client.get({url!r})
    return threading.current_thread().name, response.text

where, text = run_sync(read())
print("cell1", resolve_runner(), where, text)
"""


def test_run_all_completes_every_cell(kernel: Kernel, https_server: HttpsServer) -> None:
    cell1 = CELL_1.format(ca_file=https_server.ca_file, url=https_server.url)
    cells = kernel.run(cell1, "print('cell2', 6 * 7)", "print('cell3', run_sync(read())[1])")

    assert [c.errors for c in cells] == [[], [], []]
    assert all(c.idle for c in cells), [c.output for c in cells]
    expected_thread = "d365nb-loop" if kernel.runner == "thread" else "MainThread"
    assert cells[0].output == f"cell1 {kernel.runner} {expected_thread} pong\n"
    assert cells[1].output == "cell2 42\n"
    assert cells[2].output == "cell3 pong\n"


LONG_READ = """
import asyncio, ssl
import httpx
from d365nb._sync import run_sync
state = {{"cancelled": False}}

async def long_read():
    context = ssl.create_default_context(cafile={ca_file!r})
    try:
        async with httpx.AsyncClient(verify=context, timeout=120) as client:
            await client.get({url!r})
    except asyncio.CancelledError:
        state["cancelled"] = True
        raise

print("started", flush=True)
run_sync(long_read())
"""


def test_stop_button_cancels_a_running_read(kernel: Kernel, https_server: HttpsServer) -> None:
    slow = https_server.url.replace("/ping", "/slow")
    (cell,) = kernel.send(LONG_READ.format(ca_file=https_server.ca_file, url=slow))
    kernel.drain([cell], timeout=CELL_TIMEOUT, until="started")
    assert cell.output == "started\n" and not cell.idle
    time.sleep(0.5)  # let the request reach the server
    kernel.km.interrupt_kernel()
    kernel.drain([cell], timeout=CELL_TIMEOUT)

    assert cell.idle
    assert cell.errors == ["KeyboardInterrupt"]
    # The coroutine was cancelled, not left running; the kernel and the runner still work.
    (after,) = kernel.run(
        "print(state['cancelled'], run_sync(asyncio.sleep(0.05, result='again')))"
    )
    assert after.errors == []
    assert after.output == "True again\n"


@pytest.mark.slow
def test_archived_nest_asyncio_hangs_run_all(https_server: HttpsServer) -> None:
    """Why d365nb ships nest-asyncio2: nest_asyncio 1.6.0 wedges ipykernel 7's queue.

    Documents reference/jupyter-ux.md §2.3 on the installed versions: cell 1 prints its
    result, and cells 2 and 3 never run.  If this starts failing, the old package (or
    ipykernel) changed and the runner choice should be looked at again.
    """
    cell1 = (
        CELL_1.format(ca_file=https_server.ca_file, url=https_server.url)
        .replace("from d365nb._sync import resolve_runner, run_sync", "import nest_asyncio")
        .replace(
            "where, text = run_sync(read())",
            "nest_asyncio.apply()\nwhere, text = asyncio.run(read())",
        )
        .replace("resolve_runner()", "'nest_asyncio'")
    )
    kernel = _start(None)
    try:
        cells = kernel.run(cell1, "print('cell2')", "print('cell3')", timeout=8.0)
        assert "cell1 nest_asyncio MainThread pong" in cells[0].output
        assert [c.idle for c in cells[1:]] == [False, False]
        assert cells[1].output == cells[2].output == ""
    finally:
        _stop(kernel)


def test_kernel_uses_this_interpreter() -> None:
    """The kernel spec resolves to the test's own Python (so the venv's packages are there)."""
    kernel = _start(None)
    try:
        (cell,) = kernel.run(
            "import sys, d365nb._sync as s; print(sys.executable, s.DEFAULT_RUNNER)"
        )
        assert cell.errors == []
        assert cell.output.split() == [sys.executable, "thread"]
    finally:
        _stop(kernel)
