"""Server-side aggregation, the pure part: named aggregations → `$apply` text, and back.

`conn.aggregate(table, by, total=("estimatedvalue", "sum"), ...)` is planned here as one or
more `$apply` requests (`AggregatePlan`); their rows are combined into one typed frame.
Past the service's 50,000-row AggregateQueryRecordLimit the same requests run once per
`createdon` range and `combine()` merges the partial groups exactly: sums and counts add,
minima and maxima compare, a mean is a sum over a count.  No I/O here (see `_aggregation`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

import pandas as pd

from ._exceptions import ConfigError
from ._filters import fetch_filter
from ._frames import frame_from_pages
from ._metadata import Attribute, Table
from ._odata import and_filter, check_name

__all__ = [
    "DATE_PARTS",
    "FUNCTIONS",
    "LIMIT_CODE",
    "AggregatePlan",
    "Group",
    "Measure",
    "Request",
    "apply_text",
    "plan_aggregate",
]

FUNCTIONS = ("count", "max", "mean", "min", "nunique", "sum")
# FetchXML dategrouping values d365nb groups by; "day" is the day of the month (1-31).
DATE_PARTS = ("year", "quarter", "month", "week", "day")
_FETCH = {"sum": "sum", "average": "avg", "min": "min", "max": "max"}
# AggregateQueryRecordLimit exceeded (-2147164125), [MS] WA/query/aggregate-data.
LIMIT_CODE = "0x8004e023"
_METHODS = {"sum": "sum", "mean": "average", "min": "min", "max": "max", "nunique": "countdistinct"}
_ROWS = "d365nb_rows"  # the `$count` every plan asks for, so that every group shows up


@dataclass(frozen=True)
class Measure:
    """One named aggregation: output `name`, source `attribute`, pandas `func`."""

    name: str
    attribute: Attribute
    func: str


@dataclass(frozen=True)
class Group:
    """One `by` item: a column, or a date column's `part` (FetchXML `dategrouping`)."""

    attribute: Attribute
    part: str | None = None

    @property
    def name(self) -> str:
        """The output column (index level): `statuscode`, `createdon_year`."""
        name = self.attribute.logical_name
        return f"{name}_{self.part}" if self.part else name


@dataclass
class Request:
    """One `$apply` request: aggregate items over the rows where `nonnull` is not null."""

    nonnull: str | None
    items: list[tuple[str, str, str]] = field(default_factory=list)  # (alias, property, method)

    def text(self, groups: Sequence[str], filter: str | None) -> str:  # noqa: A002
        """The `$apply` value for this request (with an extra range filter, if any)."""
        if self.nonnull is not None:
            filter = and_filter(filter, f"{self.nonnull} ne null")  # noqa: A001
        return apply_text(groups, self.items, filter)

    def fetchxml(
        self,
        table: Table,
        groups: Sequence[tuple[str, Group]],
        low: str | None,
        high: str | None,
        where: str | None = None,
    ) -> str:
        """The same request as aggregate FetchXML (`low <= createdon < high` when given,
        and-ed with the OData filter `where`)."""
        attrs: list[str] = []
        for alias, g in groups:
            date = f" dategrouping={quoteattr(g.part)}" if g.part else ""
            attrs.append(
                f"<attribute name={quoteattr(g.attribute.logical_name)} alias={quoteattr(alias)}"
                f" groupby='true'{date}/>"
            )
        for alias, prop, method in self.items:
            if method == "$count" and self.nonnull is None:
                name, func = table.primary_id, "aggregate='count'"
            elif method == "$count":
                name, func = table.resolve_column(prop).logical_name, "aggregate='countcolumn'"
            elif method == "countdistinct":
                name = table.resolve_column(prop).logical_name
                func = "aggregate='countcolumn' distinct='true'"
            else:
                name = table.resolve_column(prop).logical_name
                func = f"aggregate='{_FETCH[method]}'"
            attrs.append(f"<attribute name={quoteattr(name)} alias={quoteattr(alias)} {func}/>")
        conditions = [] if where is None else [fetch_filter(where, _logical(table))]
        if low is not None and high is not None:
            upper = "lt" if high.startswith("<") else "le"
            conditions.append(
                "<condition attribute='createdon' operator='ge' "
                f"value={quoteattr(low)}/><condition attribute='createdon' "
                f"operator='{upper}' value={quoteattr(high.lstrip('<'))}/>"
            )
        if conditions:  # one <filter> under <entity>: its conditions are and-ed
            attrs.append("<filter type='and'>" + "".join(conditions) + "</filter>")
        return (
            f"<fetch aggregate='true'><entity name={quoteattr(table.logical_name)}>"
            + "".join(attrs)
            + "</entity></fetch>"
        )


