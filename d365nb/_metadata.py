"""Table metadata: the model parsed from Dataverse `EntityDefinitions`, and name resolution.

Pure code, no I/O.  The fetcher makes the requests below (relative to the Web API root,
e.g. `https://contoso.api.crm.dynamics.com/api/data/v9.2/`), verbatim, and hands the JSON
bodies to `parse_entity_definition()` (one table) or `parse_entity_definitions()` (the list of
tables).  Every `...Attributes...` and `Keys`/`ManyToOneRelationships` body is a collection
(`{"@odata.context": ..., "value": [...]}`); the parser accepts either that body or its
`value` list.  `{t}` is the table's logical name (`account`).

Table list, once per connection (entity set names for `resolve_table()` and `@odata.bind`):

```
EntityDefinitions?$select=LogicalName,SchemaName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,DisplayName,ObjectTypeCode,IsActivity
```

parsed by `parse_entity_definitions(body)`.

One table, the first time it is read or written: the 15 requests below, all independent
(send them in parallel or in one `$batch`).  `metadata_requests("account")` returns them as
`{keyword: relative URL}`, so `parse_entity_definition(**{kw: body_of(url) for kw, url in
metadata_requests(t).items()})` builds the table.

```
entity_json         EntityDefinitions(LogicalName='{t}')?$select=LogicalName,SchemaName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,DisplayName,ObjectTypeCode,IsActivity
attributes_json     EntityDefinitions(LogicalName='{t}')/Attributes?$select=LogicalName,SchemaName,AttributeType,AttributeTypeName,DisplayName,AttributeOf,IsPrimaryId,IsPrimaryName,IsValidForCreate,IsValidForUpdate,IsValidForRead,RequiredLevel
strings_json        EntityDefinitions(LogicalName='{t}')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength,Format
memos_json          EntityDefinitions(LogicalName='{t}')/Attributes/Microsoft.Dynamics.CRM.MemoAttributeMetadata?$select=LogicalName,MaxLength,Format
datetimes_json      EntityDefinitions(LogicalName='{t}')/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata?$select=LogicalName,DateTimeBehavior,Format
lookups_json        EntityDefinitions(LogicalName='{t}')/Attributes/Microsoft.Dynamics.CRM.LookupAttributeMetadata?$select=LogicalName,Targets
money_json          EntityDefinitions(LogicalName='{t}')/Attributes/Microsoft.Dynamics.CRM.MoneyAttributeMetadata?$select=LogicalName,Precision
decimals_json       EntityDefinitions(LogicalName='{t}')/Attributes/Microsoft.Dynamics.CRM.DecimalAttributeMetadata?$select=LogicalName,Precision
picklists_json      EntityDefinitions(LogicalName='{t}')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options),GlobalOptionSet($select=Options)
multiselect_json    EntityDefinitions(LogicalName='{t}')/Attributes/Microsoft.Dynamics.CRM.MultiSelectPicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options),GlobalOptionSet($select=Options)
state_json          EntityDefinitions(LogicalName='{t}')/Attributes/Microsoft.Dynamics.CRM.StateAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)
status_json         EntityDefinitions(LogicalName='{t}')/Attributes/Microsoft.Dynamics.CRM.StatusAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)
boolean_json        EntityDefinitions(LogicalName='{t}')/Attributes/Microsoft.Dynamics.CRM.BooleanAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=TrueOption,FalseOption),GlobalOptionSet($select=TrueOption,FalseOption)
keys_json           EntityDefinitions(LogicalName='{t}')/Keys?$select=LogicalName,SchemaName,KeyAttributes,DisplayName
relationships_json  EntityDefinitions(LogicalName='{t}')/ManyToOneRelationships?$select=SchemaName,ReferencingAttribute,ReferencedEntity,ReferencedAttribute,ReferencingEntityNavigationPropertyName
```

`attributes_json` may instead be fetched without `$select` (every property of every derived
type, with `@odata.type`): the parser reads `MaxLength`, `Format`, `DateTimeBehavior`,
`Targets`, `Precision` and `OptionSet` wherever they appear, so the five `StringAttribute...`
to `DecimalAttribute...` casts then add nothing (the option-set casts are still needed: option
sets are navigation properties and only come with `$expand`).  Without `relationships_json`,
lookup navigation properties fall back to the column's logical name (`parentaccountid`) and,
for multi-table lookups, to `<column>_<target>` (`customerid_account`).

Labels come from `Label.UserLocalizedLabel.Label`, falling back to `LocalizedLabels[0].Label`.
Tables and attributes are immutable values: cache them per connection.

Usage:

```python
table = parse_entity_definition(entity_body, attributes_json=attributes_body, ...)
table.resolve_column("_parentaccountid_value")   # -> Attribute(logical_name='parentaccountid', ...)
resolve_table("Accounts", tables)                # -> the account Table
```
"""  # noqa: E501

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ._exceptions import ConfigError

