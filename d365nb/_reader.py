"""The paging engine: a query's every page into one typed DataFrame, in parallel if it can.

The service pages serially (each `@odata.nextLink` comes with the previous page), so one
large read is split into ranges of `createdon` that are fetched concurrently and put back
together in order.  The ranges are half-open (`ge lower and lt upper`) plus one for rows
with no `createdon`, so every row falls in exactly one range whatever the service's sort
order: nothing lost, nothing twice.  Small reads (one page) and reads whose order matters
(`orderby`, `top`) stay sequential.  Concurrency is governed by the connection's
`AdaptiveLimiter` (starts small, grows while healthy, shrinks on 429, never above
`x-ms-dop-hint`).

Pages are converted as they arrive (`FrameBuilder.add_page`), so memory stays close to the
final DataFrame.  A read that cannot finish raises `PartialReadError` with the rows it has
and `resume()`, which fetches only what is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ._dtypes import wire_select
from ._exceptions import AuthError, ConfigError, D365Error, PartialReadError, TransportError
from ._fetchxml import fetchxml_entity, fetchxml_with_page, paging_cookie_from_annotation
from ._frames import FrameBuilder, concat_frames
from ._metadata import Table
from ._odata import and_filter, encode_query, extreme_query, query_options, range_filters
from ._progress import progress_bar, progress_var, set_total
from ._session import Session
from ._snapshot import snapshot
from ._sync import run_sync
from ._transport import check_same_origin
from ._types import SelectTypes

__all__ = ["MAX_PAGE_SIZE", "ReadPlan", "read_fetchxml", "read_frame"]

MAX_PAGE_SIZE = 5000
PARTITION_COLUMN = "createdon"
DEFAULT_PARTITIONS = 16
_ANNOTATIONS = (
    "OData.Community.Display.V1.FormattedValue,"
    "Microsoft.Dynamics.CRM.lookuplogicalname,"
    "Microsoft.Dynamics.CRM.associatednavigationproperty"
)

try:  # orjson parses large pages 2-3x faster than json; optional.
    import orjson

    def _loads(data: bytes) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - orjson is a dependency
    import json

    def _loads(data: bytes) -> Any:
        return json.loads(data)


@dataclass
class _Part:
    """One range of the read (or the whole read when sequential)."""

    url: str | None  # the next page to fetch; None when finished
    builder: FrameBuilder
    pages: int = 0
    rows: int = 0
    expanded: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.url is None


@dataclass
class ReadPlan:
    """Everything needed to run, and to resume, one read."""

    session: Session
    table: Table
    headers: dict[str, str]
    parts: list[_Part] = field(default_factory=list)
    top: int | None = None
    count: int | None = None
    select: Sequence[str] | None = None
    builder_options: dict[str, Any] = field(default_factory=dict)
    progress: Any = None
    partitioned: bool = False
    expand: tuple[str, ...] = ()
    result: pd.DataFrame | None = None  # the final frame, once finished
    delta_link: str | None = None  # `@odata.deltaLink` of a change-tracked read

    def new_builder(self) -> FrameBuilder:
        return FrameBuilder(self.table, select=self.select, **self.builder_options)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    def _with_expanded(self, frame: pd.DataFrame, expanded: list[dict[str, Any]]) -> pd.DataFrame:
        if not self.expand:
            return frame
        nested = pd.json_normalize(expanded, sep=".", max_level=1)
        nested = nested[[c for c in nested.columns if "@" not in str(c)]]
        for name in self.expand:
            if name not in nested.columns and not any(
                str(c).startswith(name + ".") for c in nested.columns
            ):
                nested[name] = None
        nested.index = frame.index
        combined: pd.DataFrame = pd.concat([frame, nested], axis=1)
        if "_etag" in combined.columns:  # keep the etag last, as the builder does
            combined = combined[[c for c in combined.columns if c != "_etag"] + ["_etag"]]
        return combined

    def frame(self, *, partial: bool) -> pd.DataFrame:
        """The rows read so far, in range order.

        The ranges' builders are merged and finished once, so each column is built a single
        time (no `concat_frames` copy).  A partial frame leaves the builders as they are, for
        `resume()`; the final one takes their chunks and frees them column by column.
        """
        if self.result is not None:  # finished before (a repeated resume())
            again: pd.DataFrame = self.result.copy()
            return again
        try:
            builder = FrameBuilder.merge([p.builder for p in self.parts], consume=not partial)
        except ValueError:  # a column typed differently by two ranges: join finished frames
            df = self._concat_parts()
        else:
            expanded = [row for p in self.parts for row in p.expanded] if self.expand else []
            if not partial:
                for p in self.parts:
                    p.expanded = []
            df = self._with_expanded(builder.finish(), expanded)
            del builder, expanded
            if not len(df.columns):
                df = self.new_builder().finish()
        if self.top is not None and len(df) > self.top:
            df = df.iloc[: self.top].reset_index(drop=True)
        df.attrs.pop("d365", None)
        df.attrs["d365nb"] = {
            "table": self.table.logical_name,
            "entity_set": self.table.entity_set_name,
            "key": self.table.primary_id,
            "connection": self.session.id,
            "partial": partial,
            "count": self.count,
            "expand": list(self.expand),
            "original": snapshot(df),  # push sends only the cells changed since (_snapshot)
        }
        if self.delta_link is not None:
            df.attrs["d365nb"]["delta_link"] = self.delta_link
        if not partial:
            self.result = df
        return df

    def _concat_parts(self) -> pd.DataFrame:
        frames = [
            self._with_expanded(FrameBuilder.merge([p.builder]).finish(), p.expanded)
            for p in self.parts
        ]
        frames = [f for f in frames if len(f.columns)]
        if not frames:
            return self.new_builder().finish()
        return frames[0] if len(frames) == 1 else concat_frames(frames)


def _prefer(page_size: int, *, annotations: bool, fetchxml: bool = False) -> str:
    prefer = f"odata.maxpagesize={page_size}"
    if fetchxml:
        # The paging cookie and "more records" come only when asked for by name (or *).
        prefer += (
            f',odata.include-annotations="{_ANNOTATIONS},'
            'Microsoft.Dynamics.CRM.fetchxmlpagingcookie,Microsoft.Dynamics.CRM.morerecords"'
        )
    elif annotations:
        prefer += f',odata.include-annotations="{_ANNOTATIONS}"'
    return prefer


async def _get_json(plan: ReadPlan, url: str) -> Any:
    session = plan.session
    check_same_origin(url, session.api_root)
    async with session.limiter:
        response = await session.arequest("GET", url, headers=plan.headers)
        body = await response.aread()
    return _loads(body)


async def _run_part(plan: ReadPlan, part: _Part) -> None:
    while part.url is not None:
        body = await _get_json(plan, part.url)
        rows = body.get("value", [])
        if plan.expand:
            part.expanded.extend(
                {name: row.pop(name, None) for name in plan.expand} for row in rows
            )
        part.builder.add_page(rows)
        part.pages += 1
        n = len(rows)
        part.rows += n
        if plan.count is None and "@odata.count" in body:
            plan.count = int(body["@odata.count"])
            set_total(plan.progress, plan.count, at_most=plan.top)
        next_link = body.get("@odata.nextLink")
        plan.delta_link = body.get("@odata.deltaLink", plan.delta_link)
        # Free the page now: held across the next request's await, every range would keep
        # its last page of Python objects alive (16 ranges: 16 pages).
        del body, rows
        if plan.progress is not None:
            plan.progress.update(n)
        if plan.top is not None and plan.rows >= plan.top:
            next_link = None
        if next_link is not None:
            # Replayed verbatim, but only ever to the configured host.
            check_same_origin(next_link, plan.session.api_root)
        part.url = next_link


async def _bounds(plan: ReadPlan, base: str, params: Mapping[str, str]) -> tuple[str, str] | None:
    """The smallest and largest `createdon` the query matches (two tiny requests)."""

    async def one(direction: str) -> str | None:
        query = extreme_query(params, PARTITION_COLUMN, direction)
        body = await _get_json(plan, f"{base}?{encode_query(query)}")
        rows = body.get("value", [])
        return str(rows[0][PARTITION_COLUMN]) if rows else None

    low, high = await asyncio.gather(one("asc"), one("desc"))
    if low is None or high is None:
        return None
    return low, high


# What stops a read part-way and becomes `PartialReadError` (rows so far + resume()).
_STOPS = (asyncio.CancelledError, KeyboardInterrupt, D365Error, OSError)
# The same before the first row, where the service's own refusal of the query (a bad
# filter, a missing table: `ODataError`) is raised as it is: there is nothing to resume.
_EARLY_STOPS = (asyncio.CancelledError, KeyboardInterrupt, TransportError, AuthError, OSError)


async def _execute(plan: ReadPlan) -> pd.DataFrame:
    token = progress_var.set(plan.progress)
    tasks = [asyncio.ensure_future(_run_part(plan, p)) for p in plan.parts if not p.done]
    try:
        await asyncio.gather(*tasks)
    except BaseException as exc:
        # gather() leaves the other ranges running when one fails: stop them (between
        # pages) before the rows so far are taken, or they would keep adding pages behind
        # the PartialReadError and a resume() would fetch the same pages again.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if isinstance(exc, _STOPS):
            raise _partial_error(plan, exc) from exc
        raise
    finally:
        progress_var.reset(token)
    return plan.frame(partial=False)


async def read_frame(
    session: Session,
    table: Table,
    *,
    select: SelectTypes = None,
    filter: str | None = None,  # noqa: A002 - the OData name users know
    orderby: str | Sequence[str] | None = None,
    top: int | None = None,
    expand: str | Sequence[str] | None = None,
    formatted: bool = False,
    page_size: int = MAX_PAGE_SIZE,
    parallel: bool | int = True,
    dtypes: Mapping[str, Any] | None = None,
    decimal: bool = False,
    count: bool = False,
    progress: bool = True,
    prefer: str | None = None,
) -> pd.DataFrame:
    """Read a table into a DataFrame (see `Connection.read`).

    `prefer` is added to the `Prefer` header (`odata.track-changes`: sequential, and the
    final `@odata.deltaLink` lands in `df.attrs["d365nb"]["delta_link"]`).
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ConfigError(
            f"page_size={page_size} is out of range.",
            field="page_size",
            hint=f"Use 1 to {MAX_PAGE_SIZE} (the service's maximum page size).",
        )
    if top is not None and top < 0:
        raise ConfigError("top must be 0 or more.", field="top", hint="Pass top=None for all.")
    params = query_options(
        select=wire_select(table, list(select)) if select else None,
        filter=filter,
        orderby=orderby,
        top=top,
        expand=expand,
        count=count,
    )
    expand_text = params.get("$expand")
    lookups = (
        any(a.is_lookup for a in table.attributes.values())
        if not select
        else any(table.resolve_column(c).is_lookup for c in select)
    )
    headers = {"Prefer": _prefer(page_size, annotations=formatted or lookups)}
    if prefer:
        headers["Prefer"] += f",{prefer}"
        parallel = False
    plan = ReadPlan(
        session=session,
        table=table,
        headers=headers,
        top=top,
        select=list(select) if select else None,
        builder_options={"formatted": formatted, "dtypes": dtypes, "decimal": decimal},
        expand=_expand_names(expand_text) if expand_text else (),
    )
    base = session.api_root + table.entity_set_name
    first_url = f"{base}?{encode_query(params)}" if params else base
    plan.parts.append(_Part(url=first_url, builder=plan.new_builder()))
    if progress:
        plan.progress = progress_bar(f"Reading {table.entity_set_name}")
    try:
        can_split = (
            parallel is not False
            and top is None
            and not orderby
            and PARTITION_COLUMN in table.attributes
        )
        if not can_split:
            return await _execute(plan)
        # First page sequentially: most reads fit in one page and end here.
        first = plan.parts[0]
        token = progress_var.set(plan.progress)
        try:
            body = await _get_json(plan, first_url)
        except _EARLY_STOPS as exc:
            # Nothing fetched yet (network, throttling, sign-in, Ctrl-C): resume() reads it
            # all, sequentially.
            raise _partial_error(plan, exc) from exc
        finally:
            progress_var.reset(token)
        if "@odata.nextLink" not in body:
            rows = body.get("value", [])
            first.builder.add_page(rows)
            first.rows, first.pages, first.url = len(rows), 1, None
            if "@odata.count" in body:
                plan.count = int(body["@odata.count"])
                set_total(plan.progress, plan.count, at_most=plan.top)
            if plan.progress is not None:
                plan.progress.update(len(rows))
            del body, rows
            return plan.frame(partial=False)
        if "@odata.count" in body:
            plan.count = int(body["@odata.count"])
            set_total(plan.progress, plan.count, at_most=plan.top)
        del body  # its rows come again from the partitions
        try:
            bounds = await _bounds(plan, base, params)
        except _EARLY_STOPS as exc:
            raise _partial_error(plan, exc) from exc
        if bounds is None:
            return await _execute(plan)
        n = _partitions(session) if parallel is True else max(1, int(parallel))
        plan.parts = []
        plan.partitioned = True
        for condition in range_filters(PARTITION_COLUMN, bounds[0], bounds[1], n):
            query = dict(params)
            query["$filter"] = and_filter(params["$filter"] if filter else None, condition)
            query.pop("$count", None)
            url = f"{base}?{encode_query(query)}"
            plan.parts.append(_Part(url=url, builder=plan.new_builder()))
        return await _execute(plan)
    finally:
        if plan.progress is not None:
            plan.progress.close()


