"""The first page of a read asked for while the table's metadata is still being fetched.

With the table's details cached, a read's first request is its first data page.  Without
them (a cold cache: a new environment, process or table, or past the TTL), the details
take a round trip of their own.  Rather than wait, `cold_prefetch()` builds the first
page's request from what is known already - the list of tables (entity set, primary key
and primary names) and the names the caller selected, with lookups recognised by name
(`_readplan.guess_table`) - and sends it at once.  `_reader.read_frame` then builds the
request again from the real metadata and uses the prefetched response only when both are
the same request (same URL, same headers); otherwise it is dropped and the page asked for
again, so a wrong guess costs one request and never a wrong row.  The raw response is
parsed only once the metadata is there.  Details cached before, past their TTL, are a better guess
than names, and are used first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from ._catalog import Catalog
from ._exceptions import ConfigError
from ._metadata import resolve_table
from ._readplan import first_request, guess_table, wire_request
from ._session import Session
from ._transport import check_same_origin
from ._types import SelectTypes

__all__ = ["Prefetch", "cold_prefetch", "get_bytes"]


async def get_bytes(session: Session, url: str, headers: Mapping[str, str]) -> bytes:
    """GET `url` through the connection's limiter; the response body as it came.

    httpx leaves each response in a reference cycle with its bound stream, so a page's
    body would stay alive until the next full garbage collection (on a 1M-row read, about
    200 MB of pages at once).  Replacing the spent stream breaks the cycle: the body goes
    as soon as the caller drops it.
    """
    check_same_origin(url, session.api_root)
    async with session.limiter:
        response = await session.arequest("GET", url, headers=headers)
        body = await response.aread()
    response.stream = httpx.ByteStream(b"")
    return body


@dataclass
class Prefetch:
    """A first page in flight: its request and the task that fetches it."""

    url: str
    headers: dict[str, str]
    task: asyncio.Task[bytes]

    def matches(self, url: str, headers: dict[str, str]) -> bool:
        """True when the real metadata builds this very request."""
        return self.url == url and self.headers == headers

    def discard(self) -> None:
        """Drop the page (cancel the request if it is still running)."""
        if not self.task.done():
            self.task.cancel()

    async def drop(self, *, wait: float = 10.0) -> None:
        """Drop the page, letting a request still running finish (up to `wait` seconds).

        Cancelling a request mid-flight can leave its socket unclosed (a cancel during
        httpcore's TLS handshake skips the close), so only a read that is itself being
        cancelled (Ctrl-C) cancels the page at once.
        """
        if self.task.done():
            return
        current = asyncio.current_task()
        cancelling = getattr(current, "cancelling", lambda: 0)  # Python 3.11+
        if current is None or cancelling():
            self.task.cancel()
            return
        try:
            await asyncio.wait({self.task}, timeout=wait)
        finally:
            self.discard()


def _retrieve(task: asyncio.Task[bytes]) -> None:
    # A dropped prefetch's failure is not an error of the read: mark it retrieved.
    with contextlib.suppress(BaseException):
        task.exception()


async def cold_prefetch(
    session: Session,
    catalog: Catalog,
    name: str,
    *,
    select: SelectTypes,
    filter: str | None,  # noqa: A002 - the OData name
    orderby: str | Sequence[str] | None,
    top: int | None,
    expand: str | Sequence[str] | None,
    count: bool,
    formatted: bool,
    page_size: int,
    parallel: bool | int,
) -> Prefetch | None:
    """Send the first page of a read of `name` now, when its details are not cached.

    None when they are cached (the read sends its first page itself), or when the guess
    cannot make a request (an unknown table: the read raises as usual).  The list of
    tables is fetched (or read from the cache) first: the request needs the entity set.
    """
    if catalog.cached_table(name) is not None:
        return None
    try:
        tables = await catalog.tables()
        summary = resolve_table(name, tables)
        guess = catalog.stale_table(summary.logical_name) or guess_table(
            summary, tables, list(select) if select else None
        )
        wire = wire_request(
            guess,
            select=select,
            filter=filter,
            orderby=orderby,
            top=top,
            expand=expand,
            count=count,
            formatted=formatted,
            page_size=page_size,
            lookup_names={k: t.primary_name for k, t in tables.items() if t.primary_name},
        )
    except ConfigError:
        return None
    first = first_request(
        session.api_root,
        guess,
        wire,
        select=select,
        orderby=orderby,
        top=top,
        parallel=parallel,
        prefer=None,
        version=True,
    )
    task = asyncio.ensure_future(get_bytes(session, first.url, first.first_headers))
    task.add_done_callback(_retrieve)
    return Prefetch(first.url, first.first_headers, task)
