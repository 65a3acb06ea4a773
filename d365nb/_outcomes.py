"""Reading the service's answers to a push: per-row errors, "not supported", read-backs.

Pure code, no I/O.  `_write` asks these questions of what the service answered:
which error a `$batch` part holds (`error_of`), whether a bulk action failed because
the table does not support it (`unsupported`), and whether a row read back holds what
was sent (`holds`, with `navigation_map` for `@odata.bind` and `same` for one value).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ._exceptions import ODataError
from ._metadata import Attribute, Table
from ._multipart import BatchResponse

__all__ = ["error_of", "exact_key", "holds", "navigation_map", "same", "unsupported"]

_GUID_TEXT = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


def exact_key(values: Mapping[str, Any]) -> tuple[Any, ...]:
    """A key as written: text as is (GUIDs in lower case), numbers as floats."""
    out: list[Any] = []
    for name in sorted(values):
        value = values[name]
        if isinstance(value, str) and _GUID_TEXT.match(value):
            out.append(value.lower())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(float(value))
        else:
            out.append(value)
    return tuple(out)


def holds(body: Mapping[str, Any], current: Any, navs: Mapping[str, Attribute]) -> bool:
    """True when the row read back (`current`) holds every value of `body`."""
    if not isinstance(current, Mapping):
        return False
    for name, value in body.items():
        if name.endswith("@odata.bind"):
            attribute = navs.get(name[: -len("@odata.bind")])
            if attribute is None:
                return False
            have = current.get(f"_{attribute.logical_name}_value")
            want = None if value is None else str(value).rsplit("(", 1)[-1].rstrip(")")
            if str(have or "").lower() != str(want or "").lower():
                return False
        elif not same(value, current.get(name)):
            return False
    return True


def navigation_map(table: Table) -> dict[str, Attribute]:
    out: dict[str, Attribute] = {}
    for attribute in table.attributes.values():
        if attribute.is_lookup:
            for target in attribute.targets or (None,):
                out[attribute.navigation_property(target)] = attribute
    return out


def same(sent: Any, have: Any) -> bool:
    if sent is None or have is None:
        return sent is None and have is None
    if isinstance(sent, bool) or isinstance(have, bool):
        return bool(sent) == bool(have)
    if isinstance(sent, (int, float)) and isinstance(have, (int, float)):
        return math.isclose(float(sent), float(have), rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(sent, str) and isinstance(have, str):
        if sent == have:
            return True
        try:
            return bool(pd.Timestamp(sent) == pd.Timestamp(have))
        except (ValueError, TypeError):
            return sorted(sent.split(",")) == sorted(have.split(","))
    return bool(str(sent) == str(have))


def error_of(part: BatchResponse) -> tuple[str | None, str]:
    try:
        error = part.json()["error"]
        return (str(error.get("code") or "") or None, str(error.get("message") or ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, part.body.decode("utf-8", "replace")[:300] or f"HTTP {part.status}"


def unsupported(error: ODataError) -> bool:
    """True when a bulk action failed because the table does not support it (not a row)."""
    text = error.service_message.lower()
    return (
        error.code == "0x8006088a"
        or error.status in (405, 501)
        or (error.status == 404 and error.code != "0x80040217" and "does not exist" not in text)
        or "not yet been implemented" in text
        or "is not supported" in text
        or "no http resource" in text
    )
