"""Tokens for the F&O resource: v1 `resource=`, v2 `scope=<root>/.default`, msal; callers."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import msal
import pytest
import requests

from d365nb.sandbox import Sandbox

from .conftest import FnoUser, client, fno_root, tls


def test_v1_resource_token_reads(fno_sandbox: Sandbox) -> None:
    root = fno_root(fno_sandbox)
    response = httpx.post(
        f"{fno_sandbox.authority}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": fno_sandbox.confidential_client_id,
            "client_secret": fno_sandbox.client_secret,
            "resource": root,
        },
        verify=tls(fno_sandbox),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resource"] == root
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["aud"] == root
    with client(fno_sandbox, body["access_token"]) as http:
        assert http.get("/data/Currencies").status_code == 200


def test_msal_confidential_client_gets_a_token(fno_sandbox: Sandbox) -> None:
    with requests.Session() as session:
        session.trust_env = False
        session.verify = fno_sandbox.ca_cert
        app: Any = msal.ConfidentialClientApplication(
            fno_sandbox.confidential_client_id,
            client_credential=fno_sandbox.client_secret,
            authority=fno_sandbox.authority,
            instance_discovery=False,
            azure_region=False,
            http_client=session,
        )
        result = app.acquire_token_for_client(scopes=[f"{fno_root(fno_sandbox)}/.default"])
    assert "access_token" in result, result
    with client(fno_sandbox, result["access_token"]) as http:
        rows = http.get("/data/LegalEntities").json()["value"]
    assert {r["LegalEntityId"] for r in rows} == {"usmf", "usrt", "demf"}


def test_a_dataverse_token_is_refused(fno_sandbox: Sandbox) -> None:
    response = httpx.post(
        fno_sandbox.token_uri,
        data={
            "grant_type": "client_credentials",
            "client_id": fno_sandbox.confidential_client_id,
            "client_secret": fno_sandbox.client_secret,
            "scope": f"{fno_sandbox.base_url}/.default",
        },
        verify=tls(fno_sandbox),
    )
    with client(fno_sandbox, response.json()["access_token"]) as http:
        refused = http.get("/data/Currencies")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    with client(fno_sandbox, "not-a-token") as http:
        assert http.get("/data/Currencies").status_code == 401


@pytest.mark.parametrize(("user", "company"), [("alex", "usmf"), ("megan", "usrt")])
def test_delegated_users_read_their_default_company(
    fno_user: FnoUser, user: str, company: str
) -> None:
    rows = fno_user(user).get("/data/CustomersV3", params={"$select": "dataAreaId"}).json()
    assert {r["dataAreaId"] for r in rows["value"]} == {company}


def test_a_user_not_mapped_in_fno_gets_401(fno_user: FnoUser) -> None:
    assert fno_user("norole").get("/data/Currencies").status_code == 401
