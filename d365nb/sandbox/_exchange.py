"""One Web API exchange inside the sandbox: the parsed request (`Call`) and its `Reply`.

Both are plain values so a `$batch` can run its parts through the same code as top-level
requests, in-process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["JSON_TYPE", "Call", "Caller", "Reply", "parse_prefer"]

JSON_TYPE = "application/json; odata.metadata=minimal"
_PREF = re.compile(r'\s*([A-Za-z0-9_.\-]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^,;]*))?\s*(?:;[^,]*)?')


def parse_prefer(values: list[str]) -> dict[str, str]:
    """`Prefer` header values (several headers or comma-joined) → {preference: raw value}."""
    prefs: dict[str, str] = {}
    for value in values:
        pos = 0
        while pos < len(value):
            m = _PREF.match(value, pos)
            if not m or m.end() == pos:
                break
            name, raw = m.group(1), (m.group(2) or "").strip()
            if name:
                prefs[name.lower()] = raw
            pos = m.end()
            if pos < len(value) and value[pos] == ",":
                pos += 1
    return prefs


@dataclass(frozen=True)
class Caller:
    """The systemuser behind the bearer token."""

    systemuserid: str
    business_unit_id: str
    has_role: bool = True


@dataclass
class Call:
    """A request addressed to the Web API (`path` is relative to `/api/data/v9.x/`)."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    root: str  # absolute service root ending in "/"
    caller: Caller
    prefer: dict[str, str] = field(default_factory=dict)
    raw_query: str = ""

    def json(self) -> Any:
        from ._errors import ApiError

        try:
            return orjson.loads(self.body or b"{}")
        except orjson.JSONDecodeError as exc:
            raise ApiError(
                400,
                "0x80048d19",
                f"Error identified in Payload provided by the "
                f"user for Entity :''  ---->  InnerException : {exc}",
            ) from None


@dataclass
class Reply:
    """A response: status, headers and an already-encoded body."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
        return cls(status, [("Content-Type", JSON_TYPE), *(headers or [])], orjson.dumps(data))
