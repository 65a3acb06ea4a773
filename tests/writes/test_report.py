"""`PushReport` and `PushPlan`: every row once, counts, failed rows, text and HTML reprs."""

from __future__ import annotations

import time
import uuid

import pandas as pd
import pytest

from d365nb._client import Connection
from d365nb._report import STATUSES, PushPlan, PushReport, rows_frame
from d365nb.sandbox import Sandbox


def _report(statuses: list[str]) -> PushReport:
    frame = pd.DataFrame(
        {"name": [f"n{i}" for i in range(len(statuses))]}, index=list("abcdef")[: len(statuses)]
    )
    codes = [
        "0x80060892" if s == "failed" else ("0x80060882" if s == "conflict" else None)
        for s in statuses
    ]
    messages = ["<b>bad</b> & wrong" if s in ("failed", "conflict") else None for s in statuses]
    rows = rows_frame(
        frame.index,
        {"status": statuses, "code": codes, "message": messages, "id": [None] * len(statuses)},
    )
    return PushReport(
        table="account", mode="upsert", rows=rows, frame=frame, elapsed=2.0, requests=3
    )


def test_counts_list_every_status() -> None:
    report = _report(["created", "updated", "failed", "conflict", "created"])

    assert report.counts == {
        "created": 2,
        "updated": 1,
        "unchanged": 0,
        "deleted": 0,
        "conflict": 1,
        "failed": 1,
    }
    assert list(report.counts) == list(STATUSES)
    assert not report.ok
    assert report.rows_per_second == 2.5


def test_failed_and_conflicts_keep_the_original_columns() -> None:
    report = _report(["created", "failed", "conflict"])

    assert list(report.failed.index) == ["b"]
    assert list(report.failed.columns) == ["name"]
    assert list(report.conflicts["name"]) == ["n2"]
    failed = report.failed
    failed.loc["b", "name"] = "changed"
    assert report.frame.loc["b", "name"] == "n1"  # a copy: fixing it leaves the report alone


def test_text_and_html_reprs() -> None:
    report = _report(["created", "failed"] + ["conflict"] * 4)

    text = repr(report)
    html = report._repr_html_()

    assert text.startswith("<PushReport upsert to account: 1 created, 4 conflict, 1 failed")
    assert "row 'b': failed 0x80060892: <b>bad</b> & wrong" in text
    assert "&lt;b&gt;bad&lt;/b&gt; &amp; wrong" in html and "<b>bad</b>" not in html
    assert "report.failed" in html
    assert "0x80060882" in html


def test_an_all_good_report_is_short() -> None:
    report = _report(["updated", "updated"])

    assert report.ok
    assert (
        repr(report) == "<PushReport upsert to account: 2 updated (2 rows in 2.00 s, 3 requests)>"
    )


@pytest.mark.sandbox
def test_reports_and_plans_hold_no_secrets(conn: Connection, write_sandbox: Sandbox) -> None:
    tag = "s" + uuid.uuid4().hex[:10]
    df = pd.DataFrame({"name": [f"{tag} a", f"{tag} b"]})

    started = time.perf_counter()
    report = df.d365.push("accounts", mode="create", conn=conn, progress=False)
    took = time.perf_counter() - started
    assert isinstance(report, PushReport)
    plan = report.frame.d365.push("accounts", mode="update", conn=conn, dry_run=True)

    assert isinstance(report, PushReport) and isinstance(plan, PushPlan)
    token = conn.auth.current.token if conn.auth.current else ""
    assert token
    for text in (repr(report), report._repr_html_(), repr(plan), plan._repr_html_()):
        assert token not in text
        assert write_sandbox.client_secret not in text
    assert 0 < report.elapsed <= took
    assert report.requests >= 1
    assert plan.counts == {"update": 2}
    assert plan.sample is not None and plan.sample["headers"] == {"If-Match": "*"}
