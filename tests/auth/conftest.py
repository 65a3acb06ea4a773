"""Fixtures for sign-in tests: connections to the session sandbox, device-code approval."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from d365nb._auth import DeviceCode
from d365nb.sandbox import Sandbox


@pytest.fixture
def approve_as(sandbox: Sandbox) -> Callable[[str], Callable[[Any], None]]:
    """A prompt that approves the shown device code as a user (from another thread)."""

    def factory(user: str = "alex") -> Callable[[Any], None]:
        def prompt(item: Any) -> None:
            assert isinstance(item, DeviceCode)
            threading.Thread(target=sandbox.approve, args=(item.user_code, user)).start()

        return prompt

    return factory


@pytest.fixture
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox whose access tokens live 2 seconds (refresh on every use)."""
    from d365nb import sandbox as sb_module

    with sb_module.start(
        data_dir=tmp_path_factory.mktemp("short"),
        database=":memory:",
        rows=20,
        access_token_lifetime=2,
    ) as sb:
        yield sb
