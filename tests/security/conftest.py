"""Security suite fixtures: the ledger's report at the end, a recording "other host"."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from d365nb.sandbox import Sandbox
from tests._support.ledger import write_report
from tests._support.proxy import Proxy


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    failed = session.testsfailed
    write_report(outcome=f"{failed} failed" if failed else "all passed")


@pytest.fixture
def elsewhere(sandbox: Sandbox) -> Iterator[Proxy]:
    """Another origin on loopback that records every request it gets (and its token)."""
    with Proxy(sandbox, upstream=None) as sink:
        yield sink


@pytest.fixture
def front(sandbox: Sandbox) -> Iterator[Proxy]:
    """A proxy in front of the session sandbox, to tamper with its answers."""
    with Proxy(sandbox) as p:
        yield p
