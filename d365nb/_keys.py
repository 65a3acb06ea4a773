"""The keys of a push: which columns identify its rows, and their values on the wire.

`resolve_key()` checks `key=` against the table's primary id and alternate keys;
`key_segments()` turns a frame's key columns into key segments (`accountnumber='A-1'`) and
the key as JSON values, reporting missing and empty keys as problems; `upsert_keys()`
gives both for an upsert by alternate key before the rest of the plan (`_lookahead` sends
its look-ups meanwhile), and `_plan.plan_push(keyed=...)` takes them from there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ._exceptions import ConfigError, Problem
from ._metadata import Attribute, Table, suggest
from ._odata import key_segment, key_value
from ._options import PushOptions
from ._payloads import build_payloads

__all__ = ["Keyed", "is_na", "key_segments", "keys_hint", "resolve_key", "upsert_keys"]

# Text that `key_value()` leaves as it is (letters, digits and its safe characters).
_URL_SAFE = re.compile(r"[A-Za-z0-9'\-_.~]*")


def resolve_key(table: Table, key: list[str] | None) -> tuple[str, ...]:
    if key is None:
        return (table.primary_id,)
    if len(key) == 1:
        for alt in table.keys:
            if alt.name.lower() == key[0].lower():
                return tuple(alt.key_attributes)
    resolved: list[str] = []
    for name in key:
        attribute = table.find_column(name)
        if attribute is None:
            raise ConfigError(
                f"key={name!r} is not a column of table {table.logical_name!r}.",
                field="key",
                hint=suggest(name, list(table.attributes)) or keys_hint(table),
            )
        resolved.append(attribute.logical_name)
    if resolved == [table.primary_id]:
        return (table.primary_id,)
    for alt in table.keys:
        if {a.lower() for a in alt.key_attributes} == set(resolved):
            return tuple(resolved)
    raise ConfigError(
        f"key={key!r} is neither the primary id nor an alternate key of {table.logical_name!r}.",
        field="key",
        hint=keys_hint(table),
    )


def keys_hint(table: Table) -> str:
    keys = [repr(table.primary_id)] + [
        repr(a.key_attributes[0]) if len(a.key_attributes) == 1 else repr(list(a.key_attributes))
        for a in table.keys
    ]
    return f"Use key= {' or '.join(keys)}."


def is_na(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _literal(value: Any, attribute: Attribute | None) -> str:
    """A key value as it goes in a key segment (`_odata.key_value()` for this column)."""
    lookup = attribute is not None and attribute.is_lookup
    guid = attribute is not None and attribute.attribute_type == "Uniqueidentifier"
    if type(value) is str and not (lookup or guid) and _URL_SAFE.fullmatch(value):
        return "'" + value.replace("'", "''") + "'"  # what key_value() answers, sooner
    return key_value(value, lookup=lookup, guid=guid)


def key_segments(
    df: pd.DataFrame,
    table: Table,
    tables: Mapping[str, Table],
    key: tuple[str, ...],
    problems: list[Problem],
) -> tuple[list[str | None], list[dict[str, Any] | None]]:
    """`k1='a',k2=3` (the key segment's inside) per row, and the key as JSON values
    (`{"k1": "a", "k2": 3}`); None where a value is missing."""
    before = len(problems)
    attributes = [table.find_column(k) for k in key]
    plain = [k for k, a in zip(key, attributes, strict=True) if a is not None and not a.is_lookup]
    wire: dict[str, list[Any]] = {}
    if plain:
        payloads = build_payloads(
            df[plain], table=table, tables=tables, columns=plain, mode="create", bodies=False
        )
        problems.extend(payloads.problems)
        for k in plain:
            name = table.resolve_column(k).logical_name
            found = None if payloads.problems else payloads.values.get(name)
            wire[k] = list(found) if found is not None else [None] * len(df)
    for k, attribute in zip(key, attributes, strict=True):
        if attribute is not None and attribute.is_lookup:
            wire[k] = [None if is_na(v) else str(v) for v in df[k].tolist()]
    out: list[str | None] = []
    values: list[dict[str, Any] | None] = []
    missing = []
    clean = len(problems) == before
    for k in key:
        empty = [i for i, v in enumerate(wire[k]) if isinstance(v, str) and not v.strip()]
        if empty:
            problems.append(
                Problem(
                    k,
                    "is empty text, which cannot identify a row (the service would match or "
                    "create a row keyed '').",
                    "Fill in the key, or push these rows with mode='create'.",
                    tuple(df.index[empty[:5]]),
                    len(empty),
                )
            )
            for i in empty:
                wire[k][i] = None
    single = len(key) == 1 and len(wire[key[0]]) == len(df)
    if single:  # one column (the common case): no inner loop per row
        attribute = attributes[0]
        name = attribute.property_name if attribute is not None else key[0]
        for i, value in enumerate(wire[key[0]]):
            if value is None:
                missing.append(i)
            out.append(None if value is None else f"{name}={_literal(value, attribute)}")
            values.append(None if value is None else {name: value})
    for i in range(0 if single else len(df)):
        parts: list[tuple[str, str]] = []
        row: dict[str, Any] = {}
        for k, attribute in zip(key, attributes, strict=True):
            value = wire[k][i] if i < len(wire[k]) else None
            if value is None:
                break
            name = attribute.property_name if attribute is not None else k
            parts.append((name, _literal(value, attribute)))
            row[name] = value
        else:
            out.append(key_segment(parts))
            values.append(row)
            continue
        out.append(None)
        values.append(None)
        missing.append(i)
    if missing and clean:
        problems.append(
            Problem(
                ", ".join(key),
                "has no value, so the row cannot be found by its key.",
                "Fill in the key, or push these rows with mode='create'.",
                tuple(df.index[missing[:5]]),
                len(missing),
            )
        )
    return out, values


@dataclass(frozen=True, slots=True)
class Keyed:
    """An upsert's keys, found once (`upsert_keys()`): per row, the key segment's inside
    and the key as JSON values (None where a value is missing), and the problems found."""

    segments: list[str | None]
    values: list[dict[str, Any] | None]
    problems: list[Problem]


def upsert_keys(
    df: pd.DataFrame, table: Table, tables: Mapping[str, Table], options: PushOptions
) -> Keyed | None:
    """The keys of an upsert by alternate key, before (and for) `plan_push(keyed=...)`:
    what its key look-ups need (`_lookahead`).  None for any other push, or when the key
    is unknown or a key column is missing (`plan_push()` says so)."""
    if options.mode != "upsert":
        return None
    try:
        keys = resolve_key(table, options.keys)
    except ConfigError:
        return None
    if keys == (table.primary_id,) or any(k not in df.columns for k in keys):
        return None
    problems: list[Problem] = []
    segments, values = key_segments(df, table, tables, keys, problems)
    return Keyed(segments, values, problems)
