"""Sign-in: every grant type, over msal (v2 endpoints) and plain httpx (v1 `resource=`).

`Authenticator` is the only thing the rest of d365nb talks to.  It hands out access
tokens (`await auth.token()`), refreshes them silently ahead of expiry and when the
service says 401 (`force_refresh=True`), and runs the interactive grants in two steps
(start: something to show the user; finish: poll or redeem), so that a notebook or a
widget can show the code and stay responsive.

msal's result dicts (and the v1 endpoint's JSON errors) become `AuthError` in one place,
`_raise_for_result`, with the AADSTS code and a one-line fix.  msal is synchronous: its
calls run in a worker thread, one at a time per connection (a lock), so that concurrent
requests that all find the token expired share one refresh.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import httpx

from ._exceptions import AuthError
from ._tokencache import TokenCacheFile

if TYPE_CHECKING:
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

# Refresh this long before expiry, so a request never leaves with a token about to die.
REFRESH_MARGIN = 300.0
_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
_INTERACTIVE = frozenset({"device_code", "auth_code"})


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when it expires (seconds since the epoch).  Its repr hides it."""

    token: str = field(repr=False)
    expires_on: float

    def expires_within(self, seconds: float) -> bool:
        """True when the token has less than `seconds` to live."""
        return self.expires_on - time.time() < seconds


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
        import html

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


# -- errors ------------------------------------------------------------------------------

# AADSTS code -> the fix, in one sentence a user can act on.
_HINTS: dict[int, str] = {
    7000215: "The client secret is wrong: paste the secret's Value (not its Secret ID) from "
    "the app's 'Certificates & secrets' page, or create a new secret.",
    7000222: "The client secret has expired: create a new one under 'Certificates & secrets'.",
    7000218: "This app registration is confidential: pass client_secret=..., or turn on "
    "'Allow public client flows' under the app's Authentication page.",
    700016: "No app with this Client ID exists in this tenant: copy the Application (client) "
    "ID and the Directory (tenant) ID from the app's Overview page.",
    90002: "The tenant was not found: use the Directory (tenant) ID GUID or a verified domain.",
    65001: "Consent is missing: an admin must grant consent for 'Dynamics CRM "
    "user_impersonation' under the app's 'API permissions'.",
    50011: "The redirect URI is not registered: add it under the app's Authentication page "
    "('Mobile and desktop applications').",
    500113: "The app has no redirect URI: add one under the app's Authentication page.",
    70008: "The code or refresh token has expired: sign in again.",
    54005: "This authorization code was already used: sign in again.",
    700082: "The refresh token expired after inactivity: sign in again.",
    50173: "The refresh token was revoked (password change or admin action): sign in again.",
    53003: "Conditional Access blocks this sign-in (often device code): use grant='auth_code' "
    "or ask your admin.",
    50059: "No tenant in the authority: use your tenant ID instead of /common or /organizations.",
    901002: "A v2 endpoint got a 'resource' parameter: use scope=... with v2, or a v1 token URI.",
    70011: "The scope is not valid: use '<org url>/user_impersonation' (delegated) or "
    "'<org url>/.default' (client credentials).",
    50076: "Multi-factor authentication is required: sign in interactively (device code).",
    500011: "The Dataverse environment is not known in this tenant: check the Service URL.",
    70020: "The device code expired before sign-in finished: start again.",
    501481: "The PKCE verifier did not match: start the sign-in again.",
}

_ERROR_HINTS: dict[str, str] = {
    "authorization_declined": "The sign-in was declined in the browser: start again and approve.",
    "expired_token": "The device code expired before sign-in finished: start again.",
    "code_expired": "The device code expired before sign-in finished: start again.",
    "bad_verification_code": "The device code was not recognised: start the sign-in again.",
    "invalid_client": "Check the Client ID and the client secret.",
    "unauthorized_client": "Check the Client ID and the tenant.",
    "invalid_grant": "Sign in again.",
    "interaction_required": "Sign in interactively (device code or browser).",
}


