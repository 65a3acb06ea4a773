"""The sandbox answers each Web API request with Python's cycle collector off (a page is
a dict per row, a bulk write a dict per target) and gives it back after, error or not."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import httpx
import pytest

from d365nb.sandbox._service import Service
from tests._support.collector import record_collector

pytestmark = pytest.mark.sandbox


@pytest.fixture
def handled(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """`gc.isenabled()` as each request is handled (the sandbox runs in this process)."""
    yield record_collector(monkeypatch, Service, "handle")
    gc.enable()


def test_requests_are_answered_with_the_collector_off_and_it_comes_back(
    api: httpx.Client, handled: list[bool]
) -> None:
    assert api.get("accounts", params={"$select": "name", "$top": "3"}).status_code == 200
    bad = api.post(
        "accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": [{"name": "x"}]}
    )
    assert bad.status_code == 400  # no @odata.type: refused
    assert api.get("accounts(not-a-guid)").status_code in (400, 404)
    assert handled == [False, False, False]
    assert gc.isenabled()
