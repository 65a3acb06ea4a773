"""Grouping a planned push into requests: bulk action or `$batch`, chunk sizes, dry runs.

Pure code, no I/O.  `group_rows()` picks the transport for each planned row
(`CreateMultiple`, `UpdateMultiple`, `UpsertMultiple` or `$batch`), `chunks()` and
`chunk_size()` cut each group into requests, and `plan_report()` turns a plan into the
`PushPlan` a dry run returns.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ._metadata import Table
from ._multipart import MAX_BATCH_OPERATIONS
from ._odata import key_lookup_urls
from ._plan import Plan, PlannedRow, row_key
from ._report import PushPlan, rows_frame

__all__ = [
    "BATCH_CHUNK",
    "BULK_CHUNK",
    "LOOKUP_ROWS",
    "MIN_BULK_CHUNK",
    "UPSERT_CHUNK",
    "UPSERT_MULTIPLE",
    "URL_LIMIT",
    "chunk_size",
    "chunks",
    "describe_groups",
    "group_rows",
    "lookup_urls",
    "parallelism",
    "plan_report",
]

#: The most rows per bulk action (`CreateMultiple`/`UpdateMultiple`) by default; a push is
#: cut into `rows / limit` chunks (one per slot of the limiter) within this bound.  The
#: service sets no record limit (Microsoft suggests starting at 1,000; 100 for elastic
#: tables) and counts each bulk call as one request against service protection, so fewer,
#: larger calls cost no more of its limits; what bounds them is the 2-minute request
#: timeout and that a failed call (all or nothing on standard tables) is sent again row by
#: row.  Against the sandbox with 50 ms latency and a dop hint of 4, 20,000 creates took
#: 1.12 s in 1,000-row chunks, 0.89 s in 2,500 and 0.88 s in 5,000 (medians of 9; the SDK's
#: single 20,000-row call 0.88 s): 20 calls cost the service more than 4.
BULK_CHUNK = 5000
#: Requests per `$batch` (at most 1,000).  250 went as fast as 500 or 1,000 against the
#: sandbox with 50 ms latency, and keeps each request short on the real service (its
#: execution time counts against service protection; a retry redoes less).
BATCH_CHUNK = 250
#: The most rows per `UpsertMultiple` (or `CreateMultiple` for keys not found), as
#: `BULK_CHUNK`.  20,000 rows by alternate key, half new, against the sandbox with 50 ms
#: latency: 1.07 s in chunks of up to 1,000, 0.96 s in up to 5,000 (SDK 1.14 s).
UPSERT_CHUNK = 5000
#: The smallest bulk chunk picked to spread a small push over the limiter's slots.
MIN_BULK_CHUNK = 250
#: Upserts whose keys one look-up request finds (a `$batch` of GETs by key, each GET a
#: few hundred keys: `URL_LIMIT`, one page): the look-up of a slice answers created vs
#: updated and the ids for all its bulk chunks, and each slice's chunks start as soon as
#: its look-up answers (the next slices' look-ups overlap them).  20,000 rows: 4
#: look-ups and 20 bulk calls (one look-up per 1,000-row chunk cost 40 requests).
LOOKUP_ROWS = 5000
#: Internal switch: False sends every upsert as a per-row `$batch` part (the path before
#: `UpsertMultiple`; exact statuses from 201/200 without an existence check).
UPSERT_MULTIPLE = True


def chunks(rows: Sequence[PlannedRow], size: int) -> Iterator[list[PlannedRow]]:
    """`rows` in slices of at most `size`."""
    for start in range(0, len(rows), size):
        yield list(rows[start : start + size])


def parallelism(limit: int, parallel: bool | int | None) -> int:
    """How many requests a push may have in flight now: the limiter's `limit` (from the
    service's dop hint, lowered after 429s), within `parallel=`."""
    if parallel is False:
        return 1
    if parallel is None or parallel is True:
        return limit
    return max(1, min(limit, int(parallel)))


def chunk_size(strategy: str, batch_size: int | None, *, rows: int = 0, limit: int = 1) -> int:
    """Rows per request for `strategy` (`batch_size=` when given).

    Bulk actions take up to `BULK_CHUNK` (`UPSERT_CHUNK`) rows; a push of fewer `rows`
    than that per slot of the limiter (`limit` requests at once) is cut finer, down to
    `MIN_BULK_CHUNK`, so that its chunks run side by side instead of one after another.
    """
    if batch_size:
        return min(batch_size, MAX_BATCH_OPERATIONS) if strategy == "$batch" else batch_size
    top = {"$batch": BATCH_CHUNK, "UpsertMultiple": UPSERT_CHUNK}.get(strategy, BULK_CHUNK)
    if strategy == "$batch" or rows <= 0 or limit <= 1:
        return top
    return max(min(top, MIN_BULK_CHUNK), min(top, math.ceil(rows / max(1, limit))))


