"""Writes: plan a push, send it in chunks (bulk actions or `$batch`), report every row.

`apush()` is the engine behind `df.d365.push()` and `Connection.push()`:

1. **Validate** (`PushOptions` and `_options.check_push()`, no I/O): options, index, key
   and column names.
2. **Plan** (`_plan.plan_push()`, after fetching the table's metadata, before any write):
   one operation per row (`create`, `update`, `upsert`, `delete`), its URL, JSON body and
   conditions.  Every problem in the frame is reported at once (`InvalidFrameError`).
3. **Send**, chunked and in parallel (within `conn.limiter`, which shrinks on 429):

   | rows | first try | when a chunk fails |
   | --- | --- | --- |
   | creates (client-generated ids) | `CreateMultiple` | per-row `$batch` |
   | updates by primary id, no ETag | `UpdateMultiple` | per-row `$batch` |
   | upserts by any key, no ETag | key look-up, `UpsertMultiple` / `CreateMultiple` | per row |
   | ETag-guarded writes, updates by alternate key, deletes | per-row `$batch` | halves |

   A bulk action is all-or-nothing on standard tables, so a chunk that fails is sent again
   as one `$batch` of independent requests with `Prefer: odata.continue-on-error`: every
   good row lands and every bad row gets its own code.  No change sets are used: they
   are all-or-nothing too.  `UpsertMultiple` says nothing per row, so the keys are looked
   up first, one request per 5,000 rows (`_Push.run_upsert()`, `_lookup`): found is
   `updated` (`UpsertMultiple`, the id found), not found is `created` by `CreateMultiple`
   (the ids it answers), which fails whole if another writer created one of those keys
   since the look-up (then those rows go per row: exact).  Nothing is read back by id:
   about one request per chunk of up to 5,000 rows, cut finer to fill the limiter's
   slots (`_batching.chunk_size()`).
   Upserts whose key another row of the frame repeats, or that the look-up cannot place
   for sure, are sent as per-row `$batch` parts (`return=representation`: 201 or 200).
   `_batching.UPSERT_MULTIPLE = False` sends every upsert that way (the switch back).
4. **Report** (`PushReport`): every input row once, with its status, code, message and id.

Safety: rows read with an ETag are written with `If-Match` (a row changed or deleted since
the read is a `conflict`, unless `force=True`); `update` sends `If-Match: *` (never creates);
`create` POSTs (never overwrites: an existing id or key answers 412).  Creates carry
client-generated ids (uuid5 of table, push attempt and row, returned in `report.frame`),
so nothing is created twice within one attempt (`_journal`: an attempt that did not
finish is continued when its rows are pushed again; a new push is a new attempt):

* a request whose connection dropped is sent again (up to 8 times, the transport's 429/503
  handling underneath); on such a retry a create that meets "duplicate" (412) is read back
  and reported `created` if its id is there, a delete that meets 404 is `deleted`, and an
  ETag conflict is `updated` if the row now holds what was sent;
* rows that still failed come back in `report.failed` with their ids: pushing them again
  reports `unchanged` for those that had landed with exactly these values;
* Ctrl-C raises `PushError` with the report so far (rows in flight: code `interrupted`);
  `report.remaining` continues the attempt, so a conflict with our own earlier write is
  read back and reported `updated`, not `conflict`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import pandas as pd

from ._batching import (
    LOOKUP_ROWS,
    URL_LIMIT as _URL_LIMIT,  # noqa: F401 - tests read it here
    chunk_size,
    chunks,
    group_rows,
    lookup_urls as _lookup_urls,  # noqa: F401 - tests read it here
    parallelism,
    plan_report,
)
from ._catalog import Catalog
from ._collector import Hold
from ._exceptions import ODataError, ThrottledError, TransportError
from ._journal import Journal
from ._lookahead import Lookahead, Trace
from ._lookup import find_keys
from ._multipart import (
    BatchFormatError,
    BatchResponse,
    ChangeSetResponse,
    decode_batch_response,
    encode_batch_request,
)
from ._odata import action_path
from ._options import PushOptions, check_push, frame_info
from ._outcomes import (
    _Outcome,
    answered_ids,
    holds,
    lookup_request,
    navigation_map,
    part_outcome,
    stopped_outcomes,
    unsupported,
    write_request,
)
from ._payloads import encode_json
from ._plan import Plan, PlannedRow, plan_push, related_tables
from ._progress import progress_bar, progress_var
from ._report import PushPlan, PushReport, raise_for_push, rows_frame, unknown_code
from ._session import Session

__all__ = ["apush"]

_ATTEMPTS = 8  # sends of one request when its connection drops
_TOKEN_WAIT = 30.0  # seconds a push waits for its token before planning anyway
_GC_HOLD = 1.0  # seconds the cycle collector may stay off after the writes start
_JSON = "application/json"

# Tables on which a bulk action answered "not supported", per session (connection).
_NO_BULK: weakref.WeakKeyDictionary[Session, set[tuple[str, str]]] = weakref.WeakKeyDictionary()


# -- sending ------------------------------------------------------------------------------


@dataclass
class _Sent:
    response: httpx.Response | None = None
    error: Exception | None = None
    retried: bool = False


class _Push:
    """The I/O shell of one push: sends chunks and records each row's outcome.

    Built before the plan (`size` rows), so that key look-ups can go out while the frame
    is planned (`_lookahead`); `plan` is set once planned."""

    plan: Plan

    def __init__(
        self,
        session: Session,
        size: int,
        *,
        batch_size: int | None,
        parallel: bool | int | None,
        progress: Any = None,
    ) -> None:
        self.session = session
        self.batch_size = batch_size
        # True/None: the connection's adaptive limiter alone; False: one at a time.
        cap = 1 if parallel is False else (None if parallel in (None, True) else int(parallel))
        self.slots = asyncio.Semaphore(cap) if cap is not None else None
        self.progress = progress
        self.requests = 0
        n = size
        self.status: list[str | None] = [None] * n
        self.code: list[str | None] = [None] * n
        self.message: list[str | None] = [None] * n
        self.ids: list[str | None] = [None] * n
        self.no_bulk = _NO_BULK.setdefault(session, set())
        # Upserts sent by UpsertMultiple: did the key exist just before (the look-up)?
        self.existed: dict[int, bool] = {}
        self.base = httpx.URL(session.api_root).path
        # Continuing an unfinished attempt: a conflict or a 404 may be our own earlier write.
        self.resumed = False
        self.lookahead: Lookahead | None = None
        self.answered: Callable[[], None] = lambda: None  # called as each write returns
        # Rows whose write request has gone out (its answer may never come: Ctrl-C).
        self.inflight = [False] * n

    def settle(self, row: PlannedRow, outcome: _Outcome) -> None:
        """Record `row`'s outcome (the last one recorded wins)."""
        self.status[row.pos] = outcome.status
        self.code[row.pos] = outcome.code
        self.message[row.pos] = outcome.message
        self.ids[row.pos] = outcome.row_id or row.row_id

    async def send(
        self,
        method: str,
        url: str,
        *,
        content: bytes | Callable[[], bytes],
        headers: Mapping[str, str],
        rows: Sequence[PlannedRow] = (),
        extensions: dict[str, Any] | None = None,
    ) -> _Sent:
        """Send one request within the limits; send it again when its connection drops.

        `rows` are the rows the request writes: marked in flight once it goes out (none
        for a read).  A callable `content` is called once, when the request's
        task runs: the first chunk is on the wire while the next ones are encoded (not
        all of them first)."""
        if callable(content):
            content = content()
        retried = False
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                self.requests += 1
                async with self.slots or contextlib.nullcontext(), self.session.limiter:
                    self.mark(rows)
                    try:
                        response = await self.session.arequest(
                            method, url, content=content, headers=headers, extensions=extensions
                        )
                    finally:
                        if rows:  # a write (not a look-up) came back
                            self.answered()
                return _Sent(response, None, retried)
            except ThrottledError as exc:
                return _Sent(None, exc, retried)
            except ODataError as exc:
                return _Sent(None, exc, retried)
            except TransportError as exc:
                if attempt == _ATTEMPTS:
                    return _Sent(None, exc, retried)
                retried = True
                await asyncio.sleep(min(2.0, 0.1 * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")  # pragma: no cover

    def mark(self, rows: Sequence[PlannedRow]) -> None:
        for row in rows:
            self.inflight[row.pos] = True

    # -- strategies

    async def run(self, strategy: str, rows: list[PlannedRow], *, size: int = 0) -> None:
        """Send one chunk by `strategy` (upserts: one look-up slice, cut into chunks of
        `size` rows); any surprise fails its rows, never the push."""
        try:
            if strategy == "$batch":
                await self.run_batch(rows, retried=False)
            elif strategy == "UpsertMultiple":
                await self.run_upsert(rows, size=size or len(rows))
                return  # its chunks moved the progress bar
            else:
                await self.run_bulk(strategy, rows)
        except Exception as exc:  # an unexpected answer must not lose the other chunks
            self.fail_unsettled(rows, exc)
        self.advance(len(rows))

    def advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.update(n)

    def fail_unsettled(self, rows: list[PlannedRow], exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        for row in rows:
            if self.status[row.pos] is None:
                self.settle(row, _Outcome("failed", "error", error))

    async def run_bulk(self, action: str, rows: list[PlannedRow]) -> None:
        """`CreateMultiple`/`UpdateMultiple` for a chunk; on failure, its rows one by one."""
        pk = self.plan.table.primary_id
        await self.bulk(
            action,
            rows,
            lambda row: {**(row.body or {}), pk: row.row_id},
            "created" if action == "CreateMultiple" else "updated",
            lambda response: (
                answered_ids(response, rows)
                if action == "CreateMultiple"
                else [row.row_id for row in rows]
            ),
        )

    async def bulk(
        self,
        action: str,
        rows: list[PlannedRow],
        target: Callable[[PlannedRow], dict[str, Any]],
        status: str,
        ids: Callable[[httpx.Response], Sequence[str | None]],
    ) -> None:
        """One bulk action (`action`) for a chunk: `target(row)` is each row's entry of
        `Targets` (encoded when the request may go), answered rows are `status` with
        `ids(response)`.  All or nothing: an OData error sends the rows one by one (per-row
        `$batch`), so the good ones land; an action the table refuses is not tried again."""
        table = self.plan.table
        odata_type = f"Microsoft.Dynamics.CRM.{table.logical_name}"

        def body() -> bytes:
            targets = [{"@odata.type": odata_type, **target(row)} for row in rows]
            return encode_json({"Targets": targets})

        sent = await self.send(
            "POST",
            action_path(table.entity_set_name, action),
            content=body,
            headers={"Content-Type": _JSON},
            rows=rows,
        )
        if sent.response is not None:
            for row, row_id in zip(rows, ids(sent.response), strict=True):
                self.settle(row, _Outcome(status, row_id=row_id))
            return
        if isinstance(sent.error, ODataError):
            if unsupported(sent.error):
                self.no_bulk.add((table.logical_name, action))
            await self.run_batch(rows, retried=sent.retried)
            return
        self.fail_all(rows, sent.error)

    async def run_upsert(self, rows: list[PlannedRow], *, size: int) -> None:
        """Upserts of one look-up slice, each row reported `created` or `updated` exactly.

        `UpsertMultiple` answers 204 and nothing per row, so first the slice's keys are
        looked up (`_lookup.find_keys()`: one GET, or one `$batch` of GETs): rows whose key was
        found go by `UpsertMultiple` (`updated`, with the id found), the others by
        `CreateMultiple` (`created`, with the ids it answers), in chunks of `size` rows
        sent side by side: about one request per chunk, plus one look-up per slice.
        Rows the look-up cannot place for sure (a key found only in another case or
        spelling) and whole slices whose look-up fails go the exact way: one `$batch`
        part each, whose 201/200 says which.  A bulk call that fails (all or nothing: one
        bad row fails it) is sent again the same way, so the good rows land and the bad
        ones get their own code.

        Status and races: the status says what the row was just before the write.  A key
        created by someone else between the look-up and the write fails the
        `CreateMultiple` (the key exists), so those rows go one by one and say `updated`:
        two overlapping pushes never both report a row `created`.  A row deleted by
        someone else in that window is re-created by `UpsertMultiple` and reported as the
        look-up saw it (`updated`); its values are the ones sent, nothing lost or doubled.
        A bulk call whose connection dropped is sent again (an upsert is idempotent): the
        look-up was made before either attempt, so rows our first attempt created are
        still reported `created`.
        """
        covered, found = await self.lookahead.found(rows) if self.lookahead else (False, None)
        if not covered:
            found = await find_keys(self.fetch, self.base, self.plan.table, rows)
        if found is None:  # the look-up failed: the exact, per-row way
            await asyncio.gather(
                *(
                    self.chunk(c, partial(self.run_batch, c, retried=False))
                    for c in chunks(rows, size)
                )
            )
            return
        for pos, rid in found.items():
            self.existed[pos] = rid is not None
        # Keys found: UpsertMultiple (updated).  Keys not found: CreateMultiple, which
        # fails whole if another writer created one of them since the look-up; then each
        # row goes the exact way (201/200): two overlapping pushes never both say created.
        creatable = (self.plan.table.logical_name, "CreateMultiple") not in self.no_bulk
        there: list[PlannedRow] = []
        new: list[PlannedRow] = []
        unsure: list[PlannedRow] = []
        for row in rows:
            if row.pos not in found:
                unsure.append(row)
            elif found[row.pos] is not None:
                there.append(row)
            elif creatable and not any(k[0] == "_" for k in row.key_values or {}):
                new.append(row)
            else:
                unsure.append(row)
        tasks = [
            self.chunk(c, partial(self.run_batch, c, retried=False)) for c in chunks(unsure, size)
        ]
        tasks += [
            self.chunk(c, partial(self.upsert_multiple, c, found)) for c in chunks(there, size)
        ]
        tasks += [self.chunk(c, partial(self.create_new, c)) for c in chunks(new, size)]
        await asyncio.gather(*tasks)

    async def chunk(self, rows: list[PlannedRow], step: Callable[[], Awaitable[None]]) -> None:
        """One chunk of an upsert slice: `step()` sends `rows`; its surprises fail only
        its rows; then the progress bar moves."""
        try:
            await step()
        except Exception as exc:  # an unexpected answer must not lose the other chunks
            self.fail_unsettled(rows, exc)
        self.advance(len(rows))

    async def create_new(self, rows: list[PlannedRow]) -> None:
        """`CreateMultiple` for upserts whose key the look-up did not find (`created`, with
        the ids it answers); per-row `$batch` upserts when it fails (a key created by
        someone else since: 200, `updated`)."""
        await self.bulk(
            "CreateMultiple",
            rows,
            lambda row: {**(row.key_values or {}), **(row.body or {})},
            "created",
            lambda response: answered_ids(response, rows),
        )

    async def upsert_multiple(
        self, rows: list[PlannedRow], found: Mapping[int, str | None]
    ) -> None:
        """The `UpsertMultiple` call of `run_upsert()` for rows whose key was found
        (`updated`, with the id the look-up found); per-row `$batch` when it fails."""

        def target(row: PlannedRow) -> dict[str, Any]:
            keys = row.key_values or {}
            # Lookups are in @odata.id alone.
            plain = {name: value for name, value in keys.items() if not name.startswith("_")}
            return {"@odata.id": row.path, **plain, **(row.body or {})}

        await self.bulk(
            "UpsertMultiple", rows, target, "updated", lambda _: [found[r.pos] for r in rows]
        )

    async def fetch(
        self,
        method: str,
        url: str,
        body: bytes,
        headers: dict[str, str],
        trace: Trace | None = None,
    ) -> Any:
        """A key look-up's request (a GET, or a `$batch` of GETs): reads only.  `trace`
        hears httpcore's progress events (`_lookahead`: "the request is on the wire")."""
        extensions = {"trace": trace} if trace is not None else None
        sent = await self.send(method, url, content=body, headers=headers, extensions=extensions)
        return sent.response

    def fail_all(self, rows: list[PlannedRow], error: Exception | None) -> None:
        """Every row of a chunk failed with the same error."""
        if isinstance(error, ThrottledError):
            code = "429"
        elif isinstance(error, ODataError):
            code = error.code or str(error.status)
        else:
            code = "network"
        text = getattr(error, "service_message", None) or str(error)
        for row in rows:
            self.settle(row, _Outcome("failed", code, text))

    async def run_batch(self, rows: list[PlannedRow], *, retried: bool, depth: int = 0) -> None:
        """Rows as independent requests in one `$batch` (continue-on-error), halved on error."""
        size = chunk_size("$batch", self.batch_size)
        if len(rows) > size:
            await asyncio.gather(
                *(self.run_batch(c, retried=retried, depth=depth) for c in chunks(rows, size))
            )
            return
        content_type, body = encode_batch_request(
            [write_request(self.plan.table, self.base, r) for r in rows]
        )
        sent = await self.send(
            "POST",
            "$batch",
            content=body,
            headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
            rows=rows,
        )
        retried = retried or sent.retried
        parts: list[BatchResponse] = []
        error = sent.error
        if sent.response is not None:
            try:
                items = decode_batch_response(
                    sent.response.content, sent.response.headers.get("content-type", "")
                )
            except BatchFormatError as exc:
                error = ODataError(str(exc.message), status=exc.status, code=exc.code)
            else:
                for item in items:
                    parts.extend(item.responses if isinstance(item, ChangeSetResponse) else [item])
        if error is not None:
            if isinstance(error, ODataError) and len(rows) > 1 and depth < 12:
                half = len(rows) // 2
                await asyncio.gather(
                    self.run_batch(rows[:half], retried=retried, depth=depth + 1),
                    self.run_batch(rows[half:], retried=retried, depth=depth + 1),
                )
            else:
                self.fail_all(rows, error)
            return
        verify: list[tuple[PlannedRow, str]] = []
        for row, part in zip(rows, parts, strict=False):
            outcome = part_outcome(
                row,
                part,
                pk=self.plan.table.primary_id,
                retried=retried,
                resumed=self.resumed,
                existed=self.existed.get(row.pos),
            )
            self.settle(row, outcome)
            if outcome.verify:
                verify.append((row, outcome.verify))
        unanswered = rows[len(parts) :]
        if unanswered:
            if depth < 12:
                await self.run_batch(unanswered, retried=retried, depth=depth + 1)
            else:
                for row in unanswered:
                    self.settle(
                        row,
                        _Outcome("failed", "unanswered", "The $batch response had no part for it."),
                    )
        if verify:
            await self.verify(verify)

    async def verify(self, rows: list[tuple[PlannedRow, str]]) -> None:
        """Settle rows whose outcome depends on whether an earlier, lost attempt landed.

        A create of a client-generated id (or one retried after a lost response) that met
        "duplicate" landed if a row with its id exists; a create of a given id that met
        "duplicate" is `unchanged` if that row holds exactly the values sent (a push of
        `report.failed` after a lost response), else it stays failed; an ETag conflict
        after a retry is our own first attempt if the row now holds what we sent.
        """
        content_type, body = encode_batch_request(
            [lookup_request(self.plan.table, self.base, r, k) for r, k in rows]
        )
        sent = await self.send(
            "POST",
            "$batch",
            content=body,
            headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
        )
        if sent.response is None:
            return
        try:
            parts = decode_batch_response(
                sent.response.content, sent.response.headers.get("content-type", "")
            )
        except BatchFormatError:
            return
        navs = navigation_map(self.plan.table)
        for (row, kind), part in zip(rows, parts, strict=False):
            if not isinstance(part, BatchResponse) or part.status != 200:
                continue
            if kind == "landed":
                self.settle(
                    row, _Outcome("created", message="created by an earlier attempt of this push")
                )
            elif kind == "same" and holds(row.body or {}, part.json(), navs):
                self.settle(
                    row,
                    _Outcome(
                        "unchanged",
                        message="already there with these values (an earlier push landed)",
                    ),
                )
            elif kind == "ours" and holds(row.body or {}, part.json(), navs):
                self.settle(
                    row, _Outcome("updated", message="updated by an earlier attempt of this push")
                )


async def apush(
    session: Session,
    catalog: Catalog,
    df: pd.DataFrame,
    table: str | None,
    options: PushOptions,
) -> PushReport | PushPlan:
    """Write a DataFrame's rows to a table; see `df.d365.push` for the options.

    Ctrl-C (the Stop button) raises `PushError` whose `report` says what landed, what was
    not sent and what is unknown (in flight); `report.remaining` pushes the rest.
    """
    check_push(df, table, options)
    dialect_push = getattr(session, "_dialect_push", None)  # F&O connections (issue 23)
    if dialect_push is not None:
        return await dialect_push(df, table, options)  # type: ignore[no-any-return]
    started = time.perf_counter()
    warming = session.warm_up()  # the token comes with the metadata
    hold = Hold()
    try:
        return await _apush(session, catalog, df, table, options, started, warming, hold)
    finally:
        hold.release()
        if not warming.done():
            warming.cancel()
        await asyncio.gather(warming, return_exceptions=True)


async def _apush(
    session: Session,
    catalog: Catalog,
    df: pd.DataFrame,
    table: str | None,
    options: PushOptions,
    started: float,
    warming: asyncio.Task[None],
    hold: Hold,
) -> PushReport | PushPlan:
    name = table or str(frame_info(df)["table"])
    meta = await catalog.table(name)
    tables = await catalog.tables()
    related = {n: await catalog.table(n) for n in related_tables(df, meta, options)}
    # The token first (a token fetched in its thread would wait for the plan)
    await asyncio.wait({warming}, timeout=_TOKEN_WAIT)
    journal = Journal(session.api_root, meta.logical_name)
    batch_size = options.batch_size
    no_bulk = _NO_BULK.setdefault(session, set())
    engine = _Push(session, len(df), batch_size=batch_size, parallel=options.parallel)
    planning = partial(
        plan_push,
        df,
        meta,
        tables,
        options,
        related=related,
        connection_id=session.id,
        earlier=journal.open_rows(),
        # A caller that runs one push as several (d365nb.dask: one task per partition,
        # retried on another worker) names the attempt, so a retry re-uses its ids.
        attempt=str(frame_info(df).get("attempt") or ""),
    )
    engine.lookahead, keyed = Lookahead.start(
        engine.fetch,
        engine.base,
        df,
        meta,
        tables,
        options,
        no_bulk=no_bulk,
        slice_rows=LOOKUP_ROWS,
    )
    # No cycle collection from the plan (a dict per row, no cycles: collections were a third
    # of it) until a write is answered: the full one deferred runs while the service works.
    hold.start()
    engine.answered = partial(hold.release, collect=True)
    if engine.lookahead is None:
        plan = planning(keyed=keyed)
    else:  # the look-ups are on the wire: plan while the service answers them
        try:
            await engine.lookahead.sent()
            plan = planning(keyed=keyed)
        except BaseException as exc:
            cancelled = isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt))
            await engine.lookahead.close(drain=not cancelled)
            raise
    engine.plan, engine.resumed = plan, plan.resumed
    groups = group_rows(plan, no_bulk)
    if options.dry_run:
        return plan_report(
            plan, groups, batch_size, limit=parallelism(session.limiter.limit, options.parallel)
        )
    bar = (
        progress_bar(f"Pushing {plan.table.entity_set_name}", total=len(plan.rows))
        if options.progress and plan.rows
        else None
    )
    engine.progress = bar
    for row in plan.rows:
        if row.op == "none":
            note = row.note or "no writable column to send"
            engine.settle(row, _Outcome("unchanged", message=note))
    opened = {fp: a for fp, a in zip(plan.fingerprints, plan.attempts, strict=True) if fp and a}
    journal.record(opened)  # before any write (a killed kernel's rows are found again)
    token = progress_var.set(bar)  # the transport shows 429 waits on this bar
    interrupted = False
    tasks: list[asyncio.Future[None]] = []
    try:
        limit = parallelism(session.limiter.limit, options.parallel)
        for strategy, rows in groups:
            size = chunk_size(strategy, batch_size, rows=len(rows), limit=limit)
            if strategy == "UpsertMultiple":  # one key look-up per slice, then its chunks
                tasks += [
                    asyncio.ensure_future(engine.run(strategy, part, size=size))
                    for part in chunks(rows, max(LOOKUP_ROWS, size))
                ]
                continue
            tasks += [
                asyncio.ensure_future(engine.run(strategy, chunk)) for chunk in chunks(rows, size)
            ]
        asyncio.get_running_loop().call_later(_GC_HOLD, engine.answered)
        await asyncio.gather(*tasks)
    except BaseException as exc:  # no write goes out unjournaled, no task is left behind
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
            raise
        interrupted = True  # Ctrl-C, the Stop button: report what is known, then raise
    finally:
        progress_var.reset(token)
        if bar is not None:
            bar.close()
        if engine.lookahead is not None:
            await engine.lookahead.close(drain=False)  # all answered, unless Ctrl-C
    for row, outcome in stopped_outcomes(plan.rows, engine.status, engine.inflight):
        engine.settle(row, outcome)  # nothing is silently dropped
    # The attempt stays open, every row of it, while any row's outcome is unknown: the
    # user runs the same cell again, and rows that had landed must be found, not doubled.
    if not any(unknown_code(code) for code in engine.code):
        journal.settle(opened)
    report = PushReport(
        table=plan.table.logical_name,
        mode=options.mode,
        rows=rows_frame(
            plan.frame.index,
            {
                "status": engine.status,
                "code": engine.code,
                "message": engine.message,
                "id": engine.ids,
            },
        ),
        frame=plan.frame,
        elapsed=time.perf_counter() - started,
        requests=engine.requests,
        attempt=plan.attempt,
    )
    raise_for_push(report, interrupted=interrupted, on_error=options.on_error)
    return report
