"""Running d365nb's coroutines from plain (sync) code, including inside a running Jupyter loop.

Two runners sit behind one function, `run_sync()`:

- `"thread"` (the default): a private event loop in one daemon thread per process,
  started on first use.  The caller blocks on the result; the kernel's Stop button
  (`KeyboardInterrupt` in the caller) cancels the coroutine on that loop and re-raises.
  No global patching; works the same in scripts, tests, Voila and every kernel.
- `"nest"`: runs the coroutine on the caller's own running loop through `nest_asyncio2`
  (the maintained fork of the archived nest-asyncio), applied lazily on first use,
  never at import time.

The default was chosen by `tests/kernel/test_run_all.py`, which sends three cells to a real
ipykernel at once (as "Run All" does): both runners complete every cell, and both turn the
Stop button into a `KeyboardInterrupt`; the thread runner needs no process-wide patching of
asyncio, which ipykernel 7 (anyio tasks with per-message contexts) is known to be sensitive
to, so it is the default.  The same test shows why the in-loop runner must be
`nest_asyncio2`: with the archived `nest_asyncio` 1.6.0, cell 1 prints "cannot enter
context" errors and cells 2 and 3 never run.  Choose per call with `runner=`, or per
process with the environment variable `D365NB_RUNNER=thread|nest`.

When no loop is running in the calling thread (a script, a plain REPL), both runners use
the background loop: one long-lived loop means one `httpx.AsyncClient` and its connection
pool serve every call, where `asyncio.run()` would build and tear down a loop per call.

httpx clients are bound to the loop they were first used on.  Keep one per loop with
`LoopLocal`:

```python
clients = LoopLocal(lambda: httpx.AsyncClient(...))

async def aread(...):
    client = clients.get()  # this loop's client, created on first use
```
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Final, Generic, Literal, ParamSpec, TypeVar, cast

from ._exceptions import ConfigError, D365Error

__all__ = [
    "DEFAULT_RUNNER",
    "LoopLocal",
    "RUNNER_ENV",
    "Runner",
    "background_loop",
    "blocking",
    "resolve_runner",
    "run_sync",
    "submit",
]

T = TypeVar("T")
P = ParamSpec("P")
Runner = Literal["thread", "nest"]
RUNNER_ENV: Final = "D365NB_RUNNER"
DEFAULT_RUNNER: Final[Runner] = "thread"
_RUNNERS: Final = ("thread", "nest")
# How long a cancelled coroutine may take to unwind after the Stop button before the
# KeyboardInterrupt is re-raised anyway.
_CANCEL_GRACE: Final = 2.0
_POLL: Final = 0.1

CoroOrFactory = Awaitable[T] | Callable[[], Awaitable[T]]


def resolve_runner(runner: str | None = None) -> Runner:
    """The runner to use: the argument, else `$D365NB_RUNNER`, else `DEFAULT_RUNNER`.

    **Parameters:**

    * **runner** - `"thread"`, `"nest"` or `None`.
    """
    source = "runner"
    if runner is None:
        runner = os.environ.get(RUNNER_ENV, "").strip().lower() or DEFAULT_RUNNER
        source = RUNNER_ENV
    if runner not in _RUNNERS:
        raise ConfigError(
            f"Unknown runner {runner!r} (from {source}).",
            field="runner",
            hint="Use 'thread' (the default) or 'nest'.",
        )
    return cast(Runner, runner)


class _LoopThread:
    """One event loop running forever in one daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(
            target=self._main, args=(started,), name="d365nb-loop", daemon=True
        )
        self.thread.start()
        started.wait()

    def _main(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(started.set)
        self.loop.run_forever()


_lock = threading.Lock()
_background: _LoopThread | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """The private background loop, started on first use (one per process)."""
    global _background
    with _lock:
        if _background is None or not _background.thread.is_alive():
            _background = _LoopThread()
        return _background.loop


async def _as_coroutine(work: CoroOrFactory[T]) -> T:
    """Await `work`; a factory is called here, on the loop that will run its result."""
    awaitable = work() if callable(work) else work
    return await awaitable


def submit(work: CoroOrFactory[T]) -> concurrent.futures.Future[T]:
    """Start `work` on the background loop and return a `concurrent.futures.Future`.

    From another loop (a widget callback on the kernel's loop), await it with
    `await asyncio.wrap_future(submit(...))`.

    **Parameters:**

    * **work** - a coroutine, or a callable returning one (called on the loop that runs it).
    """
    return asyncio.run_coroutine_threadsafe(_as_coroutine(work), background_loop())


def _unwrap_group(exc: BaseException) -> BaseException:
    """A group holding one error (from a TaskGroup) is re-raised as that error."""
    while type(exc).__name__ in ("ExceptionGroup", "BaseExceptionGroup"):
        inner: tuple[BaseException, ...] = tuple(getattr(exc, "exceptions", ()))
        if len(inner) != 1:
            break
        exc = inner[0]
    return exc


def _run_in_thread(work: CoroOrFactory[T]) -> T:
    loop = background_loop()
    stop, done = threading.Event(), threading.Event()
    tasks: list[asyncio.Task[T]] = []
    unwound: list[D365Error] = []  # the d365nb error the work ended with, if any

    async def guarded() -> T:
        try:
            if stop.is_set():  # interrupted before it could start
                if inspect.iscoroutine(work):
                    work.close()
                raise asyncio.CancelledError
            task = asyncio.current_task()
            if task is not None:
                tasks.append(cast("asyncio.Task[T]", task))
            return await _as_coroutine(work)
        except BaseException as exc:
            inner = _unwrap_group(exc)
            if isinstance(inner, D365Error):
                unwound.append(inner)
            raise
        finally:
            done.set()

    def cancel() -> None:
        for task in tasks:
            task.cancel()

    future: concurrent.futures.Future[T] | None = None
    try:
        future = asyncio.run_coroutine_threadsafe(guarded(), loop)
        # Poll rather than block: a blocked lock wait is not woken by Ctrl-C on Windows nor
        # by `_thread.interrupt_main()`; a short timeout lets KeyboardInterrupt in promptly.
        while not future.done():
            concurrent.futures.wait((future,), timeout=_POLL)
        return future.result()
    except BaseException as exc:
        if future is None or not future.done():
            # KeyboardInterrupt (the kernel's Stop button), wherever it landed: cancel the
            # task on the background loop, give it a moment to unwind, re-raise.
            stop.set()
            loop.call_soon_threadsafe(cancel)
            done.wait(_CANCEL_GRACE)
            if unwound:
                # The work turned its cancellation into an error of its own (a read's
                # `PartialReadError`, with the rows so far): that, not a bare interrupt.
                raise unwound[0] from None
            raise
        inner = _unwrap_group(exc)
        if inner is exc:
            raise
        raise inner from None


_nest_applied: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _run_nested(work: CoroOrFactory[T], loop: asyncio.AbstractEventLoop) -> T:
    if loop not in _nest_applied:
        import nest_asyncio2  # lazily: patching asyncio is a process-wide side effect

        nest_asyncio2.apply(loop)
        _nest_applied.add(loop)
    task = loop.create_task(_as_coroutine(work))
    try:
        return loop.run_until_complete(task)
    except BaseException as exc:
        if not task.done():
            task.cancel()  # the Stop button: the task must not go on behind the user's back
            raise
        inner = _unwrap_group(exc)
        if inner is exc:
            raise
        raise inner from None


def run_sync(work: CoroOrFactory[T], *, runner: str | None = None) -> T:
    """Run a coroutine to completion from sync code and return its result.

    ```python
    df = run_sync(conn.aread("accounts"))           # or run_sync(lambda: conn.aread(...))
    ```

    **Parameters:**

    * **work** - a coroutine (or awaitable), or a zero-argument callable returning one,
      called on the loop that runs it (so loop-bound objects are made on the right loop).
    * **runner** - `"thread"` or `"nest"`; default `$D365NB_RUNNER`, else `DEFAULT_RUNNER`.
      Without a running loop in the calling thread the background loop is used either way.

    Ctrl-C (the Stop button) cancels the work; if the work answers its cancellation with
    a d365nb error (a read's `PartialReadError`, holding the rows so far and `resume()`),
    that error is raised instead of the bare `KeyboardInterrupt`.
    """
    try:
        chosen = resolve_runner(runner)
    except ConfigError:
        if inspect.iscoroutine(work):
            work.close()  # never started: no "coroutine was never awaited" warning
        raise
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None and _background is not None and running is _background.loop:
        if inspect.iscoroutine(work):
            work.close()
        raise RuntimeError(
            "run_sync() was called from d365nb's own event loop, where it would deadlock; "
            "await the coroutine instead."
        )
    if running is not None and chosen == "nest":
        return _run_nested(work, running)
    return _run_in_thread(work)


def blocking(
    afn: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, T]:
    """The sync twin of a coroutine function: same parameters, same docstring.

    ```python
    class Connection:
        async def aread(self, entity: str, *, top: int | None = None) -> pd.DataFrame:
            \"\"\"Every row of a table ...\"\"\"

        read = blocking(aread)      # conn.read("accounts", top=5), typed like aread
    ```

    The twin runs the coroutine through `run_sync()` (so Ctrl-C takes one path for every
    verb), creating it on the loop that runs it.  Its name drops the leading `a`.
    """

    @functools.wraps(afn)
    def twin(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(lambda: afn(*args, **kwargs))

    name = afn.__name__.removeprefix("a")
    owner, _, _ = afn.__qualname__.rpartition(".")
    twin.__name__ = name
    twin.__qualname__ = f"{owner}.{name}" if owner else name
    return twin


class LoopLocal(Generic[T]):
    """One value per event loop, made by `factory` on first use in each loop.

    Loops are held weakly: a value goes away with its loop.  Typical use is one
    `httpx.AsyncClient` per loop, since a client must stay on the loop it started on.

    **Parameters:**

    * **factory** - a zero-argument callable, called inside the running loop.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def get(self) -> T:
        """The running loop's value (created now if this loop has none)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if loop not in self._values:
                self._values[loop] = self._factory()
            return self._values[loop]

    def pop(self) -> T | None:
        """Remove and return the running loop's value (to close it), or `None`."""
        loop = asyncio.get_running_loop()
        with self._lock:
            return self._values.pop(loop, None)

    def items(self) -> Iterator[tuple[asyncio.AbstractEventLoop, T]]:
        """Every (loop, value) pair alive now."""
        with self._lock:
            return iter(list(self._values.items()))

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"LoopLocal({len(self)} loop{'s' if len(self) != 1 else ''})"
