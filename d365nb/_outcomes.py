"""Reading the service's answers to a push: per-row errors, "not supported", read-backs.

Pure code, no I/O.  `_write` asks these questions of what the service answered:
what a row's `$batch` part means (`part_outcome`), which error it holds (`error_of`),
whether a bulk action failed because the table does not support it (`unsupported`),
which rows a key look-up found (`place_records`), how to read a row back after a lost
answer (`lookup_request`), and whether it holds what was sent (`holds`, with
`navigation_map` for `@odata.bind` and `same` for one value).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd

from ._exceptions import ODataError
from ._literals import GUID_RE
from ._metadata import Attribute, Table
from ._multipart import BatchRequest, BatchResponse
from ._odata import entity_path, select_path
from ._payloads import encode_json
from ._plan import PlannedRow, loose_key, row_key

__all__ = [
    "answered_ids",
    "error_of",
    "exact_key",
    "holds",
    "lookup_request",
    "navigation_map",
    "part_outcome",
    "place_records",
    "same",
    "stopped_outcomes",
    "unsupported",
    "write_request",
]

_JSON_ENTRY = "application/json; type=entry"
_DUPLICATE = "0x80040237"
_VERSION_MISMATCH = "0x80060882"


def exact_key(values: Mapping[str, Any]) -> tuple[Any, ...]:
    """A key as written: text as is (GUIDs in lower case), numbers as floats."""
    out: list[Any] = []
    for name in sorted(values):
        value = values[name]
        if isinstance(value, str) and GUID_RE.fullmatch(value):
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


@dataclass
class _Outcome:
    """A row's outcome as the engine records it."""

    status: str
    code: str | None = None
    message: str | None = None
    row_id: str | None = None
    # What a read-back settles: "landed" (a create of our own id), "same" (a create whose
    # id exists: does it hold our values?), "ours" (a conflict after a retry).
    verify: str = ""


def part_outcome(
    row: PlannedRow,
    part: BatchResponse,
    *,
    pk: str,
    retried: bool,
    resumed: bool,
    existed: bool | None,
) -> _Outcome:
    """A row's outcome from its `$batch` part.

    **Parameters:** **pk** - the primary id's name; **retried** - the request was sent
    again after a lost answer; **resumed** - the push continues an unfinished attempt;
    **existed** - what the upsert look-up found for the row's key (None: not looked up).
    """
    if part.is_success:
        if row.op == "create":
            return _Outcome("created")
        if row.op == "delete":
            return _Outcome("deleted")
        if row.op == "upsert":
            returned = None
            try:
                data = part.json()
                returned = data.get(pk) if isinstance(data, dict) else None
            except ValueError:
                pass
            if part.status == 201:
                return _Outcome("created", row_id=returned)
            if retried and existed is False:
                # An UpsertMultiple whose answer was lost created it, then failed on
                # its retry (or its retry's answer was an error): ours all the same.
                return _Outcome(
                    "created",
                    row_id=returned,
                    message="created by an earlier attempt of this push",
                )
            return _Outcome("updated", row_id=returned)
        return _Outcome("updated")
    code, message = error_of(part)
    if part.status == 412 and row.op == "create":
        # "Duplicate": an earlier attempt (of this push, or a push of report.failed) may
        # have landed with this id.  Settled by verify().
        # Generated ids are uuid5 of (attempt, row), so a first-try 412 means an earlier
        # run of this attempt (interrupted, then pushed again) created this very row:
        # settled by comparing values ("unchanged").  After a retry it was this push.
        landed = "landed" if retried else "same"
        return _Outcome("failed", code or _DUPLICATE, message, verify=landed)
    mismatch = code == _VERSION_MISMATCH or "doesn't match the RowVersion" in message
    if part.status == 412 and mismatch and row.guarded:
        return _Outcome(
            "conflict",
            code or _VERSION_MISMATCH,
            "The row changed on the service since it was read: read it again, or push "
            "with force=True to overwrite.",
            verify="ours" if retried or resumed else "",
        )
    if part.status == 404 and row.guarded and row.op in ("update", "upsert"):
        return _Outcome(
            "conflict",
            code,
            "The row was deleted on the service since it was read; push with force=True "
            "to create it again.",
        )
    if part.status == 404 and row.op == "delete" and (retried or resumed):
        return _Outcome("deleted", message="already deleted by an earlier attempt")
    return _Outcome("failed", code or str(part.status), message)


