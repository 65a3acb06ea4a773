"""Push planning and grouping as pure functions: a frame and table metadata in, a plan out."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from d365nb import ConfigError, InvalidFrameError, PushOptions
from d365nb._batching import chunk_size, describe_groups, group_rows, plan_report
from d365nb._metadata import AlternateKey, Attribute, Table
from d365nb._plan import Plan, plan_push, related_tables

A = Attribute
ACCOUNT = Table(
    "account",
    "accounts",
    "accountid",
    "name",
    attributes={
        a.logical_name: a
        for a in (
            A("accountid", "Uniqueidentifier", "UniqueidentifierType", is_primary_id=True),
            A("name", "String", "StringType", max_length=100, is_primary_name=True),
            A("accountnumber", "String", "StringType", max_length=20),
            A("revenue", "Money", "MoneyType", precision=2),
            A(
                "parentaccountid",
                "Lookup",
                "LookupType",
                targets=("account",),
                navigation={"account": "parentaccountid"},
            ),
        )
    },
    keys=(AlternateKey("accountnumberkey", ("accountnumber",)),),
)
TABLES = {"account": ACCOUNT}
ID = "00000000-0000-0000-0000-00000000000a"


def _plan(df: pd.DataFrame, *, attempt: str = "", **options: Any) -> Plan:
    opts = PushOptions(**options)
    related = {n: TABLES[n] for n in related_tables(df, ACCOUNT, opts)}
    return plan_push(
        df, ACCOUNT, TABLES, opts, related=related, connection_id="c1", attempt=attempt
    )


def test_push_options_are_checked_once_when_made() -> None:
    assert PushOptions().mode == "upsert"
    assert PushOptions(key="accountnumber").keys == ["accountnumber"]
    with pytest.raises(ConfigError, match="mode='merge'") as caught:
        PushOptions(mode="merge")
    assert caught.value.field == "mode"
    with pytest.raises(ConfigError):
        PushOptions(batch_size=0)


def test_creates_get_client_ids_stable_per_attempt_and_one_bulk_request() -> None:
    df = pd.DataFrame({"name": ["a", "b"], "revenue": [1.0, 2.0]})

    first, again = _plan(df, mode="create", attempt="a1"), _plan(df, mode="create", attempt="a1")
    other = _plan(df, mode="create")  # a new attempt: identical rows are new rows
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
    assert describe_groups(groups, None) == ("CreateMultiple of 2 rows (<= 1,000 rows each)",)
    assert chunk_size("$batch", None) == 250 and chunk_size("$batch", 10) == 10


def test_alternate_keys_and_lookup_binds_by_key_become_paths() -> None:
    df = pd.DataFrame(
        {
            "accountnumber": ["A-1", "O'B"],
            "name": ["x", "y"],
            "parentaccountid.accountnumber": ["P", None],
        }
    )

    plan = _plan(df, key="accountnumber", mode="update")

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
        _plan(df, key="accountnumber", mode="upsert")

    assert "appear more than once" in str(caught.value)
