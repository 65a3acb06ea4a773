"""Key look-ups: which upserts' keys exist on the service, in one request.

`UpsertMultiple` answers 204 and nothing per row, so before it the keys of up to
`_batching.LOOKUP_ROWS` rows are looked up by GETs that filter on them
(`$select=<pk>,<key columns>`, `Microsoft.Dynamics.CRM.In` for one text key): one GET,
or one `$batch` of GETs when the keys need more than one URL (`_batching.lookup_urls()`).
What is found says `updated` (and the id), what is not says `created`
(`_outcomes.place_records()`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from ._batching import lookup_urls
from ._metadata import Table
from ._multipart import (
    BatchFormatError,
    BatchRequest,
    BatchResponse,
    decode_batch_response,
    encode_batch_request,
)
from ._outcomes import place_records
from ._plan import PlannedRow

__all__ = ["Fetch", "find_keys"]

#: Sends one request: (method, URL relative to the Web API root, body, headers) ->
#: the response, or None when it failed.
Fetch = Callable[[str, str, bytes, dict[str, str]], Awaitable[httpx.Response | None]]


async def find_keys(
    fetch: Fetch, base: str, table: Table, rows: list[PlannedRow]
) -> dict[int, str | None] | None:
    """Which rows' keys exist: `{pos: id of the row found, or None}`.

    **Parameters:** **fetch** - sends a request (`Fetch`); **base** - the Web API root's
    path (for `$batch` parts); **table** - the table; **rows** - the upserts.

    Rows left out could not be placed for sure (the service holds a key that matches
    theirs only loosely: another case, accents, trailing spaces); None when the look-up
    failed or answered what this cannot read (those rows go one by one).
    """
    names = sorted({name for row in rows for name in row.key_values or {}})
    keys: list[Mapping[str, Any]] = [row.key_values or {} for row in rows]
    urls = lookup_urls(table, names, keys)
    pages: list[Any]
    if len(urls) == 1:
        response = await fetch("GET", urls[0], b"", {})
        if response is None:
            return None
        try:
            pages = [response.json()]
        except ValueError:
            return None
    else:
        content_type, body = encode_batch_request(
            [BatchRequest("GET", f"{base}{url}") for url in urls]
        )
        response = await fetch("POST", "$batch", body, {"Content-Type": content_type})
        if response is None:
            return None
        try:
            items = decode_batch_response(
                response.content, response.headers.get("content-type", "")
            )
            pages = [
                item.json()
                for item in items
                if isinstance(item, BatchResponse) and item.status == 200
            ]
        except (BatchFormatError, ValueError):
            return None
        if len(pages) != len(urls):
            return None
    return place_records(rows, pages, names, table.primary_id)
