"""The F&O client's fixtures: one sandbox with the F&O environment, connections to it.

Every connection signs in over HTTPS against the sandbox's identity service and trusts only
its CA; `$metadata` is kept in memory (`metadata_cache=False`) unless a test says otherwise.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from d365nb._fno_client import FnoConnection
from d365nb.sandbox import Sandbox, start

ROWS = 120  # customers across the three companies: usmf 60, usrt 36, demf 24
PAGE_SIZE = 25  # the server's page size here (F&O's is 10,000), so reads span pages

Knobs = Callable[..., dict[str, object]]


@pytest.fixture(scope="session")
def fno_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox with the F&O environment on: in-memory, small, 25-row pages."""
    data_dir: Path = tmp_path_factory.mktemp("fno-client-sandbox")
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


def fno_connect(sb: Sandbox, **settings: object) -> FnoConnection:
    """`sb.connect(service="fno", ...)`, checked to be an F&O connection."""
    conn = sb.connect(service="fno", **settings)
    assert isinstance(conn, FnoConnection)
    return conn


@pytest.fixture(scope="session")
def conn(fno_sandbox: Sandbox) -> Iterator[FnoConnection]:
    """The integration app (client credentials; default company usmf)."""
    connection = fno_connect(fno_sandbox)
    yield connection
    connection.close()


@pytest.fixture
def fresh(fno_sandbox: Sandbox) -> Iterator[FnoConnection]:
    """A connection of its own (its own limiter and counters)."""
    connection = fno_connect(fno_sandbox)
    yield connection
    connection.close()


@pytest.fixture
def knobs(fno_sandbox: Sandbox, conn: FnoConnection) -> Iterator[Knobs]:
    """`knobs(**changes)` changes the F&O knobs; undone after the test."""
    root = conn.settings.resource
    token = conn.auth
    conn.sign_in()
    headers = {"Authorization": f"Bearer {token.current.token}"} if token.current else {}
    tls = ssl.create_default_context(cafile=fno_sandbox.ca_cert)
    http = httpx.Client(verify=tls, trust_env=False, headers=headers)
    before = http.get(f"{root}/_sandbox/knobs").json()

    def change(**changes: object) -> dict[str, object]:
        response = http.post(f"{root}/_sandbox/knobs", json=changes)
        assert response.status_code == 200, response.text
        return dict(response.json())

    yield change
    http.post(f"{root}/_sandbox/knobs", json=before)
    http.delete(f"{root}/_sandbox/knobs")
    http.close()


Seen = Callable[[], list[dict[str, object]]]


@pytest.fixture
def seen(fno_sandbox: Sandbox) -> Iterator[Seen]:
    """`seen()`: the F&O requests the sandbox answered since the test began (its log)."""
    yield from requests_seen(fno_sandbox)


def requests_seen(sb: Sandbox) -> Iterator[Seen]:
    """A `seen()` for `sb`'s F&O request log, cleared first (for fixtures of any scope)."""
    tls = ssl.create_default_context(cafile=sb.ca_cert)
    url = sb.fno_service_url.removesuffix("/data/") + "/_sandbox/requests"
    with httpx.Client(verify=tls, trust_env=False) as http:
        http.delete(url)

        def read() -> list[dict[str, object]]:
            return list(http.get(url).json()["requests"])

        yield read