async def read_fetchxml(
    session: Session,
    table: Table,
    xml: str,
    *,
    page_size: int = MAX_PAGE_SIZE,
    dtypes: Mapping[str, Any] | None = None,
    formatted: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Run a FetchXML query, following its paging cookies (see `Connection.fetchxml`)."""
    _, user_top = fetchxml_entity(xml)
    headers = {"Prefer": _prefer(page_size, annotations=True, fetchxml=True)}
    plan = ReadPlan(
        session=session,
        table=table,
        headers=headers,
        builder_options={"formatted": formatted, "dtypes": dtypes},
    )
    part = _Part(url=None, builder=plan.new_builder())
    plan.parts.append(part)
    if progress:
        plan.progress = progress_bar(f"Reading {table.entity_set_name}")
    base = session.api_root + table.entity_set_name
    state: dict[str, Any] = {"page": 1, "cookie": None, "done": False}

    async def run() -> pd.DataFrame:
        while not state["done"]:
            text = (
                xml
                if user_top
                else fetchxml_with_page(
                    xml, page=state["page"], count=page_size, paging_cookie=state["cookie"]
                )
            )
            try:
                body = await _get_json(plan, f"{base}?{encode_query({'fetchXml': text})}")
            except (D365Error, OSError, asyncio.CancelledError) as exc:
                raise _partial_error(plan, exc, resume=run) from exc
            rows = body.get("value", [])
            part.builder.add_page(rows)
            n = len(rows)
            part.rows += n
            part.pages += 1
            more = body.get("@Microsoft.Dynamics.CRM.morerecords")
            annotation = body.get("@Microsoft.Dynamics.CRM.fetchxmlpagingcookie")
            del body, rows  # not held while the next page is fetched
            if plan.progress is not None:
                plan.progress.update(n)
            if user_top or not more or not n:
                state["done"] = True
            else:
                state["cookie"] = paging_cookie_from_annotation(annotation) if annotation else None
                state["page"] += 1
        return plan.frame(partial=False)

    try:
        return await run()
    finally:
        if plan.progress is not None:
            plan.progress.close()


def _partitions(session: Session) -> int:
    """How many ranges to split a large read into when the caller did not say.

    Twice what the service lets run at once (its `x-ms-dop-hint`, or the user's cap), so
    a slow range never leaves a slot idle, and at most `DEFAULT_PARTITIONS`: every range
    costs the service a scan of its own, so more ranges than slots only add work.
    """
    return max(2, min(DEFAULT_PARTITIONS, 2 * session.limiter.ceiling))


def _expand_names(text: str) -> tuple[str, ...]:
    """Navigation property names of a `$expand` value (options in parentheses skipped)."""
    names, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            names.append(current.strip())
            current = ""
            continue
        if depth == 0 and char not in "()":
            current += char
    names.append(current.strip())
    return tuple(n for n in names if n)


def _partial_error(
    plan: ReadPlan,
    exc: BaseException,
    *,
    resume: Callable[[], Awaitable[pd.DataFrame]] | None = None,
) -> PartialReadError:
    """The error for a read that stopped: the rows so far, and a way to finish it."""
    partial = plan.frame(partial=True)
    plan.progress = None
    missing = sum(1 for p in plan.parts if not p.done) if resume is None else 1
    reason = (
        "it was interrupted"
        if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
        else f"{type(exc).__name__}: {exc}"
    )

    async def resume_parts() -> pd.DataFrame:
        return await _execute(plan)

    return PartialReadError(
        f"The read of {plan.table.entity_set_name} stopped after {len(partial):,} rows "
        f"({missing} of {len(plan.parts)} range(s) unfinished) because {reason}.",
        partial=partial,
        resume=resume or resume_parts,
        run=run_sync,
        hint="err.partial holds the rows so far; err.resume() fetches only the rest.",
    )
