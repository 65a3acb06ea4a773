"""How a read goes on the wire: query options, Prefer, lookup names, balanced ranges.

Pure functions, no I/O; `_reader` runs what they plan.

* `wire_request()` - the query options and Prefer header of a read, asking only for the
  annotations the frame uses (lookup names by `$expand` where that is cheaper).
* `sample_ranges()` - `createdon` conditions that split the rest of a read into ranges of
  equal row counts, from the first page used as a sample.
* `budget_low()` - whether the service is short of requests (a read then stays sequential).
* `names_from_expand()` - moves expanded lookup names where the frame builder reads them.
* `guess_table()` - a stand-in for a table whose details are not cached yet, so that the
  first page can be asked for while they are fetched (checked against them afterwards).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._dtypes import FORMATTED_VALUE, wire_select
from ._metadata import Attribute, Table
from ._odata import encode_query, literal, query_options
from ._transport import AdaptiveLimiter
from ._types import SelectTypes

__all__ = [
    "COUNT_CAP",
    "FORMATTED",
    "LOOKUP_TABLE",
    "MAX_PAGE_SIZE",
    "PARTITION_COLUMN",
    "VERSION_ANNOTATION",
    "Wire",
    "FirstRequest",
    "budget_low",
    "expand_names",
    "first_request",
    "guess_table",
    "known_total",
    "names_from_expand",
    "prefer_header",
    "sample_ranges",
    "with_annotation",
    "wire_request",
]

MAX_PAGE_SIZE = 5000
PARTITION_COLUMN = "createdon"
FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_TABLE = "Microsoft.Dynamics.CRM.lookuplogicalname"


def prefer_header(
    page_size: int, *, annotations: bool, formatted: bool = False, fetchxml: bool = False
) -> str:
    """The Prefer header: page size, and only the annotations the frame uses.

    Lookups need `FormattedValue` (the related name) and `lookuplogicalname` (the table);
    `formatted=True` needs `FormattedValue`; nothing reads `associatednavigationproperty`.
    """
    prefer = f"odata.maxpagesize={page_size}"
    wanted = [FORMATTED] if annotations or formatted else []
    if annotations:
        wanted.append(LOOKUP_TABLE)
    if fetchxml:
        # The paging cookie and "more records" come only when asked for by name (or *).
        wanted += [
            "Microsoft.Dynamics.CRM.fetchxmlpagingcookie",
            "Microsoft.Dynamics.CRM.morerecords",
        ]
    if wanted:
        prefer += f',odata.include-annotations="{",".join(wanted)}"'
    return prefer


@dataclass(frozen=True)
class Wire:
    """What goes on the wire for a read: query options, Prefer, lookup names by `$expand`."""

    params: dict[str, str]
    prefer: str
    # (navigation property, lookup wire property, related primary name) per lookup
    # whose name comes by `$expand` instead of annotations.
    names: tuple[tuple[str, str, str], ...] = ()


def wire_request(
    table: Table,
    *,
    select: SelectTypes,
    filter: str | None,  # noqa: A002
    orderby: str | Sequence[str] | None,
    top: int | None,
    expand: str | Sequence[str] | None,
    count: bool,
    formatted: bool,
    page_size: int,
    lookup_names: Mapping[str, str] | None,
) -> Wire:
    """The cheapest request that gives the columns asked for.

    A lookup's `<col>_name` is the related row's primary name.  Asking for it with
    `odata.include-annotations="...FormattedValue"` makes the service format *every*
    column of every row (2.3x the bytes on the benchmark's page: 9.7 MB against 4.3 MB
    without annotations), and the other formatted values are thrown away.  So when every
    selected lookup has one target whose primary name is known, each lookup is expanded to
    that one column instead (`$expand=parentaccountid($select=name)`: 5.0 MB) and its table
    comes from the metadata.  Multi-table lookups (owner, customer), `select=None` (which
    has them), `formatted=True` and a user's `expand` (whose rows may hold lookups) keep
    the annotations.
    """
    attributes = (
        [table.resolve_column(c) for c in select]
        if select
        else [a for a in table.attributes.values() if a.is_valid_for_read]
    )
    lookups = [a for a in attributes if a.is_lookup]
    user_expand = (
        expand_names(expand if isinstance(expand, str) else ",".join(expand)) if expand else ()
    )
    names: list[tuple[str, str, str]] = []
    # Lookups inside expanded rows get their names and tables from the annotations too.
    annotate = formatted or bool(expand)
    if lookups and not annotate:
        for attribute in lookups:
            target = attribute.targets[0] if len(attribute.targets) == 1 else None
            nav = attribute.navigation.get(target) if target else None
            primary = (lookup_names or {}).get(target) if target else None
            if not select or nav is None or primary is None or nav in user_expand:
                annotate = True
                names = []
                break
            names.append((nav, attribute.property_name, primary))
    expands = [f"{nav}($select={primary})" for nav, _, primary in names]
    if expand:
        expands.insert(0, expand if isinstance(expand, str) else ",".join(expand))
    params = query_options(
        select=wire_select(table, list(select)) if select else None,
        filter=filter,
        orderby=orderby,
        top=top,
        expand=",".join(expands) if expands else None,
        count=count,
    )
    return Wire(
        params=params,
        prefer=prefer_header(page_size, annotations=annotate, formatted=formatted),
        names=tuple(names),
    )


def names_from_expand(rows: list[dict[str, Any]], names: tuple[tuple[str, str, str], ...]) -> None:
    """Move each expanded lookup's primary name to where the builder reads lookup names."""
    for nav, key, primary in names:
        label = key + FORMATTED_VALUE
        for row in rows:
            related = row.pop(nav, None)
            if related is not None:
                row[label] = related.get(primary)


