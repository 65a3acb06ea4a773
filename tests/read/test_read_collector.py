"""A read converts its pages with Python's cycle collector off (a dict per row, no
cycles) and gives it back however the read ends: whole, failed part-way, or refused."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from d365nb import Connection, PartialReadError
from d365nb._frames import FrameBuilder
from tests._support.collector import collector_off, record_collector

pytestmark = pytest.mark.sandbox

OPTIONS: dict[str, Any] = {"select": ["name", "revenue"], "page_size": 10, "progress": False}


@pytest.fixture
def pages(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """`gc.isenabled()` as each page is converted."""
    yield record_collector(monkeypatch, FrameBuilder, "add_page")
    gc.enable()  # whatever a failed test left


def test_pages_after_the_first_are_converted_with_the_collector_off(
    conn: Connection, pages: list[bool]
) -> None:
    for parallel in (False, True):
        pages.clear()
        df = conn.read("accounts", parallel=parallel, **OPTIONS)
        assert len(df) > 30 and len(pages) >= 3
        assert not any(pages[1:])  # the first page is taken with the plan
        assert gc.isenabled()


def test_a_read_that_fails_in_a_page_gives_the_collector_back(
    conn: Connection, pages: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = FrameBuilder.add_page  # the fixture's

    def third_fails(self: FrameBuilder, rows: Any) -> None:
        recorder(self, rows)
        if len(pages) == 3:
            raise OSError("disk full while converting")  # what a read stops on

    monkeypatch.setattr(FrameBuilder, "add_page", third_fails)
    with pytest.raises(PartialReadError):
        conn.read("accounts", parallel=False, **OPTIONS)
    assert len(pages) == 3 and not pages[2]
    assert gc.isenabled()


def test_a_caller_who_turned_the_collector_off_keeps_it_off(
    conn: Connection, pages: list[bool]
) -> None:
    with collector_off():
        assert len(conn.read("accounts", parallel=False, **OPTIONS)) > 30
    assert pages and not any(pages)