__all__ = [
    "AlternateKey",
    "Attribute",
    "CHOICE_TYPES",
    "LOOKUP_TYPES",
    "TABLES_REQUEST",
    "Table",
    "label_text",
    "metadata_requests",
    "parse_entity_definition",
    "parse_entity_definitions",
    "resolve_table",
    "suggest",
]

#: Attribute types whose Web API property is `_<logical name>_value`.
LOOKUP_TYPES = frozenset({"Customer", "Lookup", "Owner"})

#: Attribute types that hold a choice (an integer with a label).
CHOICE_TYPES = frozenset({"Picklist", "State", "Status"})

_Json = Mapping[str, Any]

TABLES_REQUEST = (
    "EntityDefinitions?$select=LogicalName,SchemaName,EntitySetName,PrimaryIdAttribute,"
    "PrimaryNameAttribute,DisplayName,ObjectTypeCode,IsActivity"
)
_ENTITY = "EntityDefinitions(LogicalName='{t}')"
_CAST = _ENTITY + "/Attributes/Microsoft.Dynamics.CRM."
_OPTIONS = "?$select=LogicalName&$expand=OptionSet($select=Options)"
_REQUESTS: dict[str, str] = {
    "entity_json": _ENTITY + "?$select=LogicalName,SchemaName,EntitySetName,PrimaryIdAttribute,"
    "PrimaryNameAttribute,DisplayName,ObjectTypeCode,IsActivity",
    "attributes_json": _ENTITY + "/Attributes?$select=LogicalName,SchemaName,AttributeType,"
    "AttributeTypeName,DisplayName,AttributeOf,IsPrimaryId,IsPrimaryName,IsValidForCreate,"
    "IsValidForUpdate,IsValidForRead,RequiredLevel",
    "strings_json": _CAST + "StringAttributeMetadata?$select=LogicalName,MaxLength,Format",
    "memos_json": _CAST + "MemoAttributeMetadata?$select=LogicalName,MaxLength,Format",
    "datetimes_json": _CAST
    + "DateTimeAttributeMetadata?$select=LogicalName,DateTimeBehavior,Format",
    "lookups_json": _CAST + "LookupAttributeMetadata?$select=LogicalName,Targets",
    "money_json": _CAST + "MoneyAttributeMetadata?$select=LogicalName,Precision",
    "decimals_json": _CAST + "DecimalAttributeMetadata?$select=LogicalName,Precision",
    "picklists_json": _CAST
    + "PicklistAttributeMetadata"
    + _OPTIONS
    + ",GlobalOptionSet($select=Options)",
    "multiselect_json": _CAST
    + "MultiSelectPicklistAttributeMetadata"
    + _OPTIONS
    + ",GlobalOptionSet($select=Options)",
    "state_json": _CAST + "StateAttributeMetadata" + _OPTIONS,
    "status_json": _CAST + "StatusAttributeMetadata" + _OPTIONS,
    "boolean_json": _CAST + "BooleanAttributeMetadata?$select=LogicalName&$expand="
    "OptionSet($select=TrueOption,FalseOption),GlobalOptionSet($select=TrueOption,FalseOption)",
    "keys_json": _ENTITY + "/Keys?$select=LogicalName,SchemaName,KeyAttributes,DisplayName",
    "relationships_json": _ENTITY + "/ManyToOneRelationships?$select=SchemaName,"
    "ReferencingAttribute,ReferencedEntity,ReferencedAttribute,"
    "ReferencingEntityNavigationPropertyName",
}


