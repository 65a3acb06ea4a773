"""The F&O environment's OData service: reads and writes of data entities (`/data/...`).

`FnoService.handle(call)` answers one request (top-level or a `$batch` part) as a
`Reply`; everything it raises is an `FnoError` that the app turns into F&O's JSON.
Rules from reference/finance-operations-protocol.md:

* Reads (§3): server-driven paging at `page_size` rows (10,000 like F&O, or the smaller
  ``Prefer: odata.maxpagesize`` - [UNVERIFIED] honoured, echoed in
  ``Preference-Applied``) with an absolute `@odata.nextLink` that appends ``$skip``
  ([OBS, weak] best guess) to the original query; default order = the entity key;
  `$count=true` → `@odata.count`; ``/<Set>/$count`` → ``text/plain``; company scoping
  in `_fno_query.py`; first-level `$expand`.
* Writes (§4): every key field named, ``dataAreaId`` included (single-field keys may be
  positional); POST → 201 + the full row (defaults, number-sequence keys,
  `@odata.etag`, ``Location``); PATCH/PUT/DELETE → 204; PATCH to a missing key → 404,
  no upsert ([UNVERIFIED] best guess); ``If-Match`` optional, a stale ETag → 412
  ([UNVERIFIED]); business rules (mandatory fields, related rows, duplicates, restricted
  deletes) → 500 with the infolog in `innererror` (§4.7); key fields cannot change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote, urlencode

import orjson

from ._exchange import Reply
from ._fno_errors import FnoError, bad_query, not_found, write_failed
from ._fno_metadata import csdl, service_document
from ._fno_query import FnoQuery, key_where, parse_query, utc_text
from ._fno_schema import ENTITIES, ENUMS, NAMESPACE, Entity, Prop, entity_by_set
from ._fno_store import FnoStore, etag, to_sql, to_wire

__all__ = ["JSON_TYPE", "FnoCall", "FnoCaller", "FnoService", "json_reply"]

JSON_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
_SEGMENT = re.compile(r"^([A-Za-z_]\w*)(?:\((.*)\))?(?:/(.+))?$", re.S)
_KEY_PART = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*('(?:[^']|'')*'|[^,]+)\s*(?:,|$)")


@dataclass(frozen=True)
class FnoCaller:
    """The F&O user behind a token (the "Microsoft Entra ID applications" mapping, §2)."""

    user_id: str
    company: str  # the user's default company
    key: str  # whom throttling counts: the client id or the user's UPN


@dataclass
class FnoCall:
    """A request to the F&O environment; `path` is relative to ``<root>/data/``."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    root: str  # the environment root (the token resource), without a trailing slash
    caller: FnoCaller
    prefer: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return orjson.loads(self.body or b"{}")
        except orjson.JSONDecodeError:
            raise FnoError(
                400, "The request body is not valid JSON: the payload could not be read."
            ) from None


