"""`Connection`: one signed-in link to a Dataverse environment (async core, sync facade).

The async methods (`asign_in`, `awhoami`, `arequest`, ...) do the work; the plain ones
(`sign_in`, `whoami`, ...) run them through `_sync.run_sync`, so notebook users never
write `await`.  Creating a connection does no network I/O.

One `httpx.AsyncClient` is kept per event loop (an AsyncClient must not be shared between
loops), each pinned to the configured service origin with the retry policy of
`_transport`.  The bearer token is added per request by the client's auth hook, and a 401
triggers one forced refresh shared by every request that saw it.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import pandas as pd

from ._auth import AccessToken, AuthCodeFlow, Authenticator, CredentialLike, DeviceCode
from ._exceptions import AuthError, InsecureTransportWarning, ODataError, TransportError
from ._tokencache import TokenCacheFile
from ._transport import DEFAULT_RETRY_POLICY, AdaptiveLimiter, RetryPolicy, RetryTransport

if TYPE_CHECKING:
    from ._config import Settings

__all__ = ["Connection", "WhoAmI", "connect", "connection_by_id", "ssl_context_for"]

# Frames remember the connection they came from by id (attrs must stay copyable).
_CONNECTIONS: weakref.WeakValueDictionary[str, Connection] = weakref.WeakValueDictionary()


def connection_by_id(conn_id: str | None) -> Connection | None:
    """The live connection a DataFrame was read through, if it still exists."""
    return _CONNECTIONS.get(conn_id) if conn_id else None


@dataclass
class _LoopClient:
    loop: weakref.ref[asyncio.AbstractEventLoop]
    client: httpx.AsyncClient
    limiter: AdaptiveLimiter


def _report_wait(seconds: float, reason: str) -> None:
    """Show the transport's waits (429 Retry-After, backoff) on the running read's bar."""
    from ._reader import progress_var

    bar = progress_var.get()
    if bar is not None:
        bar.set_postfix_str(f"{reason}: waiting {seconds:.0f} s", refresh=True)


VerifyTypes = bool | str | os.PathLike[str] | ssl.SSLContext

_ODATA_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
    # Dataverse answers 304 to conditional GETs otherwise cached; always fetch fresh.
    "If-None-Match": "null",
}


def _caller_stacklevel() -> int:
    """The `stacklevel` that points a warning at the first frame outside d365nb.

    Called from the function that warns; the warning then names the user's own line (the
    `connect(...)` cell), however many d365nb frames lie in between.
    """
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame = sys._getframe(1)  # the warning function: stacklevel 1
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back
        level += 1
    return level


def ssl_context_for(verify: VerifyTypes) -> ssl.SSLContext:
    """An SSL context from what users pass as `verify=`.

    `True`: the certifi bundle (as httpx does); a path: that CA file (the sandbox's, or a
    corporate proxy's); an `SSLContext`: itself; `False`: no verification, with a loud
    `InsecureTransportWarning`.  Environment variables such as REQUESTS_CA_BUNDLE are
    deliberately not consulted: an explicit `verify=` must win.
    """
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        warnings.warn(
            "TLS certificate verification is OFF: anyone on the network path can read your "
            "tokens and data. Pass verify='path/to/ca.pem' instead.",
            InsecureTransportWarning,
            stacklevel=_caller_stacklevel(),
        )
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if verify is True:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    path = Path(os.fspath(verify)).expanduser()
    if not path.is_file():
        from ._exceptions import ConfigError

        raise ConfigError(
            f"verify={str(path)!r} is not a file.",
            field="verify",
            hint="Pass the path of a PEM file with the CA certificate(s) to trust.",
        )
    return ssl.create_default_context(cafile=str(path))


@dataclass(frozen=True)
class WhoAmI:
    """The answer to WhoAmI, with the user's name when the service tells it."""

    user_id: str
    business_unit_id: str
    organization_id: str
    name: str | None = None
    business_unit: str | None = None

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in (
                ("User", self.name or self.user_id),
                ("User id", self.user_id),
                ("Business unit", self.business_unit or self.business_unit_id),
                ("Organization id", self.organization_id),
            )
        )
        return f"<table class='d365nb-whoami'>{rows}</table>"


