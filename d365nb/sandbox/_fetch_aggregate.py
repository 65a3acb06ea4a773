"""FetchXML `aggregate="true"`: `groupby` (with `dategrouping`) and aggregate attributes.

[MS] `PA/fetchxml/aggregate-data`: every attribute needs an `alias`; aggregates `avg`,
`count` (rows), `countcolumn` (rows with a value; `distinct="true"`: unique values), `max`,
`min`, `sum`; `dategrouping` `day` (of the month), `week`, `month`, `quarter`, `year`
as numbers (fiscal periods are not emulated: 400).  `aggregatelimit` lowers the
50,000-row limit for one query; over it: 400 `0x8004E023`.  Rows leave nulls out, as other
FetchXML rows do; choices carry their label when annotations are asked for.  Date parts
are taken in UTC ([UNVERIFIED] the service uses the caller's time zone unless
`usertimezone="false"`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from ._apply import LIMIT_CODE, LIMIT_MESSAGE
from ._errors import ApiError
from ._schema import Attribute, Table
from ._store import Store

__all__ = ["run_fetch_aggregate"]

_FUNCS = {"avg": "AVG", "count": "COUNT", "countcolumn": "COUNT", "max": "MAX", "min": "MIN"}
_FUNCS["sum"] = "SUM"
# SQLite expressions on ISO text (`2024-05-01T10:00:00Z`).
_DATE_PARTS = {
    "year": "CAST(substr({c}, 1, 4) AS INTEGER)",
    "month": "CAST(substr({c}, 6, 2) AS INTEGER)",
    "day": "CAST(substr({c}, 9, 2) AS INTEGER)",
    "quarter": "((CAST(substr({c}, 6, 2) AS INTEGER) + 2) / 3)",
    # [UNVERIFIED] the service's week numbering; SQLite's %W (weeks start on Monday).
    "week": "CAST(strftime('%W', substr({c}, 1, 10)) AS INTEGER)",
}
_LABEL = "@OData.Community.Display.V1.FormattedValue"


def _bad(message: str) -> ApiError:
    return ApiError(400, "0x80041103", message)


def run_fetch_aggregate(
    store: Store,
    table: Table,
    fetch: ET.Element,
    entity: ET.Element,
    where: tuple[str, list[Any]],
    attribute: Any,
    *,
    limit: int,
    labels: bool,
) -> list[dict[str, Any]]:
    """The rows of an aggregate FetchXML query (`attribute(table, name)` resolves names)."""
    groups: list[tuple[str, str, Attribute]] = []  # (alias, SQL, attribute)
    measures: list[tuple[str, str]] = []  # (alias, SQL)
    for el in entity.findall("attribute"):
        attr: Attribute = attribute(table, el.get("name", ""))
        alias = el.get("alias")
        if not alias:
            raise _bad("An alias is required for an aggregate or groupby attribute.")
        col = f't."{attr.column}"'
        if el.get("groupby") == "true":
            part = el.get("dategrouping")
            if part is not None:
                if attr.kind != "DateTime" or part not in _DATE_PARTS:
                    raise _bad(f"The dategrouping '{part}' is not supported for '{attr.name}'.")
                col = _DATE_PARTS[part].format(c=col)
            groups.append((alias, col, attr))
            continue
        func = el.get("aggregate")
        if func not in _FUNCS:
            raise _bad(f"The attribute '{attr.name}' needs groupby or a known aggregate.")
        if func == "count":
            sql = "COUNT(*)"
        elif func == "countcolumn":
            sql = f"COUNT({'DISTINCT ' if el.get('distinct') == 'true' else ''}{col})"
        else:
            if func in ("sum", "avg") and attr.sql_type not in ("INTEGER", "REAL"):
                raise _bad(f"The aggregate '{func}' is not valid for '{attr.name}'.")
            sql = f"{_FUNCS[func]}({col})"
            if func == "sum":  # [MS] the example shows 0 for a group with no values
                sql = f"COALESCE({sql}, 0)"
        measures.append((alias, sql))
    if not measures and not groups:
        raise _bad("An aggregate query needs aggregate or groupby attributes.")
    custom = fetch.get("aggregatelimit")
    if custom is not None:
        limit = min(limit, int(custom))  # "can't exceed the default aggregate limit"
    cond, args = where
    source = f'FROM "{table.entity_set}" t WHERE {cond}'
    (count,) = store.query(f"SELECT COUNT(*) {source}", args)[0]
    if count > limit:
        raise ApiError(400, LIMIT_CODE, LIMIT_MESSAGE)
    order: list[str] = []
    for el in entity.findall("order"):
        alias = el.get("alias", "")
        if alias not in {a for a, _, _ in groups} | {a for a, _ in measures}:
            raise _bad(f"An order in an aggregate query names an alias: '{alias}'.")
        order.append(f'"{alias}"{" DESC" if el.get("descending") == "true" else ""}')
    keys = [sql for _, sql, _ in groups]
    order += [f"{n + 1}" for n in range(len(keys))]
    cols = [f'{sql} AS "{alias}"' for alias, sql, _ in groups]
    cols += [f'{sql} AS "{alias}"' for alias, sql in measures]
    sql = f"SELECT {', '.join(cols)} {source}"
    if keys:
        sql += f" GROUP BY {', '.join(keys)}"
    if order:
        sql += f" ORDER BY {', '.join(order)}"
    out: list[dict[str, Any]] = []
    for row in store.query(sql, args):
        item: dict[str, Any] = {}
        for (alias, _, attr), value in zip(groups, row, strict=False):
            if value is None:
                continue
            if attr.kind == "Boolean":
                value = bool(value)
            item[alias] = value
            if labels and attr.options and isinstance(value, int):
                label = attr.label_of(value)
                if label is not None:
                    item[alias + _LABEL] = label
        for (alias, _), value in zip(measures, row[len(groups) :], strict=True):
            if value is not None:
                item[alias] = value
        out.append(item)
    return out
