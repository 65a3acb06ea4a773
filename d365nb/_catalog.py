"""Table metadata per environment: fetched once, kept in memory and on disk, checked.

The list of tables is fetched once; a table's details (attributes, option sets, keys,
relationships) the first time it is read or written, with the requests
`_metadata.metadata_requests()` names, sent as one `$batch` (one request against the
service-protection limits; one by one, concurrently, where a batch fails).  Both are cached **per
environment** (the Web API root), not per connection: in memory for every connection of
the process, and on disk (one owner-only JSON file per environment, in
`default_metadata_dir()`, beside the token cache) so that the next kernel or process reads
without asking again.  The cache holds the service's answers verbatim and parses them on
load.

An entry is trusted for `ttl` seconds (default `METADATA_TTL`) and, within that, only while
the environment's metadata version is the one seen when it was cached: reads ask for the
`Microsoft.Dynamics.CRM.globalmetadataversion` annotation with their first page and call
`check_version()`, which drops the entry when the version moved.  `refresh()` (and
`read(..., refresh_metadata=True)`) forgets it.  Metadata is schema, not data, but the file
is still written owner-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ._exceptions import BatchFormatError, ConfigError, D365Error, ODataError
from ._metadata import (
    TABLES_REQUEST,
    Table,
    metadata_requests,
    parse_entity_definition,
    parse_entity_definitions,
    resolve_table,
)
from ._multipart import (
    BatchRequest,
    BatchResponse,
    decode_batch_response,
    encode_batch_request,
)
from ._session import Session

if TYPE_CHECKING:
    import httpx
    import pandas as pd

__all__ = ["METADATA_TTL", "Catalog", "Reader", "default_metadata_dir"]

#: Seconds a cached table (or the list of tables) is used without asking the service.
METADATA_TTL = 3600.0
_FORMAT = 1

# Process-wide: {environment key: entry}; shared by every connection to that environment.
_MEMORY: dict[str, dict[str, Any]] = {}
_MEMORY_LOCK = threading.Lock()


def default_metadata_dir() -> Path:
    """The per-user folder for metadata caches (`D365NB_METADATA_CACHE_DIR` overrides it):
    `metadata/` beside the token cache's `tokens/`."""
    env = os.environ.get("D365NB_METADATA_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("d365nb")) / "metadata"


def _empty() -> dict[str, Any]:
    return {"format": _FORMAT, "tables": None, "tables_at": 0.0, "details": {}}


class Catalog:
    """Table metadata for one environment, fetched lazily and cached.

    **Parameters:**

    * **session** - the session (connection) that fetches.
    * **directory** - where the cache file lives: `True` for `default_metadata_dir()`,
      a folder, or `False` for memory only (still shared by the process's connections).
    * **ttl** - seconds an entry is used without asking the service again.
    """

    def __init__(
        self,
        session: Session,
        *,
        directory: bool | str | os.PathLike[str] = True,
        ttl: float = METADATA_TTL,
    ) -> None:
        self._session = session
        self.ttl = ttl
        self._key = session.api_root.lower().rstrip("/")
        if directory is False:
            self.path: Path | None = None
        else:
            folder = default_metadata_dir() if directory is True else Path(os.fspath(directory))
            digest = hashlib.sha256(self._key.encode()).hexdigest()[:24]
            self.path = folder / f"{digest}.json"
        # Memory is shared by the catalogs of one environment *and* one cache folder.
        self._memory_key = f"{self._key}|{self.path}"
        self._tables: dict[str, Table] | None = None
        self._details: dict[str, Table] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: Requests sent for metadata by this catalog (tests and benchmarks read it).
        self.requests = 0
        self._fetched_tables = False  # this catalog asked for the list (not from a cache)
        self._stale_tables = False
        self._fetched: set[str] = set()

    # -- the shared entry ---------------------------------------------------------

    def _entry(self) -> dict[str, Any]:
        """This environment's entry: memory first, else the file, else empty."""
        with _MEMORY_LOCK:
            entry = _MEMORY.get(self._memory_key)
            if entry is None:
                entry = self._load() or _empty()
                _MEMORY[self._memory_key] = entry
            return entry

    def _load(self) -> dict[str, Any] | None:
        if self.path is None:
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            return None
        data.setdefault("details", {})
        return data

    def _save(self) -> None:
        """Write the entry (atomically, owner-only); merge what another process added."""
        if self.path is None:
            return
        entry = self._entry()
        with _MEMORY_LOCK:
            on_disk = self._load() or _empty()
            details = dict(on_disk.get("details", {}))
            details.update(entry["details"])
            now = time.time()
            details = {k: v for k, v in details.items() if now - v.get("at", 0) < self.ttl}
            data = dict(entry, details=details)
            text = json.dumps(data, separators=(",", ":"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                os.chmod(self.path.parent, 0o700)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".metadata-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            pass  # a cache that cannot be written only costs the next process a fetch

    def _fresh(self, at: Any) -> bool:
        return isinstance(at, (int, float)) and 0 <= time.time() - at < self.ttl

    # -- public -------------------------------------------------------------------

    @property
    def dop_hint(self) -> int | None:
        """The service's `x-ms-dop-hint` as last seen in this environment (kept with the
        metadata, so a new process's first requests start at it), or None."""
        hint = self._entry().get("dop_hint")
        return hint if isinstance(hint, int) and not isinstance(hint, bool) and hint >= 1 else None

    def remember_dop_hint(self, hint: int) -> None:
        """Keep a new `x-ms-dop-hint` (written to disk only when it changed)."""
        entry = self._entry()
        if entry.get("dop_hint") == hint:
            return
        with _MEMORY_LOCK:
            entry["dop_hint"] = hint
        self._save()

    def refresh(self, logical_name: str | None = None) -> None:
        """Forget the cached metadata (one table's, or everything); the next use fetches."""
        entry = self._entry()
        with _MEMORY_LOCK:
            if logical_name is None:
                entry["tables"], entry["tables_at"] = None, 0.0
                entry["details"].clear()
                self._tables = None
                self._details.clear()
            else:
                entry["details"].pop(logical_name, None)
                self._details.pop(logical_name, None)
        if self.path is not None:
            with contextlib.suppress(OSError):
                if logical_name is None:
                    self.path.unlink()
        if logical_name is not None:
            self._drop_on_disk(logical_name)

    def _drop_on_disk(self, logical_name: str) -> None:
        if self.path is None:
            return
        data = self._load()
        if data is None or logical_name not in data.get("details", {}):
            return
        self._save_without(logical_name)

    def _save_without(self, logical_name: str) -> None:
        if self.path is None:
            return
        with _MEMORY_LOCK:
            data = self._load() or _empty()
            data["details"].pop(logical_name, None)
            text = json.dumps(data, separators=(",", ":"))
        with contextlib.suppress(OSError):
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".metadata-")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)

    async def _get(self, url: str) -> Any:
        self.requests += 1
        # Through the adaptive limiter like every data request.
        async with self._session.limiter:
            response = await self._session.arequest("GET", url)
        return response.json()

    async def _batch(self, urls: list[str]) -> list[Any] | None:
        """The answers to GET `urls` sent as one `$batch` (one request for the service's
        limits, one round trip), or None when the batch does not work out."""
        root = self._session.api_root
        content_type, body = encode_batch_request([BatchRequest("GET", root + u) for u in urls])
        self.requests += 1
        try:
            async with self._session.limiter:
                response = await self._session.arequest(
                    "POST", "$batch", content=body, headers={"Content-Type": content_type}
                )
            items = decode_batch_response(
                response.content, response.headers.get("content-type", "")
            )
        except (D365Error, BatchFormatError, ValueError):
            return None
        out: list[Any] = []
        for url, item in zip(urls, items, strict=False):
            if not isinstance(item, BatchResponse):
                return None
            if item.status == 404 and "ManyToOneRelationships" in url:
                out.append({"value": []})
            elif item.status == 200:
                out.append(item.json())
            else:
                return None
        return out if len(out) == len(urls) else None

    async def tables(self) -> dict[str, Table]:
        """Every table, by logical name (without attributes)."""
        if self._tables is not None:
            return self._tables
        entry = self._entry()
        body = entry.get("tables")
        if body is None or not self._fresh(entry.get("tables_at")) or self._stale_tables:
            self._stale_tables = False
            self._fetched_tables = True
            body = await self._get(TABLES_REQUEST)
            with _MEMORY_LOCK:
                entry["tables"], entry["tables_at"] = body, time.time()
            self._save()
        self._tables = parse_entity_definitions(body)
        return self._tables

    def cached_table(self, name: str) -> Table | None:
        """`name`'s details if cached and fresh (no I/O); the name as `table()` takes it."""
        entry = self._entry()
        body = entry.get("tables")
        if self._tables is None and (body is None or not self._fresh(entry.get("tables_at"))):
            return None
        try:
            tables = self._tables if self._tables is not None else parse_entity_definitions(body)
            logical = resolve_table(name, tables).logical_name
        except Exception:
            return None
        found = self._details.get(logical)
        if found is not None:
            return found
        cached = entry["details"].get(logical)
        if cached is None or not self._fresh(cached.get("at")):
            return None
        try:
            table = parse_entity_definition(**cached["bodies"])
        except Exception:  # a cache file from another version or damaged: fetch again
            return None
        self._details[logical] = table
        return table

    def stale_table(self, logical_name: str) -> Table | None:
        """The details cached for a table even past the TTL or the version (no I/O): a
        guess of what a fetch will return (see `_prefetch`), never used as metadata."""
        cached = self._entry()["details"].get(logical_name)
        try:
            return None if cached is None else parse_entity_definition(**cached["bodies"])
        except Exception:  # a cache file from another version or damaged
            return None

    def fetched(self, logical_name: str) -> bool:
        """True when this catalog fetched the table's details itself (not from a cache)."""
        return logical_name in self._fetched

    async def table(self, name: str, *, refresh: bool = False) -> Table:
        """One table with its attributes; `name` may be the logical or entity set name.

        **Parameters:**

        * **name** - the table's logical name (`account`) or entity set (`accounts`).
        * **refresh** - fetch the table's details again even if cached.
        """
        try:
            summary = resolve_table(name, await self.tables())
        except ConfigError:
            if self._fetched_tables:
                raise
            # The cached list may predate the table (created since): ask once more.
            self._tables, self._stale_tables = None, True
            summary = resolve_table(name, await self.tables())
        logical = summary.logical_name
        if refresh:
            self.refresh(logical)
        else:
            found = self.cached_table(logical)
            if found is not None:
                return found
        # One fetch per table even when several reads start at once.  The lock is created
        # on first use, so it belongs to the loop that uses it.
        lock = self._locks.setdefault(logical, asyncio.Lock())
        async with lock:
            found = None if refresh else self.cached_table(logical)
            if found is not None:
                return found
            requests = metadata_requests(logical)

            async def fetch(url: str) -> Any:
                try:
                    return await self._get(url)
                except ODataError as exc:
                    if exc.status == 404 and "ManyToOneRelationships" in url:
                        return {"value": []}
                    raise

            urls = list(requests.values())
            bodies = await self._batch(urls)
            if bodies is None:  # no $batch here: the same requests one by one, at once
                bodies = list(await asyncio.gather(*(fetch(url) for url in urls)))
            named = dict(zip(requests, bodies, strict=True))
            table = parse_entity_definition(**named)
            entry = self._entry()
            with _MEMORY_LOCK:
                entry["details"][logical] = {"at": time.time(), "version": None, "bodies": named}
            self._details[logical] = table
            self._fetched.add(logical)
            self._save()
            return table

    def check_version(self, logical_name: str, version: str | None) -> bool:
        """True if `version` (the service's `globalmetadataversion`) matches the cached
        table's; the first version seen is recorded.  False drops the entry: fetch again."""
        if version is None:
            return True
        entry = self._entry()
        cached = entry["details"].get(logical_name)
        if cached is None:
            return True
        known = cached.get("version")
        if known is None:
            with _MEMORY_LOCK:
                cached["version"] = version
            self._save()
            return True
        if known == version:
            return True
        self.refresh(logical_name)
        return False

    def cached(self, logical_name: str) -> Table | None:
        """A table's details if this catalog already fetched or used them (no I/O)."""
        return self._details.get(logical_name)


class Reader(Protocol):
    """What the features built on the read verb (`_changes`, `_aggregation`) need of a
    connection: its Web API root, its catalog, `arequest` and `aread`.  `Connection`
    is one; naming the protocol here keeps those modules below `_client`."""

    @property
    def api_root(self) -> str:
        """The Web API root."""

    @property
    def catalog(self) -> Catalog:
        """The connection's metadata cache."""

    @property
    def arequest(self) -> Callable[..., Awaitable[httpx.Response]]:
        """`Session.arequest`."""

    @property
    def aread(self) -> Callable[..., Awaitable[pd.DataFrame]]:
        """`Connection.aread`."""