def auth_error_from_result(result: Mapping[str, Any], *, action: str) -> AuthError:
    """Turn an msal / Entra error dict into an `AuthError` with its AADSTS code and a fix."""
    error = str(result.get("error") or "unknown_error")
    description = str(result.get("error_description") or "")
    codes = result.get("error_codes") or []
    code_num: int | None = None
    if codes and isinstance(codes, list | tuple):
        try:
            code_num = int(codes[0])
        except (TypeError, ValueError):
            code_num = None
    if code_num is None and description.startswith("AADSTS"):
        digits = description[6:].split(":", 1)[0]
        code_num = int(digits) if digits.isdigit() else None
    # First line only: Entra appends trace and correlation ids on further lines.
    first_line = description.splitlines()[0] if description else error
    hint = _HINTS.get(code_num or -1) or _ERROR_HINTS.get(error) or "Check the settings."
    return AuthError(
        f"{action} failed: {first_line}",
        code=f"AADSTS{code_num}" if code_num is not None else None,
        error=error,
        hint=hint,
        correlation_id=result.get("correlation_id"),
    )


def _raise_for_result(result: Mapping[str, Any] | None, *, action: str) -> AccessToken:
    """The boundary: a token dict becomes `AccessToken`; anything else an `AuthError`."""
    if not result:
        raise AuthError(f"{action} failed: no answer from the token service.", hint="Retry.")
    if "access_token" in result:
        token = str(result["access_token"])
        return AccessToken(token=token, expires_on=_expires_on(result, token))
    raise auth_error_from_result(result, action=action)


