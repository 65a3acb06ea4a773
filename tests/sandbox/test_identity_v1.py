"""The v1 endpoints (`resource=`), driven with plain httpx as d365nb does for v1 URIs."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import jwt
import pytest

from d365nb.sandbox import start
from d365nb.sandbox._directory import user_by_name

from .test_identity_errors import assert_aad_error

pytestmark = pytest.mark.sandbox


def v1(sandbox: Any, path: str) -> str:
    return f"{sandbox.authority}/oauth2/{path}"


def claims_of(
    https: httpx.Client, sandbox: Any, token: str, audience: str | None = None
) -> dict[str, Any]:
    jwks = jwt.PyJWKSet.from_dict(https.get(f"{sandbox.base_url}/common/discovery/keys").json())
    key = jwks.keys[0].key
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=["RS256"], audience=audience or sandbox.base_url
    )
    return claims


def test_v1_client_credentials(sandbox, https):
    response = https.post(
        v1(sandbox, "token"),
        data={
            "grant_type": "client_credentials",
            "client_id": sandbox.confidential_client_id,
            "client_secret": sandbox.client_secret,
            "resource": sandbox.base_url,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    # v1 answers every number as a string.
    for key in ("expires_in", "ext_expires_in", "expires_on", "not_before"):
        assert isinstance(body[key], str) and body[key].isdigit(), key
    assert int(body["expires_on"]) - int(body["not_before"]) == int(body["expires_in"])
    assert body["resource"] == sandbox.base_url
    assert body["token_type"] == "Bearer"
    claims = claims_of(https, sandbox, body["access_token"])
    assert claims["idtyp"] == "app" and claims["roles"]


def test_v1_device_code_round_trip(sandbox, https):
    start_response = https.post(
        v1(sandbox, "devicecode"),
        data={"client_id": sandbox.public_client_id, "resource": sandbox.base_url},
    )
    assert start_response.status_code == 200, start_response.text
    flow = start_response.json()
    assert flow["verification_url"] == sandbox.device_login_url
    assert "verification_uri" not in flow
    assert flow["expires_in"] == "900"
    assert flow["interval"] == str(sandbox.options.device_code_interval)
    form = {
        "grant_type": "device_code",
        "client_id": sandbox.public_client_id,
        "code": flow["device_code"],
        "resource": sandbox.base_url,
    }
    pending = https.post(v1(sandbox, "token"), data=form)
    assert_aad_error(pending, status=400, error="authorization_pending", code=70016)
    sandbox.approve(flow["user_code"], user="megan")
    done = https.post(v1(sandbox, "token"), data=form)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["resource"] == sandbox.base_url
    assert body["scope"] == "user_impersonation"
    assert isinstance(body["expires_in"], str)
    claims = claims_of(https, sandbox, body["access_token"])
    assert claims["oid"] == user_by_name("megan").oid
    assert claims["scp"] == "user_impersonation"
    id_claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert id_claims["ver"] == "1.0" and id_claims["upn"] == user_by_name("megan").upn

    # v1 refresh: `resource=` again; the refresh token rotates.
    refresh = {
        "grant_type": "refresh_token",
        "client_id": sandbox.public_client_id,
        "refresh_token": body["refresh_token"],
        "resource": sandbox.base_url,
    }
    renewed = https.post(v1(sandbox, "token"), data=refresh)
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["refresh_token"] != body["refresh_token"]
    reused = https.post(v1(sandbox, "token"), data=refresh)
    assert_aad_error(reused, status=400, error="invalid_grant", code=70008)


def test_v1_auth_code(sandbox, https, forms, sign_in):
    auth_uri = str(
        httpx.URL(
            v1(sandbox, "authorize"),
            params={
                "client_id": sandbox.public_client_id,
                "response_type": "code",
                "redirect_uri": "http://127.0.0.1:5555/cb-not-registered",
                "resource": sandbox.base_url,
            },
        )
    )
    assert "AADSTS50011" in https.get(auth_uri).text
    auth_uri = auth_uri.replace("%2Fcb-not-registered", "")
    answer = sign_in(https, auth_uri, user="alex")
    assert answer.status_code == 302
    code = httpx.URL(answer.headers["location"]).params["code"]
    response = https.post(
        v1(sandbox, "token"),
        data={
            "grant_type": "authorization_code",
            "client_id": sandbox.public_client_id,
            "code": code,
            "redirect_uri": "http://127.0.0.1:5555",
            "resource": sandbox.base_url,
        },
    )
    assert response.status_code == 200, response.text
    assert claims_of(https, sandbox, response.json()["access_token"])["upn"].startswith("alex@")


def test_v1_resource_required_and_checked(sandbox, https):
    form = {
        "grant_type": "client_credentials",
        "client_id": sandbox.confidential_client_id,
        "client_secret": sandbox.client_secret,
    }
    missing = https.post(v1(sandbox, "token"), data=form)
    assert_aad_error(missing, status=400, error="invalid_request", code=900144)
    unknown = https.post(
        v1(sandbox, "token"), data={**form, "resource": "https://graph.microsoft.com"}
    )
    assert_aad_error(unknown, status=400, error="invalid_resource", code=500011)
    # The resource with a trailing slash is the same resource; `aud` is as requested.
    slash = https.post(v1(sandbox, "token"), data={**form, "resource": sandbox.base_url + "/"})
    assert slash.status_code == 200
    token = slash.json()["access_token"]
    assert claims_of(https, sandbox, token, sandbox.base_url + "/")["aud"] == sandbox.base_url + "/"


def test_v1_expired_device_code_is_code_expired(tmp_path):
    with start(data_dir=tmp_path, database=":memory:", rows=5, device_code_lifetime=1) as sb:
        context = ssl.create_default_context(cafile=sb.ca_cert)
        with httpx.Client(verify=context, trust_env=False) as client:
            flow = client.post(
                v1(sb, "devicecode"),
                data={"client_id": sb.public_client_id, "resource": sb.base_url},
            ).json()
            sb.knobs(clock_offset=2)  # the sandbox's clock, not a sleep
            response = client.post(
                v1(sb, "token"),
                data={
                    "grant_type": "device_code",
                    "client_id": sb.public_client_id,
                    "code": flow["device_code"],
                    "resource": sb.base_url,
                },
            )
    assert_aad_error(response, status=400, error="code_expired", code=70020)
