"""msal itself signs in to the sandbox over HTTPS: device code, auth code + PKCE, client
credentials, refresh tokens; the tokens' claims and signatures are checked."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import msal
import pytest
import requests

from d365nb.sandbox import Sandbox
from d365nb.sandbox._directory import TENANT_DOMAIN, app_by_id, user_by_name
from d365nb.sandbox._tokens import service_principal_id

pytestmark = pytest.mark.sandbox


def verify(
    sandbox: Sandbox, session: requests.Session, token: str, audience: str
) -> dict[str, Any]:
    """Check `token`'s signature against the JWKS the sandbox serves, then its claims."""
    config = session.get(f"{sandbox.authority}/v2.0/.well-known/openid-configuration").json()
    jwks = jwt.PyJWKSet.from_dict(session.get(config["jwks_uri"]).json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=audience)


@pytest.fixture
def public_app(sandbox: Sandbox, requests_session: requests.Session) -> Any:
    return msal.PublicClientApplication(
        sandbox.public_client_id,
        authority=sandbox.authority,
        instance_discovery=False,
        http_client=requests_session,
    )


@pytest.fixture
def confidential_app(sandbox: Sandbox, requests_session: requests.Session) -> Any:
    return msal.ConfidentialClientApplication(
        sandbox.confidential_client_id,
        client_credential=sandbox.client_secret,
        authority=sandbox.authority,
        instance_discovery=False,
        azure_region=False,
        http_client=requests_session,
    )


def scopes(sandbox: Sandbox) -> list[str]:
    return [f"{sandbox.base_url}/user_impersonation"]


def check_user_token(
    sandbox: Sandbox, session: requests.Session, result: dict[str, Any], *, user: str
) -> dict[str, Any]:
    assert "access_token" in result, result
    person = user_by_name(user)
    claims = verify(sandbox, session, result["access_token"], sandbox.base_url)
    assert claims["aud"] == sandbox.base_url
    assert claims["scp"] == "user_impersonation"
    assert claims["oid"] == person.oid
    assert claims["upn"] == person.upn
    assert claims["tid"] == sandbox.tenant
    assert claims["appid"] == sandbox.public_client_id
    assert claims["iss"] == f"{sandbox.base_url}/{sandbox.tenant}/"
    assert claims["ver"] == "1.0"
    assert claims["exp"] > claims["iat"] >= claims["nbf"] - 1
    assert "roles" not in claims and "idtyp" not in claims
    assert result["id_token_claims"]["preferred_username"] == person.upn
    assert result["id_token_claims"]["aud"] == sandbox.public_client_id
    assert result["expires_in"] > 300  # msal treats shorter lifetimes as already expired
    assert f"{sandbox.base_url}/user_impersonation" in result["scope"].split()
    return claims


def test_device_code_approved_through_sandbox_endpoint(sandbox, public_app, requests_session):
    flow = public_app.initiate_device_flow(scopes=scopes(sandbox))
    assert "user_code" in flow, flow
    assert flow["verification_uri"] == f"{sandbox.base_url}/devicelogin"
    assert flow["user_code"] in flow["message"]
    assert sandbox.approve(flow["user_code"], user="megan")["user"] == f"megan@{TENANT_DOMAIN}"
    result = public_app.acquire_token_by_device_flow(flow)
    check_user_token(sandbox, requests_session, result, user="megan")
    (account,) = public_app.get_accounts()
    assert account["username"] == f"megan@{TENANT_DOMAIN}"
    assert account["home_account_id"] == f"{user_by_name('megan').oid}.{sandbox.tenant}"
    # The access token is now served from msal's cache.
    silent = public_app.acquire_token_silent(scopes(sandbox), account=account)
    assert silent["access_token"] == result["access_token"]
    assert silent["token_source"] == "cache"


