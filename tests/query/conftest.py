"""Fixtures for server-side query tests: a connection to the session sandbox, closed afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from d365nb import Connection
from d365nb.sandbox import Sandbox
from d365nb.sandbox._connect import connect_to


@pytest.fixture(scope="module")
def conn(sandbox: Sandbox) -> Iterator[Connection]:
    c = connect_to(sandbox, grant="client_credentials")
    yield c
    c.close()
