"""Nested `$expand`: `primarycontactid($select=fullname;$expand=parentcustomerid_account(...))`.

[MS] `WA/query/join-tables`: `$expand` may nest inside `$expand` (many-to-one and
one-to-many combined), with at most 15 expand items in all; once a query nests and
expands a collection anywhere, only `$select` and `$filter` may appear inside (`$top`
and `$orderby` answer 400 `0x80060888`).  The first level is expanded by `_reads`; this
module expands the rows each level brought, level by level, with one query per item and
level (not per row).  [UNVERIFIED] simplification: a nested collection returns its rows
(up to 5,000) and the `@odata.nextLink` of its filtered collection, without paging.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ._errors import syntax_error
from ._exchange import Call
from ._query import Expand
from ._rows import Annotations, RowPlan
from ._schema import Table, table_by_logical
from ._store import Store

__all__ = ["check_nesting", "expand_nested"]

_SAFE = "$,()'=/:@*;!"
_CHUNK = 900


def check_nesting(items: list[Expand]) -> None:
    """Refuse a `$expand` tree past the service's limits (see the module docstring)."""

    def walk(level: list[Expand]) -> list[Expand]:
        return [e for item in level for e in (item, *walk(item.expand))]

    every = walk(items)
    if len(every) > 15:
        raise syntax_error("The number of expand options exceeds the limit of 15.")
    if any(e.expand for e in every) and any(e.nav.collection for e in every):
        if any(e.orderby or e.top is not None for e in every):
            raise syntax_error(
                "Only $select and $filter clause can be provided while doing "
                "$expand on many-to-one relationship or nested one-to-many "
                "relationship."
            )


def _target(exp: Expand) -> Table:
    target = table_by_logical(exp.nav.target)
    assert target is not None
    return target


def _brought(exp: Expand, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows `exp` put into `values` (an object, a list, or null per row)."""
    rows: list[dict[str, Any]] = []
    for value in values:
        got = value.get(exp.nav.name)
        if isinstance(got, dict):
            rows.append(got)
        elif isinstance(got, list):
            rows.extend(got)
    return rows


def expand_nested(
    store: Store,
    call: Call,
    expands: list[Expand],
    values: list[dict[str, Any]],
    ann: Annotations,
) -> None:
    """Expand, in the rows the first level brought, every nested item (recursively)."""
    for exp in expands:
        if exp.expand:
            target = _target(exp)
            _level(store, call, target, exp.expand, _brought(exp, values), ann)


def _query(store: Store, sql: str, where: str, keys: list[Any], args: list[Any]) -> list[Any]:
    rows: list[Any] = []
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i : i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        rows += store.query(sql.format(where=where.format(marks=marks)), [*chunk, *args])
    return rows


def _level(
    store: Store,
    call: Call,
    table: Table,
    expands: list[Expand],
    values: list[dict[str, Any]],
    ann: Annotations,
) -> None:
    ids = sorted({v[table.primary_id] for v in values if v.get(table.primary_id)})
    for exp in expands:
        target = _target(exp)
        plan = RowPlan(target, exp.select, ann)
        extra, args = ("", []) if exp.filter is None else (f" AND {exp.filter[0]}", exp.filter[1])
        select = f'SELECT {", ".join(plan.columns)}, {{key}} FROM "{target.entity_set}" t '
        if not exp.nav.collection:
            attr = table.attribute(exp.nav.relationship.attribute)
            assert attr is not None
            kind = f', t."{attr.type_column}"' if attr.polymorphic else ""
            fks = {
                r[0]: r[1]
                for r in _query(
                    store,
                    f'SELECT t."{table.primary_id}", t."{attr.column}"{kind} '
                    f'FROM "{table.entity_set}" t WHERE {{where}}',
                    f't."{table.primary_id}" IN ({{marks}})',
                    ids,
                    [],
                )
                if r[1] is not None and (not attr.polymorphic or r[2] == target.logical)
            }
            key = f't."{target.primary_id}"'
            found = {
                r[-1]: plan.emit(r)
                for r in _query(
                    store,
                    select.format(key=key) + "WHERE {where}",
                    f"{key} IN ({{marks}}){extra}",
                    sorted(set(fks.values())),
                    args,
                )
            }
            for value in values:
                fk = fks.get(value.get(table.primary_id))
                value[exp.nav.name] = found.get(fk) if fk else None
            continue
        attr = target.attribute(exp.nav.relationship.attribute)
        assert attr is not None
        key = f't."{attr.column}"'
        poly = f" AND t.\"{attr.type_column}\" = '{table.logical}'" if attr.polymorphic else ""
        children: dict[Any, list[dict[str, Any]]] = {}
        for r in _query(
            store,
            select.format(key=key) + f'WHERE {{where}} ORDER BY t."{target.primary_id}"',
            f"{key} IN ({{marks}}){poly}{extra}",
            ids,
            args,
        ):
            children.setdefault(r[-1], []).append(plan.emit(r))
        for value in values:
            row_id = value.get(table.primary_id)
            value[exp.nav.name] = children.get(row_id, [])[:5000]
            link = f"{call.root}{table.entity_set}({row_id})/{exp.nav.name}"
            options = [
                f"{name}={quote(text, safe=_SAFE)}"
                for name, text in (("$select", exp.select_text), ("$filter", exp.filter_text))
                if text
            ]
            value[f"{exp.nav.name}@odata.nextLink"] = link + (
                "?" + "&".join(options) if options else ""
            )
    for exp in expands:
        if exp.expand:
            _level(store, call, _target(exp), exp.expand, _brought(exp, values), ann)
