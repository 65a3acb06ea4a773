"""Chunked reads: `conn.read(table, chunksize=N)` as an iterator of typed DataFrames.

The `pandas.read_sql(chunksize=)` convention, on the same paging engine as `read()`
(`_reader.read_frame`, its ranges fetched concurrently).  The engine awaits a hook after
every page (`ReadPlan.on_page`); once the rows not yet handed out reach `chunksize`, the
hook takes them out of the ranges' builders (typed exactly as `read()` types them: dtypes
and categories come from the metadata, so the chunks concatenate cleanly), cuts them into
frames of `chunksize` rows and queues them.  While a chunk is queued and the caller has
not taken it, the ranges wait after their next page, so memory stays near two chunks plus
a page per range, whatever the table's size.

Order: with `parallel=False` (or `orderby`/`top`, which read sequentially) the chunks come
in the service's order and `pd.concat(chunks)` equals `read()`.  A parallel read hands out
the rows of all ranges as they arrive, so the same rows come in another order (sort by the
primary key to compare).  Each chunk's index continues the previous one's.

A read that stops (network, throttling, Ctrl-C) raises `PartialReadError` after the chunks
already complete: `err.partial` holds the rows fetched but not yet handed out, and
iterating again (or `err.resume()`, which returns the same iterator) fetches only what is
missing and hands those rows out first.
"""

from __future__ import annotations

import asyncio
import numbers
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pandas as pd

from ._exceptions import ConfigError, PartialReadError
from ._frames import concat_frames
from ._reader import ReadPlan
from ._snapshot import snapshot
from ._sync import run_sync

__all__ = ["Chunks", "OnPage", "check_chunksize"]

OnPage = Callable[[ReadPlan], Awaitable[None]]
# Chunks cut and waiting for the caller before the ranges pause.
_AHEAD = 1


def check_chunksize(chunksize: Any) -> int:
    """`chunksize` as a whole number of rows >= 1, or a `ConfigError` naming it."""
    if (
        isinstance(chunksize, bool)
        or not isinstance(chunksize, numbers.Integral)
        or int(chunksize) < 1
    ):
        raise ConfigError(
            f"chunksize={chunksize!r} is not a number of rows.",
            field="chunksize",
            hint="Pass a whole number of rows per chunk, e.g. chunksize=50_000 (or "
            "chunksize=None for one DataFrame).",
        )
    return int(chunksize)


