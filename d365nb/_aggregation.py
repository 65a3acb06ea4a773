"""Running an aggregation: `$apply` requests, and `createdon` ranges past the 50,000-row limit.

The plan and the arithmetic live in `_aggregate`; this module only sends requests.  A
request refused with AggregateQueryRecordLimit is retried as two halves of its `createdon`
range, recursively, until every part is small enough; the parts are combined exactly.
`nunique` cannot be combined from parts: then the columns are read and pandas aggregates
them, with a `D365Warning` saying so.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ._aggregate import LIMIT_CODE, AggregatePlan, plan_aggregate
from ._catalog import Reader
from ._exceptions import D365Warning, ODataError
from ._metadata import Table
from ._odata import and_filter, extreme_query, literal

__all__ = ["aggregate_frame"]

_DATE = "createdon"
_Answers = list[list[dict[str, Any]]]


def _limited(exc: ODataError) -> bool:
    return (exc.code or "").lower() == LIMIT_CODE


_Span = tuple[dt.datetime, dt.datetime, bool]  # low, high, high included


async def _run(
    conn: Reader, table: Table, plan: AggregatePlan, flt: str | None, span: _Span | None
) -> _Answers:
    """Every request of the plan over the rows of `flt` (and `span` of `createdon`)."""
    low = high = None
    where = flt
    if span is not None:
        low = literal(span[0])
        high = literal(span[1]) if span[2] else "<" + literal(span[1])
        upper = "le" if span[2] else "lt"
        flt = and_filter(flt, f"{_DATE} ge {low} and {_DATE} {upper} {literal(span[1])}")
    groups = list(zip(plan.groups, plan.by, strict=True))
    answers: _Answers = []
    for request in plan.requests:
        if plan.fetch:
            params = {"fetchXml": request.fetchxml(table, groups, low, high, where)}
        else:
            params = {"$apply": request.text(plan.groups, flt)}
        response = await conn.arequest("GET", table.entity_set_name, params=params)
        answers.append(response.json()["value"])
    return answers


async def _bound(conn: Reader, table: Table, flt: str | None, direction: str) -> dt.datetime:
    params = extreme_query({"$filter": flt} if flt else {}, _DATE, direction)
    response = await conn.arequest("GET", table.entity_set_name, params=params)
    (row,) = response.json()["value"]
    return dt.datetime.fromisoformat(str(row[_DATE]).replace("Z", "+00:00"))


async def _ranges(
    conn: Reader,
    table: Table,
    plan: AggregatePlan,
    flt: str | None,
    low: dt.datetime,
    high: dt.datetime,
    *,
    last: bool,
    known_too_big: bool = False,
) -> list[_Answers]:
    """The answers for rows with `low <= createdon < high` (`<= high` when `last`)."""
    if not known_too_big:
        try:
            return [await _run(conn, table, plan, flt, (low, high, last))]
        except ODataError as exc:
            if not _limited(exc):
                raise
    half = dt.timedelta(seconds=(high - low).total_seconds() // 2)
    if half < dt.timedelta(seconds=1):
        raise ODataError(
            f"More rows than the aggregate limit were created within one second ({low}).",
            status=400,
            code=LIMIT_CODE,
            hint="Narrow the filter; such a part cannot be split by createdon.",
        )
    middle = low + half
    first, second = await asyncio.gather(
        _ranges(conn, table, plan, flt, low, middle, last=False),
        _ranges(conn, table, plan, flt, middle, high, last=last),
    )
    return first + second


async def _from_rows(
    conn: Reader,
    table: Table,
    plan: AggregatePlan,
    flt: str | None,
) -> pd.DataFrame:
    """Read the columns and let pandas aggregate them (for `nunique` past the limit)."""
    names = [g.name for g in plan.by]
    sources = [g.attribute.logical_name for g in plan.by]
    columns = list(dict.fromkeys(sources + [m.attribute.logical_name for m in plan.measures]))
    frame = await conn.aread(table.entity_set_name, select=columns, filter=flt, progress=False)
    for g in plan.by:
        if g.part:
            when = frame[g.attribute.logical_name].dt
            part = when.isocalendar().week if g.part == "week" else getattr(when, g.part)
            frame[g.name] = part.astype("Int64")
    spec = {m.name: (m.attribute.logical_name, m.func) for m in plan.measures}
    result: pd.DataFrame
    if names:
        result = frame.groupby(names, dropna=False, observed=True, sort=True).agg(**spec)
    else:
        result = pd.DataFrame({name: [frame[col].agg(func)] for name, (col, func) in spec.items()})
    return result


async def aggregate_frame(
    conn: Reader,
    table: Table,
    by: str | tuple[str, str] | Sequence[str | tuple[str, str]] | None,
    *,
    filter: str | None,  # noqa: A002
    named: Mapping[str, tuple[str, str]],
) -> pd.DataFrame:
    """`conn.aggregate()`: plan, run (in `createdon` ranges past the limit), combine."""
    plan = plan_aggregate(table, by, named, filter=filter)
    try:
        return plan.frame(plan.combine([await _run(conn, table, plan, filter, None)]))
    except ODataError as exc:
        if not _limited(exc):
            raise
    parts = plan.build(split=True)
    if parts.needs_rows:
        warnings.warn(
            f"The aggregate covers more rows of {table.entity_set_name!r} than the service "
            "aggregates at once (AggregateQueryRecordLimit) and nunique cannot be combined "
            "from parts: reading the columns and counting with pandas instead.",
            D365Warning,
            stacklevel=3,
        )
        return await _from_rows(conn, table, parts, filter)
    low = await _bound(conn, table, filter, "asc")
    high = await _bound(conn, table, filter, "desc")
    answers = await _ranges(conn, table, parts, filter, low, high, last=True, known_too_big=True)
    return parts.frame(parts.combine(answers))
