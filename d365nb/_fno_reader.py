"""The F&O paging engine: an entity's every page into one typed DataFrame.

Like `_reader` for Dataverse, with F&O's rules from `_dialects.fno`: server-driven pages
of up to 10,000 rows (`@odata.nextLink` followed verbatim, only to the configured host),
company scope by `cross-company=true` (never a bare `dataAreaId` filter), enum literals
qualified.  A read longer than a page (no `top`, no `orderby`) runs in key ranges at once
(`_fno_ranges`): the first page comes in key order with the row count, tiny `$skip` probes
find where whole pages of the rest begin, and each range (one company's or several) is
fetched concurrently under the connection's `AdaptiveLimiter`; the ranges are put back in
key order, so the frame equals the sequential read.  Pages are converted as they arrive
(`_fno_pages.convert_page`, one pyarrow pass per page); a read that cannot finish raises
`PartialReadError` with the rows so far and `resume()`.  `dataAreaId` ends as a category.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pandas as pd

from ._dialects.fno import COMPANY, FnoDialect
from ._exceptions import (
    ConfigError,
    D365Error,
    ODataError,
    PartialReadError,
)
from ._fno_pages import convert_page
from ._fno_ranges import KeyRange, cut_offsets, range_keys
from ._metadata import Table
from ._odata import and_filter, encode_query, query_options
from ._progress import progress_bar, progress_var, set_total
from ._session import Session
from ._sync import run_sync
from ._transport import check_same_origin

__all__ = ["MAX_PARTITIONS", "FnoReadPlan", "read_fno"]

#: The most key ranges a read runs in at once (`parallel=True`).
MAX_PARTITIONS = 16

_STOPS = (asyncio.CancelledError, KeyboardInterrupt, D365Error, OSError)
# The service refusing the range machinery itself ($orderby, $count, $skip): read on without.
_NOT_SUPPORTED = (400, 501)
_REFUSED = (401, 403, 404)  # with 400: the query is refused, before any row


@dataclass
class _Part:
    url: str | None
    chunks: list[pd.DataFrame] = field(default_factory=list)
    rows: int = 0

    @property
    def done(self) -> bool:
        return self.url is None


@dataclass
class FnoReadPlan:
    """Everything needed to run, and to resume, one F&O read."""

    session: Session
    table: Table
    columns: list[str]
    headers: dict[str, str]
    decimal: bool = False
    dtypes: Mapping[str, Any] | None = None
    top: int | None = None
    company: str | None = None
    cross_company: bool = False
    parts: list[_Part] = field(default_factory=list)
    count: int | None = None
    progress: Any = None
    result: pd.DataFrame | None = None
    dialect: FnoDialect = field(default_factory=FnoDialect)

    def frame(self, *, partial: bool) -> pd.DataFrame:
        """The rows so far, in part order, typed; `dataAreaId` as a category."""
        if self.result is not None:
            again: pd.DataFrame = self.result.copy()
            return again
        chunks = [c for p in self.parts for c in p.chunks]
        if not chunks:
            chunks = [convert_page([], self.table, self.columns, decimal=self.decimal)]
        df = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0].copy()
        if self.top is not None and len(df) > self.top:
            df = df.iloc[: self.top].reset_index(drop=True)
        if COMPANY in df.columns:
            df[COMPANY] = df[COMPANY].astype("category")
        for name, dtype in (self.dtypes or {}).items():
            if name in df.columns:
                df[name] = df[name].astype(dtype)
        df.attrs["d365nb"] = {
            "table": self.table.logical_name,
            "entity_set": self.table.entity_set_name,
            "key": self.table.primary_id,
            "keys": list(self.dialect.key_fields(self.table)),
            "connection": self.session.id,
            "partial": partial,
            "count": self.count,
            "service": "fno",
            "company": self.company,
            "cross_company": self.cross_company,
        }
        if not partial:
            self.result = df
            for p in self.parts:
                p.chunks = []
        return df


async def _get_bytes(plan: FnoReadPlan, url: str) -> bytes:
    session = plan.session
    check_same_origin(url, session.api_root)
    async with session.limiter:
        response = await session.arequest("GET", url, headers=plan.headers)
        return await response.aread()


async def _get_json(plan: FnoReadPlan, url: str) -> Any:
    return orjson.loads(await _get_bytes(plan, url))  # 2-3x faster than json on large pages


async def _run_part(plan: FnoReadPlan, part: _Part) -> None:
    """Follow one range's next links.  The next page is asked for before this one is
    converted, so the service builds it meanwhile (at most one request ahead)."""
    ahead: asyncio.Future[bytes] | None = None
    try:
        while part.url is not None:
            raw = await (ahead if ahead is not None else _get_bytes(plan, part.url))
            ahead = None
            body = orjson.loads(raw)
            del raw
            rows = body.get("value", [])
            if plan.count is None and "@odata.count" in body:
                plan.count = int(body["@odata.count"])
            next_link = body.get("@odata.nextLink")
            del body
            read = sum(p.rows for p in plan.parts) + len(rows)
            if plan.top is not None and read >= plan.top:
                next_link = None
            if next_link is not None:
                check_same_origin(next_link, plan.session.api_root)
                ahead = asyncio.ensure_future(_get_bytes(plan, next_link))
                await asyncio.sleep(0)  # let it send its request before the page is converted
            _take(plan, part, rows)
            del rows  # free the page's objects before the next one arrives
            part.url = next_link
    finally:
        if ahead is not None:  # stopped before its page was taken: part.url fetches it again
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)


def _take(plan: FnoReadPlan, part: _Part, rows: list[dict[str, Any]]) -> None:
    """Convert one page into `part`."""
    part.chunks.append(convert_page(rows, plan.table, plan.columns, decimal=plan.decimal))
    part.rows += len(rows)
    if plan.progress is not None:
        plan.progress.update(len(rows))


def _partitions(session: Session) -> int:
    """How many key ranges a large read runs in when the caller did not say: as many as
    the limiter lets run at once, at most `MAX_PARTITIONS` (the ranges are whole pages
    of about one size, so one range per slot finishes together)."""
    return max(2, min(MAX_PARTITIONS, session.limiter.ceiling))


async def _execute(plan: FnoReadPlan) -> pd.DataFrame:
    token = progress_var.set(plan.progress)
    tasks = [asyncio.ensure_future(_run_part(plan, p)) for p in plan.parts if not p.done]
    try:
        await asyncio.gather(*tasks)
    except BaseException as exc:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        refused = isinstance(exc, ODataError) and exc.status in (400, *_REFUSED)
        nothing = not any(p.rows for p in plan.parts)
        if isinstance(exc, _STOPS) and not (refused and nothing):
            raise _partial_error(plan, exc) from exc
        raise  # the service refused the query itself: nothing to resume
    finally:
        progress_var.reset(token)
    return plan.frame(partial=False)


async def read_fno(
    session: Session,
    table: Table,
    *,
    dialect: FnoDialect,
    select: Sequence[str] | None = None,
    filter: str | None = None,  # noqa: A002 - the OData name users know
    orderby: str | Sequence[str] | None = None,
    top: int | None = None,
    expand: str | Sequence[str] | None = None,
    company: str | None = None,
    cross_company: bool = False,
    page_size: int | None = None,
    parallel: bool | int = True,
    dtypes: Mapping[str, Any] | None = None,
    decimal: bool = False,
    count: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Read an F&O entity into a DataFrame (see `FnoConnection.read`).

    Without `top` and `orderby`, a read longer than a page runs in key ranges at once
    (`_fno_ranges`): `parallel=True` as many as the limiter allows (at most 16), an int
    that many, `False` one after the other through the server's next links.
    """
    if page_size is not None and not 1 <= page_size <= dialect.max_page_size:
        raise ConfigError(
            f"page_size={page_size} is out of range.",
            field="page_size",
            hint=f"Use 1 to {dialect.max_page_size:,} (F&O's largest page).",
        )
    columns = [table.resolve_column(c).logical_name for c in select] if select else []
    if columns:  # the key fields come along, so that the frame can be pushed back
        columns = [k for k in dialect.key_fields(table) if k not in columns] + columns
    else:
        columns = list(table.attributes)
    extra, scoped = dialect.company_query(
        table, company=company, cross_company=cross_company, filter=filter
    )
    wire_filter = dialect.rewrite_filter(scoped, table)
    params = query_options(
        select=columns if select else None,
        filter=wire_filter,
        orderby=orderby,
        top=top,
        expand=expand,
        count=count,
    )
    params.update(extra)
    headers: dict[str, str] = {}
    if page_size is not None and page_size < dialect.max_page_size:
        # [UNVERIFIED] honoured by F&O (§3.4); the server's own paging is followed anyway.
        headers["Prefer"] = f"odata.maxpagesize={page_size}"
    plan = FnoReadPlan(
        session=session,
        table=table,
        columns=columns,
        headers=headers,
        decimal=decimal,
        dtypes=dtypes,
        top=top,
        company=company,
        cross_company="cross-company" in params,
        dialect=dialect,
    )
    base = session.api_root + table.entity_set_name
    first_url = f"{base}?{encode_query(params)}" if params else base
    plan.parts.append(_Part(url=first_url))
    if progress:
        plan.progress = progress_bar(f"Reading {table.entity_set_name}")
    keys: tuple[str, ...] = ()
    if parallel is not False and top is None and not orderby:
        one_company = company is not None or not plan.cross_company
        keys = range_keys(table, dialect, one_company=one_company)
    n = _partitions(session) if parallel is True else max(1, int(parallel))
    try:
        return await _run(plan, base, params, keys=keys, n=n)
    finally:
        if plan.progress is not None:
            plan.progress.close()


