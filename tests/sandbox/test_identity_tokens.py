"""TokenService: what it signs, and every way `verify()` refuses a token (pure, no server)."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from d365nb.sandbox._directory import APPS, CONFIDENTIAL_CLIENT_ID, PUBLIC_CLIENT_ID, USERS
from d365nb.sandbox._tokens import TokenRejected, TokenService, client_info

BASE = "https://127.0.0.1:8443"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC = next(a for a in APPS if a.client_id == PUBLIC_CLIENT_ID)
CONFIDENTIAL = next(a for a in APPS if a.client_id == CONFIDENTIAL_CLIENT_ID)


@pytest.fixture
def service() -> TokenService:
    return TokenService(base_url=BASE, key=KEY)


def user_token(service: TokenService, **changes: Any) -> str:
    kwargs: dict[str, Any] = dict(
        audience=BASE, app=PUBLIC, user=USERS[0], scopes=["user_impersonation"], lifetime=600
    )
    kwargs.update(changes)
    return service.issue_access_token(**kwargs)[0]


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_delegated_and_app_tokens(service):
    claims = service.verify(user_token(service), audience=BASE)
    assert claims["scp"] == "user_impersonation" and claims["oid"] == USERS[0].oid
    app_token, exp = service.issue_access_token(
        audience=BASE, app=CONFIDENTIAL, user=None, roles=CONFIDENTIAL.roles, lifetime=600
    )
    claims = service.verify(app_token, audience=BASE)
    assert claims["idtyp"] == "app" and claims["exp"] == exp
    assert claims["appid"] == CONFIDENTIAL.client_id


def test_audience_with_or_without_slash_and_loopback_alias(service):
    for aud in (BASE, BASE + "/", "https://localhost:8443"):
        token = user_token(service, audience=aud)
        assert service.verify(token, audience=BASE)["aud"] == aud
        assert service.verify(token, audience=BASE + "/")["aud"] == aud


def test_wrong_audience(service):
    token = user_token(service, audience="https://contoso.crm.dynamics.com")
    with pytest.raises(TokenRejected, match="audience"):
        service.verify(token, audience=BASE)
    with pytest.raises(TokenRejected, match="audience"):
        service.verify(user_token(service), audience="https://127.0.0.1:9999")


def test_bad_signature(service):
    header, payload, signature = user_token(service).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["oid"] = USERS[1].oid
    forged = f"{header}.{b64(claims)}.{signature}"
    with pytest.raises(TokenRejected, match="signature") as info:
        service.verify(forged, audience=BASE)
    assert forged not in str(info.value) and signature not in str(info.value)


def test_other_key_with_same_kid(service):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(user_token(service), options={"verify_signature": False})
    forged = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": service.kid})
    with pytest.raises(TokenRejected, match="signature"):
        service.verify(forged, audience=BASE)


def test_alg_none_and_hs256_are_refused(service):
    claims = jwt.decode(user_token(service), options={"verify_signature": False})
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': service.kid})}.{b64(claims)}."
    with pytest.raises(TokenRejected, match="'none'"):
        service.verify(unsigned, audience=BASE)
    hs = jwt.encode(claims, "secret-of-at-least-32-bytes-long!!", algorithm="HS256")
    with pytest.raises(TokenRejected, match="'HS256'"):
        service.verify(hs, audience=BASE)


def test_wrong_issuer_and_tenant(service):
    other_host = TokenService(base_url="https://login.example", key=KEY)
    with pytest.raises(TokenRejected, match="iss"):
        service.verify(user_token(other_host), audience=BASE)
    other_tenant = TokenService(
        base_url=BASE, key=KEY, tenant_id="2b0623dd-90fa-4c5c-bee8-8dc18bd4d948"
    )
    with pytest.raises(TokenRejected, match="iss|tid"):
        service.verify(user_token(other_tenant), audience=BASE)


def test_expired_and_leeway(service):
    token = user_token(service, lifetime=-5)
    with pytest.raises(TokenRejected, match="expired"):
        service.verify(token, audience=BASE)
    assert service.verify(token, audience=BASE, leeway=60)["aud"] == BASE


def test_app_token_without_role_and_user_token_without_scope(service):
    role_less, _ = service.issue_access_token(
        audience=BASE, app=CONFIDENTIAL, user=None, roles=(), lifetime=600
    )
    with pytest.raises(TokenRejected, match="no role"):
        service.verify(role_less, audience=BASE)
    with pytest.raises(TokenRejected, match="scope"):
        service.verify(user_token(service, scopes=[]), audience=BASE)


def test_malformed(service):
    with pytest.raises(TokenRejected, match="malformed"):
        service.verify("not-a-jwt", audience=BASE)


def test_id_token_claims_msal_needs(service):
    token = service.issue_id_token(app=PUBLIC, user=USERS[0], nonce="abc")
    claims = jwt.decode(token, KEY.public_key(), algorithms=["RS256"], audience=PUBLIC.client_id)
    assert {"aud", "iss", "iat", "exp", "sub", "oid", "tid", "preferred_username", "ver"} <= set(
        claims
    )
    assert claims["nonce"] == "abc" and claims["ver"] == "2.0"
    assert claims["iss"] == service.issuer(version="2.0")
    info = json.loads(base64.urlsafe_b64decode(client_info(USERS[0]) + "=="))
    assert info == {"uid": USERS[0].oid, "utid": service.tenant_id}


def test_signing_key_persists(tmp_path):
    first = TokenService.load(tmp_path, base_url=BASE)
    second = TokenService.load(tmp_path, base_url=BASE)
    assert first.kid == second.kid
    assert second.verify(user_token(first), audience=BASE)["aud"] == BASE
    assert "PRIVATE" not in repr(first)
