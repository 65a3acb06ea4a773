"""The per-connection metadata cache: which tables exist, and each table's columns.

The list of tables is fetched once; a table's details (attributes, option sets, keys,
relationships) the first time it is read or written, with the requests
`_metadata.metadata_requests()` names, sent concurrently.  Both are cached for the life
of the connection (`refresh()` forgets them).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._exceptions import ODataError
from ._metadata import (
    TABLES_REQUEST,
    Table,
    metadata_requests,
    parse_entity_definition,
    parse_entity_definitions,
    resolve_table,
)
from ._session import Session

__all__ = ["Catalog"]


class Catalog:
    """Table metadata for one session (connection), fetched lazily and cached."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._tables: dict[str, Table] | None = None
        self._details: dict[str, Table] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def refresh(self) -> None:
        """Forget everything; the next use fetches again."""
        self._tables = None
        self._details.clear()

    async def tables(self) -> dict[str, Table]:
        """Every table, by logical name (without attributes)."""
        if self._tables is None:
            response = await self._session.arequest("GET", TABLES_REQUEST)
            self._tables = parse_entity_definitions(response.json())
        return self._tables

    async def table(self, name: str) -> Table:
        """One table with its attributes; `name` may be the logical or entity set name."""
        summary = resolve_table(name, await self.tables())
        logical = summary.logical_name
        cached = self._details.get(logical)
        if cached is not None:
            return cached
        # One fetch per table even when several reads start at once.  The lock is created
        # on first use, so it belongs to the loop that uses it.
        lock = self._locks.setdefault(logical, asyncio.Lock())
        async with lock:
            cached = self._details.get(logical)
            if cached is not None:
                return cached
            requests = metadata_requests(logical)

            async def fetch(url: str) -> Any:
                try:
                    # Through the adaptive limiter like every data request: sixteen at
                    # once would meet the service-protection limits before the read does.
                    async with self._session.limiter:
                        response = await self._session.arequest("GET", url)
                    return response.json()
                except ODataError as exc:
                    if exc.status == 404 and "ManyToOneRelationships" in url:
                        return {"value": []}
                    raise

            bodies = await asyncio.gather(*(fetch(url) for url in requests.values()))
            table = parse_entity_definition(**dict(zip(requests, bodies, strict=True)))
            self._details[logical] = table
            return table

    def cached(self, logical_name: str) -> Table | None:
        """A table's details if already fetched."""
        return self._details.get(logical_name)
