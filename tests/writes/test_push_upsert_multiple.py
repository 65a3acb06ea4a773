"""Upserts through `UpsertMultiple`: exact created/updated statuses, fallbacks, drops."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import pandas as pd
import pytest

from d365nb import _write
from d365nb._client import Connection
from d365nb._metadata import Table
from d365nb._plan import loose_key
from d365nb._report import PushPlan, PushReport
from d365nb._sync import run_sync

from .conftest import Knobs

pytestmark = pytest.mark.sandbox


def _tag() -> str:
    return "u" + uuid.uuid4().hex[:10]


def _accounts(conn: Connection, tag: str) -> pd.DataFrame:
    df = conn.read("accounts", filter=f"startswith(name,'{tag}')", progress=False)
    out: pd.DataFrame = df.sort_values("name").reset_index(drop=True)
    return out


def _report(result: PushReport | PushPlan) -> PushReport:
    assert isinstance(result, PushReport), result
    return result


def _seed(conn: Connection, tag: str, n: int) -> PushReport:
    """`n` accounts `<tag> 000`... with account numbers `<tag>-0`..., made by `create`."""
    df = pd.DataFrame(
        {
            "name": [f"{tag} {i:03}" for i in range(n)],
            "accountnumber": [f"{tag}-{i}" for i in range(n)],
        }
    )
    return _report(df.d365.push("accounts", mode="create", conn=conn, progress=False))


def _half_new(tag: str, existing: int, n: int) -> pd.DataFrame:
    """`n` rows by account number: the first `existing` exist, the others are new."""
    return pd.DataFrame(
        {
            "accountnumber": [f"{tag}-{i}" for i in range(n)],
            "name": [f"{tag} {i:03} v2" for i in range(n)],
            "revenue": [float(i) for i in range(n)],
        }
    )


def test_alternate_key_upserts_report_created_and_updated_exactly(
    conn: Connection, sent: list[tuple[str, str]]
) -> None:
    tag = _tag()
    seeded = _seed(conn, tag, 3)
    sent.clear()
    df = _half_new(tag, 3, 7)

    report = _report(df.d365.push("accounts", key="accountnumber", conn=conn, progress=False))

    assert list(report.rows["status"]) == ["updated"] * 3 + ["created"] * 4, report.rows
    methods = [(m, u.split("?")[0]) for m, u in sent]
    assert methods[0] == ("GET", "accounts")  # which keys exist
    assert sorted(methods[1:]) == [  # found: updated; not found: created (ids answered)
        ("POST", "accounts/Microsoft.Dynamics.CRM.CreateMultiple"),
        ("POST", "accounts/Microsoft.Dynamics.CRM.UpsertMultiple"),
    ]
    assert "Microsoft.Dynamics.CRM.In(PropertyName=" in unquote(sent[0][1])
    back = _accounts(conn, tag).set_index("accountnumber")
    assert len(back) == 7
    assert list(back.loc[df["accountnumber"], "name"]) == list(df["name"])
    assert list(back.loc[df["accountnumber"], "accountid"]) == list(report.rows["id"])
    assert list(report.rows["id"][:3]) == list(seeded.rows["id"])


def test_primary_id_upserts_report_created_and_updated_exactly(
    conn: Connection, sent: list[tuple[str, str]]
) -> None:
    tag = _tag()
    seeded = _seed(conn, tag, 2)
    new_id = str(uuid.uuid4())
    df = pd.DataFrame(
        {
            "accountid": [*seeded.rows["id"], new_id],
            "name": [f"{tag} 000 v2", f"{tag} 001 v2", f"{tag} 002"],
        }
    )
    sent.clear()

    report = _report(df.d365.push("accounts", conn=conn, progress=False))

    assert list(report.rows["status"]) == ["updated", "updated", "created"], report.rows
    assert list(report.rows["id"]) == list(df["accountid"])
    assert ("POST", "accounts/Microsoft.Dynamics.CRM.UpsertMultiple") in sent
    back = _accounts(conn, tag)
    assert list(back["name"]) == list(df["name"])
    assert sorted(back["accountid"]) == sorted(df["accountid"])


def test_composite_key_upserts_go_through_upsert_multiple(
    conn: Connection, sent: list[tuple[str, str]]
) -> None:
    tag = _tag()
    key = ["firstname", "emailaddress1"]
    first = pd.DataFrame(
        {"firstname": [tag, tag], "emailaddress1": [f"a@{tag}.example", f"b@{tag}.example"]}
    ).assign(lastname=["Alpha", "Beta"])
    made = _report(first.d365.push("contacts", key=key, conn=conn, progress=False))
    assert list(made.rows["status"]) == ["created", "created"]
    assert ("POST", "contacts/Microsoft.Dynamics.CRM.CreateMultiple") in sent  # none found
    lookups = [unquote(u) for m, u in sent if m == "GET" and u.startswith("contacts?")]
    assert " and " in lookups[0]  # (k1 eq .. and k2 eq ..) or ...
    sent.clear()

    second = pd.DataFrame(
        {
            "firstname": [tag, tag],
            "emailaddress1": [f"b@{tag}.example", f"c@{tag}.example"],
            "lastname": ["Beta 2", "Gamma"],
        }
    )
    report = _report(second.d365.push("contacts", key=key, conn=conn, progress=False))

    assert list(report.rows["status"]) == ["updated", "created"], report.rows
    assert report.rows["id"].iloc[0] == made.rows["id"].iloc[1]
    assert ("POST", "contacts/Microsoft.Dynamics.CRM.UpsertMultiple") in sent
    back = conn.read("contacts", filter=f"firstname eq '{tag}'", progress=False)
    assert sorted(back["lastname"]) == ["Alpha", "Beta 2", "Gamma"]
    assert set(report.rows["id"]) <= set(back["contactid"])


def test_one_bad_row_fails_its_chunk_then_lands_the_rest_one_by_one(
    conn: Connection, sent: list[tuple[str, str]]
) -> None:
    tag = _tag()
    _seed(conn, tag, 6)
    df = _half_new(tag, 6, 12)
    df["parentaccountid"] = pd.array([None] * 12, dtype="string")
    df.loc[9, "parentaccountid"] = str(uuid.uuid4())  # points to nothing
    sent.clear()

    report = _report(
        df.d365.push("accounts", key="accountnumber", conn=conn, batch_size=4, progress=False)
    )

    statuses = report.rows["status"]
    assert statuses[9] == "failed" and report.rows["code"][9] == "0x80040217", report.rows
    assert list(statuses.drop(9)) == ["updated"] * 6 + ["created"] * 5, report.rows
    assert list(report.failed.index) == [9]
    bulk = [u for m, u in sent if u.endswith(("UpsertMultiple", "CreateMultiple"))]
    # Chunks of 4: found keys by UpsertMultiple, new ones by CreateMultiple (2 + 2); the
    # bad chunk (all new) failed whole and went per row.
    assert len(bulk) == 4 and sent.count(("POST", "$batch")) == 1
    back = _accounts(conn, tag).set_index("accountnumber")
    assert len(back) == 11
    good = df.drop(9)
    assert list(back.loc[good["accountnumber"], "name"]) == list(good["name"])
    assert list(back.loc[good["accountnumber"], "accountid"]) == list(report.rows["id"].drop(9))


def test_keys_the_service_matches_loosely_go_one_by_one(
    conn: Connection, sent: list[tuple[str, str]]
) -> None:
    tag = _tag()
    _seed(conn, tag, 2)
    df = pd.DataFrame(
        {
            # Another case than the row on the service (which compares without case).
            "accountnumber": [f"{tag.upper()}-0", f"{tag}-1", f"{tag}-7"],
            "name": [f"{tag} 000 v2", f"{tag} 001 v2", f"{tag} 007 v2"],
        }
    )
    sent.clear()

    report = _report(df.d365.push("accounts", key="accountnumber", conn=conn, progress=False))

    # Row 0 matched only loosely: sent as its own $batch part, whose 201/200 says which;
    # rows 1-2 through UpsertMultiple.
    assert list(report.rows["status"]) == ["updated", "updated", "created"]
    assert ("POST", "$batch") in sent
    assert ("POST", "accounts/Microsoft.Dynamics.CRM.UpsertMultiple") in sent
    back = _accounts(conn, tag)
    assert list(back["name"]) == [f"{tag} 000 v2", f"{tag} 001 v2", f"{tag} 007 v2"]


def test_dropped_connections_mid_upsert_multiple_keep_statuses_exact(
    conn: Connection, knobs: Knobs, sent: list[tuple[str, str]]
) -> None:
    tag = _tag()
    n, existing = 120, 60
    _seed(conn, tag, existing)
    df = _half_new(tag, existing, n)
    run_sync(conn.catalog.table("account"))
    sent.clear()
    knobs(fault_drop_rate=0.3, fault_seed=5)

    report = _report(
        df.d365.push(
            "accounts",
            key="accountnumber",
            conn=conn,
            batch_size=20,
            parallel=False,
            progress=False,
        )
    )
    knobs(fault_drop_rate=0.0)

    bulk = [u for m, u in sent if u.endswith(("UpsertMultiple", "CreateMultiple"))]
    assert len(bulk) > n // 20  # some bulk calls were dropped and sent again
    assert list(report.rows["status"]) == ["updated"] * existing + ["created"] * (n - existing)
    back = _accounts(conn, tag)
    assert len(back) == n and back["accountnumber"].is_unique and back["accountid"].is_unique
    back = back.set_index("accountnumber")
    assert list(back.loc[df["accountnumber"], "name"]) == list(df["name"])
    assert list(back.loc[df["accountnumber"], "accountid"]) == list(report.rows["id"])


def test_switch_off_sends_upserts_one_by_one(
    conn: Connection, sent: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("d365nb._batching.UPSERT_MULTIPLE", False)
    tag = _tag()
    _seed(conn, tag, 1)
    sent.clear()

    report = _report(
        _half_new(tag, 1, 3).d365.push("accounts", key="accountnumber", conn=conn, progress=False)
    )

    assert list(report.rows["status"]) == ["updated", "created", "created"]
    assert sent == [("POST", "$batch")]


# -- units --------------------------------------------------------------------------------


def _table(conn: Connection, name: str) -> Table:
    table: Table = run_sync(conn.catalog.table(name))
    return table


def test_lookup_urls_stay_short_and_cover_every_key(conn: Connection) -> None:
    accounts = _table(conn, "account")
    keys: list[Mapping[str, Any]] = [{"accountnumber": f"ACC-{i:07d}"} for i in range(1000)]

    urls = _write._lookup_urls(accounts, ["accountnumber"], keys)

    assert len(urls) > 1 and all(len(u) <= _write._URL_LIMIT for u in urls)
    assert all(u.startswith("accounts?$select=accountid,accountnumber&$filter=") for u in urls)
    joined = "".join(urls)
    assert all(f"%22{k['accountnumber']}%22" in joined for k in keys)

    quoted = _write._lookup_urls(accounts, ["accountnumber"], [{"accountnumber": 'O"Neil'}])
    assert quoted == [
        "accounts?$select=accountid,accountnumber&$filter=(accountnumber%20eq%20'O%22Neil')"
    ]


def test_loose_keys_ignore_case_accents_and_trailing_spaces() -> None:
    assert loose_key({"k": "Émile-1 "}) == loose_key({"k": "emile-1"})
    assert loose_key({"a": 1, "b": "X"}) == loose_key({"b": "x", "a": 1.0})
    assert loose_key({"k": " a"}) != loose_key({"k": "a"})
