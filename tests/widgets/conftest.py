"""Helpers for the setup-panel tests: a recording comm, waiting, tokens from the sandbox."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import comm
import ipywidgets as w
import pytest
import pytest_asyncio

from d365nb.sandbox import Sandbox
from tests._support.oauth import client_credentials_token, device_code_tokens


class RecordingComm:
    """Stands in for the kernel's comm: records what would be sent to the browser."""

    kernel = "Truthy"  # ipywidgets only sends (and echoes) when a kernel is attached

    def __init__(self, **kwargs: Any) -> None:
        self.comm_id = kwargs.get("comm_id") or uuid.uuid4().hex
        self.messages: list[dict[str, Any]] = [kwargs.get("data") or {}]

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, callback: Any) -> None:
        pass

    def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        self.messages.append(data or {})

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def recording_comm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every widget made in a test gets a `RecordingComm` (as ipywidgets' own tests do)."""
    monkeypatch.setattr(comm, "create_comm", lambda **kwargs: RecordingComm(**kwargs))
    yield


def sent_to_browser(widget: w.Widget) -> str:
    """Everything this widget's comm sent, as JSON text (to search for secrets)."""
    return json.dumps(widget.comm.messages, default=str)


def browser_types(widget: w.Widget, **state: Any) -> None:
    """Deliver an update from the browser, exactly as a comm message would."""
    widget._handle_msg(
        {
            "content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
            "buffers": [],
        }
    )


def widget_tree(root: w.Widget) -> list[w.Widget]:
    """`root` and every widget reachable through its synced traits."""
    seen: dict[int, w.Widget] = {}
    stack = [root]
    while stack:
        widget = stack.pop()
        if id(widget) in seen:
            continue
        seen[id(widget)] = widget
        for key in widget.keys:
            value = getattr(widget, key)
            items = value if isinstance(value, list | tuple) else [value]
            stack.extend(item for item in items if isinstance(item, w.Widget))
    return list(seen.values())


def saved_state(root: w.Widget) -> str:
    """The state of every widget in the tree, as a notebook would save it."""
    return json.dumps([widget.get_state() for widget in widget_tree(root)], default=str)


async def wait_for(predicate: Callable[[], bool], *, timeout: float = 30.0) -> None:
    """Let the loop run until `predicate()` holds (fails the test after `timeout` s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


def app_access_token(sb: Sandbox) -> str:
    """An access token from the sandbox, fetched the way another tool would."""
    return str(client_credentials_token(sb)["access_token"])


def user_refresh_token(sb: Sandbox, user: str = "megan") -> str:
    """A user's refresh token, obtained with a plain device-code exchange."""
    return str(device_code_tokens(sb, user)["refresh_token"])


@pytest_asyncio.fixture
async def closing() -> AsyncIterator[list[Any]]:
    """Controllers put in this list get their connection closed after the test."""
    controllers: list[Any] = []
    yield controllers
    for ctl in controllers:
        if ctl.connection is not None:
            await ctl.connection.aclose()
