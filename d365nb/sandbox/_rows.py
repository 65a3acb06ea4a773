"""Rows → Web API JSON: column lists for SQL and per-row emitters with annotations.

A `RowPlan` is built once per request: the SQL select list, then one small emitter per
output property.  Instance annotations go right before their property, in the service's
order (FormattedValue → associatednavigationproperty → lookuplogicalname → value).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from ._schema import Attribute, Table, all_relationships, table_by_logical
from ._seed import CURRENCIES
from ._store import sqlite_json

__all__ = ["Annotations", "RowPlan", "formatted"]

FV = "OData.Community.Display.V1.FormattedValue"
NAV = "Microsoft.Dynamics.CRM.associatednavigationproperty"
LLN = "Microsoft.Dynamics.CRM.lookuplogicalname"
_SYMBOLS = {c[0]: c[3] for c in CURRENCIES}
# Columns whose stored value SQLite's `json_object` writes as orjson would: text and
# integers.  A REAL comes out with 15 significant digits (orjson: the shortest exact form).
_JSON_SAFE = frozenset({"TEXT", "INTEGER"})
_JSON_MAX_PAIRS = 60  # SQLite allows 127 function arguments by default


class Annotations:
    """Which annotations `Prefer: odata.include-annotations="..."` asked for."""

    def __init__(self, spec: str | None) -> None:
        self.spec = spec
        self.patterns = [p.strip() for p in (spec or "").split(",") if p.strip()]

    def wants(self, term: str) -> bool:
        for pat in self.patterns:
            if pat == "*" or pat == term:
                return True
            if pat.endswith("*") and term.startswith(pat[:-1]):
                return True
        return False

    def __bool__(self) -> bool:
        return bool(self.patterns)


def _date_text(value: str) -> str:
    y, m, d = value[:10].split("-")
    return f"{int(m)}/{int(d)}/{y}"


def _datetime_text(value: str) -> str:
    # [UNVERIFIED] the sandbox's users are all in UTC, so formatted times are UTC.
    hour, minute = int(value[11:13]), value[14:16]
    suffix = "AM" if hour < 12 else "PM"
    return f"{_date_text(value)} {hour % 12 or 12}:{minute} {suffix}"


Formatter = Callable[[Any, "str | None"], "str | None"]


def formatter(attr: Attribute) -> Formatter | None:
    """A function (value, currency id) → `FormattedValue` text for `attr`; None if it has none."""
    kind = attr.kind
    labels = {value: text for value, text in attr.options}
    if kind in ("Picklist", "State", "Status", "Boolean"):
        return lambda value, _: labels.get(int(value))
    if kind == "Virtual":
        return lambda value, _: "; ".join(labels.get(int(v), v) for v in str(value).split(",") if v)
    if kind == "Money":
        return lambda value, cur: f"{_SYMBOLS.get(cur or '', '$')}{value:,.2f}"
    if kind == "Integer":
        return lambda value, _: f"{value:,}"
    if kind == "Decimal":
        return lambda value, _: f"{value:,.2f}"
    if kind == "Double":
        return lambda value, _: f"{value:,.5f}".rstrip("0").rstrip(".")
    if kind == "DateTime":
        return (
            (lambda value, _: _date_text(value))
            if attr.date_only
            else (lambda value, _: _datetime_text(value))
        )
    return None


def formatted(attr: Attribute, value: Any, currency: str | None = None) -> str | None:
    """The `FormattedValue` annotation for a stored value (None: no annotation)."""
    fmt = formatter(attr)
    return None if value is None or fmt is None else fmt(value, currency)


def _lookup_nav(table: Table, attr: Attribute, target: str) -> str:
    for rel in all_relationships():
        if (
            rel.referencing == table.logical
            and rel.attribute == attr.name
            and rel.referenced == target
        ):
            return rel.referencing_nav
    return attr.name


@dataclass
class RowPlan:
    """The SQL columns and JSON emitter for rows of `table`."""

    table: Table
    select: list[Attribute] | None
    annotations: Annotations
    alias: str = "t"
    etag: bool = True
    omit_nulls: bool = False  # FetchXML results leave out null properties
    columns: list[str] = field(default_factory=list)
    _emitters: list[Callable[[tuple[Any, ...], dict[str, Any]], None]] = field(default_factory=list)
    _booleans: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        t, a = self.table, self.alias
        out: list[Attribute] = (
            list(self.select) if self.select is not None else [attr for attr in t.attributes]
        )
        pk = t.attribute(t.primary_id)
        assert pk is not None
        if any(x.kind == "Money" for x in out):
            cur = t.attribute("transactioncurrencyid")
            if cur is not None and cur.is_lookup and cur not in out:
                out.append(cur)
        if pk not in out:
            out.append(pk)
        self.output = out
        self.columns = [f'{a}."versionnumber"']
        cur_idx: int | None = None
        cur_attr = t.attribute("transactioncurrencyid")
        # The currency lookup of a table with Money columns; on `transactioncurrency`
        # itself the same name is the primary key, not a lookup.
        if cur_attr is not None and cur_attr.is_lookup:
            self.columns.append(f'{a}."_transactioncurrencyid_value"')
            cur_idx = 1
        ann = self.annotations
        want_fv, want_nav, want_lln = ann.wants(FV), ann.wants(NAV), ann.wants(LLN)
        omit = self.omit_nulls

        def add(col: str) -> int:
            self.columns.append(col)
            return len(self.columns) - 1

        self._plain = not (want_fv or want_nav or want_lln or omit)
        plain_keys: list[str] = []
        plain_idx: list[int] = []
        for attr in out:
            key = attr.column
            idx = add(f'{a}."{key}"')
            plain_keys.append(key)
            plain_idx.append(idx)
            if attr.kind == "Boolean":
                self._booleans.append(key)
            if attr.is_lookup:
                type_idx = add(f'{a}."{attr.type_column}"') if attr.polymorphic else None
                name_idx = add(self._name_sql(attr)) if want_fv else None
                self._emitters.append(
                    self._lookup_emitter(
                        attr, idx, type_idx, name_idx, want_fv, want_nav, want_lln, omit
                    )
                )
                continue
            fv = want_fv and attr.kind not in ("String", "Memo", "Uniqueidentifier", "BigInt")
            self._emitters.append(self._value_emitter(attr, idx, fv, cur_idx, omit))
        self._keys = tuple(plain_keys)
        self._positions = tuple(plain_idx)
        if len(plain_idx) == 1:
            only = plain_idx[0]
            self._getter: Callable[[tuple[Any, ...]], Any] = lambda row: (row[only],)
        else:
            self._getter = itemgetter(*plain_idx)

    def _name_sql(self, attr: Attribute) -> str:
        a = self.alias
        parts = []
        for target_name in attr.targets:
            target = table_by_logical(target_name)
            if target is None:
                continue
            sub = (
                f'(SELECT n."{target.primary_name}" FROM "{target.entity_set}" n '
                f'WHERE n."{target.primary_id}" = {a}."{attr.column}")'
            )
            if not attr.polymorphic:
                return sub
            parts.append(f"WHEN '{target_name}' THEN {sub}")
        return f'(CASE {a}."{attr.type_column}" {" ".join(parts)} END)'

    def _lookup_emitter(
        self,
        attr: Attribute,
        idx: int,
        type_idx: int | None,
        name_idx: int | None,
        want_fv: bool,
        want_nav: bool,
        want_lln: bool,
        omit: bool,
    ) -> Callable[[tuple[Any, ...], dict[str, Any]], None]:
        key = attr.column
        table = self.table
        navs = {target: _lookup_nav(table, attr, target) for target in attr.targets}
        default_target = attr.targets[0]

        def emit(row: tuple[Any, ...], out: dict[str, Any]) -> None:
            value = row[idx]
            if value is None:
                if not omit:
                    out[key] = None
                return
            target = (row[type_idx] if type_idx is not None else None) or default_target
            if want_fv and name_idx is not None and row[name_idx] is not None:
                out[f"{key}@{FV}"] = row[name_idx]
            if want_nav:
                out[f"{key}@{NAV}"] = navs.get(target, attr.name)
            if want_lln:
                out[f"{key}@{LLN}"] = target
            out[key] = value

        return emit

    def _value_emitter(
        self,
        attr: Attribute,
        idx: int,
        fv: bool,
        cur_idx: int | None,
        omit: bool,
    ) -> Callable[[tuple[Any, ...], dict[str, Any]], None]:
        key = attr.column
        fv_key = f"{key}@{FV}"
        boolean = attr.kind == "Boolean"
        fmt = formatter(attr) if fv else None

        if fmt is None and not boolean:
            if omit:

                def emit_plain_omit(row: tuple[Any, ...], out: dict[str, Any]) -> None:
                    value = row[idx]
                    if value is not None:
                        out[key] = value

                return emit_plain_omit

            def emit_plain(row: tuple[Any, ...], out: dict[str, Any]) -> None:
                out[key] = row[idx]

            return emit_plain

        def emit(row: tuple[Any, ...], out: dict[str, Any]) -> None:
            value = row[idx]
            if value is None:
                if not omit:
                    out[key] = None
                return
            if fmt is not None:
                text = fmt(value, row[cur_idx] if cur_idx is not None else None)
                if text is not None:
                    out[fv_key] = text
            out[key] = bool(value) if boolean else value

        return emit

    def plain_keys(self) -> tuple[tuple[str, ...], tuple[int, ...]] | None:
        """(property names, column positions) when `emit()` is the ETag then those columns
        as they are (no annotations, no yes/no columns to convert); else None."""
        if not (self._plain and self.etag) or self._booleans:
            return None
        return self._keys, self._positions

    def json_sql(self) -> str | None:
        """SQL whose value is `emit()`'s object as JSON text, built by SQLite; or None.

        Only for rows that `emit()` passes through as stored (`plain_keys()`) with text and
        integer columns only (`_JSON_SAFE`), so the text parses to what `emit()` gives.
        """
        plain = self.plain_keys()
        if (
            plain is None
            or len(self.output) >= _JSON_MAX_PAIRS
            or any(a.sql_type.split()[0] not in _JSON_SAFE for a in self.output)
            or not sqlite_json()
        ):
            return None
        keys, positions = plain
        pairs = [f"'@odata.etag', 'W/\"' || {self.columns[0]} || '\"'"]
        pairs += [f"'{k}', {self.columns[i]}" for k, i in zip(keys, positions, strict=True)]
        return f"json_object({', '.join(pairs)})"

    def emit(self, row: tuple[Any, ...]) -> dict[str, Any]:
        """One row as a Web API JSON object."""
        out: dict[str, Any] = {}
        if self.etag:
            out["@odata.etag"] = f'W/"{row[0]}"'
        if self._plain:
            # No annotations: one C-level gather per row, then fix the yes/no columns.
            out.update(zip(self._keys, self._getter(row), strict=True))
            for key in self._booleans:
                value = out[key]
                if value is not None:
                    out[key] = bool(value)
            return out
        for emitter in self._emitters:
            emitter(row, out)
        return out
