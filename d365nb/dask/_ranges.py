"""Partitions of a table read: `createdon` ranges balanced by row count.

The paging engine splits a large read into equal spans of `createdon`; rows are rarely
spread evenly over time (growth, bulk imports), so here the spans are counted first and
merged into partitions of about equal rows.

Dataverse counts only up to 5,000 (`$count=true` is capped), so the range from the
smallest to the largest `createdon` is cut into fine slices, each counted with one small
request; a slice at the cap is halved and its halves counted, level by level, as long as
a probe budget allows.  A slice still at the cap weighs 5,000 (what is known for sure), so
dense stretches get more partitions than sparse ones.  Adjacent slices are then merged
into `npartitions` ranges of about equal weight.

The ranges are half-open (`ge` lower, `lt` upper), the first is open below and also takes
the rows without `createdon`, the last is open above: every row falls in exactly one
partition whatever the counts said, and rows created after the plan are still read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._internals import PARTITION_COLUMN, encode_query

if TYPE_CHECKING:
    from .._client import Connection
    from .._metadata import Table

__all__ = ["COUNT_CAP", "Slice", "cut_points", "plan_partitions", "range_filters", "split"]

#: The service's `$count` cap.
COUNT_CAP = 5000
#: Rows per partition the default `npartitions` aims at (at least two per worker thread).
TARGET_ROWS = 200_000


@dataclass(frozen=True)
class Slice:
    """`[start, end)` in seconds since the epoch, and its counted rows (capped)."""

    start: int
    end: int
    rows: int

    @property
    def capped(self) -> bool:
        return self.rows >= COUNT_CAP

    @property
    def weight(self) -> int:
        return min(self.rows, COUNT_CAP)


def split(start: int, end: int, k: int) -> list[tuple[int, int]]:
    """`[start, end)` cut into at most `k` spans of whole seconds, as equal as can be."""
    k = max(1, min(k, end - start))
    edges = sorted({start + (end - start) * i // k for i in range(k)} | {end})
    return list(zip(edges, edges[1:], strict=False))


def cut_points(slices: Sequence[Slice], n: int) -> list[int]:
    """Where to cut ordered, adjacent `slices` into at most `n` runs of about equal weight.

    Returns the boundaries between runs (each a slice's start), at most `n - 1` of them:
    for each share `k/n` of the total weight, the boundary whose weight before it comes
    closest.
    """
    total = sum(s.weight for s in slices)
    if n <= 1 or total == 0 or len(slices) < 2:
        return []
    before = [0]  # weight before boundary i (the start of slice i)
    for s in slices:
        before.append(before[-1] + s.weight)
    cuts: list[int] = []
    i = 1
    for k in range(1, n):
        goal = total * k / n
        while i < len(slices) - 1 and before[i + 1] <= goal:
            i += 1
        best = i
        if i < len(slices) - 1 and abs(before[i + 1] - goal) < abs(before[i] - goal):
            best = i + 1
        start = slices[best].start
        if (not cuts or start > cuts[-1]) and 0 < before[best] < total:
            cuts.append(start)
        i = best
    return cuts


def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def range_filters(cuts: Sequence[int]) -> list[str | None]:
    """The partitions' filters for `cuts`; `[None]` (the whole table) without cuts."""
    col = PARTITION_COLUMN
    if not cuts:
        return [None]
    marks = [_iso(c) for c in cuts]
    filters: list[str | None] = [f"({col} lt {marks[0]} or {col} eq null)"]
    filters += [f"{col} ge {a} and {col} lt {b}" for a, b in zip(marks, marks[1:], strict=False)]
    filters.append(f"{col} ge {marks[-1]}")
    return filters


def _seconds(text: str) -> int:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return math.floor(moment.timestamp())


def _and(user: str | None, condition: str) -> str:
    return f"({user}) and ({condition})" if user else condition


class _Prober:
    """The few small requests a plan needs, within the connection's concurrency limit."""

    def __init__(self, conn: Connection, table: Table, user_filter: str | None) -> None:
        self.conn = conn
        self.base = table.entity_set_name
        self.pk = table.primary_id
        self.user_filter = user_filter
        self.requests = 0

    async def _get(self, params: dict[str, str]) -> Any:
        self.requests += 1
        async with self.conn.limiter:
            response = await self.conn.arequest(
                "GET",
                f"{self.base}?{encode_query(params)}",
                headers={"Prefer": "odata.maxpagesize=1"},
            )
        return response.json()

    async def bounds(self) -> tuple[int, int] | None:
        col = PARTITION_COLUMN

        async def one(direction: str) -> str | None:
            body = await self._get(
                {
                    "$select": col,
                    "$filter": _and(self.user_filter, f"{col} ne null"),
                    "$orderby": f"{col} {direction}",
                    "$top": "1",
                }
            )
            rows = body.get("value") or []
            return str(rows[0][col]) if rows and rows[0].get(col) else None

        low, high = await asyncio.gather(one("asc"), one("desc"))
        if low is None or high is None:
            return None
        return _seconds(low), _seconds(high) + 1

    async def count(self, start: int, end: int) -> Slice:
        col = PARTITION_COLUMN
        condition = f"{col} ge {_iso(start)} and {col} lt {_iso(end)}"
        body = await self._get(
            {
                "$select": self.pk,
                "$filter": _and(self.user_filter, condition),
                "$count": "true",
            }
        )
        return Slice(start, end, int(body.get("@odata.count") or 0))


@dataclass(frozen=True)
class PartitionPlan:
    """The partitions' filters, the rows the probes saw (a lower bound) and their cost."""

    filters: list[str | None]
    rows_seen: int
    requests: int


async def plan_partitions(
    conn: Connection,
    table: Table,
    *,
    user_filter: str | None,
    npartitions: int | None,
    threads: int,
    probes: int | None = None,
) -> PartitionPlan:
    """Plan the partitions of a read of `table` (see the module docstring).

    **Parameters:**

    * **user_filter** - the read's own filter; every probe counts within it.
    * **npartitions** - how many partitions; `None`: at least two per worker thread and
      about `TARGET_ROWS` rows each (as far as the capped counts tell).
    * **threads** - the cluster's worker threads.
    * **probes** - most count requests to spend; `None`: 8 per partition, at most 256.
    """
    if PARTITION_COLUMN not in table.attributes:
        return PartitionPlan([None], 0, 0)
    prober = _Prober(conn, table, user_filter)
    span = await prober.bounds()
    if span is None:  # no row has a createdon: one partition
        return PartitionPlan([None], 0, prober.requests)
    wanted = npartitions or max(2, 2 * threads)
    budget = probes if probes is not None else min(256, 8 * max(wanted, 4))
    first = split(span[0], span[1], min(budget, 2 * max(wanted, 4)))
    slices = list(await asyncio.gather(*(prober.count(a, b) for a, b in first)))
    while True:
        dense = [s for s in slices if s.capped and s.end - s.start > 1]
        if not dense or prober.requests + 2 * len(dense) > budget + 2:
            break
        halves = [half for s in dense for half in split(s.start, s.end, 2)]
        counted = {
            (c.start, c.end): c
            for c in await asyncio.gather(*(prober.count(a, b) for a, b in halves))
        }
        dense_keys = {(s.start, s.end) for s in dense}
        refined: list[Slice] = []
        for s in slices:
            if (s.start, s.end) in dense_keys:
                refined += [counted[h] for h in split(s.start, s.end, 2)]
            else:
                refined.append(s)
        slices = refined
    seen = sum(s.weight for s in slices)
    if npartitions is None:
        npartitions = max(wanted, math.ceil(seen / TARGET_ROWS))
    cuts = cut_points(slices, max(1, npartitions))
    return PartitionPlan(range_filters(cuts), seen, prober.requests)