def lookup_request(table: Table, base: str, row: PlannedRow, kind: str) -> BatchRequest:
    """A GET that reads back what `row` would have written (after a lost response);
    `base` is the Web API root's path."""
    path = row.path
    if row.op == "create":
        path = entity_path(table.entity_set_name, str(row.row_id))
    if kind == "landed":
        return BatchRequest("GET", base + select_path(path, [table.primary_id]))
    navs = navigation_map(table)
    select = {table.primary_id}
    for name in row.body or {}:
        if name.endswith("@odata.bind"):
            attribute = navs.get(name[: -len("@odata.bind")])
            select.add(f"_{attribute.logical_name}_value" if attribute else table.primary_id)
        else:
            select.add(name)
    return BatchRequest("GET", base + select_path(path, sorted(select)))


def write_request(table: Table, base: str, row: PlannedRow) -> BatchRequest:
    """The `$batch` part (an independent request) that writes `row`; `base` is the Web
    API root's path."""
    url = f"{base}{row.path}"
    headers: list[tuple[str, str]] = []
    if row.op == "create":
        return BatchRequest(
            "POST", url, headers=[("Content-Type", _JSON_ENTRY)], body=encode_json(row.body or {})
        )
    headers += list(row.headers.items())
    if row.op == "delete":
        return BatchRequest("DELETE", url, headers=headers)
    if row.op == "upsert" and not (row.guarded and row.row_id):
        # 201 (created) or 200 (updated), and the id.  Not needed with an ETag: such
        # a PATCH never creates, and the id is known; it costs ~10% (20,000 rows).
        url += f"?$select={table.primary_id}"
        headers.append(("Prefer", "return=representation"))
    headers.insert(0, ("Content-Type", _JSON_ENTRY))
    return BatchRequest("PATCH", url, headers=headers, body=encode_json(row.body or {}))


def place_records(
    rows: list[PlannedRow], pages: list[Any], names: list[str], pk: str
) -> dict[int, str | None] | None:
    """Tie the records a key look-up found (`pages`) to `rows`: `{pos: id found, or None}`.

    Rows left out match a record only loosely (another case, accents, trailing spaces);
    None when a page cannot be read or a record matches no row (go one by one).
    """
    records: list[Mapping[str, Any]] = []
    for page in pages:
        if not isinstance(page, Mapping) or "@odata.nextLink" in page:
            return None  # more than one page: not worth following, go one by one
        records += [r for r in page.get("value") or [] if isinstance(r, Mapping)]
    exact = {exact_key(row.key_values or {}): row.pos for row in rows}
    loose = {row_key(row): row.pos for row in rows}
    out: dict[int, str | None] = {row.pos: None for row in rows}
    for record in records:
        values = {name: record.get(name) for name in names}
        pos = exact.get(exact_key(values))
        if pos is not None:
            out[pos] = str(record.get(pk) or "") or None
            continue
        near = loose.get(loose_key(values))
        if near is None:
            return None  # a row we cannot tie to the frame: go one by one
        out.pop(near, None)  # the same row, or not: its own part will say
    return out


def stopped_outcomes(
    rows: Sequence[PlannedRow], status: Sequence[str | None], inflight: Sequence[bool]
) -> Iterator[tuple[PlannedRow, _Outcome]]:
    """The outcome of each row a stopped push left without one: `interrupted` when its
    request had gone out (it may have landed), else `unsent`."""
    for row in rows:
        if status[row.pos] is not None:
            continue
        if inflight[row.pos]:
            yield (
                row,
                _Outcome(
                    "failed",
                    "interrupted",
                    "The push stopped while this row's request was on its way: it may have "
                    "landed. report.remaining pushes it again without writing it twice.",
                ),
            )
        else:
            yield row, _Outcome("failed", "unsent", "The push stopped before this row.")


def answered_ids(response: httpx.Response, rows: Sequence[PlannedRow]) -> list[str | None]:
    """Each row's id from a `CreateMultiple` answer's `Ids` (the row's own id where the
    answer has none, or cannot be read)."""
    try:
        returned = list(response.json().get("Ids") or []) if response.content else []
    except (ValueError, AttributeError):
        returned = []
    return [str(returned[i]) if i < len(returned) else row.row_id for i, row in enumerate(rows)]
