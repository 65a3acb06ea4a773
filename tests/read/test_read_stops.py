"""A parallel read stopped after its first page: `PartialReadError`, no socket left open.

Over HTTPS through the fault-injecting proxy (`tests/_support/proxy.py`) in front of the
session sandbox.  `page_size=10` with `parallel=3` gives a first page too small to cut
(`sample_ranges` wants 4 values per range), so the rest's `createdon` bounds are asked
for (`_reader._bounds`) and the ranges come from them.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from urllib.parse import unquote_plus

import pandas as pd
import pytest

from d365nb import Connection, D365Error, PartialReadError
from d365nb._transport import RetryPolicy
from d365nb.sandbox import Sandbox
from d365nb.sandbox._connect import connect_to
from tests._support.proxy import Action, Proxy, answer

pytestmark = pytest.mark.sandbox

COLUMNS = ["name", "accountnumber", "revenue", "createdon"]
OPTIONS = {"select": COLUMNS, "page_size": 10, "progress": False}


def _through(sb: Sandbox, proxy: Proxy, **settings: object) -> Connection:
    return connect_to(sb, service_url=proxy.base_url, scope=f"{sb.base_url}/.default", **settings)


def _query(proxy: Proxy, n: int) -> str:
    return unquote_plus(proxy.seen[n - 1].query)


def _is_bounds(query: str) -> bool:
    return "$orderby=createdon" in query and "$top=1" in query


def _is_range(query: str) -> bool:
    return " gt " in query and not _is_bounds(query)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("accountid", ignore_index=True)


@pytest.fixture
def proxy(sandbox: Sandbox) -> Iterator[Proxy]:
    with Proxy(sandbox) as p:
        yield p


@pytest.fixture(scope="module")
def expected(sandbox: Sandbox) -> pd.DataFrame:
    with connect_to(sandbox) as conn:
        return conn.read("accounts", parallel=False, **OPTIONS)  # type: ignore[arg-type]


def test_a_failed_bounds_request_after_the_first_page_is_a_resumable_partial_read(
    sandbox: Sandbox, proxy: Proxy, expected: pd.DataFrame
) -> None:
    failing = True

    def rule(n: int, method: str, path: str) -> Action | None:
        if failing and _is_bounds(_query(proxy, n)):
            return answer(503, {"error": {"code": "0x0", "message": "busy"}}, Retry_After="0")
        return None

    proxy.rule = rule
    with _through(sandbox, proxy, retry=RetryPolicy(max_attempts=2)) as conn:
        with pytest.raises(PartialReadError) as info:
            conn.read("accounts", parallel=3, **OPTIONS)  # type: ignore[arg-type]
        err = info.value
        assert isinstance(err.__cause__, D365Error) and "503" in str(err.__cause__)
        assert proxy.injected >= 2  # the bounds were asked for, and refused
        pd.testing.assert_frame_equal(err.partial, expected.iloc[:10])  # the first page
        failing = False
        got = err.resume()
    assert len(expected) > 10
    pd.testing.assert_frame_equal(_sorted(got), _sorted(expected))
    pd.testing.assert_series_equal(got.dtypes, expected.dtypes)


def test_a_range_failing_while_others_are_in_flight_leaves_no_socket_open(
    sandbox: Sandbox, proxy: Proxy, expected: pd.DataFrame
) -> None:
    state = {"failing": True, "failed": 0, "asked": 0}

    def rule(n: int, method: str, path: str) -> Action | None:
        if not state["failing"] or not _is_range(_query(proxy, n)):
            return None
        state["asked"] += 1
        if not state["failed"]:  # the first range asked: refused at once (not retried)
            state["failed"] += 1
            return answer(400, {"error": {"code": "0x80040203", "message": "bad"}})
        return Action(delay=0.5)  # the others: still in flight when it fails

    proxy.rule = rule
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with _through(sandbox, proxy) as conn:
            with pytest.raises(PartialReadError) as info:
                conn.read("accounts", parallel=3, **OPTIONS)  # type: ignore[arg-type]
            err = info.value
            gc.collect()
            state["failing"] = False
            got = err.resume()
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
    assert state["failed"] == 1
    # The ranges in flight finished their page (not cancelled mid-request) and stopped:
    # their rows are in the partial frame, and none asked for a second page (4 ranges:
    # three of `createdon` and its nulls).
    assert len(err.partial) > 10 and state["asked"] <= 4
    assert err.partial["accountid"].is_unique
    pd.testing.assert_frame_equal(_sorted(got), _sorted(expected))
