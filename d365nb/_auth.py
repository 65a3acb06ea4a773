"""Sign-in: every grant type, over msal (v2 endpoints) and plain httpx (v1 `resource=`).

`Authenticator` is the only thing the rest of d365nb talks to.  It hands out access
tokens (`await auth.token()`), refreshes them silently ahead of expiry and when the
service says 401 (`force_refresh=True`), and runs the interactive grants in two steps
(start: something to show the user; finish: poll or redeem), so that a notebook or a
widget can show the code and stay responsive.

The tokens come from a backend (`_backends.py`: msal on v2, httpx on v1); their answers
become `AccessToken` or `AuthError` in one place (`_tokens.py`).  msal is synchronous: its
calls run in a worker thread, one at a time per connection (a lock), so that concurrent
requests that all find the token expired share one refresh.
"""

from __future__ import annotations

import html
import math
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ._backends import Backend, MsalBackend, V1Backend
from ._exceptions import AuthError
from ._tokencache import TokenCacheFile
from ._tokens import (
    REFRESH_MARGIN,
    AccessToken,
    auth_error_from_result,
    jwt_claims,
    raise_for_result,
    reaching,
)

if TYPE_CHECKING:
    import ssl

    from ._config import Settings

__all__ = [
    "AccessToken",
    "AuthCodeFlow",
    "Authenticator",
    "CredentialLike",
    "DeviceCode",
    "auth_error_from_result",
    "jwt_claims",
    "parse_redirect",
]

# Clock-skew allowance for a given access token that nothing can renew (seconds).
CLOCK_SKEW = 30.0
# The grants that need the user to sign in.
_INTERACTIVE = frozenset({"device_code", "auth_code"})


