"""Associate and disassociate rows through `$ref`, and many-to-many navigation.

```
POST   {set}({id})/{collection nav}/$ref        {"@odata.id": ".../{set2}({id2})"}
DELETE {set}({id})/{collection nav}({id2})/$ref (or .../$ref?$id=...)
PUT    {set}({id})/{single-valued nav}/$ref     {"@odata.id": ...}
DELETE {set}({id})/{single-valued nav}/$ref
GET    {set}({id})/{many-to-many nav}           the related rows
```

[MS] WA/associate-disassociate-entities-using-web-api.  One-to-many navigation sets or
clears the lookup on the many side; many-to-many navigation adds or removes a row of the
relationship's intersect table (`ManyToMany`, created through RelationshipDefinitions).
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from ._errors import ApiError, not_found
from ._exchange import Call, Reply
from ._model import CURRENT_CATALOG, ManyToMany, Table
from ._reads import Reader
from ._references import parse_entity_ref
from ._schema import nav_properties, table_by_logical
from ._store import Store
from ._writes import Writer

__all__ = ["Associations", "many_to_many_navs"]

_PATH = re.compile(r"^([A-Za-z0-9_]+)(?:\(([^)]*)\))?(/\$ref)?$")


def many_to_many_navs(table: Table) -> dict[str, tuple[ManyToMany, Table, str, str]]:
    """Many-to-many navigation properties of `table`: name -> (relationship, other table,
    this side's intersect column, the other side's)."""
    catalog = CURRENT_CATALOG.get()
    out: dict[str, tuple[ManyToMany, Table, str, str]] = {}
    for rel in catalog.many_to_many if catalog else ():
        for nav, mine, other, here, there in (
            (rel.nav1, rel.entity1, rel.entity2, rel.column1, rel.column2),
            (rel.nav2, rel.entity2, rel.entity1, rel.column2, rel.column1),
        ):
            target = table_by_logical(other)
            if mine == table.logical and target is not None:
                out.setdefault(nav, (rel, target, here, there))
    return out


class Associations:
    """`$ref` requests and many-to-many reads for one sandbox.

    **Parameters:**

    * **store** - the database; **reader** / **writer** - its read and write engines.
    """

    def __init__(self, store: Store, reader: Reader, writer: Writer) -> None:
        self.store = store
        self.reader = reader
        self.writer = writer

    def handle(self, call: Call, table: Table, row_id: str, rest: str) -> Reply | None:
        """The answer for `rest` (after `{set}({id})/`), or None when it is not ours."""
        m = _PATH.match(rest)
        if m is None:
            return None
        name, other_key, ref = m.group(1), m.group(2), m.group(3)
        pairs = many_to_many_navs(table)
        if name in pairs:
            return self._many_to_many(call, table, row_id, name, other_key, bool(ref))
        nav = nav_properties(table).get(name)
        if nav is None or not ref:
            return None
        target = table_by_logical(nav.target)
        assert target is not None
        rel = nav.relationship
        if nav.collection:  # the lookup lives on the other row
            attr = target.attribute(rel.attribute)
            assert attr is not None
            if call.method == "POST" and other_key is None:
                child = self._referenced(call, target)
                self._set_lookup(call, target, child, attr.name, row_id, table.logical)
                return Reply(204)
            if call.method == "DELETE":
                child = self._key_or_id_param(call, target, other_key)
                self._set_lookup(call, target, child, attr.name, None, None)
                return Reply(204)
        else:
            attr = table.attribute(rel.attribute)
            assert attr is not None
            if call.method == "PUT" and other_key is None:
                parent = self._referenced(call, target)
                self._set_lookup(call, table, row_id, attr.name, parent, target.logical)
                return Reply(204)
            if call.method == "DELETE" and other_key is None:
                self._set_lookup(call, table, row_id, attr.name, None, None)
                return Reply(204)
        raise _not_allowed(call)

    # -- one-to-many
    def _set_lookup(
        self,
        call: Call,
        table: Table,
        row_id: str,
        attr_name: str,
        value: str | None,
        target: str | None,
    ) -> None:
        attr = table.attribute(attr_name)
        assert attr is not None
        values: dict[str, Any] = {attr.column: value}
        if attr.polymorphic:
            values[attr.type_column] = target
        with self.store.atomic():
            self.writer.update(table, row_id, values, call.caller)

    # -- many-to-many
    def _many_to_many(
        self, call: Call, table: Table, row_id: str, name: str, other_key: str | None, ref: bool
    ) -> Reply:
        rel, other, here, there = many_to_many_navs(table)[name]
        if not ref and other_key is None and call.method == "GET":
            cond = (
                f't."{other.primary_id}" IN (SELECT "{there}" FROM "{rel.intersect}" '
                f'WHERE "{here}" = ?)'
            )
            return self.reader.collection(
                call, other, extra=(cond, [row_id]), path=f"{table.entity_set}({row_id})/{name}"
            )
        if ref and call.method == "POST" and other_key is None:
            other_id = self._referenced(call, other)
            try:
                self.store.execute(
                    f'INSERT INTO "{rel.intersect}" ("{here}", "{there}") VALUES (?, ?)',
                    [row_id, other_id],
                )
            except sqlite3.IntegrityError:
                # [UNVERIFIED] the code for associating a pair twice.
                raise ApiError(
                    400, "0x80040237", "Cannot insert duplicate key: the rows are associated."
                ) from None
            return Reply(204)
        if ref and call.method == "DELETE":
            other_id = self._key_or_id_param(call, other, other_key)
            self.store.execute(
                f'DELETE FROM "{rel.intersect}" WHERE "{here}" = ? AND "{there}" = ?',
                [row_id, other_id],
            )
            return Reply(204)
        raise _not_allowed(call)

    # -- references
    def _referenced(self, call: Call, expected: Table) -> str:
        body = call.json()
        ref = body.get("@odata.id") if isinstance(body, dict) else None
        if not isinstance(ref, str):
            raise ApiError(400, "0x80048d19", 'The body must be {"@odata.id": "<row URL>"}.')
        return self._row_of(ref, expected)

    def _key_or_id_param(self, call: Call, expected: Table, key: str | None) -> str:
        if key is not None:
            return self._row_of(f"{expected.entity_set}({key})", expected)
        ref = call.params.get("$id")
        if not ref:
            raise ApiError(400, "0x80060888", "Name the row to disassociate: nav(<id>)/$ref.")
        return self._row_of(ref, expected)

    def _row_of(self, ref: str, expected: Table) -> str:
        table, key = parse_entity_ref(ref)
        if table is not expected:
            raise ApiError(
                400, "0x80048d19", f"'{ref}' is not a {expected.logical} row for this navigation."
            )
        found = self.writer.find(table, key)
        if found is None:
            raise not_found(table.logical, ",".join(str(v) for v in key.values()))
        return found[0]


def _not_allowed(call: Call) -> ApiError:
    return ApiError(
        405, "0x80060888", f"The requested resource does not support http method '{call.method}'."
    )
