"""The token service's records and errors: grants, codes, refresh tokens, AADSTS errors.

No routes here: `_identity.py` (token endpoint) and `_signin.py` (authorize and device
login pages) share these.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse

from ._directory import App, User

__all__ = [
    "NO_STORE",
    "AADError",
    "AuthCode",
    "Grant",
    "RefreshToken",
    "RefreshTokens",
    "SignIn",
    "aad_error_response",
    "missing_parameter",
    "origin_of",
    "redirect_uri_matches",
    "resource_on_v2",
]

logger = logging.getLogger("d365nb.sandbox")

NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", "Expires": "-1"}


class AADError(Exception):
    """An error the token service answers with (Entra's JSON shape, `AADSTS<code>`)."""

    def __init__(self, error: str, code: int, text: str, *, status: int = 400) -> None:
        self.error = error
        self.code = code
        self.text = text
        self.status = status
        super().__init__(f"AADSTS{code}: {text}")


def aad_error_response(request: Request, exc: AADError) -> JSONResponse:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    trace_id = str(uuid.uuid4())
    correlation_id = request.headers.get("client-request-id", "")
    try:
        correlation_id = str(uuid.UUID(correlation_id))
    except ValueError:
        correlation_id = str(uuid.uuid4())
    origin = origin_of(request)
    body = {
        "error": exc.error,
        "error_description": (
            f"AADSTS{exc.code}: {exc.text}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {now}"
        ),
        "error_codes": [exc.code],
        "timestamp": now,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"{origin}/error?code={exc.code}",
    }
    logger.debug("%s %s -> %s AADSTS%s", request.method, request.url.path, exc.error, exc.code)
    return JSONResponse(body, status_code=exc.status, headers=NO_STORE)


def origin_of(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def missing_parameter(name: str) -> AADError:
    return AADError(
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


@dataclass(frozen=True)
class Grant:
    """What a client asked for: one resource, its permissions, and the OIDC scopes."""

    resource: str
    # Resource scopes as the client wrote them (v2); empty for v1 `resource=` requests.
    scopes: tuple[str, ...]
    permissions: tuple[str, ...]
    reserved: tuple[str, ...]

    @property
    def response_scope(self) -> str:
        """The `scope` a token response echoes (msal caches the token under it)."""
        granted = [f"{self.resource.rstrip('/')}/{p}" for p in self.permissions]
        names = [*self.scopes, *(g for g in granted if g not in self.scopes), *self.reserved]
        return " ".join(dict.fromkeys(names))


def redirect_uri_matches(requested: str, registered: str) -> bool:
    """Whether `requested` is the registered reply address `registered`.

    Scheme, host, path and query must be equal (an empty path equals ``/``); the port
    is ignored for loopback hosts (``localhost``, ``127.0.0.1``), as Entra does.

    **Parameters:**

    * **requested** - the `redirect_uri` of the request.
    * **registered** - a redirect URI registered for the app.
    """
    try:
        req, reg = urlsplit(requested), urlsplit(registered)
        req_port, reg_port = req.port, reg.port
    except ValueError:
        return False
    if req.fragment or req.scheme.lower() != reg.scheme.lower():
        return False
    host = (req.hostname or "").lower()
    if host != (reg.hostname or "").lower():
        return False
    if host not in ("localhost", "127.0.0.1") and req_port != reg_port:
        return False
    return (req.path or "/") == (reg.path or "/") and req.query == reg.query


@dataclass
class AuthCode:
    app: App
    user: User
    grant: Grant
    redirect_uri: str
    challenge: str | None
    method: str
    nonce: str | None
    version: str
    expires_at: float
    used: bool = False


@dataclass
class SignIn:
    app: App
    grant: Grant
    redirect_uri: str
    response_mode: str
    state: str | None
    nonce: str | None
    challenge: str | None
    method: str
    version: str
    expires_at: float


@dataclass
class RefreshToken:
    app: App
    user: User
    grant: Grant
    expires_at: float


_REFRESH_TOKEN_SHAPE = re.compile(r"^[0-9]\.[A-Za-z0-9_\-.]{16,}$")


class RefreshTokens:
    """Refresh tokens by hash; each redemption rotates (the old token stops working)."""

    def __init__(self, lifetime: int, *, clock: Callable[[], float] = time.time) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self._live: dict[str, RefreshToken] = {}
        self._dead: dict[str, str] = {}  # hash -> "used" | "revoked"

    @staticmethod
    def _hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def issue(self, *, app: App, user: User, grant: Grant) -> str:
        token = "0.SBX." + secrets.token_urlsafe(48)
        self._live[self._hash(token)] = RefreshToken(
            app=app, user=user, grant=grant, expires_at=self.clock() + self.lifetime
        )
        return token

    def redeem(self, token: str) -> RefreshToken:
        if not _REFRESH_TOKEN_SHAPE.match(token):
            # [UNVERIFIED] the shape test: Entra's refresh tokens are `<digit>.<base64url>`;
            # anything else is malformed (9002313), a well-formed unknown one has expired.
            raise AADError(
                "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
            )
        key = self._hash(token)
        entry = self._live.pop(key, None)
        if entry is None:
            if self._dead.get(key) == "revoked":
                raise AADError(
                    "invalid_grant",
                    50173,
                    "The provided grant has expired due to it being revoked, a fresh auth "
                    "token is needed. The user might have changed or reset their password.",
                )
            raise AADError(
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to "
                "inactivity. Send a new interactive authorization request for this user "
                "and resource.",
            )
        self._dead[key] = "used"
        if self.clock() >= entry.expires_at:
            raise AADError(
                "invalid_grant",
                700082,
                "The refresh token has expired due to inactivity. The token was issued on "
                f"{dt.datetime.fromtimestamp(entry.expires_at - self.lifetime, dt.timezone.utc)}"
                " and was inactive for longer than allowed.",
            )
        return entry

    def revoke(self, user: User | None = None) -> int:
        keys = [k for k, v in self._live.items() if user is None or v.user.oid == user.oid]
        for key in keys:
            del self._live[key]
            self._dead[key] = "revoked"
        return len(keys)


def resource_on_v2() -> AADError:
    return AADError(
        "invalid_request",
        901002,
        "The 'resource' request parameter isn't supported. Use 'scope' "
        "(e.g. '<resource>/.default') with the v2.0 endpoints, or the v1 endpoints "
        "(/oauth2/token) with 'resource'.",
    )