def _logical(table: Table) -> Callable[[str], str]:
    def column(name: str) -> str:
        return table.resolve_column(name).logical_name

    return column


def apply_text(
    groups: Sequence[str],
    items: Iterable[tuple[str, str, str]],
    filter: str | None = None,  # noqa: A002
) -> str:
    """`filter(f)/groupby((a,b),aggregate(x with sum as s,$count as n))`.

    **Parameters:**

    * **groups** - the properties to group by (`statuscode`, `_parentaccountid_value`);
      empty: one `aggregate(...)` over every row.
    * **items** - `(alias, property, method)`; method `sum`, `average`, `min`, `max`,
      `countdistinct` or `$count` (property ignored).
    * **filter** - an OData filter applied first, trusted text.
    """
    parts = [
        f"$count as {check_name(alias)}"
        if method == "$count"
        else f"{check_name(prop)} with {method} as {check_name(alias)}"
        for alias, prop, method in items
    ]
    body = f"aggregate({','.join(parts)})"
    if groups:
        names = ",".join(check_name(g) for g in groups)
        body = f"groupby(({names}),{body})"
    return f"filter({filter})/{body}" if filter else body


@dataclass
class AggregatePlan:
    """The requests for one `aggregate()` call, and how to turn their rows into a frame."""

    table: Table
    by: list[Group]
    measures: list[Measure]
    split: bool = False
    requests: list[Request] = field(default_factory=list)
    roles: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # name → (role, alias)

    @property
    def fetch(self) -> bool:
        """True when a date part is grouped: `$apply` cannot, FetchXML aggregate can."""
        return any(g.part for g in self.by)

    @property
    def groups(self) -> list[str]:
        """The keys of the grouped values in result rows, in `by` order."""
        if self.fetch:
            return [f"g{i}" for i in range(len(self.by))]
        return [g.attribute.property_name for g in self.by]

    @property
    def needs_rows(self) -> bool:
        """True when a measure cannot be split (nunique): read the rows instead."""
        return self.split and any(m.func == "nunique" for m in self.measures)

    def build(self, *, split: bool) -> AggregatePlan:
        """The requests, whole (`split=False`) or in combinable parts (`split=True`)."""
        plan = AggregatePlan(self.table, self.by, self.measures, split=split)
        by_filter: dict[str | None, Request] = {None: Request(None, [(_ROWS, "", "$count")])}

        def add(name: str, role: str, nonnull: str | None, prop: str, method: str) -> None:
            request = by_filter.setdefault(nonnull, Request(nonnull))
            alias = f"a{sum(len(r.items) for r in by_filter.values())}"
            request.items.append((alias, prop, method))
            plan.roles.setdefault(name, []).append((role, alias))

        primary = self.table.primary_id
        for m in self.measures:
            prop = m.attribute.property_name
            if m.func == "count":
                add(m.name, "count", None if prop == primary else prop, prop, "$count")
            elif m.func == "mean" and split:
                add(m.name, "sum", None, prop, "sum")
                add(m.name, "count", prop, prop, "$count")
            else:
                add(m.name, m.func, None, prop, _METHODS[m.func])
        plan.requests = list(by_filter.values())
        return plan

    def combine(
        self, parts: Iterable[Sequence[list[dict[str, Any]]]]
    ) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Merge the rows of each part's requests into `{group key: {alias: value}}`."""
        merged: dict[tuple[Any, ...], dict[str, Any]] = {}
        methods = {alias: method for r in self.requests for alias, _, method in r.items}
        for answers in parts:
            for rows in answers:
                for row in rows:
                    key = tuple(row.get(g) for g in self.groups)
                    slot = merged.setdefault(key, {})
                    for alias, value in row.items():
                        if alias in methods:
                            slot[alias] = _merge(methods[alias], slot.get(alias), value)
        return merged

    def frame(self, merged: Mapping[tuple[Any, ...], Mapping[str, Any]]) -> pd.DataFrame:
        """The typed result: one row per group (index: the `by` columns), one column per measure."""
        keys = list(merged)
        names = [g.name for g in self.by]
        out = pd.DataFrame(index=range(len(keys)))
        plain = {i: g for i, g in enumerate(self.by) if not g.part}
        if plain and keys:
            props = [g.attribute.property_name for g in plain.values()]
            rows = [{p: key[i] for p, i in zip(props, plain, strict=True)} for key in keys]
            typed = frame_from_pages([rows], table=self.table, select=props, etag=False)
        for i, g in enumerate(self.by):
            if g.part:
                out[g.name] = pd.array([key[i] for key in keys], dtype="Int64")
            elif keys:
                out[g.name] = typed[g.name].array
            else:
                out[g.name] = pd.Series(dtype="object")
        for m in self.measures:
            values = [_finish(m.func, dict(self.roles[m.name]), merged[k]) for k in keys]
            out[m.name] = _series(m, values)
        if self.by:  # pandas' order: by value, missing last (sort_index keeps NaN first
            # when the codes already ascend, as the service's null group comes first)
            out = out.sort_values(names, na_position="last", kind="stable").set_index(names)
        result: pd.DataFrame = out
        return result


