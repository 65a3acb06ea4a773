"""Watching Python's cycle collector in tests: what it was as a function ran, and a block
run with it turned off by the caller."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

import pytest


def record_collector(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[bool]:
    """Patch `owner.name` to note `gc.isenabled()` at each call; the notes, in order."""
    seen: list[bool] = []
    original = getattr(owner, name)

    def recorded(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    gc.enable()
    return seen


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """The collector turned off by the caller; checked still off at the end of the block,
    and turned back on after it whatever happened."""
    gc.disable()
    try:
        yield
        assert not gc.isenabled(), "the code under test turned the collector back on"
    finally:
        gc.enable()
