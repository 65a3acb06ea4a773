"""`Session`: the signed-in HTTP link to one Web API, below the read and write engines.

One `httpx.AsyncClient` is kept per event loop (an AsyncClient must not be shared between
loops), each pinned to the configured service origin with the retry policy of
`_transport`.  `Session.transport_wrapper` puts a layer between that retry layer and the
network (the Dask gate, `d365nb.dask`), in every per-loop client alike.  The bearer token
is added per request by the client's auth hook, and a 401 triggers one forced refresh
shared by every request that saw it.  Answers with status >= 400 become `ODataError`
(`odata_error_from_response()`).

`Connection` (`_client.py`) is a `Session` with the verbs (`read`, `push`, ...) on top; the
engines (`_catalog`, `_reader`, `_write`) take a `Session` and never name `Connection`.
Frames remember the session they were read through by id (`session_by_id()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import ssl
import sys
import threading
import uuid
import warnings
import weakref
import webbrowser
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import certifi
import httpx

from ._auth import AccessToken, AuthCodeFlow, Authenticator, CredentialLike, DeviceCode
from ._config import Settings
from ._environment import caller_stacklevel, in_notebook, remote_kernel
from ._exceptions import (
    AuthError,
    ConfigError,
    InsecureTransportWarning,
    ODataError,
    TransportError,
)
from ._loopback import LoopbackReceiver
from ._multipart import BatchRequest, BatchResponse, decode_batch_response, encode_batch_request
from ._progress import report_wait
from ._sync import blocking
from ._tokencache import TokenCacheFile
from ._tokens import known_transport_error
from ._transport import (
    DEFAULT_RETRY_POLICY,
    AdaptiveLimiter,
    RetryPolicy,
    RetryTransport,
    TransportStats,
)
from ._types import VerifyTypes
from ._urls import MAX_BATCH_GET_URL, MAX_GET_URL

if TYPE_CHECKING:
    from typing_extensions import Self


__all__ = [
    "DopHints",
    "MAX_BATCH_GET_URL",
    "MAX_GET_URL",
    "Session",
    "TransportWrapper",
    "odata_error_from_response",
    "session_by_id",
    "ssl_context_for",
]


# Frames remember the session they came from by id (attrs must stay copyable).
_SESSIONS: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()


def session_by_id(session_id: str | None) -> Session | None:
    """The live session (connection) a DataFrame was read through, if it still exists."""
    return _SESSIONS.get(session_id) if session_id else None


#: Wraps the network transport beneath the retry layer (`Session.transport_wrapper`).
TransportWrapper = Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]


@dataclass
class _LoopClient:
    loop: weakref.ref[asyncio.AbstractEventLoop]
    client: httpx.AsyncClient
    limiter: AdaptiveLimiter
    retry: RetryTransport


_ODATA_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
    # Dataverse answers 304 to conditional GETs otherwise cached; always fetch fresh.
    "If-None-Match": "null",
}


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
            stacklevel=caller_stacklevel(),
        )
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if verify is True:
        return ssl.create_default_context(cafile=certifi.where())
    path = Path(os.fspath(verify)).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"verify={str(path)!r} is not a file.",
            field="verify",
            hint="Pass the path of a PEM file with the CA certificate(s) to trust.",
        )
    return ssl.create_default_context(cafile=str(path))


class DopHints(Protocol):
    """Keeps the service's `x-ms-dop-hint` as last seen (`_catalog.Catalog` does)."""

    @property
    def dop_hint(self) -> int | None: ...

    def remember_dop_hint(self, hint: int) -> None: ...


class _BearerAuth(httpx.Auth):
    """Adds the bearer token; on 401 refreshes once and retries the request."""

    requires_request_body = True

    def __init__(self, session: Session) -> None:
        self.session = session

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.session._token()
        request.headers["Authorization"] = f"Bearer {token.token}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
            token = await self.session._token(force_refresh=True, stale=token)
            request.headers["Authorization"] = f"Bearer {token.token}"
            yield request

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:  # pragma: no cover - async only
        raise RuntimeError("d365nb's connection is async; use its sync methods instead")
        yield request


