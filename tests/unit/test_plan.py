"""Push planning and grouping as pure functions: a frame and table metadata in, a plan out."""

from __future__ import annotations

import pandas as pd
import pytest

from d365nb import ConfigError, InvalidFrameError, PushOptions
from d365nb._batching import chunk_size, describe_groups, group_rows, plan_report
from d365nb._plan import plan_push
from tests._support.tables import ACCOUNT, ID, TABLES, plan_of


def test_push_options_are_checked_once_when_made() -> None:
    assert PushOptions().mode == "upsert"
    assert PushOptions(key="accountnumber").keys == ["accountnumber"]
    with pytest.raises(ConfigError, match="mode='merge'") as caught:
        PushOptions(mode="merge")
    assert caught.value.field == "mode"
    with pytest.raises(ConfigError):
        PushOptions(batch_size=0)
    assert PushOptions(batch_size=10_000).batch_size == 10_000  # a bulk action takes them
    with pytest.raises(ConfigError, match="batch_size=10001") as caught:
        PushOptions(batch_size=10_001)
    assert caught.value.field == "batch_size" and "1,000" in str(caught.value.hint)


def test_creates_get_client_ids_stable_per_attempt_and_one_bulk_request() -> None:
    df = pd.DataFrame({"name": ["a", "b"], "revenue": [1.0, 2.0]})

    first, again = (
        plan_of(df, mode="create", attempt="a1"),
        plan_of(df, mode="create", attempt="a1"),
    )
    other = plan_of(df, mode="create")  # a new attempt: identical rows are new rows
    fingerprints = dict(zip(first.fingerprints, first.attempts, strict=True))
    resumed = plan_push(
        df, ACCOUNT, TABLES, PushOptions(mode="create"), related={}, connection_id="c1",
        earlier=fingerprints,  # type: ignore[arg-type]
    )  # fmt: skip

    assert [r.op for r in first.rows] == ["create", "create"]
    assert [r.row_id for r in first.rows] == [r.row_id for r in again.rows]
    assert not {r.row_id for r in first.rows} & {r.row_id for r in other.rows}
    assert [r.row_id for r in resumed.rows] == [r.row_id for r in first.rows]
    assert resumed.resumed and not other.resumed
    assert first.frame.attrs["d365nb"]["connection"] == "c1"
    groups = group_rows(first, set())
    assert [(name, len(rows)) for name, rows in groups] == [("CreateMultiple", 2)]
    assert describe_groups(groups, None) == ("CreateMultiple of 2 rows (<= 5,000 rows each)",)
    assert chunk_size("$batch", None) == 250 and chunk_size("$batch", 10) == 10


def test_alternate_keys_and_lookup_binds_by_key_become_paths() -> None:
    df = pd.DataFrame(
        {
            "accountnumber": ["A-1", "O'B"],
            "name": ["x", "y"],
            "parentaccountid.accountnumber": ["P", None],
        }
    )

    plan = plan_of(df, key="accountnumber", mode="update")

    rows = plan.rows
    assert [r.path for r in rows] == [
        "accounts(accountnumber='A-1')",
        "accounts(accountnumber='O''B')",
    ]
    assert rows[0].body["parentaccountid@odata.bind"] == "/accounts(accountnumber='P')"
    assert rows[1].body["parentaccountid@odata.bind"] is None
    report = plan_report(plan, group_rows(plan, set()), None)
    assert report.counts == {"update": 2}


def test_every_problem_is_raised_at_once_before_any_io() -> None:
    df = pd.DataFrame({"accountid": ["not-a-guid", ID], "accountnumber": ["A", "a"]})

    with pytest.raises(InvalidFrameError) as caught:
        plan_of(df, key="accountnumber", mode="upsert")

    assert "appear more than once" in str(caught.value)


def test_an_id_with_a_trailing_newline_is_not_a_record_id() -> None:
    """Ids pasted from a file keep their newline; `^...$` with `match` let them through,
    and the path `accounts(<id>\\n)` would have been sent."""
    other = "6d2f5b8e-3c1a-4e8b-9f0a-1b2c3d4e5f60".upper()
    df = pd.DataFrame({"accountid": [ID, other + "\n"], "name": ["a", "b"]})

    with pytest.raises(InvalidFrameError) as caught:
        plan_of(df, mode="update")

    (problem,) = caught.value.problems
    assert problem.column == "accountid" and "not a record id" in problem.message
    assert list(problem.rows) == [1]
