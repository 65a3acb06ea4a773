"""Metadata writes: custom tables, their columns and alternate keys, through the Web API.

```
POST   EntityDefinitions                                   one table (EntityMetadata)
POST   CreateEntities                                      {"Entities": [ComplexEntityMetadata]}
POST   EntityDefinitions(<id>|LogicalName='x')/Attributes  one column
DELETE EntityDefinitions(<id>|LogicalName='x')             the table and its rows
POST   EntityDefinitions(...)/Keys                         an alternate key (EntityKeyMetadata)
DELETE EntityDefinitions(...)/Keys(<id>)                   an alternate key
POST   RelationshipDefinitions                             a one-to-many relationship + lookup
DELETE RelationshipDefinitions(<id>)                       a relationship and its lookup
```

A custom table is a real SQLite table of this sandbox (`Store.catalog`): every read and
write path, `EntityDefinitions` and `$metadata` serve it like a seeded one.  [MS]
WA/create-update-entity-definitions-using-web-api.  Seeded (system) tables cannot be
changed here: they are shared by every sandbox of the process.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from ._errors import ApiError
from ._exchange import Call, Reply
from ._model import Attribute, ManyToMany, Relationship, Table, metadata_id
from ._schema import all_tables, custom_table, table_by_logical
from ._store import Store

__all__ = ["MetadataWriter"]

_TARGET = re.compile(r"^\((?:LogicalName='([^']+)'|([0-9a-fA-F-]{36}))\)(.*)$")
_KEY_ID = re.compile(r"^/Keys\(([0-9a-fA-F-]{36})\)$")
_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{1,7}_[A-Za-z0-9_]+$")
# Columns every custom table has; they go only with the table.
_SYSTEM_COLUMNS = (
    "createdon",
    "modifiedon",
    "createdby",
    "modifiedby",
    "versionnumber",
    "ownerid",
    "statecode",
    "statuscode",
)
# Column types an alternate key may use.
_KEY_KINDS = ("String", "Integer", "BigInt", "Decimal", "DateTime", "Picklist", "Lookup")
# @odata.type (without "Microsoft.Dynamics.CRM." and "Complex") -> AttributeType
_KINDS = {
    "StringAttributeMetadata": "String",
    "MemoAttributeMetadata": "Memo",
    "IntegerAttributeMetadata": "Integer",
    "BigIntAttributeMetadata": "BigInt",
    "DecimalAttributeMetadata": "Decimal",
    "MoneyAttributeMetadata": "Money",
    "DoubleAttributeMetadata": "Double",
    "BooleanAttributeMetadata": "Boolean",
    "DateTimeAttributeMetadata": "DateTime",
    "PicklistAttributeMetadata": "Picklist",
    "FileAttributeMetadata": "File",
}


def _bad(message: str) -> ApiError:
    # [UNVERIFIED] the service's codes for malformed metadata bodies vary; 0x80048d19 is
    # its code for a payload it cannot use.
    return ApiError(400, "0x80048d19", message)


def _label(value: Any, default: str) -> str:
    if isinstance(value, dict):
        for item in value.get("LocalizedLabels") or []:
            if isinstance(item, dict) and item.get("Label"):
                return str(item["Label"])
        user = value.get("UserLocalizedLabel")
        if isinstance(user, dict) and user.get("Label"):
            return str(user["Label"])
    return default


def _schema_name(body: dict[str, Any], what: str) -> str:
    name = body.get("SchemaName")
    if not isinstance(name, str) or not _PREFIX.match(name):
        raise _bad(
            f"The {what} SchemaName '{name}' is not valid: it needs a customization prefix "
            "(e.g. 'new_') and letters, digits or underscores."
        )
    return name


def _plural(logical: str) -> str:
    """[UNVERIFIED] the service's English pluralization, in its common cases."""
    if re.search(r"[^aeiou]y$", logical):
        return logical[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", logical):
        return logical + "es"
    return logical + "s"


def attribute_from(body: Any) -> Attribute:
    """An `AttributeMetadata` JSON object as a sandbox column."""
    if not isinstance(body, dict):
        raise _bad("Each attribute must be a JSON object.")
    odata_type = str(body.get("@odata.type", "")).lstrip("#")
    type_name = odata_type.rpartition(".")[2].removeprefix("Complex")
    kind = _KINDS.get(type_name)
    if kind is None:
        raise ApiError(
            400,
            "0x80048d19",
            f"The sandbox cannot create a column of type '{odata_type}' (it creates String, "
            "Memo, Integer, BigInt, Decimal, Money, Double, Boolean, DateTime and Picklist "
            "columns; lookups come from relationships).",
        )
    name = _schema_name(body, "column").lower()
    options: tuple[tuple[int, str], ...] = ()
    raw_set = body.get("OptionSet")
    option_set: dict[str, Any] = raw_set if isinstance(raw_set, dict) else {}
    if kind == "Boolean":
        false, true = option_set.get("FalseOption") or {}, option_set.get("TrueOption") or {}
        options = ((0, _label(false.get("Label"), "No")), (1, _label(true.get("Label"), "Yes")))
    elif kind == "Picklist":
        raw = option_set.get("Options") or []
        options = tuple(
            (int(o["Value"]), _label(o.get("Label"), str(o["Value"])))
            for o in raw
            if isinstance(o, dict) and isinstance(o.get("Value"), int)
        )
        if not options:
            raise _bad(f"The choice column '{name}' needs OptionSet.Options with values.")
    max_length = body.get("MaxLength")
    if kind in ("String", "Memo") and not isinstance(max_length, int):
        max_length = 100 if kind == "String" else 2000
    required = (body.get("RequiredLevel") or {}).get("Value") in ("ApplicationRequired",)
    return Attribute(
        name,
        kind,
        _label(body.get("DisplayName"), name),
        max_length=max_length if kind in ("String", "Memo") else None,
        options=options,
        date_only=kind == "DateTime" and body.get("Format") == "DateOnly",
        required=bool(required),
        # file columns are written by their own upload requests, never in a JSON body
        creatable=kind != "File",
        updatable=kind != "File",
    )


class MetadataWriter:
    """Creates and deletes custom tables, columns and keys in one sandbox's store.

    **Parameters:**

    * **store** - the sandbox's database (its `catalog` holds the custom tables).
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- routing
    def entity_definitions(self, call: Call, rest: str) -> Reply:
        """POST/DELETE on `EntityDefinitions...`; `rest` follows `EntityDefinitions`."""
        if not rest:
            if call.method != "POST":
                raise _method(call)
            created = self.create_entity(call.json())
            return Reply(204, [("OData-EntityId", f"{call.root}EntityDefinitions({created})")])
        m = _TARGET.match(rest)
        if m is None:
            raise ApiError(404, "0x8006088a", f"Resource not found for the segment '{rest}'.")
        table = self._custom(m.group(1), m.group(2))
        sub = m.group(3)
        if not sub and call.method == "DELETE":
            self.store.drop_table(table)
            return Reply(204, [])
        col_m = re.match(r"^/Attributes\((?:LogicalName='([^']+)'|([0-9a-fA-F-]{36}))\)$", sub)
        if col_m and call.method == "DELETE":
            self.drop_column(table, col_m.group(1), (col_m.group(2) or "").lower())
            return Reply(204, [])
        if sub == "/Attributes" and call.method == "POST":
            attr = self.add_column(table, call.json())
            url = f"{call.root}EntityDefinitions({table.metadata_id})/Attributes"
            return Reply(
                204, [("OData-EntityId", f"{url}({metadata_id(table.logical, attr.name)})")]
            )
        if sub == "/Keys" and call.method == "POST":
            name = self.add_key(table, call.json())
            key_id = metadata_id(table.logical, "key", name)
            url = f"{call.root}EntityDefinitions(LogicalName='{table.logical}')/Keys({key_id})"
            return Reply(204, [("OData-EntityId", url)])
        key_m = _KEY_ID.match(sub)
        if key_m and call.method == "DELETE":
            self.drop_key(table, key_m.group(1).lower())
            return Reply(204, [])
        raise _method(call)

    def create_entities(self, call: Call) -> Reply:
        """`CreateEntities`: several tables in one call, all or none."""
        body = call.json()
        entities = body.get("Entities") if isinstance(body, dict) else None
        if not isinstance(entities, list) or not entities:
            raise _bad("The parameter 'Entities' is required.")
        before = set(self.store.catalog.tables)
        try:
            with self.store.atomic():
                ids = [self.create_entity(entity) for entity in entities]
        except BaseException:
            for logical in set(self.store.catalog.tables) - before:  # all or none
                self.store.catalog.tables.pop(logical)
            raise
        # [UNVERIFIED] the response shape of CreateEntities (its clients read no body).
        return Reply.json(
            200,
            {
                "@odata.context": f"{call.root}$metadata#Microsoft.Dynamics.CRM."
                "CreateEntitiesResponse",
                "EntityIds": ids,
            },
        )

    # -- tables
    def create_entity(self, body: Any) -> str:
        """Create the table an `EntityMetadata` body describes; returns its MetadataId."""
        if not isinstance(body, dict):
            raise _bad("The request body must be an EntityMetadata JSON object.")
        schema = _schema_name(body, "table")
        logical = schema.lower()
        entity_set = str(body.get("EntitySetName") or _plural(logical))
        if table_by_logical(logical) is not None or any(
            t.entity_set == entity_set for t in all_tables()
        ):
            # [UNVERIFIED] the code; the message is the service's.
            raise ApiError(
                400,
                "0x80047013",
                f"An entity with the specified name ({schema}) already exists. Specify a "
                "unique name.",
            )
        columns = [attribute_from(a) for a in body.get("Attributes") or []]
        primary = [
            a
            for a, raw in zip(columns, body.get("Attributes") or [], strict=True)
            if a.kind == "String" and raw.get("IsPrimaryName")
        ]
        if len(primary) != 1:
            raise _bad(
                "A new table needs exactly one String attribute with IsPrimaryName true "
                "(its primary name column)."
            )
        # [UNVERIFIED] a column repeating the primary name column's SchemaName (as the SDK
        # sends for {"new_Name": "string"}) is taken as that column, not refused.
        kept: dict[str, Attribute] = {}
        for attr in columns:
            if attr.name in kept and kept[attr.name].kind != attr.kind:
                raise _bad(f"Two attributes of the new table are named {attr.name}.")
            kept.setdefault(attr.name, attr)
        columns = [a for a in columns if kept[a.name] is a]
        display = _label(body.get("DisplayName"), schema)
        catalog = self.store.catalog
        table = custom_table(
            logical=logical,
            entity_set=entity_set,
            display=display,
            display_plural=_label(body.get("DisplayCollectionName"), display + "s"),
            primary_name=primary[0],
            columns=tuple(a for a in columns if a is not primary[0]),
            object_type_code=catalog.next_type_code,
        )
        catalog.next_type_code += 1
        self.store.create_table(table)
        return table.metadata_id

    def _custom(self, logical: str | None, mid: str | None) -> Table:
        table = (
            table_by_logical(logical)
            if logical
            else next((t for t in all_tables() if t.metadata_id == (mid or "").lower()), None)
        )
        if table is None:
            raise ApiError(
                404, "0x80040217", f"Could not find entity with name '{logical or mid}'."
            )
        catalog = self.store.catalog
        if table.logical not in catalog.tables or table.logical in catalog.system:
            # [UNVERIFIED] the service lets customizers add columns to system tables; the
            # sandbox's system tables are shared by every sandbox in the process.
            raise ApiError(
                400,
                "0x80048d19",
                f"The sandbox changes only tables created through the metadata API; "
                f"'{table.logical}' is a system table.",
            )
        return table

    # -- relationships
    def relationship_definitions(self, call: Call, rest: str) -> Reply:
        """POST/DELETE on `RelationshipDefinitions...`."""
        if not rest and call.method == "POST":
            rel_id = self.create_relationship(call.json())
            return Reply(204, [("OData-EntityId", f"{call.root}RelationshipDefinitions({rel_id})")])
        m = re.match(r"^\(([0-9a-fA-F-]{36})\)$", rest)
        if m and call.method == "DELETE":
            self.delete_relationship(m.group(1).lower())
            return Reply(204, [])
        raise _method(call)

    def create_relationship(self, body: Any) -> str:
        """A one-to-many relationship and its lookup column on the (custom) many side."""
        if not isinstance(body, dict):
            raise _bad("The request body must be a RelationshipMetadata JSON object.")
        kind = str(body.get("@odata.type", "")).rpartition(".")[2]
        schema = body.get("SchemaName")
        if not isinstance(schema, str) or not schema:
            raise _bad("The relationship needs a SchemaName.")
        taken = [r.schema_name for r in self._relationships()]
        taken += [r.schema_name for r in self.store.catalog.many_to_many]
        if schema in taken:
            raise ApiError(400, "0x80047013", f"The relationship {schema} already exists.")
        if kind == "ManyToManyRelationshipMetadata":
            return self._create_many_to_many(body, schema)
        if kind != "OneToManyRelationshipMetadata":
            raise _bad(f"'{kind}' is not a relationship type the Web API creates.")
        referenced = table_by_logical(str(body.get("ReferencedEntity", "")))
        if referenced is None:
            raise ApiError(
                404, "0x80040217", f"Could not find entity '{body.get('ReferencedEntity')}'."
            )
        referencing = self._custom(str(body.get("ReferencingEntity", "")), None)
        lookup = body.get("Lookup")
        if not isinstance(lookup, dict):
            raise _bad("A one-to-many relationship needs its Lookup attribute.")
        nav = _schema_name(lookup, "lookup")
        attr = Attribute(
            nav.lower(),
            "Lookup",
            _label(lookup.get("DisplayName"), nav),
            targets=(referenced.logical,),
            required=(lookup.get("RequiredLevel") or {}).get("Value") == "ApplicationRequired",
        )
        if referencing.attribute(attr.name) is not None:
            raise ApiError(400, "0x80047013", f"The attribute {attr.name} already exists.")
        changed = _rebuilt(referencing, attributes=(*referencing.attributes, attr))
        self.store.replace_table(changed, added=attr)
        # [MS] the navigation property names default to the lookup's SchemaName (many side)
        # and the relationship's SchemaName (one side).
        cascade = (body.get("CascadeConfiguration") or {}).get("Delete") or "RemoveLink"
        if cascade not in ("RemoveLink", "Cascade", "Restrict"):
            raise _bad(f"The cascade delete behaviour '{cascade}' is not valid here.")
        self.store.catalog.relationships.append(
            Relationship(
                schema,
                referenced.logical,
                referencing.logical,
                attr.name,
                nav,
                schema,
                cascade_delete=cascade,
            )
        )
        return metadata_id("rel", schema)

    def _create_many_to_many(self, body: dict[str, Any], schema: str) -> str:
        names = (str(body.get("Entity1LogicalName", "")), str(body.get("Entity2LogicalName", "")))
        for logical in names:
            if table_by_logical(logical) is None:
                raise ApiError(404, "0x80040217", f"Could not find entity '{logical}'.")
        intersect = str(body.get("IntersectEntityName") or schema).lower()
        # [MS] both navigation property names default to the relationship's SchemaName.
        rel = ManyToMany(
            schema,
            names[0],
            names[1],
            intersect,
            str(body.get("Entity1NavigationPropertyName") or schema),
            str(body.get("Entity2NavigationPropertyName") or schema),
        )
        self.store.create_intersect(rel)
        return metadata_id("rel", schema)

    def delete_relationship(self, rel_id: str) -> None:
        """Remove a relationship created here, and its lookup column or intersect table."""
        for pair in self.store.catalog.many_to_many:
            if metadata_id("rel", pair.schema_name) == rel_id:
                self.store.drop_intersect(pair)
                return
        for rel in self._relationships():
            if metadata_id("rel", rel.schema_name) != rel_id:
                continue
            self.store.catalog.relationships.remove(rel)
            table = self.store.catalog.tables.get(rel.referencing)
            attr = table.attribute(rel.attribute) if table else None
            if table is not None and attr is not None:
                kept = tuple(a for a in table.attributes if a is not attr)
                self.store.drop_column(_rebuilt(table, attributes=kept), attr)
            return
        raise ApiError(404, "0x80040217", f"Could not find relationship '{rel_id}'.")

    def _relationships(self) -> list[Relationship]:
        return self.store.catalog.relationships

    # -- columns and keys
    def add_column(self, table: Table, body: Any) -> Attribute:
        """Add the column an `AttributeMetadata` body describes."""
        attr = attribute_from(body)
        if table.attribute(attr.name) is not None:
            raise ApiError(
                400,
                "0x80047013",  # [UNVERIFIED] the code
                f"An attribute with the specified name {attr.name} already exists.",
            )
        changed = _rebuilt(table, attributes=(*table.attributes, attr))
        self.store.replace_table(changed, added=attr)
        return attr

    def drop_column(self, table: Table, name: str | None, attr_id: str) -> None:
        """Delete a column added to a custom table (not its id, name or system columns)."""
        found = [
            a
            for a in table.attributes
            if a.name == name or metadata_id(table.logical, a.name) == attr_id
        ]
        if not found:
            raise ApiError(404, "0x80040217", f"Could not find attribute '{name or attr_id}'.")
        attr = found[0]
        fixed = {table.primary_id, table.primary_name, *_SYSTEM_COLUMNS}
        if attr.name in fixed or attr.is_lookup:
            # [UNVERIFIED] the code; system and lookup columns go with their table or relationship.
            raise ApiError(400, "0x80048d19", f"The column '{attr.name}' cannot be deleted.")
        if any(attr.name in attrs for _, attrs in table.keys):
            raise ApiError(400, "0x80048d19", f"The column '{attr.name}' is part of a key.")
        kept = tuple(a for a in table.attributes if a is not attr)
        self.store.drop_column(_rebuilt(table, attributes=kept), attr)

    def add_key(self, table: Table, body: Any) -> str:
        """Add the alternate key an `EntityKeyMetadata` body describes."""
        if not isinstance(body, dict):
            raise _bad("The request body must be an EntityKeyMetadata JSON object.")
        name = _schema_name(body, "key")  # SchemaName keeps its case; LogicalName is lower
        attrs = body.get("KeyAttributes")
        if not isinstance(attrs, list) or not attrs:
            raise _bad("An alternate key needs KeyAttributes.")
        for attr_name in attrs:
            attr = table.attribute(str(attr_name))
            if attr is None or attr.kind not in _KEY_KINDS:
                raise _bad(f"'{attr_name}' cannot be part of an alternate key of {table.logical}.")
        if any(existing.lower() == name.lower() for existing, _ in table.keys):
            raise ApiError(400, "0x80047013", f"The key {name} already exists.")
        try:
            self.store.add_key(table, name, [str(a) for a in attrs])
        except sqlite3.IntegrityError:
            # [UNVERIFIED] the service builds the index asynchronously and marks the key
            # Failed; the sandbox refuses at once.
            raise ApiError(
                400, "0x80060892", f"Existing rows of {table.logical} repeat the key values."
            ) from None
        changed = _rebuilt(table, keys=(*table.keys, (name, tuple(str(a) for a in attrs))))
        self.store.replace_table(changed)
        return name

    def drop_key(self, table: Table, key_id: str) -> None:
        """Remove the alternate key with this MetadataId."""
        for name, _ in table.keys:
            if metadata_id(table.logical, "key", name) == key_id:
                self.store.execute(f'DROP INDEX IF EXISTS "ix_{name}"')
                kept = tuple(k for k in table.keys if k[0] != name)
                self.store.replace_table(_rebuilt(table, keys=kept))
                return
        raise ApiError(404, "0x80040217", f"Could not find key '{key_id}'.")


def _rebuilt(
    table: Table,
    *,
    attributes: tuple[Attribute, ...] | None = None,
    keys: tuple[tuple[str, tuple[str, ...]], ...] | None = None,
) -> Table:
    return Table(
        logical=table.logical,
        entity_set=table.entity_set,
        display=table.display,
        display_plural=table.display_plural,
        primary_id=table.primary_id,
        primary_name=table.primary_name,
        object_type_code=table.object_type_code,
        attributes=table.attributes if attributes is None else attributes,
        keys=table.keys if keys is None else keys,
    )


def _method(call: Call) -> ApiError:
    return ApiError(
        405, "0x80060888", f"The requested resource does not support http method '{call.method}'."
    )
