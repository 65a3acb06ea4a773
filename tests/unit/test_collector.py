"""`_collector`: the cycle collector held off and given back as it was found."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from d365nb._collector import Hold, paused


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def test_a_hold_turns_the_collector_off_until_released_once() -> None:
    hold = Hold()
    assert gc.isenabled()  # made, not started
    hold.start()
    hold.start()
    assert not gc.isenabled()
    hold.release()
    assert gc.isenabled()
    gc.disable()
    hold.release()  # released already: leaves the collector as it is
    assert not gc.isenabled()


def test_a_collector_turned_off_by_the_caller_stays_off() -> None:
    gc.disable()
    hold = Hold()
    hold.start()
    hold.release(collect=True)
    assert not gc.isenabled()
    with paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_release_with_collect_frees_the_cycles_held_off() -> None:
    hold = Hold()
    hold.start()
    node = _Node()
    ref = weakref.ref(node)
    del node
    assert ref() is not None  # a cycle waits for the collector
    hold.release(collect=True)
    assert ref() is None


def test_paused_gives_the_collector_back_when_the_block_raises() -> None:
    with pytest.raises(ValueError), paused():
        assert not gc.isenabled()
        raise ValueError("boom")
    assert gc.isenabled()
