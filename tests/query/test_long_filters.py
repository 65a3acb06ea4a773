"""Filters too long for a URL: a GET over 32 KB goes inside `$batch`, a longer `In` in parts."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pandas as pd
import pytest

import d365nb
from d365nb import Connection
from d365nb._filters import split_in
from d365nb._session import MAX_BATCH_GET_URL, MAX_GET_URL, Session

pytestmark = pytest.mark.sandbox


@pytest.fixture
def batched(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The URL length of every GET the session sent inside `$batch`."""
    lengths: list[int] = []
    original = Session._batch_get

    async def spy(self: Session, url: Any, *args: Any) -> Any:
        lengths.append(len(str(url)))
        return await original(self, url, *args)

    monkeypatch.setattr(Session, "_batch_get", spy)
    return lengths


def _ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=random.Random(n).getrandbits(128) + i)) for i in range(n)]


def test_a_10000_id_in_filter_returns_exactly_those_rows(
    conn: Connection, batched: list[int]
) -> None:
    every = conn.read("accounts", select=["name"], progress=False)
    wanted = list(every["accountid"].astype(str))[::2]
    ids = _ids(10_000 - len(wanted)) + wanted
    random.Random(19).shuffle(ids)
    assert len(ids) == 10_000
    flt = d365nb.where(accountid__in=ids)
    assert len(flt) > MAX_BATCH_GET_URL  # too long even for a GET inside $batch
    got = conn.read("accounts", select=["name"], filter=flt, progress=False)
    assert sorted(got["accountid"].astype(str)) == sorted(wanted)
    want = every.set_index("accountid").loc[got["accountid"], "name"]
    assert list(got["name"]) == list(want)
    assert len(batched) >= 2 and all(MAX_GET_URL < n <= MAX_BATCH_GET_URL for n in batched)


def test_a_get_over_32_kb_goes_inside_batch(conn: Connection, batched: list[int]) -> None:
    every = conn.read("accounts", select=["name"], progress=False)
    ids = _ids(900) + list(every["accountid"].astype(str))[:3]
    flt = d365nb.where(accountid__in=ids, statecode=0)
    got = conn.read("accounts", select=["name", "statecode"], filter=flt, progress=False)
    want = every.merge(conn.read("accounts", select=["statecode"], progress=False))
    want = want[want["accountid"].isin(ids) & (want["statecode"] == "Active")]
    assert sorted(got["accountid"].astype(str)) == sorted(want["accountid"].astype(str))
    assert len(batched) == 1 and batched[0] > MAX_GET_URL


def test_errors_inside_batch_are_the_services(conn: Connection, batched: list[int]) -> None:
    flt = d365nb.where(accountid__in=_ids(800)) + " and nosuchcolumn eq 1"
    with pytest.raises(d365nb.ODataError) as info:
        conn.read("accounts", select=["name"], filter=flt, progress=False)
    assert info.value.status == 400 and "nosuchcolumn" in str(info.value)
    assert batched


def test_a_long_filter_without_an_in_list_is_refused_naming_the_limit(conn: Connection) -> None:
    flt = " or ".join(f"name eq '{i}'" for i in _ids(3_000))
    with pytest.raises(d365nb.ConfigError, match="65,536"):
        conn.read("accounts", select=["name"], filter=flt, progress=False)


def test_order_or_top_with_a_filter_read_in_parts_is_refused(conn: Connection) -> None:
    flt = d365nb.where(accountid__in=_ids(10_000))
    with pytest.raises(d365nb.ConfigError, match="in parts"):
        conn.read("accounts", filter=flt, orderby="name", progress=False)


# -- the switch, without I/O ---------------------------------------------------------------


def test_split_in_cuts_the_largest_top_level_in_into_chunks_that_fit() -> None:
    ids = _ids(1_000)
    flt = d365nb.where(statecode=0, accountid__in=ids, statuscode__in=[1, 2])
    chunks = split_in(flt, lambda text: len(text) <= 5_000)
    assert chunks is not None and len(chunks) > 1
    assert all(len(c) <= 5_000 for c in chunks)
    seen: list[str] = []
    for chunk in chunks:
        assert chunk.startswith("(statecode eq 0) and Microsoft.Dynamics.CRM.In(")
        assert 'PropertyValues=["1","2"]' in chunk
        seen += [i for i in ids if f'"{i}"' in chunk]
    assert seen == ids  # every value once, in order


@pytest.mark.parametrize(
    "flt",
    [
        "name eq 'x' or "
        'Microsoft.Dynamics.CRM.In(PropertyName=\'accountid\',PropertyValues=["a","b"])',
        'not Microsoft.Dynamics.CRM.In(PropertyName=\'accountid\',PropertyValues=["a","b"])',
        'Microsoft.Dynamics.CRM.NotIn(PropertyName=\'accountid\',PropertyValues=["a","b"])',
    ],
)
def test_split_in_leaves_filters_it_cannot_cut_exactly(flt: str) -> None:
    assert split_in(flt, lambda text: len(text) < 60) is None


def test_frames_equal_when_read_whole_or_in_parts(conn: Connection) -> None:
    every = conn.read("accounts", progress=False)
    ids = list(every["accountid"].astype(str)) + _ids(9_000)
    got = conn.read("accounts", filter=d365nb.where(accountid__in=ids), progress=False)
    got = got.set_index("accountid").sort_index()
    want = every.set_index("accountid").sort_index()
    pd.testing.assert_frame_equal(got.drop(columns="_etag"), want.drop(columns="_etag"))


def test_a_fetchxml_over_32_kb_goes_inside_batch(conn: Connection, batched: list[int]) -> None:
    every = conn.read("accounts", select=["name"], progress=False)
    ids = _ids(900) + list(every["accountid"].astype(str))[:4]
    values = "".join(f"<value>{i}</value>" for i in ids)
    xml = (
        "<fetch><entity name='account'><attribute name='name'/><filter>"
        f"<condition attribute='accountid' operator='in'>{values}</condition>"
        "</filter></entity></fetch>"
    )
    got = conn.fetchxml(xml, progress=False)
    assert sorted(got["accountid"].astype(str)) == sorted(ids[-4:])
    assert batched and batched[0] > MAX_GET_URL
