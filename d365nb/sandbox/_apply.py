"""`$apply` on a collection: `filter(...)`, `groupby((cols),aggregate(...))`, `aggregate(...)`.

The subset Dataverse supports [MS] `WA/query/aggregate-data`: transformations joined by `/`;
`groupby((a,b))` optionally with one `aggregate(...)`; aggregate items
`col with sum|average|min|max|countdistinct as alias` and `$count as alias`; `filter(expr)`
with the same expressions as `$filter`.  Results carry no etags; groups come in the order
of their values, the null group included.  More than `limit` source rows (50,000:
AggregateQueryRecordLimit) answer 400 `0x8004E023`, as the service does.
"""

from __future__ import annotations

import re
from typing import Any

from ._errors import ApiError, no_property, syntax_error
from ._query import parse_filter
from ._schema import Attribute, Table
from ._store import Store

__all__ = ["AGGREGATE_LIMIT", "LIMIT_CODE", "LIMIT_MESSAGE", "run_apply"]

AGGREGATE_LIMIT = 50_000
# [MS] WA/query/aggregate-data, PA/fetchxml/aggregate-data: -2147164125.
LIMIT_CODE = "0x8004E023"
LIMIT_MESSAGE = "AggregateQueryRecordLimit exceeded. Cannot perform this operation."
_METHODS = {"sum": "SUM", "average": "AVG", "min": "MIN", "max": "MAX", "countdistinct": "COUNT"}
_ITEM = re.compile(r"^\s*(\S+)\s+with\s+(\w+)\s+as\s+(\w+)\s*$")
_COUNT = re.compile(r"^\s*\$count\s+as\s+(\w+)\s*$")
_NAME = re.compile(r"^\w+$")


def _split(text: str, sep: str) -> list[str]:
    """Split on `sep` outside parentheses and quotes."""
    out, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


def _call(text: str) -> tuple[str, str]:
    """`name(args)` → (name, args)."""
    text = text.strip()
    m = re.match(r"^(\w+)\((.*)\)$", text, re.S)
    if m is None:
        raise syntax_error(f"The $apply transformation '{text}' is not supported.")
    return m.group(1), m.group(2)


def _attribute(table: Table, name: str) -> Attribute:
    attr = table.by_column(name.strip())
    if attr is None:
        raise no_property(name.strip(), table.logical)
    return attr


def _aggregates(table: Table, text: str) -> list[tuple[str, str]]:
    """`aggregate(...)` items → [(SQL expression, alias)]."""
    out: list[tuple[str, str]] = []
    for item in _split(text, ","):
        if m := _COUNT.match(item):
            out.append(("COUNT(*)", m.group(1)))
            continue
        m = _ITEM.match(item)
        if m is None:
            raise syntax_error(f"The aggregate expression '{item.strip()}' is not supported.")
        attr = _attribute(table, m.group(1))
        method = _METHODS.get(m.group(2))
        if method is None:
            raise syntax_error(f"The aggregation method '{m.group(2)}' is not supported.")
        col = f't."{attr.column}"'
        if method == "COUNT":
            out.append((f"COUNT(DISTINCT {col})", m.group(3)))
        elif method in ("SUM", "AVG") and attr.sql_type not in ("INTEGER", "REAL"):
            raise syntax_error(
                f"The property '{attr.column}' cannot be aggregated with {m.group(2)}."
            )
        else:
            out.append((f"{method}({col})", m.group(3)))
    return out


def _groupby(table: Table, text: str) -> tuple[list[Attribute], str | None]:
    """`(a,b),aggregate(...)` → (group attributes, the aggregate's text or None)."""
    parts = _split(text, ",")
    cols = parts[0].strip()
    if not (cols.startswith("(") and cols.endswith(")")):
        raise syntax_error(f"groupby needs a parenthesised list of properties: '{text}'.")
    attrs: list[Attribute] = []
    for name in _split(cols[1:-1], ","):
        if not _NAME.match(name.strip()):
            raise syntax_error(f"The sandbox groups by columns of the table only: '{name}'.")
        attr = _attribute(table, name)
        if attr.kind == "DateTime":
            # [MS] grouping by a datetime is not supported; use FetchXML dategrouping.
            # [UNVERIFIED] the code and message.
            raise ApiError(
                400,
                "0x80060888",
                f"Grouping by the datetime property '{attr.column}' is not supported; "
                "use FetchXML with dategrouping.",
            )
        attrs.append(attr)
    rest = ",".join(parts[1:]).strip()
    if not rest:
        return attrs, None
    name, args = _call(rest)
    if name != "aggregate":
        raise syntax_error(f"groupby takes an aggregate(...), not '{name}'.")
    return attrs, args


def _value(attr: Attribute, raw: Any) -> Any:
    if raw is None:
        return None
    if attr.kind == "Boolean":
        return bool(raw)
    return raw


def run_apply(
    store: Store, table: Table, text: str, *, limit: int = AGGREGATE_LIMIT
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run `$apply` text: (result rows, their property names for `@odata.context`)."""
    where: list[str] = []
    params: list[Any] = []
    group: list[Attribute] = []
    aggregates: list[tuple[str, str]] = []
    shaped = False
    for step in _split(text, "/"):
        if shaped:
            raise syntax_error("The sandbox runs filter(...) steps before one groupby/aggregate.")
        name, args = _call(step)
        if name == "filter":
            sql, ps = parse_filter(table, args)
            where.append(sql)
            params.extend(ps)
        elif name == "groupby":
            group, agg = _groupby(table, args)
            aggregates = _aggregates(table, agg) if agg is not None else []
            shaped = True
        elif name == "aggregate":
            aggregates = _aggregates(table, args)
            shaped = True
        else:
            raise syntax_error(f"The $apply transformation '{name}' is not supported.")
    if not shaped:
        raise syntax_error("The sandbox needs a groupby(...) or aggregate(...) in $apply.")
    source = f'FROM "{table.entity_set}" t' + (f" WHERE {' AND '.join(where)}" if where else "")
    if aggregates:
        (count,) = store.query(f"SELECT COUNT(*) {source}", params)[0]
        if count > limit:
            raise ApiError(400, LIMIT_CODE, LIMIT_MESSAGE)
    cols = [f't."{a.column}"' for a in group] + [sql for sql, _ in aggregates]
    sql = f"SELECT {', '.join(cols)} {source}"
    if group:
        keys = ", ".join(f't."{a.column}"' for a in group)
        sql += f" GROUP BY {keys} ORDER BY {keys}"
    rows = store.query(sql, params)
    names = [a.column for a in group] + [alias for _, alias in aggregates]
    out: list[dict[str, Any]] = []
    for row in rows:
        item = {a.column: _value(a, v) for a, v in zip(group, row, strict=False)}
        item.update({alias: v for (_, alias), v in zip(aggregates, row[len(group) :], strict=True)})
        out.append(item)
    return out, names
