"""A small `account` table and a planner over it, for the pure push-planning tests."""

from __future__ import annotations

from typing import Any

import pandas as pd

from d365nb import PushOptions
from d365nb._metadata import AlternateKey, Attribute, Table
from d365nb._plan import Plan, plan_push, related_tables

__all__ = ["ACCOUNT", "ID", "TABLES", "plan_of"]

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


def plan_of(df: pd.DataFrame, *, attempt: str = "", **options: Any) -> Plan:
    """`df` planned against `ACCOUNT` with `PushOptions(**options)`, on connection `c1`."""
    opts = PushOptions(**options)
    related = {n: TABLES[n] for n in related_tables(df, ACCOUNT, opts)}
    return plan_push(
        df, ACCOUNT, TABLES, opts, related=related, connection_id="c1", attempt=attempt
    )
