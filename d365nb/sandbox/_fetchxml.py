"""FetchXML queries (`GET {set}?fetchXml=...`): attributes, filters, orders, page/count paging.

Paging follows Microsoft's simple paging (`page`, `count`) and, when the client sends the
`paging-cookie` it got back, the cookie's last values (keyset, like `$skiptoken`).  With
`Prefer: odata.include-annotations` naming `fetchxmlpagingcookie` / `morerecords` (or `*`),
the response carries both annotations while more rows exist.  Null values are left out of
FetchXML rows, as the service does.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any

from ._apply import AGGREGATE_LIMIT
from ._errors import ApiError
from ._exchange import Call, Reply
from ._fetch_aggregate import run_fetch_aggregate
from ._functions import DATE_FUNCTIONS, HIERARCHY_FUNCTIONS, date_function, hierarchy_function
from ._limits import ROWS_HEADER
from ._links import Join, plan_links
from ._query import cookie_values, keyset_where, make_cookie, sql_value
from ._reads import COUNT_CAP, metadata_context
from ._rows import Annotations, RowPlan
from ._schema import Attribute, Table
from ._store import Store

__all__ = ["FetchXml"]

_COOKIE = "Microsoft.Dynamics.CRM.fetchxmlpagingcookie"
_MORE = "Microsoft.Dynamics.CRM.morerecords"
_SIMPLE = {
    "eq": "=",
    "ne": "<>",
    "gt": ">",
    "ge": ">=",
    "lt": "<",
    "le": "<=",
    "neq": "<>",
    "on": "=",
    "on-or-after": ">=",
    "on-or-before": "<=",
}
_LIKE = {
    "like": ("", "", False),
    "not-like": ("", "", True),
    "begins-with": ("", "%", False),
    "not-begin-with": ("", "%", True),
    "ends-with": ("%", "", False),
    "not-end-with": ("%", "", True),
}

# Operators whose query function is not their name in kebab case ([MS]
# PA/fetchxml/reference/operators); the others: `last-x-days` is LastXDays.
_NAMED = {
    "last-seven-days": "Last7Days",
    "next-seven-days": "Next7Days",
    "eq-or-under": "UnderOrEqual",
    "eq-or-above": "AboveOrEqual",
}


def _kebab(name: str) -> str:
    words = re.findall(r"[A-Z][a-z]*|\d+", name)
    return "-".join(w.lower() for w in words).replace("older-than", "olderthan")


_FUNCTIONS = {
    _kebab(n): n
    for n in DATE_FUNCTIONS | HIERARCHY_FUNCTIONS
    if n not in _NAMED.values() and n != "NotOn"  # FetchXML has no not-on
} | _NAMED


def _bad(message: str) -> ApiError:
    return ApiError(400, "0x80041103", message)


class FetchXml:
    """Runs FetchXML against the store."""

    def __init__(self, store: Store, *, max_page_size: int) -> None:
        self.store = store
        self.max_page_size = max_page_size
        self.aggregate_limit = AGGREGATE_LIMIT

    def run(self, call: Call, table: Table) -> Reply:
        try:
            fetch = ET.fromstring(call.params["fetchXml"])
        except ET.ParseError as exc:
            raise _bad(f"Invalid XML in fetchXml: {exc}") from None
        entity = fetch.find("entity")
        if fetch.tag != "fetch" or entity is None:
            raise _bad("The fetch element must contain an entity element.")
        if entity.get("name") != table.logical:
            raise _bad(
                f"The entity name '{entity.get('name')}' does not match the entity set "
                f"'{table.entity_set}'."
            )
        if fetch.get("aggregate") == "true":
            if entity.find("link-entity") is not None:
                # Refused rather than ignored, so no query silently returns the wrong rows.
                raise _bad("The sandbox does not support link-entity in aggregate queries.")
            return self._aggregate(call, table, fetch, entity)
        join = plan_links(table, entity, lambda t, f, a: self._filter(t, f, alias=a))
        select: list[Attribute] | None = []
        assert select is not None
        if entity.find("all-attributes") is not None or entity.find("attribute") is None:
            select = None
        else:
            for el in entity.findall("attribute"):
                select.append(self._attr(table, el.get("name", "")))
        order: list[tuple[str, bool]] = []
        for el in entity.findall("order"):
            attr = self._attr(table, el.get("attribute", ""))
            order.append((attr.column, el.get("descending", "false") == "true"))
        if not any(c == table.primary_id for c, _ in order):
            order.append((table.primary_id, False))
        where: list[str] = []
        args: list[Any] = []
        for flt in entity.findall("filter"):
            sql, ps = self._filter(table, flt, join=join)
            where.append(sql)
            args.extend(ps)
        for sql, ps in join.where:
            where.append(sql)
            args.extend(ps)
        ann = Annotations(call.prefer.get("odata.include-annotations", "").strip('"') or None)
        plan = RowPlan(table, select, ann, etag=True, omit_nulls=True)
        top = fetch.get("top")
        count = int(fetch.get("count") or self.max_page_size)
        count = max(1, min(count, self.max_page_size))
        page = int(fetch.get("page") or 1)
        base_where, base_args = list(where), list(args)
        offset = 0
        cookie = fetch.get("paging-cookie")
        if top is not None:
            limit = min(int(top), self.max_page_size)
        else:
            limit = count
            if cookie and page > 1:
                _, lasts, _ = cookie_values(f'<cookie pagingcookie="{_xml_attr(cookie)}" />')
                if [c for c, _ in lasts] == [c for c, _ in order]:
                    values = [self._cookie_value(table, c, v) for c, v in lasts]
                    kw, kp = keyset_where(order, values)
                    where.append(kw)
                    args.extend(kp)
                else:
                    offset = (page - 1) * count
            else:
                offset = (page - 1) * count
        key_start = len(plan.columns)
        cols = plan.columns + [f't."{c}"' for c, _ in order] + join.select
        link_start = len(plan.columns) + len(order)
        sql = (
            f'SELECT {", ".join(cols)} FROM "{table.entity_set}" t{join.sql}'
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY "
            + ", ".join(f't."{c}"{" DESC" if d else ""}' for c, d in order)
            + f" LIMIT {limit + 1} OFFSET {offset}"
        )
        rows = self.store.query(sql, join.args + args)
        more = len(rows) > limit and top is None
        rows = rows[:limit]
        body: dict[str, Any] = {
            "@odata.context": metadata_context(
                call.root,
                table.entity_set
                + (f"({','.join(a.column for a in plan.output)})" if select is not None else ""),
            )
        }
        if fetch.get("returntotalrecordcount") == "true":
            cond = " AND ".join(base_where) or "1"
            total = self.store.query(
                f'SELECT COUNT(*) FROM (SELECT 1 FROM "{table.entity_set}" t{join.sql} '
                f"WHERE {cond} LIMIT {COUNT_CAP + 1})",
                join.args + base_args,
            )[0][0]
            body["@Microsoft.Dynamics.CRM.totalrecordcount"] = min(int(total), COUNT_CAP)
            body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = total > COUNT_CAP
        if more and rows:
            if ann.wants(_COOKIE):
                guid_cols = [
                    (c, (table.by_column(c) or table.attributes[0]).edm == "Edm.Guid")
                    for c, _ in order
                ]
                body[f"@{_COOKIE}"] = make_cookie(
                    page,
                    guid_cols,
                    list(rows[0][key_start:link_start]),
                    list(rows[-1][key_start:link_start]),
                    encodings=2,
                )
            if ann.wants(_MORE):
                body[f"@{_MORE}"] = True
        body["value"] = [self._emit(plan, join, r, link_start, ann) for r in rows]
        headers = [("Preference-Applied", f'odata.include-annotations="{ann.spec}"')] if ann else []
        headers.append((ROWS_HEADER, str(len(body["value"]))))
        return Reply.json(200, body, headers)

    def _aggregate(self, call: Call, table: Table, fetch: ET.Element, entity: ET.Element) -> Reply:
        where: list[str] = []
        args: list[Any] = []
        for flt in entity.findall("filter"):
            sql, ps = self._filter(table, flt)
            where.append(sql)
            args.extend(ps)
        ann = Annotations(call.prefer.get("odata.include-annotations", "").strip('"') or None)
        rows = run_fetch_aggregate(
            self.store,
            table,
            fetch,
            entity,
            (" AND ".join(where) or "1", args),
            self._attr,
            limit=self.aggregate_limit,
            labels=ann.wants("OData.Community.Display.V1.FormattedValue"),
        )
        body = {"@odata.context": metadata_context(call.root, table.entity_set), "value": rows}
        return Reply.json(200, body, [(ROWS_HEADER, str(len(rows)))])

    @staticmethod
    def _emit(plan: RowPlan, join: Join, row: Any, start: int, ann: Annotations) -> dict[str, Any]:
        out: dict[str, Any] = plan.emit(row)
        if join.links:
            labels = ann.wants("OData.Community.Display.V1.FormattedValue")
            tables = ann.wants("Microsoft.Dynamics.CRM.lookuplogicalname")
            join.emit(tuple(row[start:]), out, labels=labels, tables=tables)
        return out

    @staticmethod
    def _attr(table: Table, name: str) -> Attribute:
        attr = table.attribute(name)
        if attr is None:
            raise ApiError(
                400,
                "0x80041103",
                f"'{table.logical}' entity doesn't contain attribute with Name = '{name}'.",
            )
        return attr

    def _cookie_value(self, table: Table, col: str, value: str | None) -> Any:
        attr = table.by_column(col)
        if value is None or attr is None:
            return value
        if attr.edm == "Edm.Guid":
            return value.strip("{}").lower()
        if attr.sql_type == "INTEGER":
            return int(value)
        if attr.sql_type == "REAL":
            return float(value)
        return value

    def _filter(
        self, table: Table, flt: ET.Element, *, alias: str = "t", join: Join | None = None
    ) -> tuple[str, list[Any]]:
        joiner = " OR " if flt.get("type", "and") == "or" else " AND "
        parts: list[str] = []
        args: list[Any] = []
        for child in flt:
            if child.tag == "filter":
                sql, ps = self._filter(table, child, alias=alias, join=join)
            elif child.tag == "condition":
                where_table, where_alias = table, alias
                if child.get("entityname") and join is not None:
                    link = join.by_alias(child.get("entityname", ""))
                    where_table, where_alias = link.table, link.sql_alias
                sql, ps = self._condition(where_table, child, where_alias)
            else:
                continue
            parts.append(sql)
            args.extend(ps)
        return ("(" + joiner.join(parts) + ")" if parts else "1"), args

    def _condition(self, table: Table, el: ET.Element, alias: str = "t") -> tuple[str, list[Any]]:
        attr = self._attr(table, el.get("attribute", ""))
        col = f'{alias}."{attr.column}"'
        op = el.get("operator", "eq")
        value = el.get("value")

        def typed(v: str | None) -> Any:
            if v is None:
                return None
            if attr.sql_type == "INTEGER":
                if attr.kind == "Boolean":
                    return 1 if v.lower() in ("1", "true") else 0
                return int(v)
            if attr.sql_type == "REAL":
                return float(v)
            if attr.kind == "DateTime" and not attr.date_only and len(v) == 10:
                return f"{v}T00:00:00Z"
            return sql_value(attr, v)

        if op == "null":
            return f"({col} IS NULL)", []
        if op == "not-null":
            return f"({col} IS NOT NULL)", []
        if op in ("in", "not-in"):
            values = [typed(v.text) for v in el.findall("value")]
            if not values:
                raise _bad("The 'in' operator needs at least one value element.")
            neg = "NOT " if op == "not-in" else ""
            return f"({col} {neg}IN ({','.join('?' * len(values))}))", values
        if op in ("between", "not-between"):
            # [MS] FetchXML condition operators: two <value> elements, both ends included.
            bounds = [typed(v.text) for v in el.findall("value")]
            if len(bounds) != 2:
                raise _bad(f"The '{op}' operator needs exactly two value elements.")
            neg = "NOT " if op == "not-between" else ""
            return f"({col} {neg}BETWEEN ? AND ?)", bounds
        if op in _LIKE:
            before, after, negate = _LIKE[op]
            return f"({col} {'NOT ' if negate else ''}LIKE ?)", [f"{before}{value or ''}{after}"]
        if (
            op in ("on", "on-or-after", "on-or-before")
            and attr.kind == "DateTime"
            and not attr.date_only
        ):
            col = f"substr({col}, 1, 10)"
            return f"({col} {_SIMPLE[op]} ?)", [(value or "")[:10]]
        if op in _SIMPLE:
            return f"({col} {_SIMPLE[op]} ?)", [typed(value)]
        function = _FUNCTIONS.get(op)
        if function in HIERARCHY_FUNCTIONS:
            if attr.column != table.primary_id:
                raise _bad(f"The '{op}' operator needs the table's primary key.")
            args = {"PropertyName": table.primary_id, "PropertyValue": value}
            return hierarchy_function(function, table, args, alias)
        if function is not None:
            now = datetime.now(timezone.utc)
            return date_function(function, attr, col, {"PropertyValue": value}, now)
        raise _bad(f"The condition operator '{op}' is not supported by the sandbox.")


def _xml_attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
