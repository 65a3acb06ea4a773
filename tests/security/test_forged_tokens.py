"""The sandbox's Web API refuses forged tokens over HTTPS (401), and accepts the real one.

`tests/sandbox/test_identity_tokens.py` checks `TokenService.verify` itself; these go
through the running server, as an attacker would: every forgery is sent to WhoAmI and to a
table, and the answer must be 401 with no data and without echoing the token.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from d365nb.sandbox import Sandbox
from d365nb.sandbox._directory import CONFIDENTIAL_CLIENT_ID, app_by_id, user_by_name
from d365nb.sandbox._tokens import TokenService
from tests._support.ledger import record

pytestmark = pytest.mark.sandbox

AREA = "security/forged tokens"


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")

    def pad(s: str) -> str:
        return s + "=" * (-len(s) % 4)

    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


@pytest.fixture(scope="module")
def service(sandbox: Sandbox, sandbox_data_dir: Path) -> TokenService:
    """The sandbox's own token service (same data dir: same signing key)."""
    return TokenService.load(sandbox_data_dir, base_url=sandbox.base_url)


@pytest.fixture(scope="module")
def http(sandbox: Sandbox) -> Iterator[httpx.Client]:
    context = ssl.create_default_context(cafile=sandbox.ca_cert)
    with httpx.Client(verify=context, trust_env=False, timeout=30) as client:
        yield client


def _app_token(service: TokenService, sb: Sandbox, **changes: Any) -> str:
    app = app_by_id(CONFIDENTIAL_CLIENT_ID)
    assert app is not None
    token, _ = service.issue_access_token(
        audience=changes.pop("audience", sb.base_url),
        app=app,
        user=None,
        roles=changes.pop("roles", ("Dataverse.ApplicationUser",)),
        lifetime=changes.pop("lifetime", 600),
    )
    if not changes:
        return token
    _, claims, _ = _parts(token)
    claims.update(changes)
    return service._sign(claims)


def _user_token(service: TokenService, sb: Sandbox, **changes: Any) -> str:
    app = app_by_id(sb.public_client_id)
    assert app is not None
    token, _ = service.issue_access_token(
        audience=sb.base_url,
        app=app,
        user=user_by_name("alex"),
        scopes=changes.pop("scopes", ("user_impersonation",)),
        lifetime=600,
    )
    return token


def _forgeries(service: TokenService, sb: Sandbox) -> dict[str, Callable[[], str]]:
    def wrong_signature() -> str:
        header, payload, signature = _app_token(service, sb).split(".")
        flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
        return f"{header}.{payload}.{flipped}"

    def claims_changed_after_signing() -> str:
        header, _, signature = _app_token(service, sb).split(".")
        _, claims, _ = _parts(_app_token(service, sb))
        claims["roles"] = ["System Administrator"]
        claims["exp"] = int(time.time()) + 10**6
        return f"{header}.{_b64(claims)}.{signature}"

    def alg_none() -> str:
        header, claims, _ = _parts(_app_token(service, sb))
        return f"{_b64({**header, 'alg': 'none'})}.{_b64(claims)}."

    def hs256_with_the_public_key() -> str:
        _, claims, _ = _parts(_app_token(service, sb))
        public = service._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        import hashlib
        import hmac

        header = {"alg": "HS256", "typ": "JWT", "kid": service.kid}
        signing_input = f"{_b64(header)}.{_b64(claims)}"
        mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    def another_key_same_kid() -> str:
        _, claims, _ = _parts(_app_token(service, sb))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": service.kid})

    return {
        "wrong signature": wrong_signature,
        "claims changed after signing": claims_changed_after_signing,
        "alg none": alg_none,
        "HS256 keyed with the public key": hs256_with_the_public_key,
        "another key, same kid": another_key_same_kid,
        "wrong audience": lambda: _app_token(service, sb, audience="https://evil.example.com"),
        "audience of another port": lambda: _app_token(
            service, sb, audience=sb.base_url.rsplit(":", 1)[0] + ":1"
        ),
        "wrong tenant": lambda: _app_token(service, sb, tid="00000000-0000-0000-0000-000000000bad"),
        "wrong issuer": lambda: _app_token(service, sb, iss="https://evil.example.com/tenant/"),
        "expired": lambda: _app_token(
            service,
            sb,
            exp=int(time.time()) - 60,
            iat=int(time.time()) - 700,
            nbf=int(time.time()) - 700,
        ),
        "not yet valid": lambda: _app_token(service, sb, nbf=int(time.time()) + 600),
        "app token without a role": lambda: _app_token(service, sb, roles=()),
        "user token without a scope": lambda: _user_token(service, sb, scopes=()),
        "garbage": lambda: "not-a-jwt",
        "empty signature": lambda: _app_token(service, sb).rsplit(".", 1)[0] + ".",
    }


FORGERIES = [
    "wrong signature",
    "claims changed after signing",
    "alg none",
    "HS256 keyed with the public key",
    "another key, same kid",
    "wrong audience",
    "audience of another port",
    "wrong tenant",
    "wrong issuer",
    "expired",
    "not yet valid",
    "app token without a role",
    "user token without a scope",
    "garbage",
    "empty signature",
]


def test_the_genuine_tokens_are_accepted(
    sandbox: Sandbox, service: TokenService, http: httpx.Client
) -> None:
    for token in (_app_token(service, sandbox), _user_token(service, sandbox)):
        response = http.get(
            f"{sandbox.service_url}WhoAmI", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("forgery", FORGERIES)
def test_forged_tokens_are_rejected(
    sandbox: Sandbox, service: TokenService, http: httpx.Client, forgery: str
) -> None:
    token = _forgeries(service, sandbox)[forgery]()
    statuses = []
    for path in ("WhoAmI", "accounts?$select=name&$top=1"):
        response = http.get(
            f"{sandbox.service_url}{path}", headers={"Authorization": f"Bearer {token}"}
        )
        statuses.append(response.status_code)
        assert token not in response.text
        assert "accountid" not in response.text
    accepted = sum(1 for s in statuses if s < 400)
    record(AREA, forgery, faults=1, operations=2, leaks=accepted, checks=2)
    assert statuses == [401, 401], (forgery, statuses)
