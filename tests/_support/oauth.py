"""Tokens from the sandbox obtained the way another tool would (plain OAuth over httpx).

Shared by the sign-in, widget and reliability tests: they need tokens that did not come
through d365nb to feed it (given access token, refresh token grants).
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from d365nb.sandbox import Sandbox


def tls(sb: Sandbox) -> ssl.SSLContext:
    """Trust exactly the sandbox's CA."""
    return ssl.create_default_context(cafile=sb.ca_cert)


def client_credentials_token(sb: Sandbox) -> dict[str, Any]:
    """The token response for the sandbox's confidential client."""
    response = httpx.post(
        sb.token_uri,
        data={
            "grant_type": "client_credentials",
            "client_id": sb.confidential_client_id,
            "client_secret": sb.client_secret,
            "scope": f"{sb.base_url}/.default",
        },
        verify=tls(sb),
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def device_code_tokens(sb: Sandbox, user: str = "alex") -> dict[str, Any]:
    """Access and refresh token for `user`: a device code, approved, redeemed."""
    with httpx.Client(verify=tls(sb)) as http:
        start = http.post(
            sb.token_uri.replace("/token", "/devicecode"),
            data={
                "client_id": sb.public_client_id,
                "scope": f"{sb.base_url}/user_impersonation offline_access",
            },
        ).json()
        sb.approve(start["user_code"], user)
        answer = http.post(
            sb.token_uri,
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                "client_id": sb.public_client_id,
                "device_code": start["device_code"],
            },
        )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())
