"""`_sync.blocking()`: one async method, its sync twin, the same parameters and docs."""

from __future__ import annotations

import _thread
import asyncio
import inspect
import threading

import pytest

from d365nb import Connection, PartialReadError
from d365nb._sync import blocking


class Greeter:
    async def agreet(self, name: str, *, punctuation: str = "!") -> str:
        """Say hello."""
        await asyncio.sleep(0)
        return f"hello {name}{punctuation} from {threading.current_thread().name}"

    greet = blocking(agreet)


def test_the_twin_runs_the_coroutine_with_the_same_arguments() -> None:
    assert Greeter().greet("ada", punctuation="?") == "hello ada? from d365nb-loop"


def test_the_twin_has_the_async_signature_name_and_docstring() -> None:
    assert Greeter.greet.__name__ == "greet"
    assert Greeter.greet.__qualname__ == "Greeter.greet"
    assert Greeter.greet.__doc__ == "Say hello."
    assert inspect.signature(Greeter.greet) == inspect.signature(Greeter.agreet)
    assert not inspect.iscoroutinefunction(Greeter.greet)


def test_every_connection_verb_is_a_twin_of_its_async_verb() -> None:
    for verb in ("sign_in", "whoami", "read", "fetchxml", "tables", "describe", "push"):
        sync, async_ = getattr(Connection, verb), getattr(Connection, "a" + verb)
        assert inspect.signature(sync) == inspect.signature(async_), verb
        assert sync.__doc__ == async_.__doc__, verb


def test_an_interrupt_becomes_the_error_the_work_unwound_with() -> None:
    started = threading.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise PartialReadError("stopped", partial=None, resume=work, run=lambda c: c) from None

    class Reader:
        async def aread(self) -> None:
            """Read."""
            await work()

        read = blocking(aread)

    timer = threading.Timer(0.0, lambda: (started.wait(5), _thread.interrupt_main()))
    timer.start()
    with pytest.raises(PartialReadError, match="stopped"):
        Reader().read()
    timer.join()