def test_device_code_approved_on_the_html_page(sandbox, public_app, requests_session, https, forms):
    flow = public_app.initiate_device_flow(scopes=scopes(sandbox))
    page = https.get(flow["verification_uri"])
    (form,) = forms(page.text)
    typed = flow["user_code"].lower()  # people type codes in any case
    confirm = https.post(
        httpx.URL(flow["verification_uri"]).join(form["action"]), data={"otc": typed}
    )
    assert "Are you trying to sign in?" in confirm.text
    (form,) = forms(confirm.text)
    hidden = {i["name"]: i["value"] for i in form["inputs"] if i.get("type") == "hidden"}
    done = https.post(
        httpx.URL(flow["verification_uri"]).join(form["action"]),
        data={**hidden, "user": f"alex@{TENANT_DOMAIN}", "action": "approve"},
    )
    assert "You're signed in" in done.text
    result = public_app.acquire_token_by_device_flow(flow)
    check_user_token(sandbox, requests_session, result, user="alex")


@pytest.mark.parametrize("response_mode", ["form_post", "query"])
def test_auth_code_with_pkce(
    sandbox, public_app, requests_session, https, forms, sign_in, response_mode
):
    redirect_uri = "http://localhost:8400"  # registered as http://localhost: port ignored
    kwargs = {"response_mode": response_mode} if response_mode == "form_post" else {}
    if response_mode == "query":
        with pytest.warns(UserWarning, match="form_post"):
            flow = public_app.initiate_auth_code_flow(scopes(sandbox), redirect_uri=redirect_uri)
    else:
        flow = public_app.initiate_auth_code_flow(
            scopes(sandbox), redirect_uri=redirect_uri, **kwargs
        )
    query = dict(parse_qsl(urlsplit(flow["auth_uri"]).query))
    assert query["code_challenge_method"] == "S256"
    answer = sign_in(https, flow["auth_uri"], user="alex")
    if response_mode == "query":
        assert answer.status_code == 302
        location = urlsplit(answer.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == redirect_uri + "/"
        params = dict(parse_qsl(location.query))
    else:
        assert answer.status_code == 200
        (form,) = forms(answer.text)
        assert form["action"] == redirect_uri and form["method"].upper() == "POST"
        params = {i["name"]: i["value"] for i in form["inputs"] if i.get("type") == "hidden"}
    assert params["state"] == flow["state"]
    result = public_app.acquire_token_by_auth_code_flow(flow, params)
    check_user_token(sandbox, requests_session, result, user="alex")
    # msal checked the nonce; the id token echoes what the authorize request sent.
    assert result["id_token_claims"]["nonce"] == query["nonce"]


def test_auth_code_cancelled_redirects_access_denied(sandbox, public_app, https, forms, sign_in):
    flow = public_app.initiate_auth_code_flow(
        scopes(sandbox), redirect_uri="http://127.0.0.1:9999", response_mode="form_post"
    )
    answer = sign_in(https, flow["auth_uri"], user="alex", action="cancel")
    (form,) = forms(answer.text)
    params = {i["name"]: i["value"] for i in form["inputs"] if i.get("type") == "hidden"}
    assert params["error"] == "access_denied"
    assert params["state"] == flow["state"]
    result = public_app.acquire_token_by_auth_code_flow(flow, params)
    assert result["error"] == "access_denied"


def test_client_credentials(sandbox, confidential_app, requests_session):
    result = confidential_app.acquire_token_for_client([f"{sandbox.base_url}/.default"])
    assert "access_token" in result, result
    assert "refresh_token" not in result
    claims = verify(sandbox, requests_session, result["access_token"], sandbox.base_url)
    app = app_by_id(sandbox.confidential_client_id)
    assert app is not None
    assert claims["idtyp"] == "app"
    assert claims["roles"] == list(app.roles) and claims["roles"]
    assert claims["appid"] == sandbox.confidential_client_id
    assert claims["appidacr"] == "1"
    assert claims["oid"] == claims["sub"] == service_principal_id(app)
    assert "scp" not in claims and "upn" not in claims
    again = confidential_app.acquire_token_for_client([f"{sandbox.base_url}/.default"])
    assert again["token_source"] == "cache"


def test_refresh_token_rotates(sandbox, public_app, requests_session):
    flow = public_app.initiate_device_flow(scopes=scopes(sandbox))
    sandbox.approve(flow["user_code"])
    first = public_app.acquire_token_by_device_flow(flow)
    old_rt = first["refresh_token"]
    (account,) = public_app.get_accounts()
    refreshed = public_app.acquire_token_silent(
        scopes(sandbox), account=account, force_refresh=True
    )
    assert refreshed["token_source"] == "identity_provider"
    check_user_token(sandbox, requests_session, refreshed, user="alex")
    assert refreshed["access_token"] != first["access_token"]
    # The old refresh token was replaced and no longer works.
    reused = public_app.acquire_token_by_refresh_token(old_rt, scopes(sandbox))
    assert reused["error"] == "invalid_grant"
    assert reused["error_codes"] == [70008]
    # The new one (in msal's cache) still does.
    again = public_app.acquire_token_silent(scopes(sandbox), account=account, force_refresh=True)
    assert "access_token" in again, again


def test_revoked_refresh_tokens_fail(sandbox, public_app):
    flow = public_app.initiate_device_flow(scopes=scopes(sandbox))
    sandbox.approve(flow["user_code"], user="megan")
    result = public_app.acquire_token_by_device_flow(flow)
    assert sandbox.revoke_refresh_tokens(user="megan") >= 1
    answer = public_app.acquire_token_by_refresh_token(result["refresh_token"], scopes(sandbox))
    assert answer["error"] == "invalid_grant"
    assert answer["error_codes"] == [50173]


def test_short_lived_tokens_refresh(tmp_path, requests_session):
    from d365nb.sandbox import start

    with start(data_dir=tmp_path, database=":memory:", rows=5, access_token_lifetime=60) as sb:
        requests_session.verify = sb.ca_cert
        app = msal.PublicClientApplication(
            sb.public_client_id,
            authority=sb.authority,
            instance_discovery=False,
            http_client=requests_session,
        )
        flow = app.initiate_device_flow(scopes=scopes(sb))
        sb.approve(flow["user_code"])
        first = app.acquire_token_by_device_flow(flow)
        assert first["expires_in"] == 60
        (account,) = app.get_accounts()
        # msal treats a token with under 300 s left as expired and refreshes it.
        second = app.acquire_token_silent(scopes(sb), account=account)
        assert second["token_source"] == "identity_provider"
        assert second["access_token"] != first["access_token"]


def test_tokens_for_localhost_alias(sandbox, requests_session):
    port = sandbox.base_url.rsplit(":", 1)[1]
    authority = f"https://localhost:{port}/{TENANT_DOMAIN}"
    app = msal.ConfidentialClientApplication(
        sandbox.confidential_client_id,
        client_credential=sandbox.client_secret,
        authority=authority,
        instance_discovery=False,
        azure_region=False,
        http_client=requests_session,
    )
    result = app.acquire_token_for_client([f"https://localhost:{port}/.default"])
    assert "access_token" in result, result
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["aud"] == f"https://localhost:{port}"
    assert claims["tid"] == sandbox.tenant


def test_openid_configuration_and_keys(sandbox, https):
    for tenant in (sandbox.tenant, TENANT_DOMAIN):
        config = https.get(f"{sandbox.base_url}/{tenant}/v2.0/.well-known/openid-configuration")
        assert config.status_code == 200
        doc = config.json()
        # msal takes the tenant ("realm") from the token endpoint's first path segment.
        assert doc["token_endpoint"] == sandbox.token_uri
        assert doc["authorization_endpoint"] == sandbox.auth_uri
        assert doc["device_authorization_endpoint"].endswith("/oauth2/v2.0/devicecode")
        assert doc["issuer"] == f"{sandbox.base_url}/{sandbox.tenant}/v2.0"
    common = https.get(f"{sandbox.base_url}/common/v2.0/.well-known/openid-configuration").json()
    assert common["issuer"] == f"{sandbox.base_url}/{{tenantid}}/v2.0"
    v1 = https.get(f"{sandbox.authority}/.well-known/openid-configuration").json()
    assert v1["token_endpoint"] == f"{sandbox.authority}/oauth2/token"
    keys = https.get(v1["jwks_uri"]).json()["keys"]
    assert keys[0]["kty"] == "RSA" and keys[0]["use"] == "sig" and keys[0]["kid"]
    discovery = https.get(
        f"{sandbox.base_url}/common/discovery/instance",
        params={"api-version": "1.1", "authorization_endpoint": sandbox.auth_uri},
    ).json()
    assert discovery["tenant_discovery_endpoint"] == (
        f"{sandbox.authority}/v2.0/.well-known/openid-configuration"
    )
