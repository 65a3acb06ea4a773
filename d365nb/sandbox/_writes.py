"""Writes: create, update, upsert, delete, `@odata.bind`, validation and bulk actions."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime, timezone
from itertools import groupby
from typing import Any

from ._errors import ApiError, not_found
from ._exchange import Caller
from ._model import CURRENT_CATALOG
from ._query import sql_value
from ._references import GUID, new_ids, parse_entity_ref
from ._schema import (
    Attribute,
    NavProperty,
    Table,
    nav_properties,
    table_by_logical,
)
from ._seed import CURRENCIES
from ._store import Store

__all__ = ["Writer"]

_RATES = {c[0]: c[4] for c in CURRENCIES}
_USD = CURRENCIES[0][0]
_DUPLICATE_RULES = {
    "account": ("name",),
    "contact": ("emailaddress1",),
    "lead": ("emailaddress1",),
}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# Levels of related rows a deep insert may nest.
_MAX_DEEP_INSERT = 10


def _deep_insert_error(table: Table, name: str) -> ApiError:
    return ApiError(
        400,
        "0x80048d19",
        f"Error identified in Payload provided by the user for Entity :'{table.entity_set}'  "
        f"---->  InnerException : Microsoft.OData.ODataException: The navigation property "
        f"'{name}' must hold an object (single-valued) or an array of objects (collection).",
    )


class Writer:
    """Row writes against the store; callers wrap calls in `store.atomic()`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- lookups of existing rows
    def find(self, table: Table, key: dict[str, Any]) -> tuple[str, int] | None:
        """(primary key, versionnumber) of the row with this key, or None."""
        where = " AND ".join(f'"{c}" IS ?' for c in key)
        rows = self.store.query(
            f'SELECT "{table.primary_id}", versionnumber FROM "{table.entity_set}" WHERE {where}',
            list(key.values()),
        )
        return (str(rows[0][0]), int(rows[0][1])) if rows else None

    # -- body conversion
    def values(
        self,
        table: Table,
        body: dict[str, Any],
        *,
        creating: bool,
        navs: dict[str, NavProperty] | None = None,
    ) -> dict[str, Any]:
        """A JSON body → {column: stored value}, validated as the service does (`navs`:
        `nav_properties(table)`, when the caller converts many bodies)."""
        out: dict[str, Any] = {}
        if navs is None:
            navs = nav_properties(table)
        for name, value in body.items():
            if name.startswith("@"):
                continue
            if "@" in name:
                prop, _, term = name.partition("@")
                if term != "odata.bind":
                    continue
                nav = navs.get(prop)
                if nav is None or nav.collection:
                    raise ApiError(
                        400,
                        "0x80048d19",
                        (
                            f"Error identified in Payload provided by the user for Entity :'"
                            f"{table.entity_set}'  ---->  InnerException : Microsoft.OData."
                            f"ODataException: An undeclared property '{prop}' which only has "
                            "property annotations in the payload but no property value was found "
                            "in the payload. In OData, only declared navigation properties and "
                            "declared named streams can be represented as properties without "
                            "values."
                        ),
                    )
                attr = table.attribute(nav.relationship.attribute)
                assert attr is not None
                if value is None:
                    out[attr.column] = None
                    if attr.polymorphic:
                        out[attr.type_column] = None
                    continue
                target, key = parse_entity_ref(str(value))
                if target.logical != nav.target:
                    raise ApiError(
                        400,
                        "0x80048d19",
                        f"The entity reference '{value}' does not "
                        f"match navigation property '{prop}'.",
                    )
                found = self.find(target, key)
                if found is None:
                    raise not_found(target.logical, ",".join(str(v) for v in key.values()))
                out[attr.column] = found[0]
                if attr.polymorphic:
                    out[attr.type_column] = target.logical
                continue
            attr = table.attribute(name)
            if attr is None or (attr.is_lookup and value is not None):
                raise ApiError(
                    400,
                    "0x0",
                    (
                        "An error occurred while validating input parameters: Microsoft.Crm."
                        f"CrmException: Invalid property '{name}' was found in entity 'Microsoft."
                        f"Dynamics.CRM.{table.logical}'."
                    ),
                )
            if attr.is_lookup:
                out[attr.column] = None
                if attr.polymorphic:
                    out[attr.type_column] = None
                continue
            if attr.name == table.primary_id:
                if creating and value is not None:
                    out[attr.column] = self._convert(table, attr, value)
                continue
            if not (attr.creatable if creating else attr.updatable):
                continue  # read-only columns are ignored, as the service does
            out[attr.column] = self._convert(table, attr, value)
        return out

    def _convert(self, table: Table, attr: Attribute, value: Any) -> Any:
        if value is None:
            return None
        kind = attr.kind

        def bad() -> ApiError:
            return ApiError(
                400,
                "0x80048d19",
                (
                    f"Error identified in Payload provided by the user for Entity :'"
                    f"{table.entity_set}'  ---->  InnerException : Microsoft.OData.ODataException: "
                    f"Cannot convert the literal '{value}' to the expected type '{attr.edm}'."
                ),
            )

        if kind in ("String", "Memo"):
            if not isinstance(value, str):
                raise bad()
            if attr.max_length is not None and len(value) > attr.max_length:
                raise ApiError(
                    400,
                    "0x80044331",
                    (
                        f"A validation error occurred.  The length of the '{attr.name}' attribute "
                        f"of the '{table.logical}' entity exceeded the maximum allowed length of "
                        f"'{attr.max_length}'."
                    ),
                )
            return value or None
        if kind in ("Integer", "BigInt", "Picklist", "State", "Status"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad()
            if kind in ("Picklist", "State", "Status") and attr.label_of(value) is None:
                raise self._range(table, attr, value)
            return value
        if kind in ("Money", "Decimal", "Double"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad()
            return float(value)
        if kind == "Boolean":
            if not isinstance(value, bool):
                raise bad()
            return 1 if value else 0
        if kind == "Virtual":
            parts = [p for p in str(value).split(",") if p.strip()]
            try:
                numbers = [int(p) for p in parts]
            except ValueError:
                raise bad() from None
            for n in numbers:
                if attr.label_of(n) is None:
                    raise self._range(table, attr, n)
            return ",".join(str(n) for n in numbers) or None
        if kind == "DateTime":
            if not isinstance(value, str):
                raise bad()
            try:
                if attr.date_only:
                    return datetime.fromisoformat(value[:10]).strftime("%Y-%m-%d")
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise bad() from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if kind == "Uniqueidentifier":
            if not isinstance(value, str) or not GUID.match(value):
                raise bad()
            return value.strip("{}").lower()
        return value

    @staticmethod
    def _range(table: Table, attr: Attribute, value: int) -> ApiError:
        accepted = ",".join(str(v) for v, _ in attr.options)
        return ApiError(
            400,
            "0x8004431a",
            (
                f"A validation error occurred. The value {value} of '{attr.name}' on record of "
                f"type "
                f"'{table.logical}' is outside the valid range. Accepted Values: {accepted}"
            ),
        )

    # -- writes
    def create(self, table: Table, values: dict[str, Any], caller: Caller) -> str:
        """Insert a row; returns its primary key."""
        return self.create_many(table, [values], caller)[0]

    def create_many(self, table: Table, rows: list[dict[str, Any]], caller: Caller) -> list[str]:
        """Insert rows (`values()` output) as one statement per run of rows with the same
        columns; their primary keys, in order.  Same rows, stamps and errors as `create`
        one by one: the rows of one request share its `createdon` second."""
        now = _now()
        ids = iter(new_ids(sum(1 for v in rows if not v.get(table.primary_id))))
        made = [
            self._new_row(table, values, caller, now, values.get(table.primary_id) or next(ids))
            for values in rows
        ]
        self._insert(table, made)
        return [str(row[table.primary_id]) for row in made]

    def _new_row(
        self, table: Table, values: dict[str, Any], caller: Caller, now: str, row_id: str
    ) -> dict[str, Any]:
        """The stored row for a create: its id, stamps, defaults."""
        row = dict(values)
        row[table.primary_id] = row_id
        row.update(
            createdon=now,
            modifiedon=now,
            _createdby_value=caller.systemuserid,
            _modifiedby_value=caller.systemuserid,
            versionnumber=self.store.next_version(),
        )
        if table.attribute("ownerid") is not None and row.get("_ownerid_value") is None:
            row["_ownerid_value"] = caller.systemuserid
        if table.attribute("statecode") is not None:
            row.setdefault("statecode", 0)
            if row.get("statuscode") is None:
                row["statuscode"] = self._default_status(table, row["statecode"])
        if table.money:
            if row.get("_transactioncurrencyid_value") is None:
                row["_transactioncurrencyid_value"] = _USD
            row["exchangerate"] = _RATES.get(row["_transactioncurrencyid_value"], 1.0)
        if table.attribute("fullname") is not None and table.attribute("lastname") is not None:
            row["fullname"] = (
                " ".join(p for p in (row.get("firstname"), row.get("lastname")) if p) or None
            )
        # [UNVERIFIED] required columns (RequiredLevel ApplicationRequired) are not enforced:
        # the service enforces them in forms, not in Web API creates.
        return row

    def _insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """INSERT `rows`: one `executemany` per run of rows with the same columns."""
        for cols, run in groupby(rows, key=tuple):
            names = ", ".join(f'"{c}"' for c in cols)
            try:
                self.store.execute_many(
                    f'INSERT INTO "{table.entity_set}" ({names}) '
                    f"VALUES ({','.join('?' * len(cols))})",
                    [list(row.values()) for row in run],
                )
            except sqlite3.IntegrityError as exc:
                raise self._integrity(table, exc) from None

    def deep_create(
        self, table: Table, body: dict[str, Any], caller: Caller, *, depth: int = 0
    ) -> tuple[str, int]:
        """Create a row and the related rows nested in `body` (deep insert); returns the
        row's id and how many rows were created.

        [MS] WA/create-entity-web-api ("Create related table rows in one operation"): a
        single-valued navigation property holds an object (created first, then bound), a
        collection-valued one a list of objects (created after, pointing at the new row).
        Call it inside `store.atomic()`: all rows or none.
        """
        if depth > _MAX_DEEP_INSERT:
            # [UNVERIFIED] the service's nesting limit and its error for deeper bodies.
            raise ApiError(
                400, "0x80048d19", f"Deep insert nests more than {_MAX_DEEP_INSERT} levels."
            )
        navs = nav_properties(table)
        own: dict[str, Any] = {}
        children: list[tuple[Table, str, list[dict[str, Any]]]] = []
        created = 0
        for name, value in body.items():
            nav = navs.get(name)
            if nav is None or value is None:
                own[name] = value
                continue
            target = table_by_logical(nav.target)
            assert target is not None
            if nav.collection:
                if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                    raise _deep_insert_error(table, name)
                # the child's single-valued nav back to this table (its own per target)
                children.append((target, nav.relationship.referencing_nav, value))
                continue
            if not isinstance(value, dict):
                raise _deep_insert_error(table, name)
            child_id, count = self.deep_create(target, value, caller, depth=depth + 1)
            created += count
            own[f"{name}@odata.bind"] = f"{target.entity_set}({child_id})"
        row_id = self.create(table, self.values(table, own, creating=True), caller)
        created += 1
        for target, back, items in children:
            for item in items:
                bound = {**item, f"{back}@odata.bind": f"{table.entity_set}({row_id})"}
                created += self.deep_create(target, bound, caller, depth=depth + 1)[1]
        return row_id, created

    def update(self, table: Table, row_id: str, values: dict[str, Any], caller: Caller) -> None:
        """Update the row `row_id` (which must exist)."""
        row = dict(values)
        row.update(
            modifiedon=_now(),
            _modifiedby_value=caller.systemuserid,
            versionnumber=self.store.next_version(),
        )
        if "statecode" in row and "statuscode" not in row and row["statecode"] is not None:
            row["statuscode"] = self._default_status(table, row["statecode"])
        if "_transactioncurrencyid_value" in row:
            row["exchangerate"] = _RATES.get(row["_transactioncurrencyid_value"] or _USD, 1.0)
        sets = ", ".join(f'"{c}" = ?' for c in row)
        try:
            self.store.execute(
                f'UPDATE "{table.entity_set}" SET {sets} WHERE "{table.primary_id}" = ?',
                [*row.values(), row_id],
            )
        except sqlite3.IntegrityError as exc:
            raise self._integrity(table, exc) from None
        if (
            table.attribute("fullname") is not None
            and table.attribute("lastname") is not None
            and ("firstname" in row or "lastname" in row)
        ):
            self.store.execute(
                f"UPDATE \"{table.entity_set}\" SET fullname = TRIM(COALESCE(firstname, '') || "
                f"' ' || COALESCE(lastname, '')) WHERE \"{table.primary_id}\" = ?",
                [row_id],
            )

    def delete(self, table: Table, row_id: str) -> None:
        """Delete a row and log the deletion for change tracking.

        Relationships created through the metadata API apply their cascade: Restrict
        refuses while related rows exist, Cascade deletes them, RemoveLink clears their
        lookup.  (Call inside `store.atomic()`.)
        """
        catalog = CURRENT_CATALOG.get()
        for rel in catalog.relationships if catalog else ():
            if rel.referenced != table.logical:
                continue
            child = table_by_logical(rel.referencing)
            attr = child.attribute(rel.attribute) if child else None
            if child is None or attr is None:
                continue
            rows = self.store.query(
                f'SELECT "{child.primary_id}" FROM "{child.entity_set}" WHERE "{attr.column}" = ?',
                [row_id],
            )
            if rows and rel.cascade_delete == "Restrict":
                # [MS] 405 CannotDeleteDueToAssociation; [UNVERIFIED] the empty code.
                raise ApiError(
                    405,
                    "",
                    "The object you tried to delete is associated with another object and "
                    f"cannot be deleted (relationship {rel.schema_name}).",
                )
            for (child_id,) in rows:
                if rel.cascade_delete == "Cascade":
                    self.delete(child, child_id)
                else:
                    self.store.execute(
                        f'UPDATE "{child.entity_set}" SET "{attr.column}" = NULL '
                        f'WHERE "{child.primary_id}" = ?',
                        [child_id],
                    )
        self.store.execute(
            f'DELETE FROM "{table.entity_set}" WHERE "{table.primary_id}" = ?', [row_id]
        )
        self.store.execute(
            "INSERT INTO _deleted VALUES (?, ?, ?)",
            [self.store.next_version(), table.logical, row_id],
        )

    def upsert(
        self,
        table: Table,
        key: dict[str, Any],
        body: dict[str, Any],
        caller: Caller,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
        navs: dict[str, NavProperty] | None = None,
    ) -> tuple[str, bool]:
        """PATCH semantics: update the row with `key` or create it; returns (id, created)."""
        found = self.find(table, key)
        if if_none_match == "*" and found is not None:
            raise ApiError(412, "0x80040237", "A record with matching key values already exists.")
        if if_match is not None and found is None:
            raise not_found(table.logical, ",".join(str(v) for v in key.values()))
        if found is not None:
            if if_match not in (None, "*") and if_match != f'W/"{found[1]}"':
                raise ApiError(
                    412,
                    "0x80060882",
                    "The version of the existing record doesn't "
                    "match the RowVersion property provided.",
                )
            values = self.values(table, body, creating=False, navs=navs)
            for col in key:  # key columns cannot change through the key URL
                values.pop(col, None)
            self.update(table, found[0], values, caller)
            return found[0], False
        values = self.values(table, body, creating=True, navs=navs)
        for column, value in key.items():
            # An alternate key's values become columns of the new row: checked as a body's
            # are (e.g. a string over the column's maximum length is 0x80044331).
            attr = table.by_column(column)
            is_column = attr is not None and attr.name != table.primary_id
            values[column] = self._convert(table, attr, value) if attr and is_column else value
        return self.create(table, values, caller), True

    @staticmethod
    def _default_status(table: Table, state: int) -> int | None:
        attr = table.attribute("statuscode")
        if attr is None:
            return None
        for value, st in attr.status_states:
            if st == state:
                return value
        return None

    @staticmethod
    def _integrity(table: Table, exc: sqlite3.IntegrityError) -> ApiError:
        text = str(exc)
        if f"{table.entity_set}.{table.primary_id}" in text:
            return ApiError(412, "0x80040237", "A record with matching key values already exists.")
        for key_name, attrs in table.keys:
            cols = [(table.attribute(a) or table.attributes[0]).column for a in attrs]
            if all(f"{table.entity_set}.{c}" in text for c in cols):
                return ApiError(
                    412,
                    "0x80060892",
                    (
                        f"Entity Key {key_name} violated. A record with the same value for "
                        f"{', '.join(attrs)} already exists."
                    ),
                )
        return ApiError(412, "0x80040237", "A record with matching key values already exists.")

    def check_duplicates(self, table: Table, row_id: str) -> None:
        """Dataverse's default duplicate rules (same account name; same contact or lead
        email, ignoring case): 500 `0x80040333` when another row matches."""
        columns = _DUPLICATE_RULES.get(table.logical)
        if not columns:
            return
        cols = ", ".join(f'"{c}"' for c in columns)
        rows = self.store.query(
            f'SELECT {cols} FROM "{table.entity_set}" WHERE "{table.primary_id}" = ?', [row_id]
        )
        if not rows or any(v is None for v in rows[0]):
            return
        where = " AND ".join(f'"{c}" = ?' for c in columns)
        clash = self.store.query(
            f'SELECT 1 FROM "{table.entity_set}" WHERE {where} AND "{table.primary_id}" <> ? '
            "LIMIT 1",
            [*rows[0], row_id],
        )
        if clash:
            raise ApiError(
                500,
                "0x80040333",
                "A record was not created or updated because a "
                "duplicate of the current record already exists.",
            )

    # -- bulk actions
    def bulk_delete(self, body: dict[str, Any]) -> str:
        """The `BulkDelete` action: delete what each `QueryExpression` matches; the job id.

        [UNVERIFIED] the service runs a bulk-delete system job later; the sandbox deletes
        at once, so the rows are gone when the response arrives.  Conditions supported:
        Equal, NotEqual, In, NotIn, Null, NotNull, joined by And / Or.
        """
        queries = body.get("QuerySet")
        if not isinstance(queries, list) or not queries:
            raise ApiError(400, "0x80048d19", "The parameter 'QuerySet' is required.")
        with self.store.atomic():
            for query in queries:
                table = table_by_logical(str(query.get("EntityName", "")))
                if table is None:
                    raise ApiError(
                        404,
                        "0x80040217",
                        f"The entity with a name = "
                        f"'{query.get('EntityName')}' was not found in the "
                        "MetadataCache.",
                    )
                where, args = self._criteria(table, query.get("Criteria") or {})
                ids = [
                    r[0]
                    for r in self.store.query(
                        f'SELECT "{table.primary_id}" FROM "{table.entity_set}" WHERE {where}', args
                    )
                ]
                for row_id in ids:
                    self.delete(table, str(row_id))
        return str(uuid.uuid4())

    def _criteria(self, table: Table, criteria: dict[str, Any]) -> tuple[str, list[Any]]:
        joiner = " OR " if str(criteria.get("FilterOperator", "And")).lower() == "or" else " AND "
        parts: list[str] = []
        args: list[Any] = []
        for cond in criteria.get("Conditions") or []:
            attr = table.attribute(str(cond.get("AttributeName", "")))
            if attr is None:
                raise ApiError(
                    400,
                    "0x80041103",
                    f"'{table.logical}' entity doesn't contain "
                    f"attribute with Name = '{cond.get('AttributeName')}'.",
                )
            col = f'"{attr.column}"'
            values = [
                sql_value(attr, v.get("Value") if isinstance(v, dict) else v)
                for v in cond.get("Values") or []
            ]
            op = str(cond.get("Operator", "Equal"))
            if op == "Null" or op == "NotNull":
                parts.append(f"{col} IS {'NOT ' if op == 'NotNull' else ''}NULL")
            elif op in ("In", "NotIn", "Equal", "NotEqual") and values:
                neg = "NOT " if op in ("NotIn", "NotEqual") else ""
                parts.append(f"{col} {neg}IN ({','.join('?' * len(values))})")
                args.extend(values)
            else:
                raise ApiError(
                    400,
                    "0x80040203",
                    f"The condition operator '{op}' is not supported by the sandbox's BulkDelete.",
                )
        for sub in criteria.get("Filters") or []:
            sql, ps = self._criteria(table, sub)
            parts.append(sql)
            args.extend(ps)
        return ("(" + joiner.join(parts) + ")" if parts else "1"), args

    def bulk(self, table: Table, action: str, body: dict[str, Any], caller: Caller) -> list[str]:
        """CreateMultiple / UpdateMultiple / UpsertMultiple; all targets or none."""
        targets = body.get("Targets")
        if not isinstance(targets, list):
            raise ApiError(400, "0x80048d19", "The parameter 'Targets' is required.")
        ids: list[str] = []
        navs = nav_properties(table)
        with self.store.atomic():
            if action == "CreateMultiple":
                rows = []
                for target in targets:
                    self._check_target(table, target)
                    rows.append(self.values(table, target, creating=True, navs=navs))
                return self.create_many(table, rows, caller)
            for target in targets:
                self._check_target(table, target)
                key = self._target_key(table, target)
                if action == "UpdateMultiple":
                    if key is None:
                        raise ApiError(
                            400, "0x80040203", f"Expected non-empty Guid for {table.primary_id}."
                        )
                    found = self.find(table, key)
                    if found is None:
                        raise not_found(table.logical, ",".join(str(v) for v in key.values()))
                    values = self.values(table, target, creating=False, navs=navs)
                    self.update(table, found[0], values, caller)
                    ids.append(found[0])
                elif key is None:  # UpsertMultiple without a key: a create
                    values = self.values(table, target, creating=True, navs=navs)
                    ids.append(self.create(table, values, caller))
                else:
                    ids.append(self.upsert(table, key, target, caller, navs=navs)[0])
        return ids

    @staticmethod
    def _check_target(table: Table, target: Any) -> None:
        """A bulk action's target: an object of this table's `@odata.type`."""
        if not isinstance(target, dict):
            raise ApiError(400, "0x80048d19", "Each target must be an entity object.")
        odata_type = str(target.get("@odata.type", ""))
        if odata_type.lstrip("#") != f"Microsoft.Dynamics.CRM.{table.logical}":
            raise ApiError(
                400,
                "0x80048d19",
                (
                    f"The '@odata.type' of every target must be 'Microsoft.Dynamics.CRM."
                    f"{table.logical}' (got '{odata_type}')."
                ),
            )

    def _target_key(self, table: Table, target: dict[str, Any]) -> dict[str, Any] | None:
        ref = target.get("@odata.id")
        if isinstance(ref, str):
            ref_table, key = parse_entity_ref(ref)
            if ref_table is not table:
                raise ApiError(400, "0x80048d19", f"'{ref}' does not identify a {table.logical}.")
            return key
        pk = target.get(table.primary_id)
        if isinstance(pk, str) and GUID.match(pk):
            return {table.primary_id: pk.strip("{}").lower()}
        for _, attrs in table.keys:
            if all(target.get(a) is not None for a in attrs):
                return {
                    (table.attribute(a) or table.attributes[0]).column: target[a] for a in attrs
                }
        return None