VERSION_ANNOTATION = "Microsoft.Dynamics.CRM.globalmetadataversion"
COUNT_CAP = 5000  # @odata.count stops here [MS] WA/query/count-rows


def with_annotation(prefer: str, name: str) -> str:
    """`prefer` asking for one more annotation (added to its include-annotations list)."""
    marker = 'odata.include-annotations="'
    if marker in prefer:
        return prefer.replace(marker, f"{marker}{name},", 1)
    return f'{prefer},{marker}{name}"'


def sample_ranges(rows: Sequence[Mapping[str, Any]], n: int) -> list[str] | None:
    """`n` conditions on `createdon` splitting rows like `rows` into equal counts.

    `rows` is the first page: in key order, which for random keys is a random sample of
    the table.  Its `createdon` quantiles are the cuts.  Rows without `createdon` go with
    the first range.  `None` when the sample cannot say (too few values, or ordered by
    `createdon`: keys that follow creation make the first page the oldest rows).
    """
    values = [v for v in (r.get(PARTITION_COLUMN) for r in rows) if isinstance(v, str)]
    if n < 2 or len(values) < 4 * n:
        return None if n >= 2 else [f"{PARTITION_COLUMN} ne null or {PARTITION_COLUMN} eq null"]
    rising = sum(1 for a, b in zip(values, values[1:], strict=False) if a < b)
    if not 0.25 <= rising / (len(values) - 1) <= 0.75:
        return None
    ordered = sorted(values)
    cuts: list[str] = []
    for i in range(1, n):
        try:
            moment = dt.datetime.fromisoformat(
                ordered[i * len(ordered) // n].replace("Z", "+00:00")
            )
        except ValueError:
            return None
        text = literal(moment.astimezone(dt.timezone.utc).replace(microsecond=0))
        if not cuts or text > cuts[-1]:
            cuts.append(text)
    if not cuts:
        return [f"{PARTITION_COLUMN} ne null or {PARTITION_COLUMN} eq null"]
    column = PARTITION_COLUMN
    conditions = [f"{column} lt {cuts[0]} or {column} eq null"]
    conditions += [
        f"{column} ge {a} and {column} lt {b}" for a, b in zip(cuts, cuts[1:], strict=False)
    ]
    conditions.append(f"{column} ge {cuts[-1]}")
    return conditions


def budget_low(limiter: AdaptiveLimiter, throttled_before: int) -> bool:
    """True when splitting a read would cost requests the service is short of: it
    answered 429 since the read began (`throttled_before`: the limiter's count then), or
    its remaining-requests header is below the limiter's threshold."""
    remaining = limiter.burst_remaining
    if limiter.throttled > throttled_before:
        return True
    return remaining is not None and remaining <= limiter.low_requests


def known_total(count: int | None) -> int | None:
    """The row count the service gave, when it is exact (below its 5,000 cap)."""
    return count if count is not None and count < COUNT_CAP else None


def expand_names(text: str) -> tuple[str, ...]:
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


# System lookups whose names do not end in the target table's name + "id".
_KNOWN_LOOKUPS: dict[str, tuple[str, ...]] = {
    "ownerid": ("systemuser", "team"),
    "customerid": ("account", "contact"),
    "parentcustomerid": ("account", "contact"),
    "createdby": ("systemuser",),
    "modifiedby": ("systemuser",),
    "createdonbehalfby": ("systemuser",),
    "modifiedonbehalfby": ("systemuser",),
    "owninguser": ("systemuser",),
    "owningteam": ("team",),
    "owningbusinessunit": ("businessunit",),
}


def _lookup_targets(name: str, table: Table, tables: Mapping[str, Table]) -> tuple[str, ...]:
    known = _KNOWN_LOOKUPS.get(name)
    if known is not None:
        return known
    if not name.endswith("id") or name == table.primary_id.lower():
        return ()
    stem = name[:-2]
    found = [t for t in tables if stem.endswith(t)]
    return (max(found, key=len),) if found else ()


def guess_table(summary: Table, tables: Mapping[str, Table], select: Sequence[str] | None) -> Table:
    """A stand-in for `summary`'s details (its attributes), from names alone.

    The selected names are taken as lookups when they are a known system lookup or end
    in a table's logical name + `id` (`parentaccountid` -> `account`, navigation property
    of the same name), otherwise as plain columns; the primary key and `createdon` are
    assumed.  Without `select` the table is assumed to have lookups (`ownerid`).  The
    guess only ever builds a request: the reader compares it with the one the real
    metadata builds and uses the response only if they are the same.
    """
    attributes: dict[str, Attribute] = {}

    def add(attribute: Attribute) -> None:
        attributes.setdefault(attribute.logical_name, attribute)

    add(Attribute(summary.primary_id, "Uniqueidentifier", is_primary_id=True))
    add(Attribute(PARTITION_COLUMN, "DateTime"))
    names = ["ownerid"] if select is None else [str(n).lower() for n in select]
    for name in names:
        if name.startswith("_") and name.endswith("_value"):
            name = name[1:-6]
        targets = _lookup_targets(name, summary, tables)
        if not targets:
            add(Attribute(name, "String"))
            continue
        kind = "Owner" if name == "ownerid" else "Customer" if len(targets) > 1 else "Lookup"
        navigation = (
            {t: name for t in targets}
            if kind != "Customer"
            else {t: f"{name}_{t}" for t in targets}
        )
        add(Attribute(name, kind, targets=targets, navigation=navigation))
    return Table(
        logical_name=summary.logical_name,
        entity_set_name=summary.entity_set_name,
        primary_id=summary.primary_id,
        primary_name=summary.primary_name,
        attributes=attributes,
    )


@dataclass(frozen=True)
class FirstRequest:
    """A read's first page request, and what the rest of the read uses."""

    url: str
    headers: dict[str, str]  # the read's headers (every page)
    first_headers: dict[str, str]  # the first page's (with the metadata version, if asked)
    can_split: bool
    parallel: bool | int


def first_request(
    api_root: str,
    table: Table,
    wire: Wire,
    *,
    select: Sequence[str] | None,
    orderby: str | Sequence[str] | None,
    top: int | None,
    parallel: bool | int,
    prefer: str | None,
    version: bool,
) -> FirstRequest:
    """The first page's URL and headers for `wire` (see `_reader.read_frame`)."""
    headers = {"Prefer": wire.prefer}
    if prefer:
        headers["Prefer"] += f",{prefer}"
        parallel = False
    can_split = (
        parallel is not False
        and top is None
        and not orderby
        and PARTITION_COLUMN in table.attributes
    )
    params = dict(wire.params)
    if can_split and select and "$select" in params:
        # The first page doubles as a sample of `createdon` for balancing the ranges.
        if PARTITION_COLUMN not in params["$select"].split(","):
            params["$select"] += "," + PARTITION_COLUMN
    base = api_root + table.entity_set_name
    url = f"{base}?{encode_query(params)}" if params else base
    first_headers = dict(headers)
    if version:
        first_headers["Prefer"] = with_annotation(headers["Prefer"], VERSION_ANNOTATION)
    return FirstRequest(url, headers, first_headers, can_split, parallel)