class Session:
    """The HTTP side of a connection: tokens, one client per event loop, `arequest()`.

    Parameters as `Connection` (which is a `Session` with the verbs on top), plus
    **transport_wrapper** (see the `transport_wrapper` property).
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
        transport_wrapper: TransportWrapper | None = None,
    ) -> None:
        self._settings = settings
        self._transport_wrapper = transport_wrapper
        #: Where the service's `x-ms-dop-hint` is kept between processes (a `Connection`:
        #: its catalog), so that a new process's first requests start at it; None: nowhere.
        self.hints: DopHints | None = None
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
        self.prompt: Callable[[Any], None] = _default_prompt
        self._closed = False
        # The service's error shape (issue 23: F&O connections put the F&O reader's here).
        self._error_from_response: Callable[[httpx.Response], ODataError] = (
            odata_error_from_response
        )
        self.id = uuid.uuid4().hex
        _SESSIONS[self.id] = self

    @property
    def settings(self) -> Settings:
        """The resolved connection settings (secrets hidden in their repr)."""
        return self._settings

    @property
    def api_root(self) -> str:
        """The Web API root, e.g. `https://org.crm.dynamics.com/api/data/v9.2/`."""
        return str(self._settings.api_root)

    @property
    def transport_wrapper(self) -> TransportWrapper | None:
        """A layer between the retry layer and the network, in every per-loop HTTP client.

        Called as `transport_wrapper(network_transport)` each time a client is built (one
        per event loop); what it returns is what the retry layer sends through, so every
        attempt (first tries and retries alike) passes through it and it sees each
        answer's status and headers.  Set it before the first request: setting it once a
        client exists raises `RuntimeError` (that client would go round it).
        """
        return self._transport_wrapper

    @transport_wrapper.setter
    def transport_wrapper(self, wrapper: TransportWrapper | None) -> None:
        with self._clients_lock:
            if self._clients:
                raise RuntimeError(
                    "transport_wrapper must be set before the connection's first request."
                )
            self._transport_wrapper = wrapper

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

    def warm_up(self) -> asyncio.Task[None]:
        """Fetch an access token in the background, while the caller works out what to
        send (e.g. a push's plan): the first request then need not wait for the token.
        A failure is left for that request to raise."""

        async def fetch() -> None:
            with contextlib.suppress(Exception):  # never an interactive sign-in from here
                await self.auth.token()

        return asyncio.ensure_future(fetch())

    def _loop_client(self) -> _LoopClient:
        if self._closed:
            raise TransportError("This connection is closed.", hint="Create a new one.")
        loop = asyncio.get_running_loop()
        key = id(loop)
        with self._clients_lock:
            entry = self._clients.get(key)
            if entry is not None and entry.loop() is loop and not entry.client.is_closed:
                return entry
            # Start at the user's cap, or the service's x-ms-dop-hint as last seen: the
            # first answer's hint brings it to what the service allows now; 429s halve it
            # (issue 15: climbing from 2 left a 50-page read at half the concurrency).
            limiter = AdaptiveLimiter(
                initial=self.max_concurrency,
                maximum=self.max_concurrency,
                dop_hint=self.hints.dop_hint if self.hints else None,
                on_hint=self.hints.remember_dop_hint if self.hints else None,
            )
            retry = self._build_transport(limiter)
            entry = _LoopClient(weakref.ref(loop), self._build_client(retry), limiter, retry)
            self._clients[key] = entry
            return entry

    def _client(self) -> httpx.AsyncClient:
        return self._loop_client().client

    @property
    def limiter(self) -> AdaptiveLimiter:
        """The adaptive concurrency limit of this event loop's HTTP client."""
        return self._loop_client().limiter

    @property
    def transport_stats(self) -> TransportStats:
        """Counters of this loop's transport: requests, attempts, 429s seen, waits."""
        return self._loop_client().retry.stats

    def _build_transport(self, limiter: AdaptiveLimiter) -> RetryTransport:
        """The retry layer over the network transport (wrapped by `transport_wrapper`)."""
        inner: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(
            verify=self._ssl_context,
            http2=False,
            limits=httpx.Limits(
                max_connections=self.max_concurrency,
                max_keepalive_connections=self.max_concurrency,
            ),
            retries=0,
        )
        if self._transport_wrapper is not None:
            inner = self._transport_wrapper(inner)
        return RetryTransport(
            inner,
            origin=self.api_root,
            policy=self.retry,
            limiter=limiter,
            on_wait=report_wait,
        )

    def _build_client(self, transport: RetryTransport) -> httpx.AsyncClient:
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
        A GET whose URL is longer than the service takes (`MAX_GET_URL`) is sent inside a
        `$batch` instead (the documented workaround), and its inner answer returned.
        """
        full = url if url.startswith("https://") else self.api_root + url.lstrip("/")
        client = self._client()
        # At most 9 characters per character once percent-encoded (3 UTF-8 bytes, each %XX).
        longest = len(full) + sum(9 * (len(k) + len(v)) + 2 for k, v in (params or {}).items())
        if method == "GET" and longest > MAX_GET_URL:
            built = client.build_request(method, full, params=params)
            if len(str(built.url)) > MAX_GET_URL:
                return await self._batch_get(built.url, headers, extensions)
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
            known = known_transport_error(exc, full, service="Web API", setting="Service URL")
            raise known or TransportError(
                f"{method} {httpx.URL(full).path} failed: {type(exc).__name__}: {exc}",
                hint="Check the network and the Service URL; the request was retried.",
            ) from exc
        if response.status_code >= 400:
            await response.aread()
            raise self._error_from_response(response)
        return response

    async def _batch_get(
        self,
        url: httpx.URL,
        headers: Mapping[str, str] | None,
        extensions: dict[str, Any] | None,
    ) -> httpx.Response:
        """One GET sent as the only request of a `$batch` POST; its inner answer back."""
        length = len(str(url))
        if length > MAX_BATCH_GET_URL:
            raise ConfigError(
                f"The request URL is {length:,} characters long: the service takes at most "
                f"{MAX_GET_URL:,} in a GET and {MAX_BATCH_GET_URL:,} in a GET inside $batch.",
                field="filter",
                hint="Shorten the query: e.g. split a long list of values into several reads.",
            )
        inner = {"Accept": "application/json", **(headers or {})}
        content_type, body = encode_batch_request(
            [BatchRequest("GET", url.raw_path.decode("ascii"), headers=inner)]
        )
        response = await self.arequest(
            "POST",
            "$batch",
            content=body,
            # The inner answer is returned whatever its status (the batch itself: 200).
            headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
            extensions={**(extensions or {}), "d365nb.idempotent": True},
        )
        (answer,) = decode_batch_response(await response.aread(), response.headers["content-type"])
        assert isinstance(answer, BatchResponse)  # a lone GET is never a change set
        result = httpx.Response(
            answer.status,
            headers=list(answer.headers),
            content=answer.body,
            request=httpx.Request("GET", url),
        )
        if result.status_code >= 400:
            raise self._error_from_response(result)
        return result

    # -- sign-in ------------------------------------------------------------------

    async def asign_in(
        self,
        *,
        redirected_url: str | None = None,
        loopback: bool | None = None,
        open_browser: bool = True,
        timeout: float = 600.0,
    ) -> Self:
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
        if self._cache.persist and not self.auth.signed_in:
            # The token cache of an earlier sign-in (another notebook, same environment).
            try:
                await self.auth.token()
                return self
            except AuthError:
                pass
        if grant == "device_code":
            code = await self.auth.start_device_code()
            self.prompt(code)
            await self.auth.finish_device_code(code)
            return self
        # Authorization code with PKCE.
        if loopback is None:
            loopback = not remote_kernel()
        if loopback:
            with LoopbackReceiver() as receiver:
                flow = await self.auth.start_auth_code(
                    redirect_uri=receiver.redirect_uri, form_post=True
                )
                self.prompt(flow)
                if open_browser:
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

    sign_in = blocking(asign_in)

    def sign_out(self) -> None:
        """Forget this connection's tokens, in memory and in the token cache."""
        self.auth.sign_out()

    # -- lifecycle ---------------------------------------------------------------

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


def _default_prompt(item: Any) -> None:
    """Show a device code or a sign-in link: rich in a notebook, plain text elsewhere."""
    if in_notebook():
        # Lazy: IPython is only there (and only worth importing) in a notebook.
        from IPython.display import HTML, display

        if isinstance(item, DeviceCode):
            display(HTML(item._repr_html_()))  # type: ignore[no-untyped-call]
        elif isinstance(item, AuthCodeFlow):
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
