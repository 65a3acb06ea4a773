"""Grouping a plan into requests (`_batching`): which bulk action, chunk sizes, dry runs."""

from __future__ import annotations

import pandas as pd

from d365nb import PushPlan
from d365nb._batching import (
    BATCH_CHUNK,
    BULK_CHUNK,
    UPSERT_CHUNK,
    chunk_size,
    chunks,
    describe_groups,
    group_rows,
    plan_report,
)
from tests._support.tables import ACCOUNT, ID, plan_of


def test_chunks_cut_in_order_and_keep_every_row() -> None:
    rows = list(range(7))
    cut = list(chunks(rows, 3))  # type: ignore[arg-type]
    assert cut == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []


def test_chunk_size_defaults_per_strategy_and_batch_size_wins() -> None:
    assert chunk_size("$batch", None) == BATCH_CHUNK
    assert chunk_size("UpsertMultiple", None) == UPSERT_CHUNK
    assert chunk_size("CreateMultiple", None) == BULK_CHUNK
    assert chunk_size("UpdateMultiple", 7) == 7


def test_upserts_by_alternate_key_go_to_upsert_multiple() -> None:
    df = pd.DataFrame({"accountnumber": ["A-1", "A-2"], "name": ["a", "b"]})
    groups = group_rows(plan_of(df, key="accountnumber"), set())
    assert [(name, len(rows)) for name, rows in groups] == [("UpsertMultiple", 2)]


def test_a_table_without_bulk_support_falls_back_to_batch() -> None:
    df = pd.DataFrame({"name": ["a", "b"]})
    plan = plan_of(df, mode="create")
    assert [n for n, _ in group_rows(plan, set())] == ["CreateMultiple"]
    assert [n for n, _ in group_rows(plan, {("account", "CreateMultiple")})] == ["$batch"]


def test_updates_by_primary_id_use_update_multiple() -> None:
    df = pd.DataFrame({"accountid": [ID], "name": ["renamed"]})
    assert [n for n, _ in group_rows(plan_of(df, mode="update"), set())] == ["UpdateMultiple"]
    no_bulk = {("account", "UpdateMultiple")}
    assert [n for n, _ in group_rows(plan_of(df, mode="update"), no_bulk)] == ["$batch"]


def test_describe_groups_counts_requests() -> None:
    df = pd.DataFrame({"name": [f"n{i}" for i in range(5)]})
    groups = group_rows(plan_of(df, mode="create"), set())
    assert describe_groups(groups, 2) == ("CreateMultiple x 3 (<= 2 rows each)",)


def test_plan_report_is_one_row_per_frame_row_with_a_sample_request() -> None:
    df = pd.DataFrame({"name": ["a", "b"]}, index=["x", "y"])
    plan = plan_of(df, mode="create")
    report = plan_report(plan, group_rows(plan, set()), None)
    assert isinstance(report, PushPlan)
    assert report.table == ACCOUNT.logical_name and report.mode == "create"
    assert list(report.rows.index) == ["x", "y"]
    assert list(report.rows["operation"]) == ["create", "create"]
    assert report.sample is not None and report.sample["method"] == "POST"