class _BearerAuth(httpx.Auth):
    """Adds the bearer token; on 401 refreshes once and retries the request."""

    requires_request_body = True

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.connection._token()
        request.headers["Authorization"] = f"Bearer {token.token}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
            token = await self.connection._token(force_refresh=True, stale=token)
            request.headers["Authorization"] = f"Bearer {token.token}"
            yield request

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:  # pragma: no cover - async only
        raise RuntimeError("d365nb's connection is async; use its sync methods instead")
        yield request


class Connection:
    """A link to one Dataverse environment.  Build it with `d365nb.connect(...)`.

    **Parameters:**

    * **settings** - the resolved `Settings` (`conn.settings`; secrets hidden in its repr).
    * **verify** - `True`, a CA file path or an `ssl.SSLContext`; `False` only with a warning.
    * **credential** - an azure-identity style credential to take tokens from.
    * **token_cache** - `True` (per-user cache folder), a folder path, or `False` (memory).
    * **timeout** - seconds for each HTTP request.
    * **max_concurrency** - the most requests in flight at once (the adaptive limit
      starts lower and never exceeds the service's `x-ms-dop-hint`).
    * **retry** - a `RetryPolicy` for 429/503/network errors.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        verify: VerifyTypes = True,
        credential: CredentialLike | None = None,
        token_cache: bool | str | os.PathLike[str] = True,
        timeout: float = 120.0,
        max_concurrency: int = 16,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._settings = settings
        self.retry = retry or DEFAULT_RETRY_POLICY
        self._ssl_context = ssl_context_for(verify)
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        persist = token_cache is not False
        directory = None if isinstance(token_cache, bool) else Path(os.fspath(token_cache))
        self._cache = TokenCacheFile(
            settings.authority or "",
            settings.client_id or "",
            settings.resource,
            settings.grant or "",
            directory=directory,
            persist=persist,
        )
        self.auth = Authenticator(
            settings, ssl_context=self._ssl_context, cache=self._cache, credential=credential
        )
        self._clients: dict[int, _LoopClient] = {}
        self._clients_lock = threading.Lock()
        self._pending_auth_code: AuthCodeFlow | None = None
        self._whoami: WhoAmI | None = None
        self.prompt: Callable[[Any], None] = _default_prompt
        self._closed = False
        self.id = uuid.uuid4().hex
        _CONNECTIONS[self.id] = self
        from ._catalog import Catalog

        self.catalog = Catalog(self)

    # -- presentation -------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The resolved connection settings (secrets hidden in their repr)."""
        return self._settings

    @property
    def api_root(self) -> str:
        """The Web API root, e.g. `https://org.crm.dynamics.com/api/data/v9.2/`."""
        return str(self._settings.api_root)

    def connection_string(self, *, tokens: bool = False) -> str:
        """The vendor driver's `Key=Value;` string for these settings, without secrets.

        `d365nb.connect()` reads it back, and a JDBC/ODBC driver takes its settings.
        `tokens=True` adds `AccessToken=` and `RefreshToken=` from this connection's
        sign-in (the driver's access-token flow) and warns: the string is then a
        credential, not to be saved in a notebook.

        **Parameters:**

        * **tokens** - also write the current access token and the refresh token.
        """
        if not tokens:
            return self._settings.to_connection_string()
        warnings.warn(
            "The connection string holds an access token and a refresh token: treat it as a "
            "password (keep it out of notebooks, logs and version control).",
            UserWarning,
            stacklevel=2,
        )
        access = self.auth.current.token if self.auth.signed_in and self.auth.current else None
        return self._settings.to_connection_string(
            access_token=access, refresh_token=self.auth.refresh_token()
        )

    def _status(self) -> dict[str, Any]:
        ident = self.auth.identity()
        expires = ident.get("expires_on")
        return {
            "org": self._settings.org_url,
            "grant": self._settings.grant,
            "signed_in": self.auth.signed_in,
            "who": (self._whoami.name if self._whoami else None)
            or ident.get("name")
            or (f"app {ident['app_id']}" if ident.get("is_app") and ident.get("app_id") else None),
            "expires": time.strftime("%H:%M:%S UTC", time.gmtime(expires)) if expires else None,
        }

    def __repr__(self) -> str:
        s = self._status()
        who = f", as={s['who']!r}" if s["who"] else ""
        exp = f", token_expires={s['expires']!r}" if s["signed_in"] and s["expires"] else ""
        state = "signed in" if s["signed_in"] else "not signed in"
        return f"<Connection {s['org']} grant={s['grant']!r} ({state}{who}{exp})>"

    def _repr_html_(self) -> str:
        import html

        s = self._status()
        state = (
            f"<span style='color:green'>signed in</span> as {html.escape(str(s['who']))}, "
            f"token valid until {s['expires']}"
            if s["signed_in"]
            else "<span style='color:#b60'>not signed in</span> (run <code>conn.sign_in()</code>)"
        )
        return (
            f"<div class='d365nb-connection'><b>d365nb connection</b> to "
            f"<code>{html.escape(str(s['org']))}</code> &middot; grant "
            f"<code>{html.escape(str(s['grant']))}</code> &middot; {state}</div>"
        )

    # -- tokens and HTTP ----------------------------------------------------------

    async def _token(
        self, *, force_refresh: bool = False, stale: AccessToken | None = None
    ) -> AccessToken:
        if force_refresh and stale is not None and self.auth.current is not stale:
            current = self.auth.current
            if current is not None:
                return current  # someone else already refreshed after this 401
        try:
            return await self.auth.token(force_refresh=force_refresh)
        except AuthError:
            if not force_refresh and self.auth.interactive and not self.auth.signed_in:
                await self.asign_in()
                return await self.auth.token()
            raise

    def _loop_client(self) -> _LoopClient:
        if self._closed:
            raise TransportError("This connection is closed.", hint="Create a new one.")
        loop = asyncio.get_running_loop()
        key = id(loop)
        with self._clients_lock:
            entry = self._clients.get(key)
            if entry is not None and entry.loop() is loop and not entry.client.is_closed:
                return entry
            limiter = AdaptiveLimiter(initial=2, maximum=self.max_concurrency)
            entry = _LoopClient(weakref.ref(loop), self._build_client(limiter), limiter)
            self._clients[key] = entry
            return entry

    def _client(self) -> httpx.AsyncClient:
        return self._loop_client().client

    @property
    def limiter(self) -> AdaptiveLimiter:
        """The adaptive concurrency limit of this event loop's HTTP client."""
        return self._loop_client().limiter

    @property
    def transport_stats(self) -> Any:
        """Counters of this loop's transport: requests, attempts, 429s seen, waits."""
        transport = self._loop_client().client._transport
        return getattr(transport, "stats", None)

    def _build_client(self, limiter: AdaptiveLimiter) -> httpx.AsyncClient:

        inner = httpx.AsyncHTTPTransport(
            verify=self._ssl_context,
            http2=False,
            limits=httpx.Limits(
                max_connections=self.max_concurrency,
                max_keepalive_connections=self.max_concurrency,
            ),
            retries=0,
        )
        transport = RetryTransport(
            inner,
            origin=self.api_root,
            policy=self.retry,
            limiter=limiter,
            on_wait=_report_wait,
        )
        return httpx.AsyncClient(
            transport=transport,
            auth=_BearerAuth(self),
            headers=_ODATA_HEADERS,
            timeout=self.timeout,
            follow_redirects=False,
            trust_env=False,
        )

    async def arequest(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one request to the Web API; relative `url`s resolve against `api_root`.

        Answers with status >= 400 raise `ODataError` with the service's code and message.
        """
        full = url if url.startswith("https://") else self.api_root + url.lstrip("/")
        client = self._client()
        try:
            response = await client.request(
                method,
                full,
                params=params,
                json=json,
                content=content,
                headers=headers,
                extensions=extensions,
            )
        except httpx.HTTPError as exc:
            raise TransportError(
                f"{method} {httpx.URL(full).path} failed: {type(exc).__name__}: {exc}",
                hint="Check the network and the Service URL; the request was retried.",
            ) from exc
        if response.status_code >= 400:
            await response.aread()
            raise odata_error_from_response(response)
        return response

    # -- sign-in ------------------------------------------------------------------

    async def asign_in(
        self,
        *,
        redirected_url: str | None = None,
        loopback: bool | None = None,
        open_browser: bool = True,
        timeout: float = 600.0,
    ) -> Connection:
        """Sign in with the configured grant; see `sign_in`."""
        grant = self._settings.grant
        if redirected_url is not None:
            flow = self._pending_auth_code
            if flow is None:
                raise AuthError(
                    "No browser sign-in is waiting for a redirected address.",
                    hint="Run conn.sign_in() first: it shows the sign-in link.",
                )
            await self.auth.finish_auth_code(flow, redirected_url)
            self._pending_auth_code = None
            return self
        if not self.auth.interactive:
            await self.auth.token()
            return self
        if grant == "device_code":
            code = await self.auth.start_device_code()
            self.prompt(code)
            await self.auth.finish_device_code(code)
            return self
        # Authorization code with PKCE.
        if loopback is None:
            loopback = not _remote_kernel()
        if loopback:
            from ._loopback import LoopbackReceiver

            with LoopbackReceiver() as receiver:
                flow = await self.auth.start_auth_code(
                    redirect_uri=receiver.redirect_uri, form_post=True
                )
                self.prompt(flow)
                if open_browser:
                    import webbrowser

                    webbrowser.open(flow.auth_uri)
                params = await asyncio.to_thread(receiver.wait, timeout)
            if params is None:
                raise AuthError(
                    "No answer from the browser sign-in in time.",
                    hint="Run conn.sign_in() again, or pass loopback=False to paste the "
                    "redirected address instead.",
                )
            await self.auth.finish_auth_code(flow, params)
            return self
        redirect = self._settings.redirect_uri or "http://localhost"
        self._pending_auth_code = await self.auth.start_auth_code(
            redirect_uri=redirect, form_post=False
        )
        self.prompt(self._pending_auth_code)
        return self

    def sign_in(
        self,
        *,
        redirected_url: str | None = None,
        loopback: bool | None = None,
        open_browser: bool = True,
        timeout: float = 600.0,
    ) -> Connection:
        """Sign in now with the configured grant (otherwise it happens on first use).

        * device code: shows a link and a code, then waits until you approve (Ctrl-C or
          the Stop button cancels);
        * authorization code on a local kernel: opens the browser and receives the answer
          on a loopback address;
        * authorization code on JupyterHub/Binder (`loopback=False`): shows the link;
          after signing in, copy the address the browser lands on and call
          `conn.sign_in(redirected_url="...")`;
        * client credentials, refresh token, access token: fetches or checks a token.
        """
        from ._sync import run_sync

        return run_sync(
            self.asign_in(
                redirected_url=redirected_url,
                loopback=loopback,
                open_browser=open_browser,
                timeout=timeout,
            )
        )

    def sign_out(self) -> None:
        """Forget this connection's tokens, in memory and in the token cache."""
        self.auth.sign_out()
        self._whoami = None

    # -- who am I -----------------------------------------------------------------

    async def awhoami(self) -> WhoAmI:
        """Async twin of `whoami`."""
        response = await self.arequest("GET", "WhoAmI")
        body = response.json()
        user_id = str(body.get("UserId"))
        name = bu_name = None
        try:
            user = await self.arequest(
                "GET", f"systemusers({user_id})", params={"$select": "fullname"}
            )
            name = user.json().get("fullname")
            bu = await self.arequest(
                "GET", f"businessunits({body.get('BusinessUnitId')})", params={"$select": "name"}
            )
            bu_name = bu.json().get("name")
        except ODataError:
            pass  # a user without read access to systemusers still gets the ids
        self._whoami = WhoAmI(
            user_id=user_id,
            business_unit_id=str(body.get("BusinessUnitId")),
            organization_id=str(body.get("OrganizationId")),
            name=name,
            business_unit=bu_name,
        )
        return self._whoami

    def whoami(self) -> WhoAmI:
        """Who the service thinks you are: user (or application user), business unit, org."""
        from ._sync import run_sync

        return run_sync(self.awhoami())

    # -- reading ------------------------------------------------------------------

    async def aread(self, entity: str, **options: Any) -> pd.DataFrame:
        """Async twin of `read`."""
        from ._reader import read_frame

        return await read_frame(self, entity, **options)

    def read(
        self,
        entity: str,
        *,
        select: Sequence[str] | None = None,
        filter: str | None = None,  # noqa: A002 - the OData name users know
        orderby: str | Sequence[str] | None = None,
        top: int | None = None,
        expand: str | Sequence[str] | None = None,
        formatted: bool = False,
        page_size: int = 5000,
        parallel: bool | int = True,
        dtypes: Mapping[str, Any] | None = None,
        decimal: bool = False,
        count: bool = False,
        progress: bool = True,
    ) -> pd.DataFrame:
        """Every row of a table (or of a query) as a typed DataFrame.

        ```python
        df = conn.read("accounts", select=["name", "revenue", "industrycode"],
                       filter=d365nb.where(revenue__gt=1_000_000))
        ```

        **Parameters:**

        * **entity** - the table: logical name (`account`) or entity set (`accounts`).
        * **select** - columns (logical names; lookups as `parentaccountid`).
        * **filter** - an OData filter; build it with `d365nb.where(...)` or `d365nb.F(...)`
          so that values are always quoted correctly.
        * **orderby**, **top**, **expand** - as in OData (`top` is honoured exactly).
        * **formatted** - add `<col>_label` columns with the service's formatted values.
        * **page_size** - rows per page (at most 5,000).
        * **parallel** - split a large read into `createdon` ranges fetched concurrently
          (`True`: 16 ranges; an int: that many; `False`: strictly sequential).
        * **dtypes** - per-column dtype overrides (e.g. `{"industrycode": "Int32"}` for
          the choice's integer values).
        * **decimal** - Money/Decimal as `decimal.Decimal` instead of float.
        * **count** - ask for `@odata.count` (in `df.attrs["d365nb"]["count"]`).
        * **progress** - a progress bar for reads of more than one page.

        A read that cannot finish raises `PartialReadError` with the rows so far and
        `resume()`.  Ctrl-C (the Stop button) does the same.
        """
        from ._reader import read_frame

        return _run_read(
            lambda: read_frame(
                self,
                entity,
                select=select,
                filter=filter,
                orderby=orderby,
                top=top,
                expand=expand,
                formatted=formatted,
                page_size=page_size,
                parallel=parallel,
                dtypes=dtypes,
                decimal=decimal,
                count=count,
                progress=progress,
            )
        )

    async def afetchxml(self, xml: str, **options: Any) -> pd.DataFrame:
        """Async twin of `fetchxml`."""
        from ._reader import read_fetchxml

        return await read_fetchxml(self, xml, **options)

    def fetchxml(
        self,
        xml: str,
        *,
        page_size: int = 5000,
        dtypes: Mapping[str, Any] | None = None,
        formatted: bool = False,
        progress: bool = True,
    ) -> pd.DataFrame:
        """Run a FetchXML query, every page (paging cookies followed), typed like `read`."""
        from ._reader import read_fetchxml

        return _run_read(
            lambda: read_fetchxml(
                self,
                xml,
                page_size=page_size,
                dtypes=dtypes,
                formatted=formatted,
                progress=progress,
            )
        )

    async def atables(self) -> pd.DataFrame:
        """Async twin of `tables`."""
        tables = await self.catalog.tables()
        rows = [
            {
                "logical_name": t.logical_name,
                "entity_set": t.entity_set_name,
                "display_name": t.display_name,
                "primary_id": t.primary_id,
                "primary_name": t.primary_name,
            }
            for t in sorted(tables.values(), key=lambda t: t.logical_name)
        ]
        frame: pd.DataFrame = pd.DataFrame(
            rows,
            columns=["logical_name", "entity_set", "display_name", "primary_id", "primary_name"],
        ).astype("string")
        return frame

    def tables(self) -> pd.DataFrame:
        """The tables of the environment: logical name, entity set, display name, keys."""
        from ._sync import run_sync

        return run_sync(self.atables())

    async def adescribe(self, table: str) -> pd.DataFrame:
        """Async twin of `describe`."""
        from ._convert import ATTRIBUTE_DTYPES

        meta = await self.catalog.table(table)
        rows = []
        for a in meta.attributes.values():
            if a.attribute_of is not None:
                continue
            kind = a.attribute_type
            if a.is_multi_choice:
                kind = "MultiSelectPicklist"
            elif a.is_date_only:
                kind = "DateOnly"
            rows.append(
                {
                    "column": a.logical_name,
                    "display_name": a.display_name,
                    "type": kind,
                    "dtype": ATTRIBUTE_DTYPES.get(kind, "object"),
                    "required": a.required_level,
                    "create": a.is_valid_for_create,
                    "update": a.is_valid_for_update,
                    "choices": len(a.options) if a.options else None,
                    "targets": ",".join(a.targets) if a.targets else None,
                    "max_length": a.max_length,
                }
            )
        frame = pd.DataFrame(rows)
        frame.attrs["d365nb"] = {
            "table": meta.logical_name,
            "keys": [list(k.key_attributes) for k in meta.keys],
        }
        ordered: pd.DataFrame = frame.sort_values("column", ignore_index=True)
        ordered.attrs = frame.attrs
        return ordered

    def describe(self, table: str) -> pd.DataFrame:
        """One row per column of `table`: type, dtype in DataFrames, writability, choices."""
        from ._sync import run_sync

        return run_sync(self.adescribe(table))

    # -- writing ------------------------------------------------------------------

    async def apush(self, df: pd.DataFrame, table: str | None = None, **options: Any) -> Any:
        """Async twin of `push`."""
        from ._write import apush

        return await apush(self, df, table, **options)

    def push(
        self,
        df: pd.DataFrame,
        table: str | None = None,
        *,
        key: str | Sequence[str] | None = None,
        mode: Literal["create", "update", "upsert", "delete"] = "upsert",
        columns: Sequence[str] | None = None,
        batch_size: int | None = None,
        parallel: bool | int | None = None,
        on_error: Literal["collect", "raise"] = "collect",
        dry_run: bool = False,
        progress: bool = True,
        force: bool = False,
    ) -> Any:
        """Write a DataFrame to a table; the same as `df.d365.push(..., conn=conn)`.

        Returns a `PushReport` (a `PushPlan` with `dry_run=True`): every row's outcome,
        `report.failed` ready to fix and push again.
        """
        from ._write import push

        return push(
            self,
            df,
            table,
            key=key,
            mode=mode,
            columns=columns,
            batch_size=batch_size,
            parallel=parallel,
            on_error=on_error,
            dry_run=dry_run,
            progress=progress,
            force=force,
        )

    # -- lifecycle ----------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the HTTP clients of the current loop (others close with their loops)."""
        with self._clients_lock:
            entries = list(self._clients.values())
            self._clients.clear()
        for entry in entries:
            if entry.loop() is asyncio.get_running_loop():
                await entry.client.aclose()
        self.auth.close()
        self._closed = True

    def close(self) -> None:
        """Release network resources."""
        with self._clients_lock:
            entries = list(self._clients.values())
            self._clients.clear()
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for entry in entries:
            loop = entry.loop()
            if loop is None or loop.is_closed() or not loop.is_running():
                continue
            future = asyncio.run_coroutine_threadsafe(entry.client.aclose(), loop)
            if loop is not current:
                try:
                    future.result(timeout=10)
                except Exception:  # closing is best effort
                    pass
        self.auth.close()
        self._closed = True

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _run_read(factory: Callable[[], Any]) -> pd.DataFrame:
    """Run a read from sync code; an interrupt (Ctrl-C, Stop) becomes `PartialReadError`.

    The reader turns its own cancellation into `PartialReadError` (rows so far, `resume()`);
    the sync runner cancels the read on KeyboardInterrupt and waits for it to unwind, so
    that error is at hand here and is raised instead of a bare KeyboardInterrupt.
    """
    from ._exceptions import PartialReadError
    from ._sync import run_sync

    caught: list[PartialReadError] = []

    async def work() -> pd.DataFrame:
        try:
            frame: pd.DataFrame = await factory()
        except PartialReadError as exc:
            caught.append(exc)
            raise
        return frame

    try:
        result: pd.DataFrame = run_sync(work)
    except KeyboardInterrupt:
        if caught:
            raise caught[0] from None
        raise
    return result


def odata_error_from_response(response: httpx.Response) -> ODataError:
    """The Web API's error body as an `ODataError` with a hint for the common cases."""
    code = message = None
    try:
        body = response.json()
        error = body.get("error", {}) if isinstance(body, dict) else {}
        code = error.get("code")
        message = error.get("message")
    except ValueError:
        message = response.text[:300] or response.reason_phrase
    status = response.status_code
    request_id = response.headers.get("REQ_ID") or response.headers.get("x-ms-service-request-id")
    hint = {
        401: "The service refused the token. For client credentials, add an application user "
        "for this app in the Power Platform admin center; check the Service URL's org.",
        403: "Your user (or application user) lacks a security role for this: ask an admin to "
        "assign one in the Power Platform admin center.",
        404: "Check the table name and the row id.",
        412: "The row changed (or exists) on the service: read it again before writing.",
        429: "Service-protection limits: wait and retry, or lower parallel=.",
    }.get(status)
    if status == 404 and code == "0x80060888":
        hint = "The resource (table or function) was not found: check its spelling."
    return ODataError(
        message or response.reason_phrase or "error",
        status=status,
        code=code,
        request_id=request_id,
        hint=hint,
    )


def _remote_kernel() -> bool:
    """True when the browser is likely not on the kernel's machine (JupyterHub, Binder)."""
    env = os.environ
    if env.get("D365NB_REMOTE_KERNEL"):
        return env["D365NB_REMOTE_KERNEL"] not in ("0", "false", "no")
    return any(
        k in env for k in ("JUPYTERHUB_USER", "JUPYTERHUB_API_URL", "BINDER_SERVICE_HOST")
    ) or (sys.platform.startswith("linux") and not env.get("DISPLAY") and "SSH_CONNECTION" in env)


def _default_prompt(item: Any) -> None:
    """Show a device code or a sign-in link: rich in a notebook, plain text elsewhere."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover - IPython ships with ipywidgets
        shell = None
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
        from IPython.display import HTML, display

        if isinstance(item, DeviceCode):
            display(HTML(item._repr_html_()))  # type: ignore[no-untyped-call]
        elif isinstance(item, AuthCodeFlow):
            import html

            display(  # type: ignore[no-untyped-call]
                HTML(  # type: ignore[no-untyped-call]
                    f"<a href='{html.escape(item.auth_uri, quote=True)}' target='_blank'>"
                    "Sign in to Dynamics 365</a>. On JupyterHub/Binder: after signing in, "
                    "copy the address the browser lands on and run "
                    '<code>conn.sign_in(redirected_url="...")</code>.'
                )
            )
        return
    if isinstance(item, DeviceCode):
        print(
            item.message or f"Open {item.verification_uri} and enter {item.user_code}",
            file=sys.stderr,
        )
    elif isinstance(item, AuthCodeFlow):
        print(f"Open this address to sign in:\n{item.auth_uri}", file=sys.stderr)


def connect(
    connection_string: str | None = None,
    /,
    *,
    profile: str | None = None,
    verify: VerifyTypes = True,
    credential: CredentialLike | None = None,
    token_cache: bool | str | os.PathLike[str] = True,
    timeout: float = 120.0,
    max_concurrency: int = 16,
    retry: RetryPolicy | None = None,
    **settings: Any,
) -> Connection:
    """A `Connection` from keyword settings, a vendor-style connection string or a profile.

    ```python
    conn = d365nb.connect(service_url="https://org.crm.dynamics.com",
                          client_id="...", tenant="contoso.onmicrosoft.com")
    conn = d365nb.connect("ServiceURL=https://...;ClientID=...;TokenURI=POST https://...;")
    ```

    **Parameters:**

    * **connection_string** - `Key=Value;` pairs as vendor drivers take them.
    * **profile** - a saved profile's name (profiles never hold secrets).
    * **verify** - `True`, a CA file path or an `ssl.SSLContext` to trust.
    * **credential** - an azure-identity style credential (`get_token(*scopes)`).
    * **token_cache** - `True` (per-user folder), a folder path, or `False`.
    * **timeout** - seconds for each HTTP request.
    * **max_concurrency** - the most requests in flight at once.
    * **retry** - a `RetryPolicy` (attempts, total wait) for 429/503/network errors.
    * **settings** - any `Settings` field: service_url, client_id, client_secret, tenant,
      auth_uri, token_uri, scope, grant, access_token, refresh_token, redirect_uri,
      api_version.

    No network I/O happens until the first request or `conn.sign_in()`.
    """
    from ._config import Settings

    if credential is not None:
        settings.setdefault("grant", "credential")
    resolved = Settings.resolve(connection_string, profile=profile, **settings)
    return Connection(
        resolved,
        verify=resolved.ca_cert if verify is True and resolved.ca_cert else verify,
        credential=credential,
        token_cache=token_cache,
        timeout=timeout,
        max_concurrency=max_concurrency,
        retry=retry,
    )
