"""`conn.aggregate()` over 200,000 accounts, past the sandbox's real 50,000-row limit.

One sandbox for the module, in its own process, seeded with 200,000 accounts and the default
`aggregate_record_limit`: the service refuses one unsplit aggregate (AggregateQueryRecordLimit),
and d365nb's `createdon` ranges still equal pandas on a full `conn.read()` of the columns.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from d365nb import Connection
from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to
from tests._support.oauth import client_credentials_token, tls

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

ROWS = 200_000
LIMIT = 50_000
REFUSED = {
    "code": "0x8004E023",
    "message": "AggregateQueryRecordLimit exceeded. Cannot perform this operation.",
}
NAMED = {
    "total": ("revenue", "sum"),
    "mean": ("revenue", "mean"),
    "n": ("accountid", "count"),
    "lo": ("revenue", "min"),
    "hi": ("revenue", "max"),
}


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """200,000 accounts (no cases), the default aggregate limit, a server process."""
    data_dir: Path = tmp_path_factory.mktemp("big")
    with start(
        subprocess=True, data_dir=data_dir, database=":memory:", rows=ROWS, customer_service=False
    ) as sb:
        yield sb


@pytest.fixture(scope="module")
def conn(big: Sandbox) -> Iterator[Connection]:
    c = connect_to(big, grant="client_credentials")
    yield c
    c.close()


@pytest.fixture(scope="module")
def accounts(conn: Connection) -> pd.DataFrame:
    """Every account, only the columns the aggregates use."""
    df = conn.read("accounts", select=["industrycode", "revenue", "createdon"], progress=False)
    assert len(df) == ROWS
    assert df["industrycode"].isna().any() and df["revenue"].isna().any()
    return df


@pytest.fixture
def aggregate_requests(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """The `$apply` and FetchXML requests d365nb sends while the test runs."""
    seen: list[httpx.Request] = []
    original = httpx.AsyncHTTPTransport.handle_async_request

    async def record(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
        if {"$apply", "fetchXml"} & set(request.url.params):
            seen.append(request)
        return await original(self, request)

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", record)
    return seen


def _check(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Same groups in the same order; counts, minima and maxima exact, sums and means close."""
    pd.testing.assert_index_equal(got.index, want.index, exact=True)
    for name in want.columns:
        pd.testing.assert_series_equal(
            got[name].astype("float64"),
            want[name].astype("float64"),
            check_exact=name in ("n", "lo", "hi"),
            rtol=1e-9,
        )


def test_the_sandbox_refuses_one_unsplit_aggregate(big: Sandbox) -> None:
    assert big.options.aggregate_record_limit == LIMIT  # the real default, no knob
    token = client_credentials_token(big)["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    fetch = (
        "<fetch aggregate='true'><entity name='account'>"
        "<attribute name='createdon' alias='m' groupby='true' dategrouping='month'/>"
        "<attribute name='accountid' alias='n' aggregate='count'/></entity></fetch>"
    )
    apply = "groupby((industrycode),aggregate(revenue with sum as total,$count as n))"
    with httpx.Client(
        base_url=big.service_url, verify=tls(big), headers=headers, timeout=120
    ) as api:
        for params in ({"$apply": apply}, {"fetchXml": fetch}):
            r = api.get("accounts", params=params)
            assert r.status_code == 400, r.text
            assert r.json()["error"] == REFUSED
        # The same request over fewer rows is answered: the refusal is the row count.
        under = api.get("accounts", params={"$apply": "filter(industrycode eq 1)/" + apply})
        assert under.status_code == 200, under.text
        assert 0 < sum(row["n"] for row in under.json()["value"]) <= LIMIT


def test_by_a_choice_equals_pandas(
    conn: Connection, accounts: pd.DataFrame, aggregate_requests: list[httpx.Request]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ranges, not the read-the-rows fallback
        got = conn.aggregate("accounts", by="industrycode", **NAMED)
    # Refused whole, then at least one range per 50,000 rows, every one answered.
    assert len(aggregate_requests) > ROWS // LIMIT
    want = accounts.groupby("industrycode", dropna=False, observed=True, sort=True).agg(**NAMED)
    assert isinstance(got.index.dtype, pd.CategoricalDtype)
    assert list(got.index.dtype.categories) == list(accounts["industrycode"].cat.categories)
    assert got.index.hasnans  # the accounts without an industry, last as in pandas
    assert got["n"].sum() == ROWS
    _check(got, want)


def test_by_month_equals_pandas(
    conn: Connection, accounts: pd.DataFrame, aggregate_requests: list[httpx.Request]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = conn.aggregate("accounts", by=("createdon", "month"), **NAMED)
    assert len(aggregate_requests) > ROWS // LIMIT
    assert all("fetchXml" in r.url.params for r in aggregate_requests)
    month = accounts["createdon"].dt.month.astype("Int64").rename("createdon_month")
    want = accounts.groupby(month, sort=True).agg(**NAMED)
    assert list(got.index) == list(range(1, 13))
    assert got["n"].sum() == ROWS
    _check(got, want)
