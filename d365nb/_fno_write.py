"""The F&O push engine: rows to a data entity by natural key, through `$batch` change sets.

reference/finance-operations-protocol.md §4: every write names the whole key, `dataAreaId`
included (`CustomersV3(dataAreaId='usmf',CustomerAccount='US-001')`); creates are POSTs
(201 + the row, number-sequence keys filled in), updates PATCHes of **only the changed
columns** (F&O re-applies defaults to what is sent, so sending unchanged fields can
overwrite defaults), deletes DELETEs.  F&O has no upsert (PATCH to a missing key is 404),
so `mode="upsert"` asks which keys exist first (one filtered GET per chunk) and splits the
rows into updates and creates.

Rows travel in `$batch` requests, each row in its own change set: a row is written whole
or not at all, and a bad row fails alone.  A row read with an ETag is written with
`If-Match` (412 → `conflict`) unless `force=True`.  Business-rule failures (HTTP 500 with
the infolog in `innererror`) are reported as one sentence per row and never retried.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd

from ._dialects.fno import COMPANY, ENUM_TYPE, FNO, business_rule_sentence
from ._dtypes import ETAG_COLUMN
from ._exceptions import ConfigError
from ._metadata import Table
from ._multipart import (
    BatchRequest,
    BatchResponse,
    ChangeSet,
    ChangeSetResponse,
    decode_batch_response,
    encode_batch_request,
)
from ._odata import encode_query
from ._options import PushOptions, check_push, frame_info
from ._progress import progress_bar, progress_var
from ._report import PushPlan, PushReport, raise_for_push, rows_frame

if TYPE_CHECKING:
    from ._fno_client import FnoConnection

__all__ = ["apush_fno", "wire_value"]

DEFAULT_BATCH = 100  # rows per $batch request (each its own change set)
_EXISTS_CHUNK = 25  # keys per existence query (URL length)


def wire_value(value: Any) -> Any:
    """A cell as F&O JSON: enum members as names, datetimes as ISO `Z`, NA as None."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return f"{value.isoformat()}T12:00:00Z"
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def _same(a: Any, b: Any) -> bool:
    a, b = wire_value(a), wire_value(b)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float | int) and isinstance(b, float | int):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    return bool(a == b)


@dataclass
class _Row:
    label: Any
    op: str  # create | update | delete | none
    key: dict[str, Any]
    body: dict[str, Any] = field(default_factory=dict)
    etag: str | None = None
    status: str = ""
    message: str = ""
    code: str = ""

    def key_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.key.items())


def _keys(df: pd.DataFrame, table: Table, options: PushOptions) -> tuple[str, ...]:
    keys = tuple(options.keys) if options.keys else FNO.key_fields(table)
    for name in keys:
        if table.find_column(name) is None:
            table.resolve_column(name)  # raises with suggestions
    return keys


def _key_of(row: Mapping[Any, Any], keys: Sequence[str]) -> dict[str, Any]:
    out = {}
    for k in keys:
        value = wire_value(row.get(k))
        out[k] = value.lower() if k == COMPANY and isinstance(value, str) else value
    return out


def _columns(
    df: pd.DataFrame, table: Table, options: PushOptions
) -> tuple[list[str], dict[str, str]]:
    wanted = list(options.columns) if options.columns else [str(c) for c in df.columns]
    sent: list[str] = []
    skipped: dict[str, str] = {}
    for name in wanted:
        if name == ETAG_COLUMN:
            continue
        if name in table.attributes:
            sent.append(name)
        else:
            skipped[name] = f"not a field of {table.entity_set_name}"
    return sent, skipped


