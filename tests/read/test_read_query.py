"""`conn.read()` takes a `d365nb.Query` as well as a table name and keywords."""

from __future__ import annotations

import pandas as pd
import pytest

import d365nb
from d365nb import ConfigError, Connection
from d365nb._sync import run_sync

pytestmark = pytest.mark.sandbox


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["d365nb"] == b.attrs["d365nb"]


def test_a_query_reads_the_same_frame_as_the_keywords(conn: Connection) -> None:
    query = (
        d365nb.Query("accounts")
        .select("name", "revenue", "industrycode")
        .filter(revenue__gt=1_000_000)
        .orderby("name")
        .top(25)
        .count()
    )

    by_query = conn.read(query, progress=False)
    by_keywords = conn.read(
        "accounts",
        select=["name", "revenue", "industrycode"],
        filter=d365nb.where(revenue__gt=1_000_000),
        orderby=["name"],
        top=25,
        count=True,
        progress=False,
    )

    assert 0 < len(by_query) <= 25
    _same(by_query, by_keywords)


def test_a_query_reads_the_same_frame_through_aread(conn: Connection) -> None:
    query = d365nb.Query("accounts").select("name", "createdon").filter(statecode=0)

    by_query = run_sync(conn.aread(query, progress=False))
    by_keywords = conn.read(
        "accounts", select=["name", "createdon"], filter="statecode eq 0", progress=False
    )

    _same(by_query, by_keywords)


def test_a_query_and_query_keywords_at_once_are_refused(conn: Connection) -> None:
    with pytest.raises(ConfigError, match="Query and query keywords") as caught:
        conn.read(d365nb.Query("accounts"), select=["name"])
    assert caught.value.field == "entity"
    with pytest.raises(ConfigError, match=r"\$apply"):
        conn.read(d365nb.Query("accounts").apply("groupby((statecode))"))
