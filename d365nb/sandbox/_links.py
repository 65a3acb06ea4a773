"""FetchXML `link-entity` joins: inner and outer, nested, aliased columns (`alias.column`).

[MS] `PA/fetchxml/join-tables`: `name`, `from` (column of the linked table), `to` (column
of the parent), `link-type` `inner` (default) or `outer`, `alias`.  Linked columns come
back as `alias.logicalname` (lookups hold the GUID, with the FormattedValue and
lookuplogicalname annotations), nulls left out; a filter inside an
outer link restricts the join, not the rows.  `condition entityname="alias"` in the
entity's filter tests a linked column (`operator="null"` on an outer link: rows without a
match).  Without `alias` the sandbox names the link `<name><n>` ([UNVERIFIED] the
service's generated alias).  Other link types (`any`, `exists`, ...) answer 400.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._errors import ApiError
from ._rows import formatted
from ._schema import Attribute, Table, table_by_logical

__all__ = ["Join", "Link", "plan_links"]

FV = "@OData.Community.Display.V1.FormattedValue"
LLN = "@Microsoft.Dynamics.CRM.lookuplogicalname"
Filter = Callable[[Table, ET.Element, str], tuple[str, list[Any]]]


def _bad(message: str) -> ApiError:
    return ApiError(400, "0x80041103", message)


@dataclass
class Link:
    """One joined table: its SQL alias, result alias and the columns it returns."""

    table: Table
    sql_alias: str
    alias: str
    columns: list[Attribute] = field(default_factory=list)


@dataclass
class Join:
    """Every link of a query: the JOIN text and its parameters, and the links by alias."""

    sql: str = ""
    args: list[Any] = field(default_factory=list)
    where: list[tuple[str, list[Any]]] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)

    def by_alias(self, alias: str) -> Link:
        """The link called `alias` (for `condition entityname=`)."""
        for link in self.links:
            if link.alias == alias:
                return link
        raise _bad(f"No link-entity has the alias '{alias}'.")

    @property
    def select(self) -> list[str]:
        """The SQL expressions of the linked columns, in `emit()` order: each column's
        value, and for a lookup its target table and the target row's primary name."""
        out: list[str] = []
        for link in self.links:
            for a in link.columns:
                out.append(f'{link.sql_alias}."{a.column}"')
                if a.is_lookup:
                    out.append(f'{link.sql_alias}."{a.type_column}"' if a.polymorphic else "NULL")
                    out.append(_name_sql(link.sql_alias, a))
        return out

    def emit(
        self, values: tuple[Any, ...], out: dict[str, Any], *, labels: bool, tables: bool
    ) -> None:
        """Add the linked columns (`alias.name`) of one row to `out`.

        A lookup holds the GUID, with its primary name (FormattedValue) and its table
        (lookuplogicalname) as annotations, as the base table's `_x_value` does.
        """
        at = 0
        for link in self.links:
            for attr in link.columns:
                value = values[at]
                at += 1
                key = f"{link.alias}.{attr.name}"
                if attr.is_lookup:
                    target, name = values[at], values[at + 1]
                    at += 2
                    if value is None:
                        continue
                    if labels and name is not None:
                        out[key + FV] = name
                    if tables:
                        out[key + LLN] = target or attr.targets[0]
                    out[key] = value
                    continue
                if value is None:
                    continue
                if labels:
                    label = formatted(attr, value)
                    if label is not None:
                        out[key + FV] = label
                out[key] = bool(value) if attr.kind == "Boolean" else value


def _name_sql(alias: str, attr: Attribute) -> str:
    """SQL for the primary name of the row a lookup on `alias` points to."""
    parts = []
    for name in attr.targets:
        target = table_by_logical(name)
        if target is None:
            continue
        sub = (
            f'(SELECT n."{target.primary_name}" FROM "{target.entity_set}" n '
            f'WHERE n."{target.primary_id}" = {alias}."{attr.column}")'
        )
        if not attr.polymorphic:
            return sub
        parts.append(f"WHEN '{name}' THEN {sub}")
    if not parts:
        return "NULL"
    return f'(CASE {alias}."{attr.type_column}" {" ".join(parts)} END)'


def _column(table: Table, name: str | None) -> Attribute:
    attr = table.attribute(name or "")
    if attr is None:
        raise _bad(f"'{table.logical}' entity doesn't contain attribute with Name = '{name}'.")
    return attr


def plan_links(table: Table, entity: ET.Element, filter_sql: Filter) -> Join:
    """The joins of `entity`'s link-entity elements (recursively)."""
    join = Join()

    def visit(parent: Table, parent_alias: str, element: ET.Element) -> None:
        for el in element.findall("link-entity"):
            target = table_by_logical(el.get("name", ""))
            if target is None:
                raise _bad(f"The entity with a name = '{el.get('name')}' was not found.")
            kind = el.get("link-type", "inner")
            if kind not in ("inner", "outer"):
                raise _bad(f"The sandbox supports link-type inner and outer, not '{kind}'.")
            n = len(join.links)
            link = Link(target, f"l{n}", el.get("alias") or f"{target.logical}{n + 1}")
            join.links.append(link)
            src = _column(target, el.get("from"))
            dst = _column(parent, el.get("to"))
            on = f'{link.sql_alias}."{src.column}" = {parent_alias}."{dst.column}"'
            conds: list[tuple[str, list[Any]]] = [
                filter_sql(target, f, link.sql_alias) for f in el.findall("filter")
            ]
            if kind == "outer":
                on = " AND ".join([on, *(sql for sql, _ in conds)])
                join.sql += f' LEFT JOIN "{target.entity_set}" {link.sql_alias} ON {on}'
                join.args.extend(p for _, ps in conds for p in ps)
            else:
                join.sql += f' JOIN "{target.entity_set}" {link.sql_alias} ON {on}'
                join.where.extend(conds)
            if el.find("all-attributes") is not None:
                link.columns = list(target.attributes)
            else:
                link.columns = [_column(target, a.get("name")) for a in el.findall("attribute")]
            visit(target, link.sql_alias, el)

    visit(table, "t", entity)
    return join
