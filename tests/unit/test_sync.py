"""run_sync's runners, runner selection, interruption and LoopLocal (no kernel needed)."""

from __future__ import annotations

import _thread
import asyncio
import gc
import subprocess
import sys
import textwrap
import threading

import pytest

from d365nb import ConfigError

if sys.version_info >= (3, 11):
    from builtins import ExceptionGroup
else:  # pragma: no cover - anyio's dependency on 3.10
    from exceptiongroup import ExceptionGroup  # type: ignore[import-not-found,no-redef]
from d365nb._sync import (
    DEFAULT_RUNNER,
    RUNNER_ENV,
    LoopLocal,
    background_loop,
    resolve_runner,
    run_sync,
    submit,
)


async def where(result: object = None) -> tuple[str, object]:
    await asyncio.sleep(0)
    return threading.current_thread().name, result


def test_resolve_runner_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUNNER_ENV, raising=False)
    assert resolve_runner() == DEFAULT_RUNNER == "thread"
    monkeypatch.setenv(RUNNER_ENV, " Nest ")
    assert resolve_runner() == "nest"
    assert resolve_runner("thread") == "thread"


def test_unknown_runner_names_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNNER_ENV, "trio")
    with pytest.raises(ConfigError, match=f"Unknown runner 'trio' \\(from {RUNNER_ENV}\\)"):
        run_sync(where())
    with pytest.raises(ConfigError, match="from runner"):
        resolve_runner("uvloop")


@pytest.mark.parametrize("runner", ["thread", "nest"])
def test_without_a_running_loop_the_background_loop_runs_it(runner: str) -> None:
    assert run_sync(where(1), runner=runner) == ("d365nb-loop", 1)
    assert run_sync(lambda: where(2), runner=runner) == ("d365nb-loop", 2)


def test_one_background_loop_per_process() -> None:
    async def loop_id() -> int:
        return id(asyncio.get_running_loop())

    assert run_sync(loop_id()) == run_sync(loop_id()) == id(background_loop())


def test_any_awaitable_is_accepted() -> None:
    async def make() -> asyncio.Future[str]:
        future = asyncio.get_running_loop().create_future()
        future.set_result("done")
        return future

    assert run_sync(lambda: asyncio.ensure_future(where("x"))) == ("d365nb-loop", "x")
    assert run_sync(make()).result() == "done"


def test_a_timeout_error_from_the_coroutine_is_not_mistaken_for_polling() -> None:
    async def slow() -> None:
        await asyncio.wait_for(asyncio.sleep(10), timeout=0.01)

    with pytest.raises(TimeoutError):
        run_sync(slow())


def test_errors_propagate_and_single_groups_unwrap() -> None:
    async def fail() -> None:
        raise LookupError("nope")

    async def group() -> None:  # what a TaskGroup raises when one task fails
        raise ExceptionGroup("one", [ExceptionGroup("inner", [LookupError("nope")])])

    with pytest.raises(LookupError, match="nope"):
        run_sync(fail())
    with pytest.raises(LookupError, match="nope"):
        run_sync(group())


def test_groups_of_several_errors_are_kept() -> None:
    async def group() -> None:
        raise ExceptionGroup("two", [LookupError("a"), KeyError("b")])

    with pytest.raises(ExceptionGroup):
        run_sync(group())


@pytest.mark.asyncio
async def test_thread_runner_inside_a_running_loop() -> None:
    assert run_sync(where(3), runner="thread") == ("d365nb-loop", 3)


def test_calling_run_sync_from_its_own_loop_is_refused() -> None:
    async def inner() -> None:
        run_sync(where())

    with pytest.raises(RuntimeError, match="would deadlock"):
        run_sync(inner())


def test_keyboard_interrupt_cancels_the_coroutine() -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def long_read() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def press_stop() -> None:
        if started.wait(10):
            _thread.interrupt_main()  # what the kernel's Stop button does

    threading.Thread(target=press_stop, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_sync(long_read())
    assert cancelled.is_set()
    assert run_sync(where("still works")) == ("d365nb-loop", "still works")


@pytest.mark.asyncio
async def test_submit_from_another_loop() -> None:
    result = await asyncio.wait_for(asyncio.wrap_future(submit(lambda: where(4))), 10)
    assert result == ("d365nb-loop", 4)


def test_nest_runner_runs_on_the_callers_loop() -> None:
    """In a subprocess: nest_asyncio2 patches asyncio for the whole process."""
    script = textwrap.dedent(
        """
        import asyncio, sys, threading
        from d365nb._sync import run_sync

        async def inner():
            await asyncio.sleep(0.01)
            return asyncio.get_running_loop(), threading.current_thread().name

        async def outer():
            mine = asyncio.get_running_loop()
            loop, name = run_sync(inner(), runner="nest")   # nested in the running loop
            again, _ = run_sync(inner(), runner="nest")     # applied once, still fine
            bg, bg_name = run_sync(inner(), runner="thread")
            print(loop is mine, again is mine, name, bg is mine, bg_name)

        asyncio.run(outer())
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "MainThread", "False", "d365nb-loop"]


def test_nest_is_not_applied_at_import() -> None:
    script = (
        "import asyncio, sys; orig = asyncio.run; import d365nb, d365nb._sync; "
        "print(asyncio.run is orig, 'nest_asyncio2' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]


def test_loop_local_keeps_one_value_per_loop() -> None:
    made: list[int] = []

    def factory() -> object:
        made.append(id(asyncio.get_running_loop()))
        return object()

    local: LoopLocal[object] = LoopLocal(factory)

    async def twice() -> tuple[object, object]:
        return local.get(), local.get()

    a1, a2 = run_sync(twice())
    loop = asyncio.new_event_loop()
    b1, b2 = loop.run_until_complete(twice())
    assert a1 is a2 and b1 is b2 and a1 is not b1
    assert len(local) == 2 and repr(local) == "LoopLocal(2 loops)"
    assert dict(local.items())[loop] is b1

    async def pop() -> object | None:
        return local.pop()

    assert loop.run_until_complete(pop()) is b1
    assert len(local) == 1
    loop.run_until_complete(twice())
    loop.close()
    del loop
    gc.collect()
    assert len(local) == 1  # the closed loop's value went with it
    assert len(made) == 3
    with pytest.raises(RuntimeError):
        local.get()  # no running loop


def test_module_exports_are_sorted_and_present() -> None:
    import d365nb._sync as module

    assert module.__all__ == sorted(module.__all__)
    assert all(hasattr(module, name) for name in module.__all__)