def _merge(method: str, old: Any, new: Any) -> Any:
    if old is None:
        return new
    if new is None:
        return old
    if method in ("sum", "$count"):
        return old + new
    if method == "min":
        return min(old, new)
    if method == "max":
        return max(old, new)
    raise ValueError(f"{method} results cannot be combined")  # pragma: no cover


def _finish(func: str, roles: Mapping[str, str], slot: Mapping[str, Any]) -> Any:
    value = {role: slot.get(alias) for role, alias in roles.items()}
    if func in ("count", "nunique"):
        return value[func] or 0
    if func == "sum":
        return value["sum"] or 0  # pandas: the sum of no values is 0
    if func == "mean" and "count" in value:
        return value["sum"] / value["count"] if value["count"] else None
    return value[func]


def _series(m: Measure, values: list[Any]) -> pd.Series:
    series: pd.Series
    if m.func in ("count", "nunique"):
        series = pd.Series(values, dtype="int64")
    elif m.attribute.attribute_type == "DateTime" and m.func in ("min", "max"):
        series = pd.Series(pd.to_datetime(values, utc=True))
    else:
        series = pd.Series([float("nan") if v is None else v for v in values], dtype="float64")
    return series


def plan_aggregate(
    table: Table,
    by: str | tuple[str, str] | Sequence[str | tuple[str, str]] | None,
    named: Mapping[str, tuple[str, str]],
    *,
    filter: str | None = None,  # noqa: A002
) -> AggregatePlan:
    """Check `by` and the named aggregations against the table's columns.

    **Parameters:**

    * **table** - the table, with its columns.
    * **by** - a column or columns to group by (choices, lookups, numbers, text), or a
      date column's part: `("createdon", "month")` (one of `DATE_PARTS`; via FetchXML,
      as `$apply` cannot group dates).
    * **named** - `name=(column, func)` with func one of `FUNCTIONS`.
    * **filter** - the OData filter (with date parts: sent as a FetchXML `<filter>`).
    """
    if not named:
        raise ConfigError(
            "aggregate() needs at least one named aggregation.",
            field="named",
            hint='e.g. conn.aggregate("opportunities", by="statuscode", '
            'total=("estimatedvalue", "sum"))',
        )
    single = isinstance(by, tuple) and len(by) == 2 and by[1] in DATE_PARTS
    columns: list[Any] = [by] if isinstance(by, str) or single else list(by or [])
    groups: list[Group] = []
    for item in columns:
        part = None
        if isinstance(item, tuple) and len(item) == 2 and item[1] in DATE_PARTS:
            item, part = item
        if not isinstance(item, str):
            raise ConfigError(
                f"aggregate() cannot group by {item!r}.",
                field="by",
                hint="Group by column names, or a date column's part: "
                f"(column, part) with part one of {', '.join(DATE_PARTS)}.",
            )
        attr = table.resolve_column(item)
        if (attr.attribute_type == "DateTime") != (part is not None):
            raise ConfigError(
                f"aggregate() cannot group by {item!r}"
                + (f" with {part!r}." if part else " itself: it is a date column."),
                field="by",
                hint='Group a date column by a part, e.g. by=("createdon", "month"); '
                "only date columns have parts.",
            )
        groups.append(Group(attr, part))
    measures: list[Measure] = []
    for name, spec in named.items():
        if not (isinstance(spec, tuple) and len(spec) == 2 and spec[1] in FUNCTIONS):
            raise ConfigError(
                f"aggregate() got {name}={spec!r}.",
                field=name,
                hint=f"Write {name}=(column, func) with func one of {', '.join(FUNCTIONS)}.",
            )
        attr = table.resolve_column(spec[0])
        if spec[1] in ("sum", "mean") and attr.attribute_type not in _NUMERIC:
            raise ConfigError(
                f"aggregate() cannot {spec[1]} the {attr.attribute_type} column {spec[0]!r}.",
                field=name,
                hint="sum and mean work on Integer, BigInt, Decimal, Double and Money columns.",
            )
        measures.append(Measure(check_name(name), attr, spec[1]))
    plan = AggregatePlan(table, groups, measures)
    if plan.fetch and filter is not None:
        fetch_filter(filter, _logical(table))  # before any I/O: a filter FetchXML cannot say
    return plan.build(split=False)


_NUMERIC = ("Integer", "BigInt", "Decimal", "Double", "Money")
