"""Signing and checking the sandbox's tokens (RS256 JWTs, as Entra ID issues them).

Access tokens follow the v1 format that Dataverse receives (`ver` ``1.0``, `iss`
``<authority>/``, `appid`, `scp` or `roles`), whichever endpoint version issued them,
because the token version is a property of the resource, not of the endpoint.  ID tokens
follow the version of the endpoint that issued them.  The signing key is kept in the data
directory (0600) so tokens survive a restart; its public half is served as a JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ._certs import ensure_private_dir, write_private
from ._clock import Clock
from ._directory import TENANT_ID, App, User

__all__ = [
    "TokenRejected",
    "TokenService",
    "client_info",
    "loopback_aliases",
    "service_principal_id",
]

_ALGORITHM = "RS256"


class TokenRejected(Exception):
    """A bearer token failed verification; `description` says why (never the token)."""

    def __init__(self, description: str) -> None:
        self.description = description
        super().__init__(description)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def client_info(user: User, tenant_id: str = TENANT_ID) -> str:
    """The `client_info` msal asks for: base64url JSON of the user's `uid` and `utid`."""
    payload = json.dumps({"uid": user.oid, "utid": tenant_id}, separators=(",", ":"))
    return _b64url(payload.encode("utf-8"))


def service_principal_id(app: App) -> str:
    """The (fixed) object id of `app`'s service principal in the sandbox tenant."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"d365nb-sandbox:sp:{app.client_id}"))


def loopback_aliases(url: str) -> tuple[str, ...]:
    """`url` plus the same URL with ``localhost`` and ``127.0.0.1`` swapped.

    The sandbox answers on both names; a token for one is good for the other.
    """
    parts = urlsplit(url)
    swap = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}
    host = parts.hostname or ""
    if host not in swap:
        return (url,)
    port = f":{parts.port}" if parts.port else ""
    other = urlunsplit(parts._replace(netloc=f"{swap[host]}{port}"))
    return (url, other)


def _pairwise_sub(oid: str, client_id: str) -> str:
    # Entra's `sub` is unique per user *and* app; any stable opaque value will do.
    return _b64url(hashlib.sha256(f"{oid}|{client_id}".encode()).digest())


class TokenService:
    """Signs access and ID tokens with one RSA key and verifies access tokens.

    **Parameters:**

    * **base_url** - the sandbox's origin, e.g. ``https://127.0.0.1:8443``.
    * **key** - the RSA signing key; a new one when omitted.
    * **tenant_id** - the tenant whose tokens this service issues and accepts.
    * **clock** - the sandbox's clock (`Clock()`, real time, when omitted).
    """

    def __init__(
        self,
        *,
        base_url: str,
        key: rsa.RSAPrivateKey | None = None,
        tenant_id: str = TENANT_ID,
        clock: Clock | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tenant_id = tenant_id
        #: The sandbox's clock: tokens are issued and checked by it.
        self.clock = clock or Clock()
        self._key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public = self._key.public_key()
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._public))
        thumbprint = json.dumps(
            {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True
        )
        # RFC 7638 thumbprint; Entra's `kid` and `x5t` are likewise the same value.
        self.kid = _b64url(hashlib.sha256(thumbprint.encode()).digest())
        self._jwk = {"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid, **jwk}
        self._jwk["alg"] = _ALGORITHM

    @classmethod
    def load(cls, data_dir: Path, *, base_url: str) -> TokenService:
        """A service whose signing key lives in `data_dir` (created on first use).

        **Parameters:**

        * **data_dir** - the sandbox data directory.
        * **base_url** - the sandbox's origin.
        """
        ensure_private_dir(data_dir)
        path = data_dir / "signing-key.pem"
        key: rsa.RSAPrivateKey | None = None
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if isinstance(loaded, rsa.RSAPrivateKey):
                key = loaded
        except (OSError, ValueError):
            key = None
        if key is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            write_private(
                path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
        return cls(base_url=base_url, key=key)

    def __repr__(self) -> str:
        return f"TokenService(base_url={self.base_url!r}, kid={self.kid!r})"

    # -- publishing

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set with the public signing key."""
        return {"keys": [dict(self._jwk, issuer=f"{self.base_url}/{self.tenant_id}/v2.0")]}

    def issuer(self, *, version: str = "1.0", origin: str | None = None) -> str:
        """The `iss` of tokens of `version` (``1.0`` or ``2.0``) issued at `origin`."""
        base = (origin or self.base_url).rstrip("/")
        if version == "2.0":
            return f"{base}/{self.tenant_id}/v2.0"
        return f"{base}/{self.tenant_id}/"

    # -- issuing

    def _sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(
            dict(claims),
            self._key,
            algorithm=_ALGORITHM,
            headers={"kid": self.kid, "x5t": self.kid, "typ": "JWT"},
        )

    def issue_access_token(
        self,
        *,
        audience: str,
        app: App,
        user: User | None,
        scopes: Sequence[str] = (),
        roles: Sequence[str] = (),
        lifetime: int,
        origin: str | None = None,
        authenticated_with_secret: bool = False,
    ) -> tuple[str, int]:
        """An access token and its `exp` (Unix seconds).

        A `user` makes a delegated token (`scp`); no user makes an app token (`roles`,
        ``idtyp: app``).

        **Parameters:**

        * **audience** - the resource, as requested (it becomes `aud`).
        * **app** - the client the token is issued to.
        * **user** - the signed-in user, or None for an app-only token.
        * **scopes** - delegated permissions (``user_impersonation``).
        * **roles** - application permissions for app tokens.
        * **lifetime** - seconds until `exp`.
        * **origin** - the origin the client called (for `iss`).
        * **authenticated_with_secret** - sets `appidacr` to ``1``.
        """
        now = int(self.clock())
        exp = now + lifetime
        acr = "1" if authenticated_with_secret else "0"
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer(version="1.0", origin=origin),
            "iat": now,
            "nbf": now,
            "exp": exp,
            # v1 tokens (what Dataverse gets, from either endpoint) name the client `appid`;
            # `azp`/`azpacr` are v2-only claims and are not sent.
            "appid": app.client_id,
            "appidacr": acr,
            "tid": self.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        if user is not None:
            given, _, family = user.name.partition(" ")
            claims.update(
                {
                    "amr": ["pwd"],
                    "family_name": family,
                    "given_name": given,
                    "name": user.name,
                    "oid": user.oid,
                    "scp": " ".join(scopes),
                    "sub": _pairwise_sub(user.oid, app.client_id),
                    "unique_name": user.upn,
                    "upn": user.upn,
                }
            )
        else:
            sp = service_principal_id(app)
            claims.update({"idtyp": "app", "oid": sp, "sub": sp})
            if roles:
                claims["roles"] = list(roles)
        return self._sign(claims), exp

    def issue_id_token(
        self,
        *,
        app: App,
        user: User,
        version: str = "2.0",
        nonce: str | None = None,
        lifetime: int = 3600,
        origin: str | None = None,
    ) -> str:
        """An ID token for `user` signing in to `app` (claims msal builds its account from).

        **Parameters:**

        * **app** - the client (it becomes `aud`).
        * **user** - the signed-in user.
        * **version** - ``2.0`` (v2 endpoints) or ``1.0`` (v1 endpoints).
        * **nonce** - echoed as the `nonce` claim when the authorize request sent one.
        * **lifetime** - seconds until `exp`.
        * **origin** - the origin the client called (for `iss`).
        """
        now = int(self.clock())
        claims: dict[str, Any] = {
            "aud": app.client_id,
            "iss": self.issuer(version=version, origin=origin),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "name": user.name,
            "oid": user.oid,
            "sub": _pairwise_sub(user.oid, app.client_id),
            "tid": self.tenant_id,
            "ver": version,
        }
        if version == "2.0":
            claims["preferred_username"] = user.upn
        else:
            claims.update({"upn": user.upn, "unique_name": user.upn, "amr": ["pwd"]})
        if nonce is not None:
            claims["nonce"] = nonce
        return self._sign(claims)

    # -- checking

    def _issuers(self) -> set[str]:
        found: set[str] = set()
        for origin in loopback_aliases(self.base_url):
            found.add(self.issuer(version="1.0", origin=origin))
            found.add(self.issuer(version="2.0", origin=origin))
        return found

    def verify(self, token: str, *, audience: str, leeway: float = 0.0) -> dict[str, Any]:
        """The claims of a valid access token for `audience`; `TokenRejected` otherwise.

        Checks the RS256 signature against this service's key (``alg: none`` and other
        algorithms are refused), `exp`/`nbf`, the audience (with or without a trailing
        slash, ``localhost`` and ``127.0.0.1`` alike), the issuer and tenant, and that an
        app token carries a role and a user token a scope.

        **Parameters:**

        * **token** - the bearer token.
        * **audience** - the resource the caller serves, e.g. the sandbox's base URL.
        * **leeway** - clock skew allowed on `exp`/`nbf`, in seconds.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise TokenRejected("The token is malformed: it is not a signed JWT.") from None
        alg = header.get("alg")
        if alg != _ALGORITHM:
            raise TokenRejected(
                f"The token's signing algorithm {alg!r} is not accepted; expected RS256."
            )
        if header.get("kid") != self.kid:
            raise TokenRejected("The token was signed with an unknown key (kid).")
        base = audience.rstrip("/")
        audiences = [a for b in loopback_aliases(base) for a in (b, b + "/")]
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public,
                algorithms=[_ALGORITHM],
                options={
                    "require": ["aud", "exp", "iat", "iss", "nbf"],
                    # Checked below against the sandbox's clock, in PyJWT's order.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                },
            )
            _check_times(claims, now=self.clock(), leeway=leeway)
            _check_audience(claims, audiences)
        except jwt.ExpiredSignatureError:
            raise TokenRejected("The token is expired.") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("The token is not yet valid (nbf).") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected(f"The token's audience is not {base!r}.") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("The token's signature is invalid.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"The token lacks the {exc.claim!r} claim.") from None
        except jwt.InvalidTokenError:
            raise TokenRejected("The token is malformed.") from None
        if claims.get("iss") not in self._issuers():
            raise TokenRejected("The token was issued by another authority (iss).")
        if claims.get("tid") != self.tenant_id:
            raise TokenRejected("The token was issued for another tenant (tid).")
        if claims.get("idtyp") == "app":
            if not claims.get("roles"):
                raise TokenRejected("The app-only token carries no role (roles).")
        elif not claims.get("scp") and not claims.get("roles"):
            raise TokenRejected("The token carries neither a scope (scp) nor a role (roles).")
        return claims


def _check_times(claims: Mapping[str, Any], *, now: float, leeway: float) -> None:
    """PyJWT's `iat`, `nbf` and `exp` checks, against `now` (the sandbox's clock)."""
    try:
        iat, nbf, exp = (int(claims[name]) for name in ("iat", "nbf", "exp"))
    except (TypeError, ValueError):
        raise jwt.DecodeError("The iat, nbf and exp claims must be integers.") from None
    if iat > now + leeway:
        raise jwt.ImmatureSignatureError("The token is not yet valid (iat)")
    if nbf > now + leeway:
        raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")
    if exp <= now - leeway:
        raise jwt.ExpiredSignatureError("Signature has expired")


def _check_audience(claims: Mapping[str, Any], audiences: Sequence[str]) -> None:
    aud = claims.get("aud")
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not any(
        isinstance(v, str) and v in audiences for v in values
    ):
        raise jwt.InvalidAudienceError("Audience doesn't match")
