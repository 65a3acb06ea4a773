"""Fixtures of the reliability suite: a sandbox of its own, knobs, a proxy, the ledger."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from d365nb._client import Connection
from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to
from tests._support.ledger import write_report
from tests._support.proxy import Proxy

Knobs = Callable[..., dict[str, Any]]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    failed = session.testsfailed
    write_report(outcome=f"{failed} failed" if failed else "all passed")


@pytest.fixture(scope="package")
def rsb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox only the reliability tests use (120 accounts, in memory)."""
    with start(data_dir=tmp_path_factory.mktemp("reliab"), database=":memory:", rows=120) as sb:
        yield sb


def knobs_for(sb: Sandbox) -> tuple[httpx.Client, str]:
    context = ssl.create_default_context(cafile=sb.ca_cert)
    return httpx.Client(
        verify=context, trust_env=False, timeout=30
    ), f"{sb.base_url}/_sandbox/knobs/"


@pytest.fixture
def knobs(rsb: Sandbox) -> Iterator[Knobs]:
    """`knobs(latency_ms=50, ...)` changes `rsb`'s run-time knobs; undone (and counters
    cleared) after the test."""
    client, url = knobs_for(rsb)
    with client:
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
def proxy(rsb: Sandbox) -> Iterator[Proxy]:
    """A fault-injecting proxy in front of `rsb`."""
    with Proxy(rsb) as p:
        yield p


def through(sb: Sandbox, proxy: Proxy, **settings: Any) -> Connection:
    """A client-credentials connection whose Web API traffic goes through `proxy`."""
    return connect_to(sb, service_url=proxy.base_url, scope=f"{sb.base_url}/.default", **settings)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "sb"


@pytest.fixture(scope="package")
def short(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox whose access tokens live 2 seconds (so every request refreshes), slow."""
    with start(
        data_dir=tmp_path_factory.mktemp("short"),
        database=":memory:",
        rows=40,
        access_token_lifetime=2,
        latency_ms=250.0,
    ) as sb:
        yield sb
