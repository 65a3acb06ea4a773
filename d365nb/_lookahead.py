"""Key look-ups sent before a push is planned: the service finds the keys while the
frame is checked.

`UpsertMultiple` answers 204 and nothing per row, so an upsert by alternate key looks its
keys up first (`_lookup.find_keys()`, one request per `_batching.LOOKUP_ROWS` rows).  The
keys are known long before the rest of the plan (`_plan.upsert_keys()`: the key columns
only), so `Lookahead.start()` sends those look-ups (reads, never writes) right away, waits
until they are on the wire (httpcore's `trace` events), and `_write.apush()` then checks
the frame and builds the bodies (`_plan.plan_push()`) while the service answers; the
answers wait in the sockets.  (Planning in a thread instead was slower: the plan holds
the interpreter, and the look-ups' own work waited for it.)  Then each upsert slice
takes its answers from `found()` instead of asking again.  20,000 rows: the look-ups'
round trips and the service's work overlap the plan instead of following it.

Nothing changes in what is written or reported: a look-up still comes before every write
of its rows (so the race rules of `_write._Push.run_upsert()` hold), a row whose key the
plan reads differently than the look-up did, or whose look-up failed, is looked up again
or sent the exact way, and a push the plan refuses sends no write (its look-ups finish,
their answers unused).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

import httpx
import pandas as pd

from . import _batching
from ._batching import chunks
from ._dtypes import ETAG_COLUMN
from ._keys import Keyed, upsert_keys
from ._lookup import find_keys
from ._metadata import Table
from ._options import PushOptions, frame_info
from ._plan import PlannedRow
from ._snapshot import snapshot_of

__all__ = ["Lookahead", "Trace", "TracedFetch"]

#: httpcore's `trace` request extension: awaited with each progress event's name.
Trace = Callable[[str, dict[str, Any]], Awaitable[None]]
#: Sends one look-up (`_lookup.Fetch`'s arguments) and tells `trace` how it goes.
TracedFetch = Callable[[str, str, bytes, dict[str, str], Trace], Awaitable[httpx.Response | None]]
#: The event after which a request is on the wire (its body handed to the socket).
_WRITTEN = "http11.send_request_body.complete"
#: How long the plan waits for the look-ups to be on the wire before it starts anyway
#: (a new connection's handshake, a 429 wait).
_SEND_WAIT = 2.0

#: How long a refused push waits for look-ups already sent (a cancel mid-handshake would
#: leave a socket open); Ctrl-C does not wait.
_DRAIN_SECONDS = 10.0


class Lookahead:
    """The key look-ups of one upsert, sent before its plan; see the module docstring."""

    def __init__(
        self,
        fetch: TracedFetch,
        base: str,
        table: Table,
        keyed: Keyed,
        *,
        slice_rows: int,
    ) -> None:
        self._values = keyed.values
        self._slice: dict[int, int] = {}  # row position -> its look-up
        self._tasks: list[asyncio.Task[dict[int, str | None] | None]] = []
        rows = [
            PlannedRow(pos, "upsert", "", None, None, key_values=values)
            for pos, values in enumerate(keyed.values)
            if values is not None
        ]
        self._written: list[asyncio.Event] = []
        for n, part in enumerate(chunks(rows, max(1, slice_rows))):
            written = asyncio.Event()
            self._written.append(written)
            task = find_keys(_traced(fetch, written), base, table, part)
            self._tasks.append(asyncio.ensure_future(task))
            for row in part:
                self._slice[row.pos] = n

    @classmethod
    def start(
        cls,
        fetch: TracedFetch,
        base: str,
        df: pd.DataFrame,
        table: Table,
        tables: Mapping[str, Table],
        options: PushOptions,
        *,
        no_bulk: Collection[tuple[str, str]] = (),
        slice_rows: int,
    ) -> tuple[Lookahead | None, Keyed | None]:
        """Send the look-ups of an upsert by alternate key whose rows go by
        `UpsertMultiple`; returns them (None: nothing sent) and the keys found
        (`_plan.upsert_keys()`, for `plan_push(keyed=...)`; None when not looked at).

        Not for a dry run, a push one request at a time (`parallel=False`), rows guarded
        by ETags, a round trip (only the rows changed since the read are sent) or a table
        whose `UpsertMultiple` was refused: those rows do not go by `UpsertMultiple`.
        """
        info = frame_info(df)
        if not (
            _batching.UPSERT_MULTIPLE
            and options.mode == "upsert"
            and not options.dry_run
            and options.parallel is not False
            and (table.logical_name, "UpsertMultiple") not in no_bulk
            and (options.force or ETAG_COLUMN not in df.columns)
            and not (info.get("table") == table.logical_name and snapshot_of(info) is not None)
        ):
            return None, None
        keyed = upsert_keys(df, table, tables, options)
        if keyed is None or keyed.problems or all(v is None for v in keyed.values):
            return None, keyed
        return cls(fetch, base, table, keyed, slice_rows=slice_rows), keyed

    async def sent(self, *, timeout: float = _SEND_WAIT) -> None:
        """Wait until every look-up is on the wire, or one has been answered (more of
        them than the limiter allows at once), or `timeout`: the caller may then hold
        the event loop (the plan) while the service works."""
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(e.wait()) for e in self._written]
        written: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*waits))
        answered: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        )
        watched = [*waits, written, answered]
        try:
            await asyncio.wait(
                {written, answered}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiting in watched:
                waiting.cancel()
            await asyncio.gather(*watched, return_exceptions=True)

    @property
    def requests(self) -> int:
        """How many look-ups were sent (one request each)."""
        return len(self._tasks)

    async def found(self, rows: Sequence[PlannedRow]) -> tuple[bool, dict[int, str | None] | None]:
        """`(covered, found)` for an upsert slice: covered is False when a row was not
        looked up ahead (or its key changed since), then the caller looks the slice up
        itself; found is `_lookup.find_keys()`'s answer for these rows (None: a look-up
        failed, so the slice goes the exact way)."""
        wanted: set[int] = set()
        for row in rows:
            n = self._slice.get(row.pos)
            if n is None or row.key_values != self._values[row.pos]:
                return False, None
            wanted.add(n)
        merged: dict[int, str | None] = {}
        for n in sorted(wanted):
            try:
                # Shielded: another slice waiting on the same look-up is not cancelled
                # with this one (Ctrl-C cancels them all, by `close()`).
                answer = await asyncio.shield(self._tasks[n])
            except asyncio.CancelledError:
                raise
            except Exception:  # an unexpected answer: the slice asks again itself
                return False, None
            if answer is None:
                return True, None
            merged.update(answer)
        return True, {row.pos: merged[row.pos] for row in rows if row.pos in merged}

    async def close(self, *, drain: bool) -> None:
        """Stop the look-ups still out: let them finish (up to 10 s) when `drain`, else
        cancel them (Ctrl-C)."""
        pending = [t for t in self._tasks if not t.done()]
        if pending and drain:
            with contextlib.suppress(Exception):
                await asyncio.wait(pending, timeout=_DRAIN_SECONDS)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _traced(fetch: TracedFetch, written: asyncio.Event) -> Any:
    """`fetch` as `_lookup.Fetch`, setting `written` once its request is on the wire."""

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event == _WRITTEN:
            written.set()

    async def send(method: str, url: str, body: bytes, headers: dict[str, str]) -> Any:
        return await fetch(method, url, body, headers, trace)

    return send
