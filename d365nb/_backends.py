"""Where tokens come from: msal for v2 endpoints, plain httpx for v1 (`resource=`).

Both backends answer with the same dicts (msal's shape), which `_tokens.raise_for_result`
turns into an `AccessToken` or an `AuthError`.  They are synchronous; `Authenticator`
runs them in a worker thread, one call at a time.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import ssl
import time
import urllib.parse
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import msal

from ._exceptions import AuthError
from ._tokencache import TokenCacheFile
from ._tokens import REFRESH_MARGIN, expires_on, first_line, jwt_claims

if TYPE_CHECKING:
    from ._config import Settings

__all__ = ["Backend", "MsalBackend", "V1Backend"]

_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})


class Backend(Protocol):
    """What `Authenticator` asks of a token source."""

    def silent(self, *, force_refresh: bool) -> dict[str, Any] | None: ...
    def for_client(self, *, force_refresh: bool) -> dict[str, Any]: ...
    def by_refresh_token(self, refresh_token: str) -> dict[str, Any]: ...
    def initiate_device_flow(self) -> dict[str, Any]: ...
    def poll_device_flow(self, flow: dict[str, Any]) -> dict[str, Any]: ...
    def initiate_auth_code(self, redirect_uri: str, *, form_post: bool) -> dict[str, Any]: ...
    def redeem_auth_code(self, flow: dict[str, Any], params: dict[str, str]) -> dict[str, Any]: ...
    def account(self) -> dict[str, Any] | None: ...
    def refresh_token(self) -> str | None: ...
    def close(self) -> None: ...


class MsalBackend:
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
            common: dict[str, Any] = {
                "authority": self.settings.authority,
                "token_cache": self.cache.cache,
                "http_client": self.http,
                "instance_discovery": False,
            }
            try:
                # A secret makes the app confidential for every grant (authorization code
                # too: Entra answers AADSTS7000218 when a confidential app omits it) but
                # device code, which msal runs as a public client only.
                if self.settings.grant == "client_credentials" or (
                    self.settings.client_secret and self.settings.grant != "device_code"
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
                    f"service: {first_line(str(exc))}",
                    hint="Check the tenant and the Auth/Token URIs.",
                ) from None
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

    def refresh_token(self) -> str | None:
        found = list(  # a generator holding the cache's lock: run it to the end
            self.cache.cache.search(
                msal.TokenCache.CredentialType.REFRESH_TOKEN,
                query={"client_id": self.settings.client_id},
            )
        )
        return str(found[0]["secret"]) if found else None

    def close(self) -> None:
        self.http.close()


class V1Backend:
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
            "expires_on": expires_on(body, str(body["access_token"])),
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

    def refresh_token(self) -> str | None:
        entry = self.cache.get_extra("v1") or {}
        token = entry.get("refresh_token")
        return str(token) if token else None

    def close(self) -> None:
        self.http.close()


def _sibling(token_uri: str, last: str) -> str:
    """`.../oauth2/token` -> `.../oauth2/<last>`."""
    base, _, _ = token_uri.rstrip("/").rpartition("/")
    return f"{base}/{last}"
