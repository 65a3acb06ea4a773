"""Token answers: an access token with its expiry, and error dicts turned into `AuthError`.

msal's result dicts and the v1 endpoint's JSON answers meet d365nb here, in one place:
a token becomes `AccessToken` (expiry from `expires_on`, `expires_in` or the JWT's own
`exp`), an error becomes `AuthError` with its AADSTS code and a one-line fix.
"""

from __future__ import annotations

import base64
import json
import math
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from ._exceptions import AuthError, TransportError

__all__ = [
    "REFRESH_MARGIN",
    "AccessToken",
    "auth_error_from_result",
    "expires_on",
    "first_line",
    "jwt_claims",
    "known_transport_error",
    "raise_for_result",
    "reaching",
    "transport_error",
]

# Refresh this long before expiry, so a request never leaves with a token about to die.
REFRESH_MARGIN = 300.0


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when it expires (seconds since the epoch).  Its repr hides it."""

    token: str = field(repr=False)
    expires_on: float

    def expires_within(self, seconds: float) -> bool:
        """True when the token has less than `seconds` to live."""
        return self.expires_on - time.time() < seconds

    def as_json(self, *, resource: str, tenant: str) -> dict[str, Any]:
        """The token as `az account get-access-token` prints it (times in UTC)."""
        known = math.isfinite(self.expires_on)
        return {
            "accessToken": self.token,
            "expiresOn": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.expires_on))
            if known
            else None,
            "expires_on": int(self.expires_on) if known else None,
            "tokenType": "Bearer",
            "resource": resource,
            "tenant": tenant,
        }


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


def raise_for_result(result: Mapping[str, Any] | None, *, action: str) -> AccessToken:
    """The boundary: a token dict becomes `AccessToken`; anything else an `AuthError`."""
    if not result:
        raise AuthError(f"{action} failed: no answer from the token service.", hint="Retry.")
    if "access_token" in result:
        token = str(result["access_token"])
        return AccessToken(token=token, expires_on=expires_on(result, token))
    raise auth_error_from_result(result, action=action)


def expires_on(result: Mapping[str, Any], token: str) -> float:
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


def first_line(text: str) -> str:
    """The first line of `text` (Entra and msal append trace ids on further lines)."""
    return text.strip().splitlines()[0] if text.strip() else text


# -- the identity service out of reach ---------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def transport_error(
    exc: BaseException,
    url: str,
    *,
    service: str = "sign-in service",
    setting: str = "Token URI",
) -> TransportError:
    """The `service` at `url` could not be reached: the cause in one sentence, the fix.

    DNS failures, refused connections, untrusted certificates, time-outs and proxy
    failures each get their own sentence (see `known_transport_error`); anything else
    names the error's type.

    **Parameters:**

    * **exc** - the network error (its `__cause__`/`__context__` chain is searched).
    * **url** - the address that was asked.
    * **service** - what was asked, for the message (`"Web API"` for requests).
    * **setting** - the setting holding `url`, for the fix (`"Service URL"` for requests).
    """
    known = known_transport_error(exc, url, service=service, setting=setting)
    if known is not None:
        return known
    parts = urlsplit(url)
    host = parts.hostname or url
    where = f"{host}:{parts.port}" if parts.port else host
    return TransportError(
        f"Could not reach the {service} {where}: {type(exc).__name__}: {first_line(str(exc))}",
        hint=f"Check the network connection and the {setting}, then run the cell again.",
    )


def known_transport_error(
    exc: BaseException,
    url: str,
    *,
    service: str = "sign-in service",
    setting: str = "Token URI",
) -> TransportError | None:
    """`TransportError` with the cause and the fix when `exc` is a DNS failure, a refused
    connection, an untrusted certificate, a proxy failure or a time-out; else `None`.

    **Parameters:**

    * **exc** - the network error (its `__cause__`/`__context__` chain is searched).
    * **url** - the address that was asked.
    * **service** - what was asked, for the message (`"Web API"` for requests).
    * **setting** - the setting holding `url`, for the fix (`"Service URL"` for requests).
    """
    parts = urlsplit(url)
    host = parts.hostname or url
    where = f"{host}:{parts.port}" if parts.port else host
    chain = list(_chain(exc))
    text = " ".join(str(e) for e in chain)
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or (
        "CERTIFICATE_VERIFY_FAILED" in text
    ):
        return TransportError(
            f"The {service} {where} has a TLS certificate that could not be verified.",
            hint="If you trust it (a corporate proxy, the sandbox), pass verify='path/to/ca.pem' "
            "(CLI: --ca-cert) with its CA certificate; never verify=False.",
        )
    if any(isinstance(e, socket.gaierror) for e in chain) or "Name or service not known" in text:
        return TransportError(
            f"The {service}'s host name {host} could not be found (DNS).",
            hint=f"Check the host in the {setting} (and the tenant), and the network connection."
            if setting == "Token URI"
            else f"Check the host in the {setting}, and the network connection.",
        )
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return TransportError(
            f"Nothing answers at {where}: the connection to the {service} was refused.",
            hint=f"Check the host and port in the {setting}; for the sandbox, check it is running.",
        )
    if any(isinstance(e, httpx.ProxyError) for e in chain):
        return TransportError(
            f"The proxy refused the connection to the {service} {where}.",
            hint=f"Check the proxy settings (HTTPS_PROXY) and that the proxy lets {host} through.",
        )
    if any(isinstance(e, httpx.TimeoutException) for e in chain):
        return TransportError(
            f"The {service} {where} did not answer in time ({type(exc).__name__}).",
            hint=f"Check the network connection and the {setting}, then run the cell again.",
        )
    return None


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """Turn network errors while talking to the sign-in service into `TransportError`."""
    try:
        yield
    except (httpx.TransportError, ssl.SSLError, ConnectionError, socket.gaierror) as exc:
        raise transport_error(exc, url) from exc