def metadata_requests(logical_name: str) -> dict[str, str]:
    """`{keyword of parse_entity_definition: URL relative to the Web API root}` for a table.

    The logical name is quoted as an OData string literal (`'` doubled).
    """
    quoted = logical_name.replace("'", "''")
    return {keyword: url.replace("{t}", quoted) for keyword, url in _REQUESTS.items()}


@dataclass(frozen=True)
class AlternateKey:
    """An alternate key of a table (`EntityKeyMetadata`): a name and its columns."""

    name: str
    key_attributes: tuple[str, ...]
    display_name: str | None = None


@dataclass(frozen=True)
class Attribute:
    """One column of a table (`AttributeMetadata` and its derived types).

    `attribute_type` is the `AttributeType` string (`"String"`, `"Picklist"`, `"Virtual"`...)
    and `attribute_type_name` the finer `AttributeTypeName.Value` (`"StringType"`,
    `"MultiSelectPicklistType"`...).  `options` maps choice values to labels in option-set
    order (Boolean columns: `{0: <false label>, 1: <true label>}`).  `targets` lists the
    tables a lookup may point to; `navigation` maps each target to the single-valued
    navigation property used in `@odata.bind`.
    """

    logical_name: str
    attribute_type: str
    attribute_type_name: str = ""
    schema_name: str | None = None
    display_name: str | None = None
    attribute_of: str | None = None
    max_length: int | None = None
    precision: int | None = None
    date_time_behavior: str | None = None
    format: str | None = None
    options: Mapping[int, str] = field(default_factory=dict)
    targets: tuple[str, ...] = ()
    navigation: Mapping[str, str] = field(default_factory=dict)
    is_valid_for_create: bool = True
    is_valid_for_update: bool = True
    is_valid_for_read: bool = True
    is_primary_id: bool = False
    is_primary_name: bool = False
    required_level: str = "None"

    @property
    def is_lookup(self) -> bool:
        """True for Lookup, Customer and Owner columns (read as `_<name>_value`)."""
        return self.attribute_type in LOOKUP_TYPES

    @property
    def is_choice(self) -> bool:
        """True for single choices: Picklist, State and Status columns."""
        return self.attribute_type in CHOICE_TYPES

    @property
    def is_multi_choice(self) -> bool:
        """True for choices (multi-select) columns."""
        return self.attribute_type_name == "MultiSelectPicklistType"

    @property
    def is_date_only(self) -> bool:
        """True when the Web API reads and writes the column as `Edm.Date` (`2024-05-01`).

        Decided by `DateTimeBehavior`, not by `Format`: a `UserLocal` column shown as a date
        is still an `Edm.DateTimeOffset` on the wire.
        """
        return self.attribute_type == "DateTime" and self.date_time_behavior == "DateOnly"

    @property
    def property_name(self) -> str:
        """The Web API property: `_parentaccountid_value` for lookups, else the logical name."""
        return f"_{self.logical_name}_value" if self.is_lookup else self.logical_name

    def navigation_property(self, target: str | None = None) -> str:
        """The navigation property for `<nav>@odata.bind` when pointing at `target`."""
        if target is None:
            if not self.targets:
                return self.logical_name
            target = self.targets[0]
        nav = self.navigation.get(target)
        if nav:
            return nav
        distinct = set(self.navigation.values())
        if len(distinct) == 1:  # Owner: one "ownerid" property for systemuser and team
            return distinct.pop()
        if len(self.targets) > 1 and self.attribute_type != "Owner":
            return f"{self.logical_name}_{target}"
        return self.logical_name


