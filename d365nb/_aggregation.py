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
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._aggregate import LIMIT_CODE, AggregatePlan, plan_aggregate
from ._exceptions import D365Warning, ODataError
from ._metadata import Table
from ._odata import and_filter, extreme_query, literal

if TYPE_CHECKING:
    from ._client import Connection

__all__ = ["aggregate_frame"]

_DATE = "createdon"
_Answers = list[list[dict[str, Any]]]


def _limited(exc: ODataError) -> bool:
    return (exc.code or "").lower() == LIMIT_CODE


async def _run(conn: Connection, table: Table, plan: AggregatePlan, flt: str | None) -> _Answers:
    answers: _Answers = []
    for request in plan.requests:
        response = await conn.arequest(
            "GET",
            table.entity_set_name,
            params={"$apply": request.text(plan.groups, flt)},
        )
        answers.append(response.json()["value"])
    return answers


async def _bound(conn: Connection, table: Table, flt: str | None, direction: str) -> dt.datetime:
    params = extreme_query({"$filter": flt} if flt else {}, _DATE, direction)
    response = await conn.arequest("GET", table.entity_set_name, params=params)
    (row,) = response.json()["value"]
    return dt.datetime.fromisoformat(str(row[_DATE]).replace("Z", "+00:00"))


async def _ranges(
    conn: Connection,
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
        upper = "le" if last else "lt"
        part = f"{_DATE} ge {literal(low)} and {_DATE} {upper} {literal(high)}"
        try:
            return [await _run(conn, table, plan, and_filter(flt, part))]
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
    conn: Connection,
    table: Table,
    plan: AggregatePlan,
    flt: str | None,
) -> pd.DataFrame:
    """Read the columns and let pandas aggregate them (for `nunique` past the limit)."""
    names = [a.logical_name for a in plan.by]
    columns = list(dict.fromkeys(names + [m.attribute.logical_name for m in plan.measures]))
    frame = await conn.aread(table.entity_set_name, select=columns, filter=flt, progress=False)
    spec = {m.name: (m.attribute.logical_name, m.func) for m in plan.measures}
    result: pd.DataFrame
    if names:
        result = frame.groupby(names, dropna=False, observed=True, sort=True).agg(**spec)
    else:
        result = pd.DataFrame({name: [frame[col].agg(func)] for name, (col, func) in spec.items()})
    return result


async def aggregate_frame(
    conn: Connection,
    table: Table,
    by: str | Sequence[str] | None,
    *,
    filter: str | None,  # noqa: A002
    named: Mapping[str, tuple[str, str]],
) -> pd.DataFrame:
    """`conn.aggregate()`: plan, run (in `createdon` ranges past the limit), combine."""
    plan = plan_aggregate(table, by, named)
    try:
        return plan.frame(plan.combine([await _run(conn, table, plan, filter)]))
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
