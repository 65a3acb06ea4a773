"""F&O metadata: the `$metadata` CSDL -> the common `Table`/`Attribute` model, cached.

`$metadata` is large (tens of MB on a real environment, §1.2) and slow on a cold AOS, so
`FnoCatalog` fetches it once per environment, keeps it gzip-compressed on disk (keyed by
the environment root; `refresh()` fetches again), and parses it lazily: a first pass only
maps entity sets to their `EntityType` elements; a table is converted the first time it is
used.  The model:

* `EntityType Name` (`CustomerV3`) -> `logical_name`; `EntitySet Name` (`CustomersV3`)
  -> `entity_set_name`;
* `Key/PropertyRef` -> `keys=(AlternateKey("key", (...)),)`, `primary_id` = last key field;
* `Property Type="Edm.X"` -> `attribute_type` (`String`, `Integer`, `BigInt`, `Decimal`,
  `Double`, `Boolean`, `DateTime`, `Uniqueidentifier`, `Binary`);
* `Property Type="<namespace>.<Enum>"` -> `attribute_type="Enum"`, `format=<Enum>`,
  `options={value: member}`;
* the `Core.Description` annotation -> `display_name`.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ._dialects.fno import ENUM_TYPE
from ._metadata import AlternateKey, Attribute, Table, resolve_table

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["Csdl", "FnoCatalog", "EDM_TYPES", "metadata_cache_dir", "parse_csdl"]

_EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
#: Edm type -> `Attribute.attribute_type` (the Dataverse vocabulary where one fits).
EDM_TYPES: dict[str, str] = {
    "Edm.String": "String",
    "Edm.Int16": "Integer",
    "Edm.Int32": "Integer",
    "Edm.Int64": "BigInt",
    "Edm.Decimal": "Decimal",
    "Edm.Double": "Double",
    "Edm.Single": "Double",
    "Edm.Boolean": "Boolean",
    "Edm.DateTimeOffset": "DateTime",
    "Edm.Date": "DateTime",
    "Edm.Guid": "Uniqueidentifier",
    "Edm.Binary": "Binary",
}


def metadata_cache_dir() -> Path:
    """Where `$metadata` copies are kept (`D365NB_METADATA_CACHE_DIR` overrides it)."""
    env = os.environ.get("D365NB_METADATA_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("d365nb")) / "fno-metadata"


@dataclass
class Csdl:
    """A parsed-on-demand CSDL document: entity sets, entity types and enums."""

    entity_sets: dict[str, str]  # set name -> type name (unqualified)
    types: dict[str, ET.Element]  # type name -> EntityType element (unconverted)
    enums: dict[str, dict[int, str]]  # enum name -> {value: member}, in value order
    tables: dict[str, Table] = field(default_factory=dict)  # set name -> converted table

    def table(self, entity_set: str) -> Table:
        """The `Table` of `entity_set` (converted on first use)."""
        found = self.tables.get(entity_set)
        if found is None:
            found = _table(entity_set, self.types[self.entity_sets[entity_set]], self.enums)
            self.tables[entity_set] = found
        return found

    def summaries(self) -> dict[str, Table]:
        """Every entity set as a name-only `Table`, by entity set name."""
        return {
            name: Table(logical_name=type_name, entity_set_name=name, primary_id="")
            for name, type_name in self.entity_sets.items()
        }


def parse_csdl(document: bytes) -> Csdl:
    """The first, cheap pass over `$metadata`: sets, type elements and enums."""
    root = ET.fromstring(document)
    sets: dict[str, str] = {}
    types: dict[str, ET.Element] = {}
    enums: dict[str, dict[int, str]] = {}
    for schema in root.iter(f"{_EDM}Schema"):
        for element in schema:
            tag = element.tag.removeprefix(_EDM)
            name = element.get("Name", "")
            if tag == "EntityType":
                types[name] = element
            elif tag == "EnumType":
                members = {}
                for index, member in enumerate(element.iter(f"{_EDM}Member")):
                    members[int(member.get("Value", index))] = member.get("Name", "")
                enums[name] = dict(sorted(members.items()))
            elif tag == "EntityContainer":
                for entity_set in element.iter(f"{_EDM}EntitySet"):
                    type_name = entity_set.get("EntityType", "").rsplit(".", 1)[-1]
                    sets[entity_set.get("Name", "")] = type_name
    return Csdl(sets, types, enums)


def _description(element: ET.Element) -> str | None:
    for annotation in element.iter(f"{_EDM}Annotation"):
        if annotation.get("Term", "").endswith("Description"):
            return annotation.get("String")
    return None


def _table(entity_set: str, element: ET.Element, enums: Mapping[str, dict[int, str]]) -> Table:
    keys = tuple(ref.get("Name", "") for ref in element.iter(f"{_EDM}PropertyRef"))
    attributes: dict[str, Attribute] = {}
    for prop in element.findall(f"{_EDM}Property"):
        name = prop.get("Name", "")
        edm = prop.get("Type", "Edm.String")
        max_length = prop.get("MaxLength")
        precision = prop.get("Scale")
        enum_name = edm.rsplit(".", 1)[-1]
        if not edm.startswith("Edm.") and enum_name in enums:
            kind, options, fmt = ENUM_TYPE, enums[enum_name], enum_name
        else:
            kind, options, fmt = EDM_TYPES.get(edm, "String"), {}, None
        attributes[name] = Attribute(
            logical_name=name,
            attribute_type=kind,
            attribute_type_name=edm,
            schema_name=name,
            display_name=_description(prop),
            max_length=int(max_length) if max_length and max_length.isdigit() else None,
            precision=int(precision) if precision and precision.isdigit() else None,
            format=fmt,
            options=options,
            is_primary_id=name in keys,
            required_level="SystemRequired" if name in keys else "None",
            is_valid_for_update=name not in keys,
        )
    return Table(
        logical_name=element.get("Name", entity_set),
        entity_set_name=entity_set,
        primary_id=keys[-1] if keys else "",
        schema_name=element.get("Name"),
        display_name=_description(element) or element.get("Name"),
        attributes=attributes,
        keys=(AlternateKey("key", keys, "Entity key"),) if keys else (),
    )


class FnoCatalog:
    """`$metadata` for one F&O connection: fetched once, cached on disk, parsed lazily.

    **Parameters:**

    * **session** - the connection (its `api_root` is `<root>/data/`).
    * **cache** - a folder for the compressed copy; `None`: `metadata_cache_dir()`;
      `False`: memory only.
    """

    def __init__(self, session: Session, *, cache: Path | bool | None = None) -> None:
        self._session = session
        self._csdl: Csdl | None = None
        self._lock: asyncio.Lock | None = None
        self._dir = (
            None if cache is False else metadata_cache_dir() if cache in (None, True) else cache
        )
        self.fetches = 0  # how many times $metadata came over the network

    @property
    def cache_file(self) -> Path | None:
        """The compressed `$metadata` copy of this environment, if disk caching is on."""
        if not isinstance(self._dir, Path):
            return None
        digest = hashlib.sha256(self._session.api_root.encode()).hexdigest()[:24]
        return self._dir / f"{digest}.xml.gz"

    def refresh(self) -> None:
        """Forget the parsed and the cached copy; the next use fetches `$metadata` again."""
        self._csdl = None
        path = self.cache_file
        if path is not None and path.exists():
            path.unlink()

    async def csdl(self) -> Csdl:
        """The parsed document (from memory, the disk cache, or the service)."""
        if self._csdl is not None:
            return self._csdl
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._csdl is None:
                self._csdl = parse_csdl(await self._document())
        return self._csdl

    async def _document(self) -> bytes:
        path = self.cache_file
        if path is not None and path.is_file():
            try:
                return gzip.decompress(path.read_bytes())
            except (OSError, EOFError):
                path.unlink(missing_ok=True)
        response = await self._session.arequest(
            "GET", "$metadata", headers={"Accept": "application/xml"}
        )
        document = await response.aread()
        self.fetches += 1
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path.parent, 0o700)
            path.write_bytes(gzip.compress(document, compresslevel=6))
        return document

    async def tables(self) -> dict[str, Table]:
        """Every entity set as a name-only `Table`, by entity set name."""
        return (await self.csdl()).summaries()

    async def table(self, name: str) -> Table:
        """The entity set `name` (or its entity name, any case) with its fields."""
        csdl = await self.csdl()
        if name not in csdl.entity_sets:
            name = resolve_table(name, csdl.summaries()).entity_set_name
        return csdl.table(name)

    def cached(self, logical_name: str) -> Table | None:
        """A table already converted, by entity or entity set name."""
        if self._csdl is None:
            return None
        for table in self._csdl.tables.values():
            if logical_name in (table.logical_name, table.entity_set_name):
                return table
        return None
