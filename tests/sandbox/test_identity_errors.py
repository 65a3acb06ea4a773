"""Errors in Entra's shape, with the AADSTS codes and HTTP statuses the real service uses."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import msal
import pytest

from d365nb.sandbox import Sandbox
from d365nb.sandbox._directory import TENANT_DOMAIN
from d365nb.sandbox._grants import redirect_uri_matches

pytestmark = pytest.mark.sandbox

UNKNOWN_CLIENT = "99999999-0000-4000-8000-000000000000"


def assert_aad_error(
    response: httpx.Response, *, status: int, error: str, code: int
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "no-store" in response.headers["cache-control"]
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert re.search(r"\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: ", body["error_description"])
    uuid.UUID(body["trace_id"])
    uuid.UUID(body["correlation_id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", body["timestamp"])
    assert body["error_uri"].endswith(f"/error?code={code}")
    return body


def client_credentials(sandbox: Sandbox, **changes: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": sandbox.confidential_client_id,
        "client_secret": sandbox.client_secret,
        "scope": f"{sandbox.base_url}/.default",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v != ""}


def test_unknown_tenant_90002(sandbox, https):
    tenant = "2b0623dd-90fa-4c5c-bee8-8dc18bd4d948"
    for path in (
        "v2.0/.well-known/openid-configuration",
        "oauth2/v2.0/token",
        "oauth2/token",
        "oauth2/v2.0/devicecode",
    ):
        url = f"{sandbox.base_url}/{tenant}/{path}"
        response = https.get(url) if "well-known" in path else https.post(url, data={})
        body = assert_aad_error(response, status=400, error="invalid_tenant", code=90002)
        assert tenant in body["error_description"]


def test_unknown_tenant_makes_msal_fail_at_construction(sandbox, requests_session):
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal.PublicClientApplication(
            sandbox.public_client_id,
            authority=f"{sandbox.base_url}/fabrikam.onmicrosoft.com",
            instance_discovery=False,
            http_client=requests_session,
        )


def test_unknown_client_700016(sandbox, https):
    response = https.post(
        sandbox.token_uri, data=client_credentials(sandbox, client_id=UNKNOWN_CLIENT)
    )
    body = assert_aad_error(response, status=400, error="unauthorized_client", code=700016)
    assert UNKNOWN_CLIENT in body["error_description"]
    response = https.post(
        f"{sandbox.authority}/oauth2/v2.0/devicecode",
        data={"client_id": UNKNOWN_CLIENT, "scope": f"{sandbox.base_url}/user_impersonation"},
    )
    assert_aad_error(response, status=400, error="unauthorized_client", code=700016)


def test_unknown_client_on_authorize_is_an_error_page(sandbox, https):
    response = https.get(
        sandbox.auth_uri,
        params={"client_id": UNKNOWN_CLIENT, "response_type": "code", "scope": "openid"},
    )
    assert response.status_code == 400
    assert "AADSTS700016" in response.text


def test_bad_secret_7000215_is_401(sandbox, https):
    response = https.post(sandbox.token_uri, data=client_credentials(sandbox, client_secret="nope"))
    body = assert_aad_error(response, status=401, error="invalid_client", code=7000215)
    assert "nope" not in body["error_description"]


def test_bad_secret_through_msal(sandbox, requests_session):
    app = msal.ConfidentialClientApplication(
        sandbox.confidential_client_id,
        client_credential="wrong",
        authority=sandbox.authority,
        instance_discovery=False,
        azure_region=False,
        http_client=requests_session,
    )
    result = app.acquire_token_for_client([f"{sandbox.base_url}/.default"])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]


def test_secret_in_basic_header_is_accepted_and_checked(sandbox, https):
    form = client_credentials(sandbox, client_secret="")
    ok = https.post(
        sandbox.token_uri, data=form, auth=(sandbox.confidential_client_id, sandbox.client_secret)
    )
    assert ok.status_code == 200, ok.text
    bad = https.post(sandbox.token_uri, data=form, auth=(sandbox.confidential_client_id, "bad"))
    assert_aad_error(bad, status=401, error="invalid_client", code=7000215)


def test_missing_secret_7000218(sandbox, https):
    response = https.post(sandbox.token_uri, data=client_credentials(sandbox, client_secret=""))
    assert_aad_error(response, status=401, error="invalid_client", code=7000218)


def test_public_client_cannot_use_client_credentials(sandbox, https):
    form = client_credentials(sandbox, client_id=sandbox.public_client_id, client_secret="")
    response = https.post(sandbox.token_uri, data=form)
    assert_aad_error(response, status=401, error="invalid_client", code=7000218)
    form["client_secret"] = "anything"
    response = https.post(sandbox.token_uri, data=form)
    assert_aad_error(response, status=401, error="invalid_client", code=700025)


def test_redirect_mismatch_50011_is_an_error_page(sandbox, https):
    for redirect_uri in ("https://evil.example/cb", "http://localhost:8400/other-path"):
        response = https.get(
            sandbox.auth_uri,
            params={
                "client_id": sandbox.public_client_id,
                "response_type": "code",
                "redirect_uri": redirect_uri,
                "scope": f"{sandbox.base_url}/user_impersonation openid",
            },
        )
        assert response.status_code == 400
        assert "AADSTS50011" in response.text
        assert "location" not in response.headers  # never redirected to an unverified URI


def _code(
    sandbox: Sandbox,
    public_app: Any,
    https: httpx.Client,
    forms: Any,
    sign_in: Any,
    redirect_uri: str = "http://localhost",
) -> tuple[dict[str, Any], dict[str, str]]:
    flow = public_app.initiate_auth_code_flow(
        [f"{sandbox.base_url}/user_impersonation"],
        redirect_uri=redirect_uri,
        response_mode="form_post",
    )
    (form,) = forms(sign_in(https, flow["auth_uri"], user="alex").text)
    params = {i["name"]: i["value"] for i in form["inputs"] if i.get("type") == "hidden"}
    return flow, params


@pytest.fixture
def public_app(sandbox: Sandbox, requests_session: Any) -> Any:
    return msal.PublicClientApplication(
        sandbox.public_client_id,
        authority=sandbox.authority,
        instance_discovery=False,
        http_client=requests_session,
    )


def test_reused_code_54005_and_unknown_code_70008(sandbox, public_app, https, forms, sign_in):
    flow, params = _code(sandbox, public_app, https, forms, sign_in)
    first = public_app.acquire_token_by_auth_code_flow(dict(flow), params)
    assert "access_token" in first, first
    form = {
        "client_id": sandbox.public_client_id,
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": "http://localhost",
        "code_verifier": flow["code_verifier"],
        "scope": f"{sandbox.base_url}/user_impersonation",
    }
    again = https.post(sandbox.token_uri, data=form)
    assert_aad_error(again, status=400, error="invalid_grant", code=54005)
    form["code"] = "not-a-code"
    unknown = https.post(sandbox.token_uri, data=form)
    assert_aad_error(unknown, status=400, error="invalid_grant", code=70008)


def test_expired_code_70008(sandbox, public_app, https, forms, sign_in):
    flow, params = _code(sandbox, public_app, https, forms, sign_in)
    service = sandbox._server._server.config.app.identity.state.identity  # type: ignore[union-attr]
    service.codes[params["code"]].expires_at = time.time() - 1
    result = public_app.acquire_token_by_auth_code_flow(flow, params)
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [70008]


def test_wrong_pkce_verifier_501481(sandbox, public_app, https, forms, sign_in):
    flow, params = _code(sandbox, public_app, https, forms, sign_in)
    flow["code_verifier"] = "x" * 43
    result = public_app.acquire_token_by_auth_code_flow(flow, params)
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [501481]


def test_resource_sent_to_v2_901002(sandbox, https):
    form = client_credentials(sandbox, scope="", resource=sandbox.base_url)
    response = https.post(sandbox.token_uri, data=form)
    assert_aad_error(response, status=400, error="invalid_request", code=901002)
    response = https.post(
        f"{sandbox.authority}/oauth2/v2.0/devicecode",
        data={"client_id": sandbox.public_client_id, "resource": sandbox.base_url},
    )
    assert_aad_error(response, status=400, error="invalid_request", code=901002)


@pytest.mark.parametrize("tenant", ["common", "organizations"])
def test_client_credentials_on_common_50059(sandbox, https, tenant):
    response = https.post(
        f"{sandbox.base_url}/{tenant}/oauth2/v2.0/token", data=client_credentials(sandbox)
    )
    assert_aad_error(response, status=400, error="invalid_request", code=50059)


def test_user_flows_work_on_common(sandbox, https):
    response = https.post(
        f"{sandbox.base_url}/common/oauth2/v2.0/devicecode",
        data={
            "client_id": sandbox.public_client_id,
            "scope": f"{sandbox.base_url}/user_impersonation openid",
        },
    )
    assert response.status_code == 200
    assert response.json()["user_code"]


@pytest.mark.parametrize(
    "scope",
    [
        "{base}/Account.ReadWrite",  # no such permission
        "user_impersonation",  # not tied to a resource
        "openid profile",  # no resource at all
    ],
)
def test_invalid_scope_70011(sandbox, https, scope):
    response = https.post(
        f"{sandbox.authority}/oauth2/v2.0/devicecode",
        data={"client_id": sandbox.public_client_id, "scope": scope.format(base=sandbox.base_url)},
    )
    assert_aad_error(response, status=400, error="invalid_scope", code=70011)


def test_invalid_scope_for_client_credentials(sandbox, https):
    response = https.post(
        sandbox.token_uri,
        data=client_credentials(sandbox, scope=f"{sandbox.base_url}/user_impersonation"),
    )
    body = assert_aad_error(response, status=400, error="invalid_scope", code=1002012)
    assert "/.default" in body["error_description"]


def test_unknown_resource_500011(sandbox, https):
    response = https.post(
        sandbox.token_uri,
        data=client_credentials(sandbox, scope="https://contoso.crm.dynamics.com/.default"),
    )
    assert_aad_error(response, status=400, error="invalid_resource", code=500011)


def test_unsupported_grant_type_and_missing_parameters(sandbox, https):
    response = https.post(
        sandbox.token_uri, data=client_credentials(sandbox, grant_type="password")
    )
    assert_aad_error(response, status=400, error="unsupported_grant_type", code=70003)
    response = https.post(sandbox.token_uri, data=client_credentials(sandbox, scope=""))
    body = assert_aad_error(response, status=400, error="invalid_request", code=900144)
    assert "'scope'" in body["error_description"]


def test_correlation_id_is_echoed(sandbox, https):
    correlation = str(uuid.uuid4())
    response = https.post(
        sandbox.token_uri,
        data=client_credentials(sandbox, client_secret="bad"),
        headers={"client-request-id": correlation},
    )
    assert response.json()["correlation_id"] == correlation


def test_authorize_errors_after_redirect_check_go_back_to_the_app(sandbox, https):
    response = https.get(
        sandbox.auth_uri,
        params={
            "client_id": sandbox.public_client_id,
            "response_type": "code",
            "redirect_uri": "http://localhost:1234",
            "scope": f"{sandbox.base_url}/nope",
            "state": "s1",
        },
    )
    assert response.status_code == 302
    location = httpx.URL(response.headers["location"])
    assert location.host == "localhost" and location.port == 1234
    assert location.params["error"] == "invalid_scope"
    assert location.params["error_description"].startswith("AADSTS70011:")
    assert location.params["state"] == "s1"


def test_prompt_none_login_required(sandbox, https):
    response = https.get(
        sandbox.auth_uri,
        params={
            "client_id": sandbox.public_client_id,
            "response_type": "code",
            "redirect_uri": "http://localhost",
            "scope": f"{sandbox.base_url}/user_impersonation",
            "prompt": "none",
            "login_hint": f"alex@{TENANT_DOMAIN}",
        },
    )
    assert response.status_code == 302
    assert httpx.URL(response.headers["location"]).params["error"] == "login_required"


def test_end_session_endpoint_is_served(sandbox: Sandbox, https: httpx.Client) -> None:
    config = https.get(f"{sandbox.authority}/v2.0/.well-known/openid-configuration").json()
    response = https.get(config["end_session_endpoint"])
    assert response.status_code == 200
    assert "signed out" in response.text


@pytest.mark.parametrize(
    ("requested", "registered", "matches"),
    [
        ("http://localhost:5000", "http://localhost", True),  # loopback: port ignored
        ("http://localhost:5000/", "http://localhost", True),
        ("http://127.0.0.1:1234", "http://127.0.0.1", True),
        ("http://localhost:5000/cb", "http://localhost", False),  # path must match
        ("https://localhost/redirect", "https://localhost/redirect", True),
        ("https://localhost:444/redirect", "https://localhost/redirect", True),
        ("http://localhost.evil.example", "http://localhost", False),
        ("https://app.example:8443/cb", "https://app.example/cb", False),  # port counts
        ("http://LOCALHOST", "http://localhost", True),
        ("http://localhost#frag", "http://localhost", False),
        ("http://localhost:notaport", "http://localhost", False),
    ],
)
def test_redirect_uri_matching(requested: str, registered: str, matches: bool) -> None:
    assert redirect_uri_matches(requested, registered) is matches
