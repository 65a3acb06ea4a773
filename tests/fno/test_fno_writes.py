"""Writes to F&O by natural key with dataAreaId: each mode, ETags, a bad row, dry run."""

from __future__ import annotations

import pandas as pd
import pytest

import d365nb
from d365nb._fno_client import FnoConnection
from d365nb._report import PushPlan, PushReport
from d365nb._sync import run_sync

from .conftest import Knobs


def groups(conn: FnoConnection, company: str) -> pd.DataFrame:
    return conn.read("CustomerGroups", company=company, progress=False)


def test_update_sends_only_changed_columns(conn: FnoConnection) -> None:
    before = groups(conn, "usrt")
    before.loc[0, "Description"] = "Changed by d365nb"
    plan = before.d365.push(dry_run=True)
    assert isinstance(plan, PushPlan)
    assert plan.counts == {"unchanged": len(before) - 1, "update": 1}
    assert plan.sample is not None and plan.sample["body"] == {"Description": "Changed by d365nb"}
    assert "dataAreaId='usrt'" in str(plan.sample["url"])
    report = before.d365.push(progress=False)
    assert isinstance(report, PushReport) and report.counts["updated"] == 1
    after = groups(conn, "usrt")
    assert after.loc[0, "Description"] == "Changed by d365nb"


def test_create_upsert_delete_by_natural_key(conn: FnoConnection) -> None:
    new = pd.DataFrame(
        {"dataAreaId": ["demf", "usmf"], "CustomerGroupId": ["T1", "T1"], "Description": ["a", "b"]}
    )
    created = conn.push(new, "CustomerGroups", mode="create", progress=False)
    assert isinstance(created, PushReport) and created.counts["created"] == 2, created
    both = new.assign(Description=["a2", "b2"])
    both.loc[2] = ["usrt", "T1", "c"]
    upserted = conn.push(both, "CustomerGroups", mode="upsert", progress=False)
    assert isinstance(upserted, PushReport)
    assert upserted.rows["status"].tolist() == ["updated", "updated", "created"]
    every = conn.read("CustomerGroups", filter="CustomerGroupId eq 'T1'", cross_company=True)
    assert dict(zip(every["dataAreaId"], every["Description"], strict=True)) == {
        "demf": "a2",
        "usmf": "b2",
        "usrt": "c",
    }
    updated = conn.push(both.iloc[:1].assign(Description="a3"), "CustomerGroups", mode="update")
    assert isinstance(updated, PushReport) and updated.counts["updated"] == 1
    deleted = conn.push(both, "CustomerGroups", mode="delete", progress=False)
    assert isinstance(deleted, PushReport) and deleted.counts["deleted"] == 3
    gone = conn.read("CustomerGroups", filter="CustomerGroupId eq 'T1'", cross_company=True)
    assert gone.empty
    missing = conn.push(both.iloc[:1], "CustomerGroups", mode="update", progress=False)
    assert isinstance(missing, PushReport) and missing.rows["status"].tolist() == ["failed"]


def test_etag_conflict(conn: FnoConnection, fresh: FnoConnection) -> None:
    mine = conn.read("CustomersV3", company="demf", top=2, progress=False)
    theirs = fresh.read("CustomersV3", company="demf", top=2, progress=False)
    theirs.loc[0, "CreditLimit"] = 1234.0
    assert fresh.push(theirs, progress=False).ok  # type: ignore[union-attr]
    mine.loc[0, "CreditLimit"] = 999.0
    report = mine.d365.push(progress=False)
    assert isinstance(report, PushReport)
    assert report.rows["status"].tolist()[0] == "conflict"
    assert len(report.conflicts) == 1
    forced = mine.d365.push(force=True, progress=False)
    assert isinstance(forced, PushReport) and forced.counts["updated"] == 1


def test_a_change_set_with_one_bad_row(conn: FnoConnection) -> None:
    rows = pd.DataFrame(
        {
            "dataAreaId": ["usmf"] * 3,
            "CustomerAccount": ["BAD-1", "BAD-2", "BAD-3"],
            "OrganizationName": ["One", "Two", "Three"],
            "CustomerGroupId": ["10", "NOPE", "10"],
            "SalesCurrencyCode": ["USD", "USD", "USD"],
        }
    )
    report = conn.push(rows, "CustomersV3", mode="create", progress=False)
    assert isinstance(report, PushReport)
    assert report.rows["status"].tolist() == ["created", "failed", "created"]
    message = report.rows.loc[1, "message"]
    assert "NOPE" in message and "Infolog" not in message and "\n" not in message
    assert report.failed["CustomerAccount"].tolist() == ["BAD-2"]
    with pytest.raises(d365nb.PushError):
        conn.push(rows.iloc[1:2], "CustomersV3", mode="create", on_error="raise", progress=False)


def test_business_rule_500_is_one_sentence_never_retried(fresh: FnoConnection) -> None:
    async def post() -> None:
        body = {"dataAreaId": "usmf", "CustomerGroupId": "10"}
        await fresh.arequest("POST", "CustomerGroups", json=body)

    with pytest.raises(d365nb.ODataError) as err:
        run_sync(post())
    error = err.value
    assert error.status == 500
    assert error.service_message.startswith("Cannot create a record in Customer groups")
    assert "not retried" in (error.hint or "")


def test_keys_are_required(conn: FnoConnection) -> None:
    frame = pd.DataFrame({"CustomerGroupId": ["10"], "Description": ["x"]})
    with pytest.raises(d365nb.ConfigError) as err:
        conn.push(frame, "CustomerGroups", mode="update", progress=False)
    assert "dataAreaId" in err.value.message


def test_create_returns_number_sequence_keys(conn: FnoConnection) -> None:
    order = pd.DataFrame(
        {
            "dataAreaId": ["usmf"],
            "OrderingCustomerAccountNumber": ["US-000001"],
            "CurrencyCode": ["USD"],
        }
    )
    report = conn.push(order, "SalesOrderHeadersV2", mode="create", progress=False)
    assert isinstance(report, PushReport) and report.ok, report
    number = report.rows.loc[0, "id"].split("SalesOrderNumber=")[1]
    assert number and number != "None"
    read = conn.read(
        "SalesOrderHeadersV2", filter=f"SalesOrderNumber eq '{number}'", progress=False
    )
    assert len(read) == 1 and read.loc[0, "SalesOrderStatus"] == "Backorder"


def test_a_push_waits_out_a_429_storm(fresh: FnoConnection, knobs: Knobs) -> None:
    rows = groups(fresh, "usmf")
    rows.loc[0, "Description"] = "After the storm"
    knobs(throttle_next=2, retry_after_seconds=1)
    report = rows.d365.push(progress=False)
    assert isinstance(report, PushReport) and report.counts["updated"] == 1, report
    assert knobs()["throttle_next"] == 0
    assert groups(fresh, "usmf").loc[0, "Description"] == "After the storm"