class Chunks(Iterator[pd.DataFrame], AsyncIterator[pd.DataFrame]):
    """The DataFrames of a chunked read, `chunksize` rows each (the last may be shorter).

    ```python
    for chunk in conn.read("accounts", chunksize=50_000):      # or: async for ... in
        chunk.to_parquet(...)                                  # await conn.aread(...)
    ```

    A read that matches no row yields one empty frame with the read's columns and dtypes
    (as pandas does).  `delta_link` is the change-tracked read's link once it finished.
    Stop early with `close()` (or `with conn.read(..., chunksize=N) as chunks:`).

    **Parameters:**

    * **start** - runs the read with the hook it is given (`read_frame(on_page=...)`)
      and returns the rows the hook did not take.
    * **chunksize** - rows per chunk.
    * **top** - the most rows handed out in all.
    * **finish** - applied to every chunk before it is handed out.
    """

    def __init__(
        self,
        start: Callable[[OnPage], Awaitable[pd.DataFrame]],
        *,
        chunksize: int,
        top: int | None = None,
        finish: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    ) -> None:
        self._start = start
        self.chunksize = check_chunksize(chunksize)
        self._top = top
        self._finish = finish
        self._ready: deque[pd.DataFrame] = deque()
        self._leftover: pd.DataFrame | None = None
        self._taken = 0  # the plan's rows already moved out of its builders
        self._emitted = 0  # rows handed out
        self._resume: Callable[[], Awaitable[Any]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped: PartialReadError | None = None
        self._done = False  # the read finished: hand out what is ready, then stop
        self._closed = False  # closed (or `top` reached): hand out nothing more
        self._wakeup: asyncio.Event | None = None
        self._space: asyncio.Event | None = None
        self.delta_link: str | None = None
        self.chunks = 0  # chunks handed out

    def __repr__(self) -> str:
        state = "finished" if self._closed or (self._done and not self._ready) else "open"
        return (
            f"<Chunks chunksize={self.chunksize:,} handed_out={self.chunks} "
            f"rows={self._emitted:,} ({state})>"
        )

    # -- the engine's side ----------------------------------------------------------

    def _buffered(self, plan: ReadPlan) -> int:
        leftover = 0 if self._leftover is None else len(self._leftover)
        return plan.rows - self._taken + leftover

    async def _on_page(self, plan: ReadPlan) -> None:
        """After each page: cut full chunks; wait while the caller is behind.

        Once closed, every range ends after the page it has (no request is cut off)."""
        while True:
            if self._closed:
                for part in plan.parts:
                    part.url = None
                return
            if self._buffered(plan) < self.chunksize:
                return
            if len(self._ready) < _AHEAD:
                self._take(plan)
                continue
            space = self._events()[1]
            space.clear()
            await space.wait()

    def _take(self, plan: ReadPlan) -> None:
        """Move every range's rows so far into chunks (and a leftover below chunksize)."""
        frame = plan.frame(partial=False)  # merges and frees the ranges' builders
        plan.result = None
        for part in plan.parts:
            part.builder = plan.new_builder()
            part.expanded = []
        self._taken = plan.rows
        self._cut(frame, final=False)

    def _cut(self, frame: pd.DataFrame, *, final: bool) -> None:
        link = frame.attrs.get("d365nb", {}).get("delta_link")
        if link:
            self.delta_link = str(link)
        if self._leftover is not None and len(self._leftover):
            attrs = frame.attrs
            frame = concat_frames([self._leftover, frame]) if len(frame) else self._leftover
            frame.attrs = attrs
        self._leftover = None
        n, start = self.chunksize, 0
        while len(frame) - start >= n:
            self._ready.append(frame.iloc[start : start + n])
            start += n
        rest = frame.iloc[start:] if start else frame
        if not final:
            self._leftover = rest
        elif len(rest) or (not self.chunks and not self._ready):
            self._ready.append(rest)  # the short last chunk, or the one empty frame
        self._events()[0].set()

    async def _produce(self) -> None:
        try:
            if self._resume is None:
                rest = await self._start(self._on_page)
            else:
                rest = await self._resume()
        except PartialReadError as exc:
            self._resume = exc.aresume
            self._stopped = exc
            return
        self._cut(rest, final=True)
        self._done = True

    # -- the caller's side ----------------------------------------------------------

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._wakeup is None or self._space is None:
            self._wakeup, self._space = asyncio.Event(), asyncio.Event()
        return self._wakeup, self._space

    def _hand_out(self, chunk: pd.DataFrame) -> pd.DataFrame:
        if self._top is not None and self._emitted + len(chunk) > self._top:
            chunk = chunk.iloc[: max(0, self._top - self._emitted)]
        chunk = chunk.copy()
        chunk.index = pd.RangeIndex(self._emitted, self._emitted + len(chunk))
        info = dict(chunk.attrs.get("d365nb") or {})
        info.update(partial=False, chunk=self.chunks, original=snapshot(chunk))
        chunk.attrs = {"d365nb": info}
        self._emitted += len(chunk)
        self.chunks += 1
        if self._top is not None and self._emitted >= self._top:
            self.close()
        return self._finish(chunk) if self._finish is not None else chunk

    def _partial_error(self, exc: PartialReadError) -> PartialReadError:
        parts = [f for f in (self._leftover, exc.partial) if f is not None and len(f)]
        partial = concat_frames(parts) if len(parts) > 1 else (parts[0] if parts else exc.partial)
        partial = partial.copy()
        partial.attrs = {"d365nb": {**exc.partial.attrs.get("d365nb", {}), "partial": True}}
        this = self

        async def resume() -> Chunks:
            return this

        error = PartialReadError(
            f"{exc.message} ({self.chunks} chunk(s), {self._emitted:,} rows handed out before).",
            partial=partial,
            resume=resume,
            run=run_sync,
            hint="err.partial holds the rows read since the last chunk; iterate again (or "
            "err.resume(), the same iterator) to fetch only the rest.",
        )
        error.__cause__ = exc.__cause__
        return error

    async def __anext__(self) -> pd.DataFrame:
        wakeup, space = self._events()
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._ready:
                chunk = self._ready.popleft()
                space.set()
                return self._hand_out(chunk)
            if self._done:
                raise StopAsyncIteration
            if self._stopped is not None:
                stopped, self._stopped = self._stopped, None
                raise self._partial_error(stopped) from stopped.__cause__
            task = self._task
            if task is not None and task.done():
                self._task = None
                if not task.cancelled() and task.exception() is not None:
                    self._done = True
                    task.result()  # the read's own error (a refused query), as read() raises
                continue
            if task is None:
                self._task = asyncio.ensure_future(self._produce())
                self._task.add_done_callback(lambda _: wakeup.set())
            wakeup.clear()
            try:
                await wakeup.wait()
            except asyncio.CancelledError:
                # The Stop button: stop the read too (its ranges between pages), and answer
                # with the PartialReadError it turns into, as read() does.
                running = self._task
                if running is not None and not running.done():
                    running.cancel()
                    await asyncio.gather(running, return_exceptions=True)
                self._task = None
                if self._stopped is not None:
                    stopped, self._stopped = self._stopped, None
                    raise self._partial_error(stopped) from stopped.__cause__
                raise

    def __aiter__(self) -> Chunks:
        return self

    def __iter__(self) -> Chunks:
        return self

    def __next__(self) -> pd.DataFrame:
        try:
            return run_sync(self.__anext__)
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        """Stop the read (each range ends after its current page); the iterator is then
        exhausted."""
        self._closed = True
        task, space = self._task, self._space
        if task is not None and not task.done() and space is not None:
            # Wake the ranges waiting for room: they see `closed` and end (between pages,
            # so no request is cut off mid-way).
            task.get_loop().call_soon_threadsafe(space.set)

    async def aclose(self) -> None:
        """Async twin of `close`: stops the read and waits for it to unwind."""
        task = self._task
        self.close()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def __enter__(self) -> Chunks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Chunks:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        task = self._task
        if task is not None and not task.done():
            loop = task.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(task.cancel)
