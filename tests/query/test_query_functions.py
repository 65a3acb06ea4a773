"""Query functions (`where(createdon__lastxdays=30)`, `Under`...) equal pandas filters."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

import d365nb
from d365nb import Connection

pytestmark = pytest.mark.sandbox

UTC = dt.timezone.utc


def _ids(frame: pd.DataFrame, key: str) -> list[str]:
    return sorted(frame[key].astype(str))


@pytest.fixture(scope="module")
def accounts(conn: Connection) -> pd.DataFrame:
    return conn.read("accounts", progress=False)


def _days_since_oldest(frame: pd.DataFrame) -> int:
    now = pd.Timestamp.now(tz=UTC)
    return int((now - frame["createdon"].min()).days)


def test_relative_dates_equal_pandas(conn: Connection, accounts: pd.DataFrame) -> None:
    now = pd.Timestamp.now(tz=UTC)
    today = now.normalize()
    when = accounts["createdon"]
    span = max(_days_since_oldest(accounts), 2)
    x = span // 2
    cases = {
        "lastxdays": (x, (when >= today - pd.Timedelta(days=x)) & (when <= now)),
        "olderthanxdays": (x, when < now - pd.Timedelta(days=x)),
        "lastxhours": (24 * x, (when >= now - pd.Timedelta(hours=24 * x)) & (when <= now)),
        "thisyear": (True, when.dt.year == now.year),
        "lastyear": (True, when.dt.year == now.year - 1),
        "today": (True, when.dt.normalize() == today),
    }
    seen_rows = 0
    for op, (value, mask) in cases.items():
        got = conn.read(
            "accounts",
            select=["accountid"],
            filter=d365nb.where(**{f"createdon__{op}": value}),
            progress=False,
        )
        assert _ids(got, "accountid") == _ids(accounts[mask], "accountid"), op
        seen_rows += len(got)
    assert seen_rows > 0


def test_on_and_between_equal_pandas(conn: Connection, accounts: pd.DataFrame) -> None:
    day = accounts["createdon"].iloc[0].date()
    when = accounts["createdon"].dt.date
    for op, mask in {
        "on": when == day,
        "onorafter": when >= day,
        "onorbefore": when <= day,
    }.items():
        got = conn.read(
            "accounts",
            select=["accountid"],
            filter=d365nb.where(**{f"createdon__{op}": day}),
            progress=False,
        )
        assert _ids(got, "accountid") == _ids(accounts[mask], "accountid"), op
    low, high = accounts["numberofemployees"].dropna().quantile([0.25, 0.75]).astype(int)
    got = conn.read(
        "accounts",
        select=["accountid"],
        filter=d365nb.where(numberofemployees__between=(low, high)),
        progress=False,
    )
    mask = accounts["numberofemployees"].between(low, high)
    assert _ids(got, "accountid") == _ids(accounts[mask], "accountid")


def _descendants(accounts: pd.DataFrame, root: str) -> set[str]:
    parent = dict(zip(accounts["accountid"].astype(str), accounts["parentaccountid"], strict=True))
    out: set[str] = set()
    for row in parent:
        node = parent[row]
        while isinstance(node, str):
            if node == root:
                out.add(row)
                break
            node = parent.get(node)
    return out


def test_hierarchy_functions_equal_pandas(conn: Connection, accounts: pd.DataFrame) -> None:
    parents = accounts["parentaccountid"].dropna()
    if parents.empty:
        pytest.skip("the seed has no account hierarchy")
    root = str(parents.value_counts().index[0])
    below = _descendants(accounts, root)
    for op, want in {
        "under": below,
        "underorequal": below | {root},
        "notunder": set(accounts["accountid"].astype(str)) - below,
    }.items():
        flt = d365nb.where(**{f"accountid__{op}": root})
        got = conn.read("accounts", select=["accountid"], filter=flt, progress=False)
        assert set(got["accountid"].astype(str)) == want, op
    child = next(iter(below))
    got = conn.read(
        "accounts",
        select=["accountid"],
        filter=d365nb.where(accountid__above=child),
        progress=False,
    )
    assert root in set(got["accountid"].astype(str))
    assert child not in set(got["accountid"].astype(str))


def test_raw_filter_text_and_unsupported_functions(conn: Connection) -> None:
    text = "Microsoft.Dynamics.CRM.Last7Days(PropertyName='createdon')"
    assert isinstance(conn.read("accounts", filter=text, progress=False), pd.DataFrame)
    with pytest.raises(d365nb.ODataError):
        conn.read(
            "accounts",
            filter="Microsoft.Dynamics.CRM.ThisFiscalYear(PropertyName='createdon')",
            progress=False,
        )
    with pytest.raises(d365nb.ConfigError):
        d365nb.where(createdon__thisyear=5)


def test_lambda_any_and_all_equal_pandas(conn: Connection, accounts: pd.DataFrame) -> None:
    opps = conn.read("opportunities", select=["parentaccountid", "estimatedvalue"], progress=False)
    limit = float(opps["estimatedvalue"].median())
    big = opps["estimatedvalue"] > limit
    with_opps = set(opps["parentaccountid"].dropna())
    anyone = set(opps.loc[big, "parentaccountid"].dropna())
    not_all = set(opps.loc[~big, "parentaccountid"].dropna())  # null values fail gt too
    everyone = set(accounts["accountid"].astype(str)) - not_all
    nav = "opportunity_parent_account"
    cases = {
        f"{nav}/any(o: o/estimatedvalue gt {limit})": anyone,
        f"{nav}/all(o: o/estimatedvalue gt {limit})": everyone,
        f"{nav}/any()": with_opps,
        f"not {nav}/any()": set(accounts["accountid"].astype(str)) - with_opps,
    }
    for text, want in cases.items():
        got = conn.read("accounts", select=["accountid"], filter=text, progress=False)
        assert set(got["accountid"].astype(str)) == want, text
    assert anyone and want


def test_lambda_builders_in_where_equal_pandas(conn: Connection, accounts: pd.DataFrame) -> None:
    opps = conn.read(
        "opportunities", select=["parentaccountid", "estimatedvalue", "name"], progress=False
    )
    limit = float(opps["estimatedvalue"].median())
    big = (opps["estimatedvalue"] > limit) & opps["name"].str.contains("a", case=False)
    with_opps = set(opps["parentaccountid"].dropna())
    anyone = set(opps.loc[big, "parentaccountid"].dropna())
    every = set(accounts["accountid"].astype(str))
    everyone = every - set(opps.loc[~big.fillna(False), "parentaccountid"].dropna())
    nav = "opportunity_parent_account"
    inner = d365nb.where(estimatedvalue__gt=limit, name__contains="a")
    cases = {
        d365nb.where(**{f"{nav}__any": inner}): anyone,
        d365nb.where(**{f"{nav}__all": inner}): everyone,
        d365nb.where(**{f"{nav}__any": True}): with_opps,
        d365nb.where(**{f"{nav}__any": True, "statecode": 0}): with_opps
        & set(accounts.loc[accounts["statecode"] == "Active", "accountid"].astype(str)),
    }
    for text, want in cases.items():
        got = conn.read("accounts", select=["accountid"], filter=text, progress=False)
        assert set(got["accountid"].astype(str)) == want, text
    assert anyone and everyone != every
    assert d365nb.where(**{f"{nav}__any": inner}).startswith(f"{nav}/any(o:(o/estimatedvalue gt")
    with pytest.raises(d365nb.ConfigError):
        d365nb.where(**{f"{nav}__all": True})