def json_reply(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
    """A JSON `Reply` with F&O's content type."""
    return Reply(status, [("Content-Type", JSON_TYPE), *(headers or [])], orjson.dumps(data))


def _literal(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


def key_segment(entity: Entity, row: dict[str, Any]) -> str:
    """``(dataAreaId='usmf',CustomerAccount='US-001')`` for a row."""
    parts = []
    for name in entity.keys:
        text = str(row[name]).replace("'", "''")
        parts.append(f"{name}='{quote(text, safe='')}'")
    return f"({','.join(parts)})"


def parse_key(entity: Entity, text: str) -> dict[str, str]:
    """A key predicate → {field: value}; all key fields, by name (§4.1)."""
    text = unquote(text)
    if "=" not in text and len(entity.keys) == 1:
        return {entity.keys[0]: _literal(text)}
    found: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _KEY_PART.match(text, pos)
        if not m or m.end() == pos:
            raise bad_query(f"The key '{text}' is not valid for '{entity.entity_set}'.")
        found[m.group(1)] = _literal(m.group(2))
        pos = m.end()
    if set(found) != set(entity.keys):
        missing = [k for k in entity.keys if k not in found]
        raise bad_query(
            f"The key '{text}' of '{entity.entity_set}' must name all key fields "
            f"({', '.join(entity.keys)}); missing or unknown: "
            f"{', '.join(missing or sorted(set(found) - set(entity.keys)))}."
        )
    if "dataAreaId" in found:
        found["dataAreaId"] = found["dataAreaId"].lower()
    return found


class FnoService:
    """Answers OData calls against `store`.

    **Parameters:**

    * **store** - the F&O database.
    * **page_size** - server-driven page size (F&O: 10,000).
    """

    def __init__(self, store: FnoStore, *, page_size: int = 10000) -> None:
        self.store = store
        self.page_size = page_size
        self._metadata = csdl()

    # -- dispatch

    def handle(self, call: FnoCall) -> Reply:
        """The reply to one call (raises `FnoError`)."""
        if call.path in ("", "/"):
            return json_reply(200, service_document(call.root))
        if call.path == "$metadata":
            return Reply(200, [("Content-Type", "application/xml")], self._metadata)
        m = _SEGMENT.match(call.path)
        entity = entity_by_set(m.group(1)) if m else None
        if m is None or entity is None:
            raise not_found(call.path.split("/")[0].split("(")[0])
        key_text, rest = m.group(2), m.group(3)
        if rest is not None and key_text is None:
            if rest == "$count" and call.method == "GET":
                return self.count(call, entity)
            raise not_found(rest)
        if key_text is None:
            if call.method == "GET":
                return self.read(call, entity)
            if call.method == "POST":
                return self.create(call, entity)
            raise FnoError(405, f"The HTTP method '{call.method}' is not allowed on a collection.")
        key = parse_key(entity, key_text)
        if rest is not None:
            raise not_found(rest)
        if call.method == "GET":
            return self.read_one(call, entity, key)
        if call.method in ("PATCH", "PUT"):
            return self.update(call, entity, key, replace=call.method == "PUT")
        if call.method == "DELETE":
            return self.delete(call, entity, key)
        raise FnoError(405, f"The HTTP method '{call.method}' is not allowed on an entity.")

    # -- reads

    def _columns(self, entity: Entity) -> str:
        return ", ".join(["_id", "_version", *(f'"{p.name}"' for p in entity.props)])

    def _row(
        self, entity: Entity, raw: tuple[Any, ...], select: list[Prop] | None
    ) -> dict[str, Any]:
        values = {p.name: to_wire(p, v) for p, v in zip(entity.props, raw[2:], strict=True)}
        row: dict[str, Any] = {"@odata.etag": etag(raw[0], raw[1])}
        props = select if select is not None else entity.props
        row.update({p.name: values[p.name] for p in props})
        return row

    def _fetch(self, query: FnoQuery, limit: int, offset: int) -> list[tuple[Any, ...]]:
        where, params = query.sql_where()
        sql = (
            f'SELECT {self._columns(query.entity)} FROM "{query.entity.entity_set}" '
            f"WHERE {where} ORDER BY {query.sql_order()} LIMIT ? OFFSET ?"
        )
        return self.store.query(sql, [*params, limit, offset])

    def _expand(self, query: FnoQuery, raw: tuple[Any, ...], row: dict[str, Any]) -> None:
        values = {p.name: v for p, v in zip(query.entity.props, raw[2:], strict=True)}
        for nav in query.expand:
            target = entity_by_set(nav.target)
            assert target is not None
            where = " AND ".join(f'"{theirs}" = ?' for _, theirs in nav.pairs)
            order = ", ".join(f'"{k}"' for k in target.keys)
            found = self.store.query(
                f'SELECT {self._columns(target)} FROM "{target.entity_set}" WHERE {where} '
                f"ORDER BY {order}",
                [values[mine] for mine, _ in nav.pairs],
            )
            rows = [self._row(target, r, None) for r in found]
            row[nav.name] = rows if nav.collection else (rows[0] if rows else None)

    def read(self, call: FnoCall, entity: Entity) -> Reply:
        query = parse_query(entity, call.params, company=call.caller.company)
        page_size = self.page_size
        applied: list[tuple[str, str]] = []
        wanted = call.prefer.get("odata.maxpagesize", "")
        if wanted.isdigit() and 0 < int(wanted) < page_size:
            page_size = int(wanted)
            applied = [("Preference-Applied", f"odata.maxpagesize={page_size}")]
        limit = page_size if query.top is None else min(page_size, query.top)
        raw = self._fetch(query, limit + 1, query.skip)
        more = len(raw) > limit and (query.top is None or query.top > limit)
        raw = raw[:limit]
        context = f"{call.root}/data/$metadata#{entity.entity_set}"
        if query.select is not None:
            context += f"({','.join(p.name for p in query.select)})"
        body: dict[str, Any] = {"@odata.context": context}
        if query.count:
            where, params = query.sql_where()
            ((total,),) = self.store.query(
                f'SELECT COUNT(*) FROM "{entity.entity_set}" WHERE {where}', params
            )
            body["@odata.count"] = total
        rows = []
        for r in raw:
            row = self._row(entity, r, query.select)
            if query.expand:
                self._expand(query, r, row)
            rows.append(row)
        body["value"] = rows
        if more:
            rest = {k: v for k, v in call.params.items() if k not in ("$skip", "$top")}
            if query.top is not None:
                rest["$top"] = str(query.top - len(raw))
            rest["$skip"] = str(query.skip + len(raw))
            body["@odata.nextLink"] = (
                f"{call.root}/data/{entity.entity_set}?{urlencode(rest, safe='$,*()')}"
            )
        return json_reply(200, body, [*applied, ("x-sandbox-rows", str(len(rows)))])

    def count(self, call: FnoCall, entity: Entity) -> Reply:
        params = {k: v for k, v in call.params.items() if k in ("$filter", "cross-company")}
        query = parse_query(entity, params, company=call.caller.company)
        where, args = query.sql_where()
        ((total,),) = self.store.query(
            f'SELECT COUNT(*) FROM "{entity.entity_set}" WHERE {where}', args
        )
        return Reply(200, [("Content-Type", "text/plain; charset=utf-8")], str(total).encode())

    def _find(self, entity: Entity, key: dict[str, str]) -> tuple[Any, ...] | None:
        where, params = key_where(entity, key)
        found = self.store.query(
            f'SELECT {self._columns(entity)} FROM "{entity.entity_set}" WHERE {where}', params
        )
        return found[0] if found else None

    def read_one(self, call: FnoCall, entity: Entity, key: dict[str, str]) -> Reply:
        # [UNVERIFIED] a key names its company, so reading by key needs no cross-company.
        raw = self._find(entity, key)
        if raw is None:
            raise not_found(entity.entity_set)
        select = parse_query(
            entity, {"$select": call.params.get("$select", "*")}, company=""
        ).select
        row = {"@odata.context": f"{call.root}/data/$metadata#{entity.entity_set}/$entity"}
        row.update(self._row(entity, raw, select))
        return json_reply(200, row, [("ETag", row["@odata.etag"])])

    # -- writes

    def _values(self, entity: Entity, body: Any) -> dict[str, Any]:
        """The body's fields, type-checked (400 for unknown names and wrong types)."""
        if not isinstance(body, dict):
            raise FnoError(400, "The request body must be a JSON object.")
        odata_type = body.get("@odata.type")
        if odata_type is not None and odata_type.lstrip("#") != f"{NAMESPACE}.{entity.name}":
            raise FnoError(
                400, f"The type '{odata_type}' does not match the entity set '{entity.entity_set}'."
            )
        values: dict[str, Any] = {}
        for name, value in body.items():
            if name.startswith("@") or "@odata." in name:
                continue
            prop = entity.prop(name)
            if prop is None:
                raise FnoError(
                    400,
                    f"The property '{name}' does not exist on type '{NAMESPACE}.{entity.name}'. "
                    "Make sure to only use property names that are defined by the type.",
                )
            if prop.read_only:
                continue  # [UNVERIFIED] set by the service; a sent value is ignored
            values[name] = _checked(prop, value)
        return values

    def _validate(self, entity: Entity, row: dict[str, Any]) -> None:
        """F&O's validateField / validateWrite: mandatory fields and related rows."""
        company = row.get("dataAreaId", "")
        if entity.company:
            known = self.store.query(
                'SELECT 1 FROM "LegalEntities" WHERE "LegalEntityId" = ?', [company]
            )
            if not known:
                raise write_failed(entity.aot, f"Error: Company '{company}' does not exist.")
        for prop in entity.props:
            if prop.mandatory and row.get(prop.name, "") in ("", None):
                raise write_failed(
                    entity.aot,
                    f"Error: Field '{prop.label}' must be filled in.",
                    f"Warning: validateWrite failed on data source '{entity.table}'.",
                )
        for rel in entity.relations:
            value = row.get(rel.field, "")
            if value == "":
                continue
            target = entity_by_set(rel.target)
            assert target is not None
            where, params = f'"{rel.target_field}" = ?', [value]
            if target.company:
                where, params = f'{where} AND "dataAreaId" = ?', [value, company]
            if not self.store.query(f'SELECT 1 FROM "{target.entity_set}" WHERE {where}', params):
                field = entity.prop(rel.field)
                label = field.label if field else rel.field
                raise write_failed(
                    entity.aot,
                    f"Error: The value '{value}' in field '{label}' is not found in the related "
                    f"table '{rel.label}'.",
                    f"Warning: validateField failed on field '{entity.aot}.{rel.field}'.",
                )

    def _store_row(self, entity: Entity, row: dict[str, Any], rec_id: int | None) -> int:
        if entity.prop("ModifiedDateTime") is not None:
            row["ModifiedDateTime"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if entity.entity_set == "SalesOrderLines":
            amount = row["OrderedSalesQuantity"] * row["SalesPrice"] - row["LineDiscountAmount"]
            row["LineAmount"] = round(amount, 2)
        version = self.store.next_version()
        values = [to_sql(p, row[p.name]) for p in entity.props]
        names = ", ".join(f'"{p.name}"' for p in entity.props)
        if rec_id is None:
            marks = ", ".join("?" * (len(entity.props) + 1))
            cur = self.store.query(
                f'INSERT INTO "{entity.entity_set}" (_version, {names}) VALUES ({marks}) '
                "RETURNING _id",
                [version, *values],
            )
            return int(cur[0][0])
        sets = ", ".join(f'"{p.name}" = ?' for p in entity.props)
        self.store.execute(
            f'UPDATE "{entity.entity_set}" SET _version = ?, {sets} WHERE _id = ?',
            [version, *values, rec_id],
        )
        return rec_id

    def _insert(self, entity: Entity, values: dict[str, Any], company: str) -> tuple[Any, ...]:
        """Insert a new row: defaults, number sequence, validation, duplicate check."""
        row = {p.name: p.blank for p in entity.props}
        row.update(values)
        if entity.company:
            row["dataAreaId"] = str(row["dataAreaId"] or company).lower()
        if entity.number_sequence and row[entity.number_sequence[0]] == "":
            field = entity.number_sequence[0]
            row[field] = self.store.next_number(entity, row.get("dataAreaId", ""))
        self._validate(entity, row)
        if self._find(entity, {k: row[k] for k in entity.keys}) is not None:
            keys = ", ".join(
                f"{(entity.prop(k) or Prop(k)).label or k}: {row[k]}" for k in entity.keys
            )
            raise write_failed(
                entity.aot,
                f"Error: Cannot create a record in {entity.table}. {keys}. "
                "The record already exists.",
            )
        self._store_row(entity, row, None)
        raw = self._find(entity, {k: row[k] for k in entity.keys})
        assert raw is not None
        return raw

    def upsert(self, entity: Entity, body: dict[str, Any], company: str) -> None:
        """Insert or update one row by its key (the package import's write)."""
        values = self._values(entity, body)
        with self.store.atomic():
            if entity.company:
                values["dataAreaId"] = str(values.get("dataAreaId") or company).lower()
            key = {k: values.get(k, "") for k in entity.keys}
            raw = self._find(entity, key) if all(v != "" for v in key.values()) else None
            if raw is None:
                self._insert(entity, values, company)
                return
            row = {p.name: to_wire(p, v) for p, v in zip(entity.props, raw[2:], strict=True)}
            row.update({k: v for k, v in values.items() if k not in entity.keys})
            self._validate(entity, row)
            self._store_row(entity, row, raw[0])

    def create(self, call: FnoCall, entity: Entity) -> Reply:
        if entity.read_only:
            raise FnoError(405, f"The entity set '{entity.entity_set}' is read-only.")
        values = self._values(entity, call.json())
        with self.store.atomic():
            raw = self._insert(entity, values, call.caller.company)
        row = {p.name: to_wire(p, v) for p, v in zip(entity.props, raw[2:], strict=True)}
        location = f"{call.root}/data/{entity.entity_set}{key_segment(entity, row)}"
        headers = [("Location", location), ("OData-EntityId", location)]
        if call.prefer.get("return") == "minimal":
            return Reply(204, [*headers, ("Preference-Applied", "return=minimal")])
        body = {"@odata.context": f"{call.root}/data/$metadata#{entity.entity_set}/$entity"}
        body.update(self._row(entity, raw, None))
        return json_reply(
            201, body, [*headers, ("ETag", body["@odata.etag"]), ("x-sandbox-rows", "1")]
        )

    def _current(self, call: FnoCall, entity: Entity, key: dict[str, str]) -> tuple[Any, ...]:
        if entity.read_only:
            raise FnoError(405, f"The entity set '{entity.entity_set}' is read-only.")
        raw = self._find(entity, key)
        if raw is None:
            raise not_found(entity.entity_set)
        wanted = call.headers.get("if-match", "").strip()
        if (
            wanted
            and wanted != "*"
            and etag(raw[0], raw[1]) not in (w.strip() for w in wanted.split(","))
        ):
            raise FnoError(
                412,
                "An error has occurred.",
                inner="The ETag value in the request header does not match with the current "
                "ETag value of the object.",
            )
        return raw

    def update(self, call: FnoCall, entity: Entity, key: dict[str, str], *, replace: bool) -> Reply:
        values = self._values(entity, call.json())
        with self.store.atomic():
            raw = self._current(call, entity, key)
            current = {p.name: to_wire(p, v) for p, v in zip(entity.props, raw[2:], strict=True)}
            for name in entity.keys:
                if name in values and str(values[name]).lower() != str(current[name]).lower():
                    # [UNVERIFIED] renaming a key is not an update (§4.3).
                    raise FnoError(
                        400, f"The key property '{name}' of '{entity.entity_set}' cannot change."
                    )
            row = {p.name: p.blank for p in entity.props} if replace else dict(current)
            row.update(values)
            row.update({k: current[k] for k in entity.keys})
            self._validate(entity, row)
            self._store_row(entity, row, raw[0])
            fresh = self._find(entity, key)
        assert fresh is not None
        return Reply(204, [("ETag", etag(fresh[0], fresh[1])), ("x-sandbox-rows", "1")])

    def delete(self, call: FnoCall, entity: Entity, key: dict[str, str]) -> Reply:
        with self.store.atomic():
            raw = self._current(call, entity, key)
            row = {p.name: v for p, v in zip(entity.props, raw[2:], strict=True)}
            for other in ENTITIES:
                for rel in other.relations:
                    if rel.target != entity.entity_set:
                        continue
                    where = f'"{rel.field}" = ?' + (
                        ' AND "dataAreaId" = ?' if other.company else ""
                    )
                    args = [row[rel.target_field]] + ([row["dataAreaId"]] if other.company else [])
                    if (
                        other.entity_set == "SalesOrderLines"
                        and entity.entity_set == "SalesOrderHeadersV2"
                    ):
                        self.store.execute(f'DELETE FROM "{other.entity_set}" WHERE {where}', args)
                    elif self.store.query(
                        f'SELECT 1 FROM "{other.entity_set}" WHERE {where} LIMIT 1', args
                    ):
                        # [UNVERIFIED] wording of the delete-restriction infolog line.
                        raise write_failed(
                            entity.aot,
                            f"Error: The record in {entity.table} cannot be deleted. It is "
                            f"referenced by {other.table}.",
                        )
            self.store.execute(f'DELETE FROM "{entity.entity_set}" WHERE _id = ?', [raw[0]])
        return Reply(204, [("x-sandbox-rows", "1")])


def _checked(prop: Prop, value: Any) -> Any:
    """A JSON value for `prop`, normalised (400 when its type is wrong)."""
    ok: bool
    if value is None:
        # F&O fields are never null; [UNVERIFIED] null is taken as the field's blank.
        return prop.blank
    if prop.kind == "String":
        ok = isinstance(value, str)
    elif prop.kind in ("Int32", "Int64"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif prop.kind == "Decimal":
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif prop.kind == "Enum":
        assert prop.enum is not None
        ok = isinstance(value, str) and ENUMS[prop.enum].value(value) is not None
        if not ok:
            raise FnoError(
                400,
                f"The value '{value}' is not a member of the enumeration type "
                f"'{NAMESPACE}.{prop.enum}' of property '{prop.name}'.",
            )
    else:  # Date, DateTime
        try:
            text = utc_text(value) if isinstance(value, str) else ""
        except ValueError:
            text = ""
        ok = bool(text)
        if ok and prop.kind == "Date":
            text = f"{text[:10]}T12:00:00Z"  # X++ dates travel at noon UTC (§3.3)
        value = text
    if not ok:
        raise FnoError(
            400,
            f"Cannot convert the literal '{value}' to the expected type '{prop.edm}' of "
            f"property '{prop.name}'.",
        )
    return value