def group_rows(plan: Plan, no_bulk: set[tuple[str, str]]) -> list[tuple[str, list[PlannedRow]]]:
    """(strategy, rows): `CreateMultiple`, `UpdateMultiple`, `UpsertMultiple` or `$batch`.

    Upserts go to `UpsertMultiple` unless they carry an ETag (`If-Match` needs one request
    per row), the table does not support it, or another row of the frame has the same key
    (those are sent one by one, in order, so the first creates and the next updates).
    """
    logical = plan.table.logical_name
    create, update, upsert, other = [], [], [], []
    bulk_upsert = UPSERT_MULTIPLE and (logical, "UpsertMultiple") not in no_bulk
    seen: dict[tuple[Any, ...], int] = {}
    if bulk_upsert:
        for row in plan.rows:
            if row.op == "upsert" and row.key_values:
                loose = row_key(row)
                seen[loose] = seen.get(loose, 0) + 1
    for row in plan.rows:
        if row.op == "create" and (logical, "CreateMultiple") not in no_bulk:
            create.append(row)
        elif (
            bulk_upsert
            and row.op == "upsert"
            and not row.guarded
            and row.key_values
            and seen.get(row_key(row)) == 1
        ):
            upsert.append(row)
        elif (
            row.op == "update"
            and not row.guarded
            and plan.key == (plan.table.primary_id,)
            and (logical, "UpdateMultiple") not in no_bulk
        ):
            update.append(row)
        elif row.op != "none":
            other.append(row)
    return [
        (name, rows)
        for name, rows in (
            ("CreateMultiple", create),
            ("UpdateMultiple", update),
            ("UpsertMultiple", upsert),
            ("$batch", other),
        )
        if rows
    ]


def describe_groups(
    groups: list[tuple[str, list[PlannedRow]]], batch_size: int | None, *, limit: int = 1
) -> tuple[str, ...]:
    """The requests a plan sends, in words (`"CreateMultiple x 3 (<= 5,000 rows each)"`);
    `limit` is the limiter's level (`chunk_size()`)."""
    out = []
    for name, rows in groups:
        size = chunk_size(name, batch_size, rows=len(rows), limit=limit)
        count = math.ceil(len(rows) / size)
        what = f"{name} of {len(rows):,} rows" if count == 1 else f"{name} x {count:,}"
        extra = ""
        if name == "UpsertMultiple":
            looks = math.ceil(len(rows) / max(LOOKUP_ROWS, size))
            extra = (
                f"; keys looked up first ({looks:,} request{'s' if looks > 1 else ''}), "
                "new ones by CreateMultiple"
            )
        out.append(f"{what} (<= {size:,} rows each{extra})")
    return tuple(out)


def plan_report(
    plan: Plan,
    groups: list[tuple[str, list[PlannedRow]]],
    batch_size: int | None,
    *,
    limit: int = 1,
) -> PushPlan:
    """The `PushPlan` a dry run returns (`limit`: the limiter's level, `chunk_size()`)."""
    ops = {row.pos: row for row in plan.rows}
    n = len(plan.frame)
    operation = [ops[i].op if ops[i].op != "none" else "unchanged" for i in range(n)]
    condition = [
        " ".join(f"{k}: {v}" for k, v in ops[i].headers.items()) if i in ops else ""
        for i in range(n)
    ]
    changed: dict[str, int] = {}
    for row in plan.rows:
        for column in row.changed or ():
            changed[column] = changed.get(column, 0) + 1
    first = next((r for r in plan.rows if r.op != "none"), None)
    sample: dict[str, Any] | None = None
    if first is not None:
        method = {"create": "POST", "delete": "DELETE"}.get(first.op, "PATCH")
        sample = {"method": method, "url": first.path, "body": first.body}
        if first.headers:
            sample["headers"] = dict(first.headers)
    return PushPlan(
        table=plan.table.logical_name,
        entity_set=plan.table.entity_set_name,
        mode=plan.mode,
        key=plan.key,
        rows=rows_frame(
            plan.frame.index,
            {
                "operation": operation,
                "id": [ops[i].row_id for i in range(n)],
                "condition": condition,
            },
        ),
        columns=plan.columns,
        skipped=plan.skipped,
        requests=describe_groups(groups, batch_size, limit=limit),
        sample=sample,
        changed=changed,
        compared=sum(1 for r in plan.rows if r.changed is not None),
    )


#: Characters per look-up URL: under 8 KB anywhere (the service takes 32 KB, 64 KB inside
#: a `$batch`).  Also inside a `$batch`: longer URLs cost the sandbox far more (a 30,000-
#: character GET took ~60x the CPU of a 7,500-character one for 4x the keys), and more
#: GETs in the same `$batch` cost no extra request.
URL_LIMIT = 7500


def lookup_urls(
    table: Table, names: list[str], keys: list[Mapping[str, Any]], *, limit: int = URL_LIMIT
) -> list[str]:
    """GET URLs that return the rows among `keys` (`_odata.key_lookup_urls()`), each under
    `limit` characters: `$select=<pk>,<key columns>` and `$filter=` on the keys."""
    by_property = {a.property_name: a for a in table.attributes.values()}
    text_columns = {
        name
        for name in names
        if (a := by_property.get(name)) is not None
        and not (a.is_lookup or a.attribute_type == "Uniqueidentifier")
    }
    return key_lookup_urls(
        table.entity_set_name,
        [table.primary_id, *names],
        names,
        keys,
        quoted_guids=text_columns,
        limit=limit,
    )


# -- entry points -------------------------------------------------------------------------