class CredentialLike(Protocol):
    """Anything shaped like an azure-identity credential (`get_token(*scopes)`)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


@dataclass
class DeviceCode:
    """A started device-code sign-in: show `verification_uri` and `user_code` to the user.

    The user code is meant to be shown; it is useless without the user's own sign-in and
    dies after `expires_at`.  `cancel()` stops the polling within a second.
    """

    user_code: str
    verification_uri: str
    message: str
    expires_at: float
    interval: float
    _flow: dict[str, Any] = field(repr=False, default_factory=dict)
    cancelled: bool = False

    def cancel(self) -> None:
        """Stop waiting for this code."""
        self.cancelled = True

    @property
    def seconds_left(self) -> int:
        """Whole seconds until the code expires (0 when it has)."""
        return max(0, int(self.expires_at - time.time()))

    def _repr_html_(self) -> str:
        uri = html.escape(self.verification_uri, quote=True)
        return (
            "<div class='d365nb-devicecode'>To sign in, open "
            f"<a href='{uri}' target='_blank' rel='noopener'>{uri}</a> and enter the code "
            f"<code style='font-size:1.4em'>{html.escape(self.user_code)}</code> "
            f"(expires in {self.seconds_left // 60} min).</div>"
        )


@dataclass
class AuthCodeFlow:
    """A started authorization-code sign-in (PKCE).  Open `auth_uri` in a browser.

    On a local kernel, `redirect_uri` is a loopback listener that receives the answer by
    itself.  On JupyterHub or Binder the browser cannot reach the kernel: after signing in
    the browser lands on an address that fails to load; copy that whole address from the
    address bar and pass it to `finish` (`conn.sign_in(redirected_url=...)`).
    """

    auth_uri: str
    redirect_uri: str
    _flow: dict[str, Any] = field(repr=False, default_factory=dict)


# -- the authenticator -------------------------------------------------------------------


class Authenticator:
    """Hands out access tokens for one connection, whatever the grant.

    **Parameters:**

    * **settings** - the resolved `Settings`.
    * **ssl_context** - trust for the identity service (the same as for the Web API).
    * **cache** - the token cache; `None` for an in-memory one.
    * **credential** - an azure-identity style credential; when given it is the only
      source of tokens.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        ssl_context: ssl.SSLContext,
        cache: TokenCacheFile | None = None,
        credential: CredentialLike | None = None,
    ) -> None:
        self.settings = settings
        self.grant = settings.grant
        self.credential = credential
        self.cache = cache or TokenCacheFile(
            settings.authority or "", settings.client_id or "", settings.resource, persist=False
        )
        self._ssl_context = ssl_context
        self._sign_in_url = settings.token_uri or settings.authority
        self._backend_obj: Backend | None = None
        self._lock = threading.Lock()
        self._current: AccessToken | None = None
        self._given_used = False
        # A given access token lives until its own `exp` (a JWT), or until the service
        # refuses it (an opaque token: no expiry known).
        self._given_expiry: float | None = None
        if settings.access_token and credential is None:
            exp = jwt_claims(settings.access_token).get("exp")
            self._given_expiry = float(exp) if isinstance(exp, int | float) else None
            self._current = AccessToken(
                token=settings.access_token,
                expires_on=math.inf if self._given_expiry is None else self._given_expiry,
            )
        # Renewable tokens are renewed REFRESH_MARGIN ahead of expiry; a given token that
        # nothing can renew is used to its end, less a clock-skew allowance.
        renewable = credential is not None or self.grant != "access_token"
        self._margin = REFRESH_MARGIN if renewable or settings.refresh_token else CLOCK_SKEW

    def __repr__(self) -> str:
        return f"Authenticator(grant={self.grant!r}, signed_in={self.signed_in})"

    @property
    def _backend(self) -> Backend:
        if self._backend_obj is None:
            cls = V1Backend if self.settings.version == "v1" else MsalBackend
            self._backend_obj = cls(self.settings, ssl_context=self._ssl_context, cache=self.cache)
        return self._backend_obj

    @property
    def signed_in(self) -> bool:
        """True once a token is held that has not expired."""
        return self._current is not None and not self._current.expires_within(0)

    @property
    def current(self) -> AccessToken | None:
        """The token last handed out, if any."""
        return self._current

    @property
    def interactive(self) -> bool:
        """True when getting the first token needs the user (device code, auth code)."""
        return self.credential is None and self.grant in _INTERACTIVE

    def identity(self) -> dict[str, Any]:
        """Who the current token speaks for: name, object id, app id, tenant, expiry."""
        claims = jwt_claims(self._current.token) if self._current else {}
        account = None
        if self._backend_obj is not None:
            try:
                account = self._backend_obj.account()
            except Exception:  # display only: never fail a repr on it
                account = None
        name = (
            claims.get("upn")
            or claims.get("preferred_username")
            or claims.get("unique_name")
            or (account or {}).get("username")
        )
        return {
            "name": name,
            "oid": claims.get("oid"),
            "app_id": claims.get("appid") or claims.get("azp"),
            "tenant": claims.get("tid"),
            "is_app": claims.get("idtyp") == "app" or (bool(claims) and "scp" not in claims),
            "expires_on": (
                self._current.expires_on
                if self._current and math.isfinite(self._current.expires_on)
                else None
            ),
        }

    # -- silent path -----------------------------------------------------------------

    async def token(self, *, force_refresh: bool = False) -> AccessToken:
        """An access token with at least five minutes to live.

        A given access token that nothing can renew is handed out until it expires (less
        `CLOCK_SKEW`).  Raises `AuthError` when only the user can help (not signed in yet
        for an interactive grant; a given token expired or refused with nothing to renew it).
        """
        current = self._current
        if current is not None and not force_refresh and not current.expires_within(self._margin):
            return current
        stale = current
        return await anyio.to_thread.run_sync(self._token_sync, force_refresh, stale)

    def _token_sync(self, force_refresh: bool, stale: AccessToken | None) -> AccessToken:
        with self._lock:
            # Another caller may have refreshed while we waited for the lock.
            current = self._current
            if current is not None and current is not stale:
                if not current.expires_within(self._margin):
                    return current
            with reaching(self._sign_in_url):
                token = self._acquire(force_refresh=force_refresh)
            self._current = token
            return token

    def _acquire(self, *, force_refresh: bool) -> AccessToken:
        if self.credential is not None:
            scope = f"{self.settings.resource}/.default"
            result = self.credential.get_token(scope)
            return AccessToken(token=result.token, expires_on=float(result.expires_on))
        grant = self.grant
        action = "Refreshing the access token"
        if grant == "client_credentials":
            return raise_for_result(
                self._backend.for_client(force_refresh=force_refresh),
                action="Signing in with client credentials",
            )
        # Delegated grants: the cache first (it may hold a refresh token).
        if grant != "access_token" or self.settings.refresh_token:
            result = self._backend.silent(force_refresh=force_refresh)
            if result and "access_token" in result:
                return raise_for_result(result, action=action)
        if self.settings.refresh_token and not self._given_used:
            self._given_used = True
            return raise_for_result(
                self._backend.by_refresh_token(self.settings.refresh_token),
                action="Signing in with the refresh token",
            )
        if grant == "access_token":
            raise self._given_token_error()
        if grant == "refresh_token":
            raise AuthError(
                "The refresh token was used up or refused and nothing else can sign in.",
                hint="Pass a new refresh_token=..., or sign in with grant='device_code'.",
            )
        raise AuthError(
            "Not signed in yet.",
            hint="Run conn.sign_in() first (it shows a device code or a sign-in link).",
        )

    def _given_token_error(self) -> AuthError:
        hint = (
            "Pass a fresh access_token=..., add refresh_token=..., or sign in with "
            "grant='device_code'."
        )
        expiry = self._given_expiry
        if expiry is None:
            return AuthError(
                "The service refused the access token you supplied and nothing can renew it.",
                hint=hint,
            )
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expiry))
        if expiry - time.time() <= CLOCK_SKEW:
            return AuthError(
                f"The access token you supplied expired at {when} and nothing can renew it.",
                hint=hint,
            )
        return AuthError(
            f"The service refused the access token you supplied (it expires at {when}) and "
            "nothing can renew it.",
            hint=hint,
        )

    # -- interactive grants ---------------------------------------------------------

    async def start_device_code(self) -> DeviceCode:
        """Ask the identity service for a device code (step one of two)."""
        flow = await anyio.to_thread.run_sync(self._initiate_device_flow)
        if "user_code" not in flow:
            raise auth_error_from_result(flow, action="Starting device-code sign-in")
        return DeviceCode(
            user_code=str(flow["user_code"]),
            verification_uri=str(flow.get("verification_uri") or flow.get("verification_url")),
            message=str(flow.get("message", "")),
            expires_at=float(flow.get("expires_at") or time.time() + 900),
            interval=float(flow.get("interval", 5)),
            _flow=flow,
        )

    def _initiate_device_flow(self) -> dict[str, Any]:
        with self._lock, reaching(self._sign_in_url):
            return self._backend.initiate_device_flow()

    async def finish_device_code(
        self, code: DeviceCode, *, on_tick: Callable[[DeviceCode], None] | None = None
    ) -> AccessToken:
        """Poll until the user approves, declines, cancels or the code expires (step two).

        Sleeps between polls without blocking the event loop; `code.cancel()` (or
        cancelling the task) stops it within a second.
        """
        while True:
            if code.cancelled:
                raise AuthError("Device-code sign-in was cancelled.", hint="Start again.")
            if code.seconds_left <= 0:
                raise AuthError(
                    "The device code expired before sign-in finished.",
                    code="AADSTS70020",
                    error="expired_token",
                    hint="Start again and enter the code within its lifetime.",
                )
            result = await anyio.to_thread.run_sync(self._poll, code._flow)
            if "access_token" in result:
                token = raise_for_result(result, action="Device-code sign-in")
                self._current = token
                return token
            if result.get("error") not in ("authorization_pending", "slow_down"):
                raise auth_error_from_result(result, action="Device-code sign-in")
            code.interval = float(code._flow.get("interval", code.interval))
            deadline = time.monotonic() + code.interval
            while time.monotonic() < deadline and not code.cancelled:
                if on_tick is not None:
                    on_tick(code)
                await anyio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def _poll(self, flow: dict[str, Any]) -> dict[str, Any]:
        with self._lock, reaching(self._sign_in_url):
            return self._backend.poll_device_flow(flow)

    async def start_auth_code(self, *, redirect_uri: str, form_post: bool) -> AuthCodeFlow:
        """Build the sign-in address for the authorization-code grant with PKCE."""

        def initiate() -> dict[str, Any]:
            with self._lock, reaching(self._sign_in_url):
                return self._backend.initiate_auth_code(redirect_uri, form_post=form_post)

        flow = await anyio.to_thread.run_sync(initiate)
        return AuthCodeFlow(auth_uri=str(flow["auth_uri"]), redirect_uri=redirect_uri, _flow=flow)

    async def finish_auth_code(
        self, flow: AuthCodeFlow, answer: str | Mapping[str, str]
    ) -> AccessToken:
        """Redeem the code from the redirected address (or the posted form fields)."""
        params = parse_redirect(answer)
        if not params.get("code") and not params.get("error"):
            raise AuthError(
                "The address has no 'code' in it.",
                hint="Copy the whole address the browser landed on after signing in "
                "(it contains ?code=...).",
            )

        def redeem() -> dict[str, Any]:
            with self._lock, reaching(self._sign_in_url):
                return self._backend.redeem_auth_code(flow._flow, params)

        result = await anyio.to_thread.run_sync(redeem)
        token = raise_for_result(result, action="Browser sign-in")
        self._current = token
        return token

    def refresh_token(self) -> str | None:
        """The refresh token held for this connection (cache, else the given one), if any."""
        with self._lock:
            held = self._backend.refresh_token() if self.credential is None else None
        return held or self.settings.refresh_token

    def sign_out(self) -> None:
        """Forget every token: in memory and in the cache file."""
        with self._lock:
            self._current = None
            self._given_used = True
            self.cache.clear()
            if self._backend_obj is not None:
                self._backend_obj.close()
                self._backend_obj = None

    def close(self) -> None:
        """Release the identity service's HTTP connections."""
        if self._backend_obj is not None:
            self._backend_obj.close()
            self._backend_obj = None


def parse_redirect(answer: str | Mapping[str, str]) -> dict[str, str]:
    """The parameters of a redirected address (query or fragment) or of posted fields."""
    if isinstance(answer, Mapping):
        return {str(k): str(v) for k, v in answer.items()}
    text = answer.strip()
    parts = urllib.parse.urlsplit(text)
    query = parts.query or parts.fragment or ("" if parts.scheme else text.lstrip("?#"))
    return {k: v[0] for k, v in urllib.parse.parse_qs(query).items() if v}
