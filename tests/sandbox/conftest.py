"""Web API fixtures: HTTPS clients for the session sandbox, as an app and as users."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator

import httpx
import pytest

from d365nb.sandbox import Sandbox

UserApi = Callable[[str], httpx.Client]


def tls(sb: Sandbox) -> ssl.SSLContext:
    """An SSL context trusting the sandbox's CA."""
    return ssl.create_default_context(cafile=sb.ca_cert)


def app_token(sb: Sandbox) -> str:
    """A client-credentials token for the sandbox's Web API (the application user)."""
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
    response.raise_for_status()
    return str(response.json()["access_token"])


def user_token(sb: Sandbox, user: str) -> str:
    """A delegated token for a seeded user, through the device-code flow."""
    flow = httpx.post(
        f"{sb.authority}/oauth2/v2.0/devicecode",
        data={"client_id": sb.public_client_id, "scope": f"{sb.base_url}/user_impersonation"},
        verify=tls(sb),
    ).json()
    sb.approve(flow["user_code"], user=user)
    response = httpx.post(
        sb.token_uri,
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "client_id": sb.public_client_id,
            "device_code": flow["device_code"],
        },
        verify=tls(sb),
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


@pytest.fixture(scope="session")
def api(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """An HTTPS client for `/api/data/v9.2/` authenticated as the application user."""
    with httpx.Client(
        base_url=sandbox.service_url,
        verify=tls(sandbox),
        headers={
            "Authorization": f"Bearer {app_token(sandbox)}",
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
        },
        timeout=30,
    ) as client:
        yield client


@pytest.fixture(scope="session")
def user_api(sandbox: Sandbox) -> Iterator[Callable[[str], httpx.Client]]:
    """A factory of clients signed in as a seeded user (``alex``, ``norole``...)."""
    clients: list[httpx.Client] = []

    def make(user: str) -> httpx.Client:
        client = httpx.Client(
            base_url=sandbox.service_url,
            verify=tls(sandbox),
            headers={"Authorization": f"Bearer {user_token(sandbox, user)}"},
            timeout=30,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