def _originals(
    conn: FnoConnection, df: pd.DataFrame, keys: Sequence[str]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    original = conn._original(frame_info(df).get("read_id"))
    if original is None or any(k not in original.columns for k in keys):
        return {}
    return {
        tuple(_key_of(row, keys).values()): {str(k): v for k, v in row.items()}
        for row in original.to_dict(orient="records")
    }


async def _existing(
    conn: FnoConnection, table: Table, keys: Sequence[str], wanted: list[dict[str, Any]]
) -> set[tuple[Any, ...]]:
    """Which of `wanted` keys exist (for upsert): filtered GETs of the key fields."""
    found: set[tuple[Any, ...]] = set()
    attrs = table.attributes

    async def one(chunk: list[dict[str, Any]]) -> None:
        ors = [
            "("
            + " and ".join(f"{k} eq {FNO.literal(v, attrs.get(k))}" for k, v in key.items())
            + ")"
            for key in chunk
        ]
        params = {"$select": ",".join(keys), "$filter": " or ".join(ors)}
        if FNO.is_company_entity(table):
            params["cross-company"] = "true"
        url = f"{table.entity_set_name}?{encode_query(params)}"
        while url:
            async with conn.limiter:
                body = (await conn.arequest("GET", url)).json()
            for row in body.get("value", []):
                found.add(tuple(_key_of(row, keys).values()))
            url = body.get("@odata.nextLink")

    chunks = [wanted[i : i + _EXISTS_CHUNK] for i in range(0, len(wanted), _EXISTS_CHUNK)]
    await asyncio.gather(*(one(c) for c in chunks))
    return found


def _plan_rows(
    df: pd.DataFrame,
    table: Table,
    keys: Sequence[str],
    columns: Sequence[str],
    mode: str,
    originals: Mapping[tuple[Any, ...], dict[str, Any]],
    exists: set[tuple[Any, ...]] | None,
    force: bool,
) -> list[_Row]:
    rows: list[_Row] = []
    has_etag = ETAG_COLUMN in df.columns
    records = df.to_dict(orient="records")
    for label, record in zip(df.index, records, strict=True):
        key = _key_of(record, keys)
        ident = tuple(key.values())
        etag = None if force or not has_etag else wire_value(record.get(ETAG_COLUMN))
        op = mode
        if mode == "upsert":
            op = (
                "update"
                if (etag is not None or (exists is not None and ident in exists))
                else "create"
            )
        row = _Row(label, op, key, etag=etag if op in ("update", "delete") else None)
        if op == "create":
            row.body = {
                c: _wire_field(table, c, record.get(c))
                for c in columns
                if wire_value(record.get(c)) is not None
            }
        elif op == "update":
            before = originals.get(ident)
            changed = [
                c
                for c in columns
                if c not in keys and (before is None or not _same(record.get(c), before.get(c)))
            ]
            row.body = {c: _wire_field(table, c, record.get(c)) for c in changed}
            if not row.body:
                row.op, row.status, row.message = "none", "unchanged", "no column changed"
        rows.append(row)
    return rows


def _wire_field(table: Table, name: str, value: Any) -> Any:
    out = wire_value(value)
    attribute = table.attributes.get(name)
    if attribute is not None and attribute.attribute_type == ENUM_TYPE and isinstance(out, bool):
        return "Yes" if out else "No"
    return out


def _request(conn: FnoConnection, table: Table, row: _Row) -> BatchRequest:
    base = conn.api_root + table.entity_set_name
    headers: dict[str, str] = {"Accept": "application/json"}
    if row.etag:
        headers["If-Match"] = row.etag
    if row.op == "create":
        return BatchRequest.from_json("POST", base, row.body, headers=headers)
    url = base + FNO.key_segment(table, row.key)
    if row.op == "update":
        return BatchRequest.from_json("PATCH", url, row.body, headers=headers)
    return BatchRequest("DELETE", url, headers=headers)


def _settle(row: _Row, response: BatchResponse) -> None:
    if response.is_success:
        row.status = {"create": "created", "update": "updated", "delete": "deleted"}[row.op]
        if row.op == "create" and response.body:
            try:  # 201 + the row: keys the service assigned (number sequences) come back
                created = response.json() or {}
            except ValueError:
                created = {}
            row.key = {k: created.get(k, v) for k, v in row.key.items()}
        return
    message = ""
    try:
        error = (response.json() or {}).get("error", {})
        inner = error.get("innererror") or {}
        message = business_rule_sentence(str(inner.get("message") or error.get("message") or ""))
    except (ValueError, AttributeError):
        message = response.body.decode("utf-8", "replace")[:300]
    row.status = "conflict" if response.status == 412 else "failed"
    row.code = str(response.status)
    row.message = message or f"HTTP {response.status}"


async def _send(conn: FnoConnection, table: Table, chunk: list[_Row], counter: list[int]) -> None:
    items = [ChangeSet([_request(conn, table, row)]) for row in chunk]
    content_type, body = encode_batch_request(items)
    async with conn.limiter:
        response: httpx.Response = await conn.arequest(
            "POST",
            "$batch",
            content=body,
            # Each row is its own change set: a bad row must not stop the ones after it.
            headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
        )
    counter[0] += 1
    parts = decode_batch_response(response.content, response.headers.get("content-type", ""))
    for row, part in zip(chunk, parts, strict=False):
        answer = part.responses[0] if isinstance(part, ChangeSetResponse) else part
        _settle(row, answer)
    for row in chunk[len(parts) :]:  # the service stopped the batch: these were not sent
        row.status, row.message = "failed", "not run: the service stopped the $batch early"
    bar = progress_var.get()
    if bar is not None:
        bar.update(len(chunk))


async def apush_fno(
    conn: FnoConnection, df: pd.DataFrame, table: str | None, options: PushOptions
) -> PushReport | PushPlan:
    """Write a DataFrame's rows to an F&O data entity (see `df.d365.push`)."""
    check_push(df, table, options)
    started = time.perf_counter()
    info = frame_info(df)
    meta = await conn.catalog.table(table or str(info.get("entity_set") or info["table"]))
    keys = _keys(df, meta, options)
    mode = options.mode
    if mode != "create":
        missing = [k for k in keys if k not in df.columns]
        if missing:
            raise ConfigError(
                f"{meta.entity_set_name} rows are found by {', '.join(keys)}, and the frame "
                f"has no {', '.join(missing)} column.",
                field="key",
                hint="Add the key columns (dataAreaId included for company entities).",
            )
        dupes = df.duplicated(subset=list(keys), keep=False)
        if dupes.any():
            raise ConfigError(
                f"{int(dupes.sum())} rows share a key ({', '.join(keys)}).",
                field="key",
                hint="Each row must name a different record; drop the duplicates.",
            )
    columns, skipped = _columns(df, meta, options)
    originals = _originals(conn, df, keys) if mode in ("update", "upsert") else {}
    exists = None
    if mode == "upsert":
        need = [
            _key_of(r, keys)
            for r in df.to_dict(orient="records")
            if options.force or ETAG_COLUMN not in df.columns or pd.isna(r.get(ETAG_COLUMN))
        ]
        exists = await _existing(conn, meta, keys, need) if need else set()
    rows = _plan_rows(df, meta, keys, columns, mode, originals, exists, options.force)
    size = min(options.batch_size or DEFAULT_BATCH, 1000)
    todo = [r for r in rows if r.op != "none"]
    if options.dry_run:
        return _plan(df, meta, keys, mode, rows, columns, skipped, size, conn)
    bar = (
        progress_bar(f"Pushing {meta.entity_set_name}", total=len(todo))
        if (options.progress and todo)
        else None
    )
    token = progress_var.set(bar)
    counter = [0]
    try:
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        if options.parallel is False:
            for chunk in chunks:
                await _send(conn, meta, chunk, counter)
        else:
            await asyncio.gather(*(_send(conn, meta, chunk, counter) for chunk in chunks))
    finally:
        progress_var.reset(token)
        if bar is not None:
            bar.close()
    frame = df.copy()
    frame.attrs["d365nb"] = {**info, "entity_set": meta.entity_set_name, "service": "fno"}
    report = PushReport(
        table=meta.entity_set_name,
        mode=mode,
        rows=rows_frame(
            df.index,
            {
                "status": [r.status for r in rows],
                "code": [r.code for r in rows],
                "message": [r.message for r in rows],
                "id": [r.key_text() for r in rows],
            },
        ),
        frame=frame,
        elapsed=time.perf_counter() - started,
        requests=counter[0],
    )
    raise_for_push(report, on_error=options.on_error)
    return report


def _plan(
    df: pd.DataFrame,
    table: Table,
    keys: Sequence[str],
    mode: str,
    rows: list[_Row],
    columns: list[str],
    skipped: dict[str, str],
    size: int,
    conn: FnoConnection,
) -> PushPlan:
    ops = ["unchanged" if r.op == "none" else r.op for r in rows]
    todo = [r for r in rows if r.op != "none"]
    batches = -(-len(todo) // size) if todo else 0
    sample = None
    if todo:
        request = _request(conn, table, todo[0])
        sample = {"method": request.method, "url": request.url, "body": todo[0].body or None}
    return PushPlan(
        table=table.entity_set_name,
        entity_set=table.entity_set_name,
        mode=mode,
        key=tuple(keys),
        rows=rows_frame(
            df.index,
            {
                "operation": ops,
                "id": [r.key_text() for r in rows],
                "condition": [f"If-Match: {r.etag}" if r.etag else "" for r in rows],
            },
        ),
        columns=tuple(columns),
        skipped=skipped,
        requests=(f"{batches} x $batch (<= {size} rows, one change set per row)",)
        if batches
        else (),
        sample=sample,
    )
