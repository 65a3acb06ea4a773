"""`_lookahead.Lookahead`: look-ups sent before the plan, their answers handed to slices.

Pure: the look-ups go to a fake `fetch` that answers from a dict of existing keys.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import unquote

import httpx
import pandas as pd
import pytest

from d365nb import PushOptions
from d365nb._keys import upsert_keys
from d365nb._lookahead import Lookahead
from d365nb._plan import PlannedRow

from .._support.tables import ACCOUNT, TABLES

EXISTING = {
    "A-1": "00000000-0000-0000-0000-000000000001",
    "A-3": "00000000-0000-0000-0000-00000000000c",
}


def _fetch(calls: list[str], *, fail: bool = False) -> Any:
    async def fetch(method: str, url: str, body: bytes, headers: dict[str, str], trace: Any) -> Any:
        calls.append(url)
        await trace("http11.send_request_body.complete", {})
        await asyncio.sleep(0)
        if fail:
            return None
        text = unquote(url)
        found = [
            {"accountid": rid, "accountnumber": key}
            for key, rid in EXISTING.items()
            if json.dumps(key) in text
        ]
        return httpx.Response(200, json={"value": found})

    return fetch


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"accountnumber": ["A-1", "A-2", "A-3"], "name": list("xyz")})


def _row(pos: int, key: str | None) -> PlannedRow:
    values = None if key is None else {"accountnumber": key}
    return PlannedRow(
        pos, "upsert", f"accounts(accountnumber='{key}')", {}, None, key_values=values
    )


def _start(
    calls: list[str], *, fail: bool = False, slice_rows: int = 2, fetch: Any = None
) -> Lookahead | None:
    options = PushOptions(mode="upsert", key="accountnumber")
    ahead, keyed = Lookahead.start(
        fetch or _fetch(calls, fail=fail),
        "/api/data/v9.2/",
        _frame(),
        ACCOUNT,
        TABLES,
        options,
        slice_rows=slice_rows,
    )
    assert keyed is not None and not keyed.problems
    return ahead


def test_answers_of_several_lookups_are_merged_for_a_slice() -> None:
    async def run() -> tuple[bool, Any, list[str]]:
        calls: list[str] = []
        ahead = _start(calls)
        assert ahead is not None and ahead.requests == 2  # 3 keys in slices of 2
        covered, found = await ahead.found([_row(0, "A-1"), _row(1, "A-2"), _row(2, "A-3")])
        await ahead.close(drain=False)
        return covered, found, calls

    covered, found, calls = asyncio.run(run())
    assert covered is True
    assert found == {0: EXISTING["A-1"], 1: None, 2: EXISTING["A-3"]}
    assert len(calls) == 2


def test_a_row_not_looked_up_or_with_another_key_is_not_covered() -> None:
    async def run() -> list[tuple[bool, Any]]:
        ahead = _start([])
        assert ahead is not None
        out = [
            await ahead.found([_row(0, "A-1"), _row(3, "Z-9")]),  # no row 3 was looked up
            await ahead.found([_row(1, "A-2 changed")]),
            await ahead.found([_row(2, "A-1")]),  # row 2's key is not this one
        ]
        await ahead.close(drain=False)
        return out

    assert asyncio.run(run()) == [(False, None)] * 3


def test_a_failed_lookup_sends_its_slice_the_exact_way() -> None:
    async def run() -> tuple[bool, Any]:
        ahead = _start([], fail=True)
        assert ahead is not None
        try:
            return await ahead.found([_row(0, "A-1")])
        finally:
            await ahead.close(drain=False)

    assert asyncio.run(run()) == (True, None)


def test_cancelling_one_waiting_slice_leaves_the_others_their_answer() -> None:
    async def run() -> tuple[bool, Any]:
        ahead = _start([], slice_rows=5)
        assert ahead is not None
        first = asyncio.ensure_future(ahead.found([_row(0, "A-1")]))
        await asyncio.sleep(0)
        first.cancel()
        second = await ahead.found([_row(2, "A-3")])
        await ahead.close(drain=False)
        return second

    assert asyncio.run(run()) == (True, {2: EXISTING["A-3"]})


@pytest.mark.parametrize(
    "options, columns",
    [
        ({"mode": "create"}, {}),
        ({"mode": "upsert"}, {}),  # by the primary id: nothing to look up
        ({"mode": "upsert", "key": "accountnumber", "dry_run": True}, {}),
        ({"mode": "upsert", "key": "accountnumber", "parallel": False}, {}),
        ({"mode": "upsert", "key": "accountnumber"}, {"_etag": ['W/"1"'] * 3}),
        # a key the plan refuses (empty text): no look-up either
        ({"mode": "upsert", "key": "accountnumber"}, {"accountnumber": ["A-1", "A-2", ""]}),
    ],
)
def test_pushes_that_do_not_go_by_upsert_multiple_send_nothing_ahead(
    options: dict[str, Any], columns: dict[str, Any]
) -> None:
    calls: list[str] = []
    df = _frame().assign(**columns)

    async def run() -> Lookahead | None:
        ahead, _ = Lookahead.start(
            _fetch(calls), "/", df, ACCOUNT, TABLES, PushOptions(**options), slice_rows=2
        )
        return ahead

    assert asyncio.run(run()) is None
    assert calls == []


def test_upsert_keys_are_the_keys_the_plan_uses() -> None:
    df = _frame()
    options = PushOptions(mode="upsert", key="accountnumber")
    keyed = upsert_keys(df, ACCOUNT, TABLES, options)
    assert keyed is not None and not keyed.problems
    assert keyed.segments == ["accountnumber='A-1'", "accountnumber='A-2'", "accountnumber='A-3'"]
    from d365nb._plan import plan_push

    plain = plan_push(df, ACCOUNT, TABLES, options, related={}, connection_id="c")
    reused = plan_push(df, ACCOUNT, TABLES, options, related={}, connection_id="c", keyed=keyed)
    assert [(r.path, r.key_values) for r in plain.rows] == [
        (r.path, r.key_values) for r in reused.rows
    ]


def _stalled(events: list[str], *, trace_it: bool) -> Any:
    """A look-up that is written (when `trace_it`) and then never answered."""

    async def fetch(method: str, url: str, body: bytes, headers: dict[str, str], trace: Any) -> Any:
        if trace_it:
            await trace("http11.send_request_headers.complete", {})
            events.append("headers")
            await trace("http11.send_request_body.complete", {})
            events.append("written")
        await asyncio.Event().wait()

    return fetch


@pytest.mark.parametrize("trace_it", [True, False])
def test_sent_waits_for_the_lookups_to_be_on_the_wire_and_no_longer(trace_it: bool) -> None:
    events: list[str] = []

    async def run() -> tuple[bool, float]:
        ahead = _start([], fetch=_stalled(events, trace_it=trace_it))
        assert ahead is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        await ahead.sent(timeout=30.0 if trace_it else 0.2)
        waited = loop.time() - started
        pending = any(not t.done() for t in ahead._tasks)
        await ahead.close(drain=False)
        return pending, waited

    pending, waited = asyncio.run(run())
    assert pending  # never answered: sent() did not wait for answers
    if trace_it:
        assert events == ["headers", "written"] * 2
        assert waited < 30.0  # returned once both were written, not at the timeout
    else:
        assert events == [] and waited >= 0.2  # nothing written: only the timeout ends it