@dataclass(frozen=True)
class Table:
    """A Dataverse table (`EntityMetadata`) with its columns and alternate keys.

    `attributes` keeps the service's order.  A table from `parse_entity_definitions()` has
    no attributes yet (only names, for resolution and `@odata.bind`).
    """

    logical_name: str
    entity_set_name: str
    primary_id: str
    primary_name: str | None = None
    display_name: str | None = None
    schema_name: str | None = None
    attributes: Mapping[str, Attribute] = field(default_factory=dict)
    keys: tuple[AlternateKey, ...] = ()
    is_activity: bool | None = None
    object_type_code: int | None = None

    def resolve_column(self, name: str) -> Attribute:
        """The column called `name`: a logical name or the `_<name>_value` lookup form.

        Matching ignores case.  An unknown name raises `ConfigError` (`field="column"`) with
        the nearest names as suggestions.
        """
        attribute = self.find_column(name)
        if attribute is not None:
            return attribute
        hint = suggest(name, self._column_choices())
        raise ConfigError(
            f"Table {self.logical_name!r} has no column {name!r}.",
            field="column",
            hint=hint
            or f"List the columns with sorted(table.attributes) ({len(self.attributes)}).",
        )

    def find_column(self, name: str) -> Attribute | None:
        """Like `resolve_column()` but returns None for an unknown name."""
        attributes = self.attributes
        found = attributes.get(name)
        if found is not None:
            return found
        lowered = name.lower()
        found = attributes.get(lowered)
        if found is not None:
            return found
        if lowered.startswith("_") and lowered.endswith("_value"):
            found = attributes.get(lowered[1:-6])
            if found is not None and found.is_lookup:
                return found
        return None

    def _column_choices(self) -> list[str]:
        return list(self.attributes)


# -- parsing ------------------------------------------------------------------------------


def label_text(label: Any) -> str | None:
    """The text of a `Label` object: `UserLocalizedLabel.Label`, else `LocalizedLabels[0]`."""
    if not isinstance(label, Mapping):
        return None
    user = label.get("UserLocalizedLabel")
    if isinstance(user, Mapping) and isinstance(user.get("Label"), str):
        return str(user["Label"])
    localized = label.get("LocalizedLabels")
    if isinstance(localized, Sequence) and localized:
        first = localized[0]
        if isinstance(first, Mapping) and isinstance(first.get("Label"), str):
            return str(first["Label"])
    return None


def _items(body: Any) -> list[_Json]:
    """The rows of a collection body, or the list itself."""
    if body is None:
        return []
    if isinstance(body, Mapping):
        value = body.get("value")
        if isinstance(value, list):
            return [item for item in value if isinstance(item, Mapping)]
        return [body]
    return [item for item in body if isinstance(item, Mapping)]


def _value(obj: Any) -> Any:
    """`{"Value": x}` -> x (managed properties and enum wrappers); plain values pass."""
    if isinstance(obj, Mapping):
        return obj.get("Value")
    return obj


def _options(item: _Json) -> dict[int, str] | None:
    """Options of an attribute item with an expanded `OptionSet`/`GlobalOptionSet`."""
    for key in ("OptionSet", "GlobalOptionSet"):
        option_set = item.get(key)
        if not isinstance(option_set, Mapping):
            continue
        options = option_set.get("Options")
        if isinstance(options, Sequence) and options:
            out: dict[int, str] = {}
            for option in options:
                if isinstance(option, Mapping) and isinstance(option.get("Value"), int):
                    value = int(option["Value"])
                    out[value] = label_text(option.get("Label")) or str(value)
            return out
        false_option = option_set.get("FalseOption")
        true_option = option_set.get("TrueOption")
        if isinstance(false_option, Mapping) or isinstance(true_option, Mapping):
            out = {}
            for option, default in ((false_option, "No"), (true_option, "Yes")):
                if isinstance(option, Mapping):
                    value = int(option.get("Value", 1 if default == "Yes" else 0))
                    out[value] = label_text(option.get("Label")) or default
            return out
    return None