async def _run(
    plan: FnoReadPlan, base: str, params: dict[str, str], *, keys: tuple[str, ...], n: int
) -> pd.DataFrame:
    """The first page (in key order, counted), then the rest in key ranges at once."""
    first = plan.parts[0]
    if not keys or first.url is None:
        return await _execute(plan)
    full_keys = ",".join(plan.dialect.key_fields(plan.table))
    first_params = dict(params, **{"$orderby": full_keys, "$count": "true"})
    throttled_before = plan.session.limiter.throttled
    token = progress_var.set(plan.progress)
    try:
        body = await _get_json(plan, f"{base}?{encode_query(first_params)}")
    except ODataError as exc:
        if exc.status in _NOT_SUPPORTED:
            return await _execute(plan)  # no $orderby/$count here: page after page as asked
        if exc.status in _REFUSED:
            raise  # the service refused the query itself: nothing to resume
        raise _partial_error(plan, exc) from exc
    except _STOPS as exc:
        raise _partial_error(plan, exc) from exc
    finally:
        progress_var.reset(token)
    rows = body.get("value", [])
    next_link = body.get("@odata.nextLink")
    total = body.get("@odata.count")
    if plan.count is None and "$count" in params and total is not None:
        plan.count = int(total)
    set_total(plan.progress, None if next_link is None or total is None else int(total))
    if next_link is not None:
        check_same_origin(next_link, plan.session.api_root)
    _take(plan, first, rows)
    first.url = next_link  # until the ranges are known, the rest is the server's next link
    offsets = cut_offsets(int(total or 0), len(rows), n) if next_link and rows else []
    if not offsets or plan.session.limiter.throttled > throttled_before:
        return await _execute(plan)
    last = tuple(rows[-1].get(k) for k in keys)
    del body, rows
    try:
        found = await asyncio.gather(*(_cut(plan, base, params, keys, o) for o in offsets))
    except ODataError as exc:
        if exc.status not in _NOT_SUPPORTED:
            raise _partial_error(plan, exc) from exc
        return await _execute(plan)  # no $skip probes here: the rest by the next link
    except _STOPS as exc:
        raise _partial_error(plan, exc) from exc
    cuts: list[tuple[Any, ...]] = []
    for cut in found:
        if cut is not None and cut != last and (not cuts or cut != cuts[-1]):
            cuts.append(cut)
    bounds: list[tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]]
    bounds = list(zip([last, *cuts], [*cuts, None], strict=True))

    def literal(name: str, value: Any) -> str:
        return plan.dialect.literal(value, plan.table.attributes.get(name))

    first.url = None
    for i, (low, high) in enumerate(bounds):
        condition = KeyRange(keys, low, high, inclusive=i > 0).condition(literal)
        query = dict(params, **{"$orderby": full_keys})
        query["$filter"] = and_filter(params.get("$filter"), condition)
        query.pop("$count", None)
        plan.parts.append(_Part(url=f"{base}?{encode_query(query)}"))
    return await _execute(plan)


