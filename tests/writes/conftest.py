"""Write-path fixtures: a sandbox of its own (writes must not disturb other tests' data)."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import d365nb._accessor  # noqa: F401 - registers df.d365 (d365nb/__init__.py will do this)
from d365nb._client import Connection
from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to

Knobs = Callable[..., dict[str, Any]]


@pytest.fixture(scope="package")
def write_sandbox(sandbox_data_dir: Path) -> Iterator[Sandbox]:
    """A sandbox only the write tests change (50 seeded accounts, in memory)."""
    with start(data_dir=sandbox_data_dir, database=":memory:", rows=50) as sb:
        yield sb


@pytest.fixture
def conn(write_sandbox: Sandbox) -> Iterator[Connection]:
    """A signed-in connection (client credentials) to the write sandbox; closed after."""
    connection = connect_to(write_sandbox)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def knobs(write_sandbox: Sandbox) -> Iterator[Knobs]:
    """`knobs(latency_ms=50, ...)` changes the sandbox's run-time knobs; undone after."""
    context = ssl.create_default_context(cafile=write_sandbox.ca_cert)
    url = f"{write_sandbox.base_url}/_sandbox/knobs/"
    with httpx.Client(verify=context, trust_env=False, timeout=30) as client:
        original = client.get(url).json()

        def change(**values: Any) -> dict[str, Any]:
            response = client.post(url, json=values)
            assert response.status_code == 200, response.text
            return dict(response.json())

        try:
            yield change
        finally:
            client.post(url, json=original).raise_for_status()
            client.delete(url).raise_for_status()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Every (method, URL) sent through `Connection.arequest` (retries too), in order."""
    seen: list[tuple[str, str]] = []
    original = Connection.arequest

    async def arequest(self: Connection, method: str, url: str, **kwargs: Any) -> httpx.Response:
        seen.append((method, url))
        return await original(self, method, url, **kwargs)

    monkeypatch.setattr(Connection, "arequest", arequest)
    yield seen