def _merge(attribute: Attribute, item: _Json) -> Attribute:
    """Fold the derived-type properties found in `item` into `attribute`."""
    changes: dict[str, Any] = {}
    if isinstance(item.get("MaxLength"), int):
        changes["max_length"] = item["MaxLength"]
    if isinstance(item.get("Precision"), int):
        changes["precision"] = item["Precision"]
    behavior = _value(item.get("DateTimeBehavior"))
    if isinstance(behavior, str):
        changes["date_time_behavior"] = behavior
    fmt = item.get("Format")
    if isinstance(fmt, str):
        changes["format"] = fmt
    targets = item.get("Targets")
    if isinstance(targets, Sequence) and not isinstance(targets, str):
        changes["targets"] = tuple(str(t) for t in targets)
    options = _options(item)
    if options is not None:
        changes["options"] = options
    return replace(attribute, **changes) if changes else attribute


def _attribute(item: _Json) -> Attribute:
    type_name = _value(item.get("AttributeTypeName")) or ""
    attribute_type = item.get("AttributeType") or (
        str(type_name)[:-4] if str(type_name).endswith("Type") else "Virtual"
    )
    return _merge(
        Attribute(
            logical_name=str(item["LogicalName"]),
            attribute_type=str(attribute_type),
            attribute_type_name=str(type_name),
            schema_name=item.get("SchemaName"),
            display_name=label_text(item.get("DisplayName")),
            attribute_of=item.get("AttributeOf") or None,
            is_valid_for_create=_flag(item.get("IsValidForCreate"), True),
            is_valid_for_update=_flag(item.get("IsValidForUpdate"), True),
            is_valid_for_read=_flag(item.get("IsValidForRead"), True),
            is_primary_id=_flag(item.get("IsPrimaryId"), False),
            is_primary_name=_flag(item.get("IsPrimaryName"), False),
            required_level=str(_value(item.get("RequiredLevel")) or "None"),
        ),
        item,
    )


def _flag(value: Any, default: bool) -> bool:
    value = _value(value)  # some flags are managed properties: {"Value": true, ...}
    return bool(value) if isinstance(value, bool) else default


def _table(item: _Json, **extra: Any) -> Table:
    code = item.get("ObjectTypeCode")
    activity = item.get("IsActivity")
    return Table(
        logical_name=str(item["LogicalName"]),
        entity_set_name=str(item.get("EntitySetName") or item["LogicalName"]),
        primary_id=str(item.get("PrimaryIdAttribute") or f"{item['LogicalName']}id"),
        primary_name=item.get("PrimaryNameAttribute") or None,
        display_name=label_text(item.get("DisplayName")),
        schema_name=item.get("SchemaName"),
        is_activity=activity if isinstance(activity, bool) else None,
        object_type_code=code if isinstance(code, int) else None,
        **extra,
    )


def parse_entity_definitions(body: Any) -> dict[str, Table]:
    """Tables, by logical name, from the `EntityDefinitions?$select=...` list (request 0).

    The tables carry names only (no attributes): enough for `resolve_table()` and for the
    entity set names that `@odata.bind` needs.
    """
    return {str(item["LogicalName"]): _table(item) for item in _items(body)}


