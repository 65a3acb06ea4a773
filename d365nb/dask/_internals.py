"""The one door from `d365nb.dask` into d365nb's private modules.

Everything else in this package uses only the public `Connection` API.  What it cannot
(the engine's partition column and query encoding, the metadata-only empty frame that
gives `meta` its dtypes, the connection's current access token and trust store, the hook
between a connection's retry layer and the network) is reached through the functions
below, so that a change of the core's layout means changing this file alone.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd

from .._client import Connection, connection_by_id
from .._frames import FrameBuilder
from .._odata import encode_query
from .._readplan import PARTITION_COLUMN
from .._sync import run_sync
from .._transport import parse_retry_after

if TYPE_CHECKING:
    from .._auth import AccessToken
    from .._metadata import Table

__all__ = [
    "PARTITION_COLUMN",
    "access_token",
    "connection_by_id",
    "empty_frame",
    "encode_query",
    "parse_retry_after",
    "run_sync",
    "table_of",
    "trusted_certificates",
    "wrap_transport",
]


async def table_of(conn: Connection, name: str) -> Table:
    """The table's metadata (cached by the connection's catalog)."""
    return await conn.catalog.table(name)


def empty_frame(
    table: Table,
    *,
    select: Sequence[str] | None,
    formatted: bool = False,
    dtypes: Mapping[str, Any] | None = None,
    decimal: bool = False,
) -> pd.DataFrame:
    """The frame `conn.read()` returns for no rows: its columns and dtypes, from metadata."""
    builder = FrameBuilder(
        table,
        select=list(select) if select else None,
        formatted=formatted,
        dtypes=dtypes,
        decimal=decimal,
    )
    return builder.finish()


async def access_token(conn: Connection, *, min_life: float) -> AccessToken:
    """The connection's access token, refreshed first when it has under `min_life` s left."""
    token = await conn._token()
    if token.expires_within(min_life):
        try:
            token = await conn._token(force_refresh=True, stale=token)
        except Exception:  # a given token that nothing can renew: hand out what there is
            return token
    return token


def trusted_certificates(conn: Connection) -> bytes | bool:
    """The CA certificates the connection trusts (DER, concatenated); False if it trusts any.

    Workers rebuild the same trust from them (`ssl.create_default_context(cadata=...)`):
    certificates are public, so they may travel in a task graph.
    """
    context: ssl.SSLContext = conn._ssl_context
    if context.verify_mode == ssl.CERT_NONE:
        return False
    return b"".join(context.get_ca_certs(binary_form=True))


def wrap_transport(
    conn: Connection, wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]
) -> None:
    """Put `wrap(inner)` between the connection's retry layer and the network.

    Every attempt the retry layer makes (first tries and retries alike) then passes
    through the wrapper, which sees each answer's status and headers.  Applies to every
    HTTP client the connection builds (one per event loop), through the session's
    `transport_wrapper` hook: call it before the connection's first request.  A second
    call puts its wrapper above the first one's.
    """
    before = conn.transport_wrapper
    if before is None:
        conn.transport_wrapper = wrap
    else:
        conn.transport_wrapper = lambda inner: wrap(before(inner))
