"""A cold metadata cache: the first data page goes out beside the metadata requests, not
after them, and the read is the same as a sequential one with warm metadata."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from d365nb import ConfigError, Connection
from d365nb._metadata import Attribute, Table
from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to

pytestmark = pytest.mark.sandbox

SELECT = ["name", "revenue", "industrycode", "parentaccountid", "primarycontactid", "createdon"]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """600 accounts: 6 pages of 100, enough to split."""
    with start(data_dir=tmp_path_factory.mktemp("pf"), database=":memory:", rows=600) as sb:
        yield sb


def _events(conn: Connection) -> list[tuple[str, str]]:
    """("start" | "end", URL) of every request `conn` sends from now on, in order."""
    seen: list[tuple[str, str]] = []
    original = conn.arequest

    async def record(method: str, url: str, **kwargs: Any) -> Any:
        seen.append(("start", url))
        try:
            return await original(method, url, **kwargs)
        finally:
            seen.append(("end", url))

    conn.arequest = record  # type: ignore[method-assign]
    return seen


def _is_data(url: str) -> bool:
    return "/accounts" in url or url.startswith("accounts")


def _first_pages(events: list[tuple[str, str]]) -> list[str]:
    """The first page's requests (data, not a range after it)."""
    return [u for e, u in events if e == "start" and _is_data(u) and "accountid%20gt%20" not in u]


def _warm_sequential(sb: Sandbox, folder: Path, select: list[str] | None) -> pd.DataFrame:
    with connect_to(sb, metadata_cache=folder) as conn:
        return conn.read("accounts", select=select, page_size=100, parallel=False, progress=False)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("accountid", ignore_index=True)


@pytest.mark.parametrize("select", [SELECT, None], ids=["lookups", "every-column"])
def test_cold_cache_sends_the_first_page_before_the_metadata_answers(
    big: Sandbox, tmp_path: Path, select: list[str] | None
) -> None:
    expected = _warm_sequential(big, tmp_path / "warm", select)
    with connect_to(big, metadata_cache=tmp_path / "cold") as cold:
        events = _events(cold)
        got = cold.read("accounts", select=select, page_size=100, progress=False)
    assert cold.catalog.requests == 2, "the list of tables and one $batch of details"
    data_start = next(i for i, (e, u) in enumerate(events) if e == "start" and _is_data(u))
    details_end = next(i for i, (e, u) in enumerate(events) if e == "end" and "$batch" in u)
    assert data_start < details_end, "the first page was asked for before the details came"
    assert len(_first_pages(events)) == 1, "the prefetched page was used, not asked again"
    assert any("accountid%20gt%20" in u for _, u in events), "and the read was split after it"
    pd.testing.assert_frame_equal(_sorted(got), _sorted(expected))


def test_a_wrong_guess_drops_the_page_and_asks_again(
    big: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A guess that takes every column as plain makes a different request than the real
    metadata (lookups are `_x_value` + `$expand`): the prefetched page is not used."""
    import d365nb._prefetch as prefetch

    original = prefetch.guess_table

    def plain(summary: Table, tables: Any, select: list[str]) -> Table:
        guess = original(summary, tables, ["name"])
        columns = {c: Attribute(c, "String") for c in select}
        return dataclasses.replace(guess, attributes={**guess.attributes, **columns})

    expected = _warm_sequential(big, tmp_path / "warm", SELECT)
    monkeypatch.setattr(prefetch, "guess_table", plain)
    with connect_to(big, metadata_cache=tmp_path / "cold") as cold:
        events = _events(cold)
        got = cold.read("accounts", select=SELECT, page_size=100, progress=False)
    firsts = _first_pages(events)
    assert len(firsts) == 2 and firsts[0] != firsts[1], "dropped, then the real request"
    assert "$expand" in firsts[1] and "$expand" not in firsts[0]
    pd.testing.assert_frame_equal(_sorted(got), _sorted(expected))


def test_cold_cache_errors_are_the_warm_cache_errors(big: Sandbox, tmp_path: Path) -> None:
    with connect_to(big, metadata_cache=tmp_path) as cold:
        with pytest.raises(ConfigError, match="revenu"):
            cold.read("accounts", select=["name", "revenu"], progress=False)
        with pytest.raises(ConfigError):
            cold.read("acounts", progress=False)
        assert len(cold.read("accounts", select=["name"], top=5, progress=False)) == 5


def test_details_past_their_ttl_are_the_guess(
    big: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the TTL the details are fetched again, and the first page goes out at once,
    built from the expired details (not from names)."""
    import d365nb._prefetch as prefetch

    expected = _warm_sequential(big, tmp_path, SELECT)

    def no_names(*args: Any) -> Table:
        raise AssertionError("the expired details were the guess")

    monkeypatch.setattr(prefetch, "guess_table", no_names)
    with connect_to(big, metadata_cache=tmp_path) as later:
        later.catalog.ttl = 0
        events = _events(later)
        got = later.read("accounts", select=SELECT, page_size=100, progress=False)
    assert later.catalog.requests == 2, "the list and the details, fetched again"
    data_start = next(i for i, (e, u) in enumerate(events) if e == "start" and _is_data(u))
    details_end = next(i for i, (e, u) in enumerate(events) if e == "end" and "$batch" in u)
    assert data_start < details_end
    assert len(_first_pages(events)) == 1
    pd.testing.assert_frame_equal(_sorted(got), _sorted(expected))
