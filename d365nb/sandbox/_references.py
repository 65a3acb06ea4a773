"""Keys and entity references in requests (`accounts(accountnumber='A-1')`), and new
row ids."""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Any

from ._errors import ApiError
from ._query import sql_value
from ._schema import Table, table_by_set

__all__ = ["GUID", "new_ids", "parse_entity_ref", "parse_key"]

GUID = re.compile(
    r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12}\}?$"
)
_KEY_PART = re.compile(r"\s*([A-Za-z0-9_]+)\s*=\s*('(?:[^']|'')*'|[^,]+)\s*(?:,|$)")
_REF = re.compile(r"^(?:.*/api/data/v9\.[0-2]/|/)?([A-Za-z0-9_]+)\((.*)\)$")


def new_ids(n: int) -> list[str]:
    """`n` random (version 4) GUIDs, from one `os.urandom` call: `uuid.uuid4()` per row
    was a quarter of a 20,000-row `CreateMultiple` (a system call per GUID)."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = bytes((b & 0x0F) | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])  # RFC 4122 variant
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-"
        f"{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


def parse_key(table: Table, text: str) -> dict[str, Any]:
    """`<guid>` or `name='v',other=2` → {column: stored value}, validated against the keys."""
    text = text.strip()
    if GUID.match(text):
        return {table.primary_id: text.strip("{}").lower()}
    pos, values = 0, {}
    while pos < len(text):
        m = _KEY_PART.match(text, pos)
        if not m:
            raise ApiError(400, "0x80060888", f"Bad Request - Error in query syntax: '{text}'.")
        name, raw = m.group(1), m.group(2).strip()
        attr = table.by_column(name)
        if attr is None:
            raise ApiError(
                400, "0x80060888", f"Invalid key: '{name}' is not a property of '{table.logical}'."
            )
        value: Any
        if raw.startswith("'"):
            value = raw[1:-1].replace("''", "'")
        elif attr.sql_type == "INTEGER":
            value = int(raw)
        elif attr.sql_type == "REAL":
            value = float(raw)
        else:
            value = raw
        values[attr.column] = sql_value(attr, value)
        pos = m.end()
    names = set(values)
    if names != {table.primary_id} and not any(
        names == {(table.attribute(a) or table.attributes[0]).column for a in attrs}
        for _, attrs in table.keys
    ):
        raise ApiError(
            400,
            "0x80060888",
            f"The key ({', '.join(values)}) is not defined as an "
            f"alternate key of '{table.logical}'.",
        )
    return values


def parse_entity_ref(text: str) -> tuple[Table, dict[str, Any]]:
    """`/accounts(<id>)`, `accounts(accountnumber='A-1')` or an absolute URL → (table, key)."""
    # A reference is a URL: its key segment may be percent-encoded (a space as %20), and
    # the service decodes it like any other URL (as it does for the request URL itself).
    m = _REF.match(urllib.parse.unquote(text.strip()))
    table = table_by_set(m.group(1)) if m else None
    if m is None or table is None:
        raise ApiError(
            400,
            "0x80048d19",
            f"Error identified in Payload provided by the user for "
            f"Entity :''  ---->  InnerException : The entity reference '{text}' is "
            "not valid.",
        )
    return table, parse_key(table, m.group(2))