def _expires_on(result: Mapping[str, Any], token: str) -> float:
    # v1 sends numbers as strings; msal adds expires_in; a JWT knows its own expiry.
    for key in ("expires_on",):
        if key in result:
            try:
                return float(result[key])
            except (TypeError, ValueError):
                pass
    if "expires_in" in result:
        try:
            return time.time() + float(result["expires_in"])
        except (TypeError, ValueError):
            pass
    exp = jwt_claims(token).get("exp")
    return float(exp) if isinstance(exp, int | float) else time.time() + 3600


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, decoded without verifying it (the service verifies).

    Used for display (who is signed in) and for the expiry of a token the user pasted;
    an opaque token gives `{}`.
    """
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


# -- backends ----------------------------------------------------------------------------


class _Backend(Protocol):
    def silent(self, *, force_refresh: bool) -> dict[str, Any] | None: ...
    def for_client(self, *, force_refresh: bool) -> dict[str, Any]: ...
    def by_refresh_token(self, refresh_token: str) -> dict[str, Any]: ...
    def initiate_device_flow(self) -> dict[str, Any]: ...
    def poll_device_flow(self, flow: dict[str, Any]) -> dict[str, Any]: ...
    def initiate_auth_code(self, redirect_uri: str, *, form_post: bool) -> dict[str, Any]: ...
    def redeem_auth_code(self, flow: dict[str, Any], params: dict[str, str]) -> dict[str, Any]: ...
    def account(self) -> dict[str, Any] | None: ...
    def close(self) -> None: ...


class _MsalBackend:
    """v2 endpoints through msal, with an HTTP client that trusts exactly `ssl_context`.

    msal's own `verify=` is overridden by REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE (reference:
    identity-protocol.md 2.3), so msal gets an `httpx.Client` built with our SSL context,
    which ignores those variables.  Instance discovery is off: it would ask the public
    internet about non-Microsoft hosts (the sandbox); Microsoft's own hosts need none.
    """

    def __init__(self, settings: Settings, *, ssl_context: ssl.SSLContext, cache: TokenCacheFile):
        self.settings = settings
        self.cache = cache
        self.http = httpx.Client(verify=ssl_context, timeout=30.0, trust_env=False)
        self.scopes = [s for s in settings.scopes if s not in _RESERVED_SCOPES]
        self._app: Any = None

    @property
    def app(self) -> Any:
        # Built lazily: msal's constructor fetches the OIDC document (network I/O).
        if self._app is None:
            import msal

            common: dict[str, Any] = {
                "authority": self.settings.authority,
                "token_cache": self.cache.cache,
                "http_client": self.http,
                "instance_discovery": False,
            }
            try:
                if self.settings.grant == "client_credentials" or (
                    self.settings.client_secret and self.settings.grant not in _INTERACTIVE
                ):
                    self._app = msal.ConfidentialClientApplication(
                        self.settings.client_id,
                        client_credential=self.settings.client_secret,
                        azure_region=None,
                        **common,
                    )
                else:
                    self._app = msal.PublicClientApplication(self.settings.client_id, **common)
            except ValueError as exc:
                # Tenant discovery failed: msal raises ValueError with Entra's message.
                raise AuthError(
                    f"The authority {self.settings.authority} did not answer as an identity "
                    f"service: {_first_line(str(exc))}",
                    hint="Check the tenant and the Auth/Token URIs.",
                ) from None
            except httpx.HTTPError as exc:
                raise AuthError(
                    f"Could not reach the identity service at {self.settings.authority}: "
                    f"{type(exc).__name__}.",
                    hint="Check the network, the Token URI and verify= (CA certificates).",
                ) from exc
        return self._app

    def _saved(self, result: dict[str, Any] | None) -> dict[str, Any] | None:
        self.cache.save()
        return result

    def silent(self, *, force_refresh: bool) -> dict[str, Any] | None:
        accounts = self.app.get_accounts()
        if not accounts:
            return None
        result = self.app.acquire_token_silent_with_error(
            self.scopes, account=accounts[0], force_refresh=force_refresh
        )
        return self._saved(result)

    def for_client(self, *, force_refresh: bool) -> dict[str, Any]:
        if force_refresh:
            self.app.remove_tokens_for_client()
        return self._saved(self.app.acquire_token_for_client(self.scopes)) or {}

    def by_refresh_token(self, refresh_token: str) -> dict[str, Any]:
        result = self.app.acquire_token_by_refresh_token(refresh_token, self.scopes)
        return self._saved(result) or {}

    def initiate_device_flow(self) -> dict[str, Any]:
        flow: dict[str, Any] = self.app.initiate_device_flow(scopes=self.scopes)
        return flow

    def poll_device_flow(self, flow: dict[str, Any]) -> dict[str, Any]:
        # One poll (msal's documented non-blocking use); the caller sleeps between polls.
        result = self.app.acquire_token_by_device_flow(flow, exit_condition=lambda f: True)
        return self._saved(result) or {}

    def initiate_auth_code(self, redirect_uri: str, *, form_post: bool) -> dict[str, Any]:
        with warnings.catch_warnings():
            # msal recommends form_post; the paste-the-URL mode (remote kernels) needs the
            # code in the redirected address, i.e. query mode.  PKCE, state and nonce
            # still protect the code.
            warnings.simplefilter("ignore", UserWarning)
            flow: dict[str, Any] = self.app.initiate_auth_code_flow(
                self.scopes,
                redirect_uri=redirect_uri,
                response_mode="form_post" if form_post else None,
            )
        return flow

    def redeem_auth_code(self, flow: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        try:
            result = self.app.acquire_token_by_auth_code_flow(flow, params)
        except ValueError as exc:  # state mismatch: msal raises before any I/O
            raise AuthError(
                f"The redirected address does not belong to this sign-in: {exc}",
                hint="Start the sign-in again and paste the address from that attempt.",
            ) from None
        return self._saved(result) or {}

    def account(self) -> dict[str, Any] | None:
        if self._app is None:
            return None
        accounts = self._app.get_accounts()
        return dict(accounts[0]) if accounts else None

    def close(self) -> None:
        self.http.close()


class _V1Backend:
    """v1 endpoints (`/oauth2/token` with `resource=`) over plain httpx.

    msal speaks v2 only.  Tokens and the refresh token are kept in the same cache file,
    beside msal's entries; v1 answers carry numbers as strings.
    """

    def __init__(self, settings: Settings, *, ssl_context: ssl.SSLContext, cache: TokenCacheFile):
        self.settings = settings
        self.cache = cache
        self.http = httpx.Client(verify=ssl_context, timeout=30.0, trust_env=False)
        self.resource = settings.resource

    def _post(self, url: str, data: dict[str, str]) -> dict[str, Any]:
        if self.settings.client_secret:
            data["client_secret"] = self.settings.client_secret
        data["client_id"] = self.settings.client_id or ""
        response = self.http.post(url, data=data, headers={"Accept": "application/json"})
        try:
            body = response.json()
        except ValueError:
            body = {
                "error": "invalid_response",
                "error_description": f"HTTP {response.status_code} without a JSON body",
            }
        if not isinstance(body, dict):
            body = {"error": "invalid_response", "error_description": "not a JSON object"}
        if "access_token" in body:
            self._remember(body)
        return body

    def _remember(self, body: Mapping[str, Any]) -> None:
        entry = {
            "access_token": body["access_token"],
            "expires_on": _expires_on(body, str(body["access_token"])),
            "refresh_token": body.get("refresh_token")
            or (self.cache.get_extra("v1") or {}).get("refresh_token"),
        }
        self.cache.set_extra("v1", entry)

    def silent(self, *, force_refresh: bool) -> dict[str, Any] | None:
        entry = self.cache.get_extra("v1")
        if not entry:
            return None
        if not force_refresh and entry.get("expires_on", 0) - time.time() > REFRESH_MARGIN:
            return {"access_token": entry["access_token"], "expires_on": entry["expires_on"]}
        if entry.get("refresh_token"):
            result = self.by_refresh_token(entry["refresh_token"])
            if "access_token" not in result:
                self.cache.set_extra("v1", None)
            return result
        return None

    def for_client(self, *, force_refresh: bool) -> dict[str, Any]:
        cached = None if force_refresh else self.silent(force_refresh=False)
        if cached and "access_token" in cached:
            return cached
        data = {"grant_type": "client_credentials", "resource": self.resource}
        return self._post(self.settings.token_uri or "", data)

    def by_refresh_token(self, refresh_token: str) -> dict[str, Any]:
        data = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "resource": self.resource,
        }
        return self._post(self.settings.token_uri or "", data)

    def initiate_device_flow(self) -> dict[str, Any]:
        url = _sibling(self.settings.token_uri or "", "devicecode")
        data = {"client_id": self.settings.client_id or "", "resource": self.resource}
        response = self.http.post(url, data=data, headers={"Accept": "application/json"})
        body: dict[str, Any] = response.json()
        if "device_code" in body:
            # v1 says verification_url and sends strings; normalise to the v2 shape.
            body.setdefault("verification_uri", body.get("verification_url"))
            body["interval"] = int(body.get("interval", 5))
            body["expires_at"] = time.time() + int(body.get("expires_in", 900))
        return body

    def poll_device_flow(self, flow: dict[str, Any]) -> dict[str, Any]:
        data = {"grant_type": "device_code", "code": flow["device_code"], "resource": self.resource}
        body = self._post(self.settings.token_uri or "", data)
        if body.get("error") == "slow_down":
            flow["interval"] = int(flow.get("interval", 5)) + 5
        return body

    def initiate_auth_code(self, redirect_uri: str, *, form_post: bool) -> dict[str, Any]:
        verifier = secrets.token_urlsafe(32)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .decode()
            .rstrip("=")
        )
        state = secrets.token_urlsafe(16)
        params = {
            "client_id": self.settings.client_id or "",
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "resource": self.resource,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if form_post:
            params["response_mode"] = "form_post"
        auth_uri = self.settings.auth_uri or _sibling(self.settings.token_uri or "", "authorize")
        sep = "&" if "?" in auth_uri else "?"
        return {
            "auth_uri": f"{auth_uri}{sep}{urllib.parse.urlencode(params)}",
            "redirect_uri": redirect_uri,
            "state": state,
            "code_verifier": verifier,
        }

    def redeem_auth_code(self, flow: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        if params.get("state") != flow["state"]:
            raise AuthError(
                "The redirected address does not belong to this sign-in (state mismatch).",
                hint="Start the sign-in again and paste the address from that attempt.",
            )
        if "error" in params:
            return dict(params)
        data = {
            "grant_type": "authorization_code",
            "code": params.get("code", ""),
            "redirect_uri": flow["redirect_uri"],
            "code_verifier": flow["code_verifier"],
            "resource": self.resource,
        }
        return self._post(self.settings.token_uri or "", data)

    def account(self) -> dict[str, Any] | None:
        entry = self.cache.get_extra("v1")
        if not entry:
            return None
        claims = jwt_claims(str(entry.get("access_token", "")))
        return {"username": claims.get("upn") or claims.get("unique_name") or claims.get("oid")}

    def close(self) -> None:
        self.http.close()


def _sibling(token_uri: str, last: str) -> str:
    """`.../oauth2/token` -> `.../oauth2/<last>`."""
    base, _, _ = token_uri.rstrip("/").rpartition("/")
    return f"{base}/{last}"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


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
        self._backend_obj: _Backend | None = None
        self._lock = threading.Lock()
        self._current: AccessToken | None = None
        self._given_used = False
        if settings.access_token and credential is None:
            self._current = AccessToken(
                token=settings.access_token,
                expires_on=_expires_on({}, settings.access_token),
            )

    def __repr__(self) -> str:
        return f"Authenticator(grant={self.grant!r}, signed_in={self.signed_in})"

    @property
    def _backend(self) -> _Backend:
        if self._backend_obj is None:
            cls = _V1Backend if self.settings.version == "v1" else _MsalBackend
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
            "expires_on": self._current.expires_on if self._current else None,
        }

    # -- silent path -----------------------------------------------------------------

    async def token(self, *, force_refresh: bool = False) -> AccessToken:
        """An access token with at least five minutes to live.

        Raises `AuthError` when only the user can help (not signed in yet for an
        interactive grant; a pasted token expired with nothing to refresh it).
        """
        current = self._current
        if current is not None and not force_refresh and not current.expires_within(REFRESH_MARGIN):
            return current
        stale = current
        return await anyio.to_thread.run_sync(self._token_sync, force_refresh, stale)

    def _token_sync(self, force_refresh: bool, stale: AccessToken | None) -> AccessToken:
        with self._lock:
            # Another caller may have refreshed while we waited for the lock.
            current = self._current
            if current is not None and current is not stale:
                if not current.expires_within(REFRESH_MARGIN):
                    return current
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
            return _raise_for_result(
                self._backend.for_client(force_refresh=force_refresh),
                action="Signing in with client credentials",
            )
        # Delegated grants: the cache first (it may hold a refresh token).
        if grant != "access_token" or self.settings.refresh_token:
            result = self._backend.silent(force_refresh=force_refresh)
            if result and "access_token" in result:
                return _raise_for_result(result, action=action)
        if self.settings.refresh_token and not self._given_used:
            self._given_used = True
            return _raise_for_result(
                self._backend.by_refresh_token(self.settings.refresh_token),
                action="Signing in with the refresh token",
            )
        if grant == "access_token":
            current = self._current
            expired_at = time.strftime(
                "%H:%M:%S UTC", time.gmtime(current.expires_on if current else time.time())
            )
            raise AuthError(
                f"The access token you supplied expired at {expired_at} (or the service "
                "refused it) and nothing can renew it.",
                hint="Pass a fresh access_token=..., add refresh_token=..., or sign in with "
                "grant='device_code'.",
            )
        if grant == "refresh_token":
            raise AuthError(
                "The refresh token was used up or refused and nothing else can sign in.",
                hint="Pass a new refresh_token=..., or sign in with grant='device_code'.",
            )
        raise AuthError(
            "Not signed in yet.",
            hint="Run conn.sign_in() first (it shows a device code or a sign-in link).",
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
        with self._lock:
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
                token = _raise_for_result(result, action="Device-code sign-in")
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
        with self._lock:
            return self._backend.poll_device_flow(flow)

    async def start_auth_code(self, *, redirect_uri: str, form_post: bool) -> AuthCodeFlow:
        """Build the sign-in address for the authorization-code grant with PKCE."""

        def initiate() -> dict[str, Any]:
            with self._lock:
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
            with self._lock:
                return self._backend.redeem_auth_code(flow._flow, params)

        result = await anyio.to_thread.run_sync(redeem)
        token = _raise_for_result(result, action="Browser sign-in")
        self._current = token
        return token

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
