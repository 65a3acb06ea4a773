"""The F&O sandbox fixtures: one sandbox with the F&O environment on, HTTPS clients for it.

Tokens come from the sandbox's identity service over HTTPS (client credentials for the
integration app, device code for users); every client trusts only the sandbox's CA.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from d365nb.sandbox import Sandbox, start

FnoUser = Callable[[str], httpx.Client]

ROWS = 120  # customers across the three companies: usmf 60, usrt 36, demf 24
PAGE_SIZE = 25  # the server page size the folder runs with (F&O's is 10,000)


def tls(sb: Sandbox) -> ssl.SSLContext:
    """An SSL context trusting the sandbox's CA."""
    return ssl.create_default_context(cafile=sb.ca_cert)


def fno_root(sb: Sandbox) -> str:
    """The F&O environment root (the token resource): the service URL without ``/data/``."""
    return sb.fno_service_url.removesuffix("/data/")


def app_token(sb: Sandbox) -> str:
    """A v2 client-credentials token for the F&O resource."""
    response = httpx.post(
        sb.token_uri,
        data={
            "grant_type": "client_credentials",
            "client_id": sb.confidential_client_id,
            "client_secret": sb.client_secret,
            "scope": f"{fno_root(sb)}/.default",
        },
        verify=tls(sb),
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def user_token(sb: Sandbox, user: str) -> str:
    """A delegated v2 token for a seeded user through the device-code flow."""
    with httpx.Client(verify=tls(sb)) as http:
        flow = http.post(
            f"{sb.authority}/oauth2/v2.0/devicecode",
            data={"client_id": sb.public_client_id, "scope": f"{fno_root(sb)}/.default"},
        ).json()
        sb.approve(flow["user_code"], user=user)
        response = http.post(
            sb.token_uri,
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                "client_id": sb.public_client_id,
                "device_code": flow["device_code"],
            },
        )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def client(sb: Sandbox, token: str) -> httpx.Client:
    """An HTTPS client for the F&O environment root, sending `token`."""
    return httpx.Client(
        base_url=fno_root(sb),
        headers={"Authorization": f"Bearer {token}"},
        verify=tls(sb),
        trust_env=False,
        timeout=60,
    )


@pytest.fixture(scope="session")
def fno_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox with the F&O environment on: in-memory, small, 25-row pages."""
    data_dir: Path = tmp_path_factory.mktemp("fno-sandbox")
    with start(
        data_dir=data_dir,
        database=":memory:",
        rows=10,
        fno=True,
        fno_rows=ROWS,
        fno_page_size=PAGE_SIZE,
        device_code_interval=1,
    ) as sb:
        yield sb


@pytest.fixture(scope="session")
def fno(fno_sandbox: Sandbox) -> Iterator[httpx.Client]:
    """A client for the environment root as the integration app (default company usmf)."""
    with client(fno_sandbox, app_token(fno_sandbox)) as http:
        yield http


@pytest.fixture(scope="session")
def fno_user(fno_sandbox: Sandbox) -> Iterator[FnoUser]:
    """`fno_user("megan")`: a client signed in as a seeded user (cached per user)."""
    made: dict[str, httpx.Client] = {}

    def make(user: str) -> httpx.Client:
        if user not in made:
            made[user] = client(fno_sandbox, user_token(fno_sandbox, user))
        return made[user]

    yield make
    for http in made.values():
        http.close()


@pytest.fixture
def knobs(fno: httpx.Client) -> Iterator[Callable[..., dict[str, object]]]:
    """`knobs(**changes)` changes the F&O knobs; the test's changes are undone after it."""
    before = fno.get("/_sandbox/knobs").json()

    def change(**changes: object) -> dict[str, object]:
        response = fno.post("/_sandbox/knobs", json=changes)
        assert response.status_code == 200, response.text
        return dict(response.json())

    yield change
    fno.post("/_sandbox/knobs", json=before)
    fno.delete("/_sandbox/knobs")
