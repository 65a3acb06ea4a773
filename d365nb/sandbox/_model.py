"""The sandbox's metadata model as classes: tables, columns, relationships, nav properties.

`_schema.py` defines the sandbox's tables with them; everything else reads those.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property

__all__ = [
    "ACTIVE_STATE",
    "CURRENT_CATALOG",
    "Attribute",
    "Catalog",
    "ManyToMany",
    "NavProperty",
    "Relationship",
    "Table",
    "choices",
    "common_columns",
    "metadata_id",
    "state_columns",
]

_NS = uuid.UUID("d3650000-0000-4000-8000-00000000d365")


def metadata_id(*parts: str) -> str:
    """A stable MetadataId for a table, column, key or option set."""
    return str(uuid.uuid5(_NS, "/".join(parts)))


# Dataverse AttributeType -> (Edm type, SQLite type, AttributeTypeName, metadata @odata.type)
_KINDS: dict[str, tuple[str, str, str, str]] = {
    "Uniqueidentifier": ("Edm.Guid", "TEXT", "UniqueidentifierType", "AttributeMetadata"),
    "String": ("Edm.String", "TEXT COLLATE NOCASE", "StringType", "StringAttributeMetadata"),
    "Memo": ("Edm.String", "TEXT COLLATE NOCASE", "MemoType", "MemoAttributeMetadata"),
    "Integer": ("Edm.Int32", "INTEGER", "IntegerType", "IntegerAttributeMetadata"),
    "BigInt": ("Edm.Int64", "INTEGER", "BigIntType", "BigIntAttributeMetadata"),
    "Decimal": ("Edm.Decimal", "REAL", "DecimalType", "DecimalAttributeMetadata"),
    "Money": ("Edm.Decimal", "REAL", "MoneyType", "MoneyAttributeMetadata"),
    "Double": ("Edm.Double", "REAL", "DoubleType", "DoubleAttributeMetadata"),
    "Boolean": ("Edm.Boolean", "INTEGER", "BooleanType", "BooleanAttributeMetadata"),
    "DateTime": ("Edm.DateTimeOffset", "TEXT", "DateTimeType", "DateTimeAttributeMetadata"),
    "Picklist": ("Edm.Int32", "INTEGER", "PicklistType", "PicklistAttributeMetadata"),
    "Virtual": (
        "Edm.String",
        "TEXT",
        "MultiSelectPicklistType",
        "MultiSelectPicklistAttributeMetadata",
    ),
    "State": ("Edm.Int32", "INTEGER", "StateType", "StateAttributeMetadata"),
    "Status": ("Edm.Int32", "INTEGER", "StatusType", "StatusAttributeMetadata"),
    "Lookup": ("Edm.Guid", "TEXT", "LookupType", "LookupAttributeMetadata"),
    "Customer": ("Edm.Guid", "TEXT", "CustomerType", "LookupAttributeMetadata"),
    "Owner": ("Edm.Guid", "TEXT", "OwnerType", "LookupAttributeMetadata"),
    # A file column holds the file's id; the bytes live beside the row (`_files.py`).
    "File": ("Edm.Guid", "TEXT", "FileType", "FileAttributeMetadata"),
}


@dataclass(frozen=True)
class Attribute:
    """One column (`AttributeMetadata`)."""

    name: str  # logical name; lookups: "parentaccountid"
    kind: str  # AttributeType (multi-select choices are "Virtual")
    label: str
    max_length: int | None = None
    options: tuple[tuple[int, str], ...] = ()
    targets: tuple[str, ...] = ()  # lookups: target logical names
    date_only: bool = False
    creatable: bool = True
    updatable: bool = True
    required: bool = False
    # Status options carry their state: (value, label, state)
    status_states: tuple[tuple[int, int], ...] = ()

    @property
    def column(self) -> str:
        """The Web API property (and SQLite column) holding the value."""
        return f"_{self.name}_value" if self.is_lookup else self.name

    @property
    def is_lookup(self) -> bool:
        return self.kind in ("Lookup", "Customer", "Owner")

    @property
    def polymorphic(self) -> bool:
        return len(self.targets) > 1

    @property
    def type_column(self) -> str:
        return f"_{self.name}_type"

    @property
    def edm(self) -> str:
        return "Edm.Date" if self.date_only else _KINDS[self.kind][0]

    @property
    def sql_type(self) -> str:
        return _KINDS[self.kind][1]

    @property
    def type_name(self) -> str:
        return _KINDS[self.kind][2]

    @property
    def metadata_type(self) -> str:
        return _KINDS[self.kind][3]

    @property
    def is_text(self) -> bool:
        return self.kind in ("String", "Memo")

    def label_of(self, value: int) -> str | None:
        for v, text in self.options:
            if v == value:
                return text
        return None


@dataclass(frozen=True)
class Table:
    """One table (`EntityMetadata`)."""

    logical: str
    entity_set: str
    display: str
    display_plural: str
    primary_id: str
    primary_name: str
    object_type_code: int
    attributes: tuple[Attribute, ...]
    # alternate keys: (schema name, key attribute logical names)
    keys: tuple[tuple[str, tuple[str, ...]], ...] = ()
    _by_name: dict[str, Attribute] = field(default_factory=dict, compare=False, repr=False)
    _by_column: dict[str, Attribute] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for attr in self.attributes:
            self._by_name[attr.name] = attr
            self._by_column[attr.column] = attr

    def attribute(self, name: str) -> Attribute | None:
        """The attribute with this logical name."""
        return self._by_name.get(name)

    def by_column(self, column: str) -> Attribute | None:
        """The attribute behind this Web API property (`_x_value` for lookups)."""
        return self._by_column.get(column)

    @property
    def metadata_id(self) -> str:
        return metadata_id(self.logical)

    @cached_property
    def money(self) -> bool:
        return any(a.kind == "Money" for a in self.attributes)


@dataclass(frozen=True)
class Relationship:
    """A one-to-many relationship: `referencing.attribute` points at `referenced`."""

    schema_name: str
    referenced: str  # the "one" side (logical name)
    referencing: str  # the "many" side
    attribute: str  # lookup logical name on the referencing table
    referencing_nav: str  # single-valued nav on the referencing table
    referenced_nav: str  # collection-valued nav on the referenced table
    # What deleting the referenced row does to the referencing rows (CascadeConfiguration
    # .Delete): RemoveLink clears their lookup, Cascade deletes them, Restrict refuses.
    cascade_delete: str = "RemoveLink"


@dataclass(frozen=True)
class NavProperty:
    """A navigation property seen from one table."""

    name: str
    relationship: Relationship
    collection: bool

    @property
    def target(self) -> str:
        rel = self.relationship
        return rel.referencing if self.collection else rel.referenced


@dataclass(frozen=True)
class ManyToMany:
    """A many-to-many relationship: rows of `entity1` and `entity2` paired in `intersect`."""

    schema_name: str
    entity1: str
    entity2: str
    intersect: str
    nav1: str  # the collection of entity2 rows, seen from entity1
    nav2: str  # the collection of entity1 rows, seen from entity2

    @property
    def column1(self) -> str:
        return f"{self.entity1}id"

    @property
    def column2(self) -> str:
        # a table paired with itself needs two column names
        return f"{self.entity2}id" if self.entity2 != self.entity1 else f"{self.entity2}idtwo"


@dataclass
class Catalog:
    """Tables created at run time through the metadata API, for one sandbox.

    The Web API sets `CURRENT_CATALOG` to its sandbox's catalog while it answers a request,
    so the lookups in `_schema` (`table_by_set`, `all_tables`, ...) see them too.
    """

    tables: dict[str, Table] = field(default_factory=dict)  # by logical name
    relationships: list[Relationship] = field(default_factory=list)
    many_to_many: list[ManyToMany] = field(default_factory=list)
    # optional system tables (e.g. incident): served like seeded ones, not customizable
    system: set[str] = field(default_factory=set)
    next_type_code: int = 10000


#: The catalog of the sandbox answering the current request (None outside a request).
CURRENT_CATALOG: ContextVar[Catalog | None] = ContextVar("d365nb_sandbox_catalog", default=None)


# -- building tables


def choices(*labels: str, start: int = 1) -> tuple[tuple[int, str], ...]:
    """Choice options numbered from `start`."""
    return tuple((start + i, text) for i, text in enumerate(labels))


def common_columns(owner: bool = True) -> tuple[Attribute, ...]:
    """The columns every table has: created/modified on and by, version, owner."""
    attrs = [
        Attribute("createdon", "DateTime", "Created On", creatable=False, updatable=False),
        Attribute("modifiedon", "DateTime", "Modified On", creatable=False, updatable=False),
        Attribute(
            "createdby",
            "Lookup",
            "Created By",
            targets=("systemuser",),
            creatable=False,
            updatable=False,
        ),
        Attribute(
            "modifiedby",
            "Lookup",
            "Modified By",
            targets=("systemuser",),
            creatable=False,
            updatable=False,
        ),
        Attribute("versionnumber", "BigInt", "Version Number", creatable=False, updatable=False),
    ]
    if owner:
        attrs.append(Attribute("ownerid", "Owner", "Owner", targets=("systemuser",)))
    return tuple(attrs)


def state_columns(
    states: tuple[str, ...], statuses: tuple[tuple[int, str, int], ...]
) -> tuple[Attribute, ...]:
    """`statecode` and `statuscode`; each status is (value, label, its state)."""
    return (
        Attribute("statecode", "State", "Status", options=choices(*states, start=0)),
        Attribute(
            "statuscode",
            "Status",
            "Status Reason",
            options=tuple((v, text) for v, text, _ in statuses),
            status_states=tuple((v, s) for v, _, s in statuses),
        ),
    )


ACTIVE_STATE = state_columns(("Active", "Inactive"), ((1, "Active", 0), (2, "Inactive", 1)))
