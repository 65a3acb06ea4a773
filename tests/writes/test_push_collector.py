"""A push holds Python's cycle collector off while it plans (a dict per row, no cycles)
and turns it back on however the push ends: landed, dry run, refused, or Ctrl-C."""

from __future__ import annotations

import _thread
import gc
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from d365nb import InvalidFrameError, PushError, _write
from d365nb._client import Connection
from d365nb._report import PushPlan, PushReport
from tests._support.collector import collector_off, record_collector

pytestmark = pytest.mark.sandbox


@pytest.fixture
def during_plan(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """`gc.isenabled()` as each push's plan runs."""
    yield record_collector(monkeypatch, _write, "plan_push")
    gc.enable()  # whatever a failed test left


def _frame(n: int) -> pd.DataFrame:
    tag = "gc" + uuid.uuid4().hex[:8]
    return pd.DataFrame({"name": [f"{tag} {i}" for i in range(n)], "revenue": [1.0] * n})


def test_the_collector_is_off_while_planning_and_on_after_a_push(
    conn: Connection, during_plan: list[bool]
) -> None:
    report = _frame(30).d365.push("accounts", mode="create", conn=conn, progress=False)
    assert isinstance(report, PushReport) and report.counts["created"] == 30
    plan = _frame(3).d365.push("accounts", mode="create", conn=conn, dry_run=True)
    assert isinstance(plan, PushPlan)
    with pytest.raises(InvalidFrameError, match="revenue"):
        _frame(3).assign(revenue="lots").d365.push(
            "accounts", mode="create", conn=conn, progress=False
        )
    assert during_plan == [False, False, False]
    assert gc.isenabled()


def test_a_caller_who_turned_the_collector_off_keeps_it_off(
    conn: Connection, during_plan: list[bool]
) -> None:
    with collector_off():
        report = _frame(10).d365.push("accounts", mode="create", conn=conn, progress=False)
        assert isinstance(report, PushReport) and report.ok
    assert during_plan == [False]


def test_ctrl_c_during_the_plan_turns_the_collector_back_on(
    conn: Connection, during_plan: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = _write.plan_push  # the fixture's recorder

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        plan = original(*args, **kwargs)
        _thread.interrupt_main()  # Ctrl-C, as the kernel's Stop button sends it
        return plan

    monkeypatch.setattr(_write, "plan_push", interrupted)
    with pytest.raises((KeyboardInterrupt, PushError)):
        for _ in range(1000):  # the interrupt lands at the next bytecode of this thread
            _frame(5).d365.push("accounts", mode="create", conn=conn, progress=False)
    assert during_plan and not during_plan[0]
    assert gc.isenabled()


def test_pushes_side_by_side_leave_the_collector_on(
    conn: Connection, during_plan: list[bool]
) -> None:
    """Two pushes at once, from two threads: whichever finishes last, the collector is on."""
    reports: list[Any] = []

    def push() -> None:
        reports.append(_frame(400).d365.push("accounts", mode="create", conn=conn, progress=False))

    threads = [threading.Thread(target=push) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(reports) == 2 and all(r.counts["created"] == 400 for r in reports)
    assert len(during_plan) == 2
    assert gc.isenabled()