def parse_entity_definition(
    entity_json: Mapping[str, Any],
    *,
    attributes_json: Any = (),
    strings_json: Any = (),
    memos_json: Any = (),
    datetimes_json: Any = (),
    lookups_json: Any = (),
    money_json: Any = (),
    decimals_json: Any = (),
    picklists_json: Any = (),
    multiselect_json: Any = (),
    state_json: Any = (),
    status_json: Any = (),
    boolean_json: Any = (),
    keys_json: Any = (),
    relationships_json: Any = (),
) -> Table:
    """Build a `Table` from the bodies of the requests listed in this module's docstring.

    Every keyword takes the response body (`{"value": [...]}`) or its `value` list.  The
    entity body may also be a collection with one row (`EntityDefinitions?$filter=...`).
    Attribute items of the cast requests are merged into `attributes_json` by logical name;
    items for attributes missing from `attributes_json` are added.

    **Parameters:**

    * **entity_json** - `EntityDefinitions(LogicalName='x')?$select=...`.
    * **attributes_json** - `.../Attributes?$select=...` (or without `$select`).
    * **strings_json** ... **boolean_json** - the cast requests 3-13.
    * **keys_json** - `.../Keys?$select=...`.
    * **relationships_json** - `.../ManyToOneRelationships?$select=...`.
    """
    entity_items = _items(entity_json)
    if not entity_items or "LogicalName" not in entity_items[0]:
        raise ConfigError(
            "The EntityDefinitions body has no LogicalName.",
            field="table",
            hint="Pass the body of EntityDefinitions(LogicalName='<table>')?$select=...",
        )
    entity = entity_items[0]
    attributes: dict[str, Attribute] = {}
    for item in _items(attributes_json) + _items(entity.get("Attributes")):
        if "LogicalName" in item:
            attributes[str(item["LogicalName"])] = _attribute(item)
    for body in (
        strings_json,
        memos_json,
        datetimes_json,
        lookups_json,
        money_json,
        decimals_json,
        picklists_json,
        multiselect_json,
        state_json,
        status_json,
        boolean_json,
    ):
        for item in _items(body):
            if "LogicalName" not in item:
                continue
            name = str(item["LogicalName"])
            existing = attributes.get(name)
            attributes[name] = _merge(existing, item) if existing else _attribute(item)

    navigation: dict[str, dict[str, str]] = {}
    for item in _items(relationships_json) + _items(entity.get("ManyToOneRelationships")):
        column = item.get("ReferencingAttribute")
        target = item.get("ReferencedEntity")
        nav = item.get("ReferencingEntityNavigationPropertyName")
        if column and target and nav:
            navigation.setdefault(str(column), {})[str(target)] = str(nav)
    for column, navs in navigation.items():
        found = attributes.get(column)
        if found is not None:
            targets = found.targets or tuple(navs)
            attributes[column] = replace(found, navigation=navs, targets=targets)

    keys = tuple(
        AlternateKey(
            name=str(item.get("LogicalName") or item.get("SchemaName")),
            key_attributes=tuple(str(a) for a in item.get("KeyAttributes") or ()),
            display_name=label_text(item.get("DisplayName")),
        )
        for item in _items(keys_json) + _items(entity.get("Keys"))
        if item.get("LogicalName") or item.get("SchemaName")
    )
    table = _table(entity, attributes=attributes, keys=keys)
    # Flag the primary columns even when the attribute list lacks IsPrimaryId/IsPrimaryName.
    primary = attributes.get(table.primary_id)
    if primary is not None and not primary.is_primary_id:
        attributes[primary.logical_name] = replace(primary, is_primary_id=True)
    named = attributes.get(table.primary_name) if table.primary_name else None
    if named is not None and not named.is_primary_name:
        attributes[named.logical_name] = replace(named, is_primary_name=True)
    return table


# -- name resolution ----------------------------------------------------------------------


def suggest(name: str, candidates: Iterable[str], *, n: int = 3) -> str | None:
    """A "Did you mean ...?" sentence for `name` among `candidates`, or None."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.6)
    if not matches:
        return None
    quoted = " or ".join(repr(by_lower[m]) for m in matches)
    return f"Did you mean {quoted}?"


def resolve_table(name: str, tables: Mapping[str, Table] | Iterable[Table]) -> Table:
    """The table called `name`: its logical name (`account`) or entity set (`accounts`).

    Matching ignores case.  An unknown name raises `ConfigError` (`field="table"`) with the
    nearest names as suggestions.
    """
    candidates = list(tables.values()) if isinstance(tables, Mapping) else list(tables)
    lowered = name.strip().lower()
    for table in candidates:
        if table.logical_name.lower() == lowered or table.entity_set_name.lower() == lowered:
            return table
    for table in candidates:  # display names ("Account") come last: they are not unique
        if table.display_name and table.display_name.lower() == lowered:
            return table
    names = [t.entity_set_name for t in candidates] + [t.logical_name for t in candidates]
    hint = suggest(name, names)
    raise ConfigError(
        f"There is no table {name!r} in this environment.",
        field="table",
        hint=hint or "Use a table's logical name (account) or entity set name (accounts).",
    )