async def _cut(
    plan: FnoReadPlan, base: str, params: Mapping[str, str], keys: Sequence[str], offset: int
) -> tuple[Any, ...] | None:
    """The key of the row at `offset` in key order (one tiny request), or None."""
    query = {k: v for k, v in params.items() if k not in ("$count", "$expand", "$select")}
    query.update(
        {
            "$orderby": ",".join(plan.dialect.key_fields(plan.table)),
            "$select": ",".join(keys),
            "$skip": str(offset),
            "$top": "1",
        }
    )
    rows = (await _get_json(plan, f"{base}?{encode_query(query)}")).get("value", [])
    return tuple(rows[0].get(k) for k in keys) if rows else None


def _partial_error(plan: FnoReadPlan, exc: BaseException) -> PartialReadError:
    partial = plan.frame(partial=True)
    plan.progress = None
    missing = sum(1 for p in plan.parts if not p.done)
    reason = (
        "it was interrupted"
        if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
        else f"{type(exc).__name__}: {exc}"
    )

    async def resume() -> pd.DataFrame:
        return await _execute(plan)

    return PartialReadError(
        f"The read of {plan.table.entity_set_name} stopped after {len(partial):,} rows "
        f"({missing} of {len(plan.parts)} range(s) unfinished) because {reason}.",
        partial=partial,
        resume=resume,
        run=run_sync,
        hint="err.partial holds the rows so far; err.resume() fetches only the rest.",
    )
