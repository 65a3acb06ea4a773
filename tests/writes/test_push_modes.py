"""`df.d365.push()` against the sandbox over HTTPS: every mode, keys, lookups, round trips."""

from __future__ import annotations

import re
import uuid

import pandas as pd
import pytest

from d365nb._client import Connection
from d365nb._exceptions import PushError
from d365nb._report import PushPlan, PushReport
from d365nb.sandbox import Sandbox
from d365nb.sandbox._connect import connect_to

pytestmark = pytest.mark.sandbox

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[45][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _tag() -> str:
    return "t" + uuid.uuid4().hex[:10]


def _accounts(conn: Connection, tag: str) -> pd.DataFrame:
    df = conn.read("accounts", filter=f"startswith(name,'{tag}')", progress=False)
    out: pd.DataFrame = df.sort_values("name").reset_index(drop=True)
    return out


def _report(result: PushReport | PushPlan) -> PushReport:
    assert isinstance(result, PushReport), result
    return result


def test_create_sends_client_generated_ids(conn: Connection) -> None:
    tag = _tag()
    df = pd.DataFrame(
        {
            "name": [f"{tag} {i}" for i in range(7)],
            "accountnumber": [f"{tag}-{i}" for i in range(7)],
            "revenue": [1.5, 2.5, None, 4.0, 5.0, 6.0, 7.0],
        },
        index=[f"r{i}" for i in range(7)],
    )
    report = _report(df.d365.push("accounts", mode="create", conn=conn, progress=False))

    assert report.ok and report.counts["created"] == 7
    assert list(report.rows.index) == list(df.index)
    assert all(_GUID.match(i) for i in report.rows["id"])
    assert list(report.frame["accountid"]) == list(report.rows["id"])
    assert "accountid" not in df.columns  # the caller's frame is left alone
    back = _accounts(conn, tag)
    assert sorted(back["accountid"]) == sorted(report.rows["id"])
    assert back["revenue"].isna().sum() == 1
    assert back.loc[back["name"] == f"{tag} 3", "revenue"].item() == 4.0


def test_create_never_overwrites(conn: Connection) -> None:
    tag = _tag()
    df = pd.DataFrame({"name": [f"{tag} a", f"{tag} b"]})
    first = _report(df.d365.push("accounts", mode="create", conn=conn, progress=False))
    again = first.frame.assign(name=[f"{tag} changed a", f"{tag} changed b"])

    second = _report(again.d365.push("accounts", mode="create", conn=conn, progress=False))

    assert second.counts["failed"] == 2
    assert set(second.rows["code"]) == {"0x80040237"}
    assert sorted(_accounts(conn, tag)["name"]) == [f"{tag} a", f"{tag} b"]
    assert list(second.failed.index) == [0, 1]


def test_update_never_creates(conn: Connection) -> None:
    tag = _tag()
    made = _report(
        pd.DataFrame({"name": [f"{tag} x"]}).d365.push(
            "accounts", mode="create", conn=conn, progress=False
        )
    )
    ghost = str(uuid.uuid4())
    df = pd.DataFrame(
        {"accountid": [made.rows["id"].iloc[0], ghost], "name": [f"{tag} y", f"{tag} ghost"]}
    )

    report = _report(df.d365.push("accounts", mode="update", conn=conn, progress=False))

    assert list(report.rows["status"]) == ["updated", "failed"]
    assert report.rows["code"].iloc[1] == "0x80040217"
    assert list(_accounts(conn, tag)["name"]) == [f"{tag} y"]


def test_upsert_reports_created_and_updated(conn: Connection) -> None:
    tag = _tag()
    seed = pd.DataFrame({"name": [f"{tag} 1", f"{tag} 2"]})
    made = _report(seed.d365.push("accounts", mode="create", conn=conn, progress=False))
    read = _accounts(conn, tag)
    read["revenue"] = [10.0, 20.0]
    new = pd.DataFrame({"name": [f"{tag} 3"], "revenue": [30.0]})
    both = pd.concat([read, new], ignore_index=True)
    both.attrs = read.attrs  # concat keeps attrs only when all frames agree

    report = _report(both.d365.push(progress=False))

    assert list(report.rows["status"]) == ["updated", "updated", "created"]
    assert report.rows["id"].iloc[0] in set(made.rows["id"])
    back = _accounts(conn, tag)
    assert list(back["revenue"]) == [10.0, 20.0, 30.0]
    assert back["accountid"].iloc[2] == report.rows["id"].iloc[2]


def test_upsert_by_alternate_key(conn: Connection) -> None:
    tag = _tag()
    pd.DataFrame({"name": [f"{tag} old"], "accountnumber": [f"{tag}-1"]}).d365.push(
        "accounts", mode="create", conn=conn, progress=False
    )
    df = pd.DataFrame(
        {
            "accountnumber": [f"{tag}-1", f"{tag}-2", f"O'{tag}"],
            "name": [f"{tag} renamed", f"{tag} new", f"{tag} quoted"],
        }
    )

    report = _report(df.d365.push("accounts", key="accountnumber", conn=conn, progress=False))

    assert list(report.rows["status"]) == ["updated", "created", "created"], report.rows
    back = _accounts(conn, tag).set_index("accountnumber")
    assert back.loc[f"{tag}-1", "name"] == f"{tag} renamed"
    assert back.loc[f"O'{tag}", "name"] == f"{tag} quoted"
    assert set(report.rows["id"]) == set(back["accountid"])
    by_name = _report(
        df.assign(name=lambda d: d["name"] + "!").d365.push(
            "accounts", key="cr_accountnumber_key", mode="update", conn=conn, progress=False
        )
    )
    assert by_name.counts["updated"] == 3


def test_composite_key_upsert_update_delete(conn: Connection) -> None:
    tag = _tag()
    key = ["firstname", "emailaddress1"]
    df = pd.DataFrame(
        {
            "firstname": [tag, tag],
            "emailaddress1": [f"a@{tag}.example", f"b@{tag}.example"],
            "lastname": ["Alpha", "Beta"],
        }
    )
    created = _report(df.d365.push("contacts", key=key, conn=conn, progress=False))
    assert list(created.rows["status"]) == ["created", "created"]

    updated = _report(
        df.assign(jobtitle=["Chief", "Deputy"]).d365.push(
            "contacts", key=key, mode="update", conn=conn, progress=False
        )
    )
    assert list(updated.rows["status"]) == ["updated", "updated"]
    back = conn.read("contacts", filter=f"firstname eq '{tag}'", progress=False)
    assert sorted(back["jobtitle"]) == ["Chief", "Deputy"]
    assert sorted(back["contactid"]) == sorted(created.rows["id"])

    deleted = _report(
        df[key].d365.push("contacts", key=key, mode="delete", conn=conn, progress=False)
    )
    assert list(deleted.rows["status"]) == ["deleted", "deleted"]
    assert conn.read("contacts", filter=f"firstname eq '{tag}'", progress=False).empty


def test_delete_by_id(conn: Connection) -> None:
    tag = _tag()
    made = _report(
        pd.DataFrame({"name": [f"{tag} {i}" for i in range(3)]}).d365.push(
            "accounts", mode="create", conn=conn, progress=False
        )
    )
    gone = made.frame[["accountid"]].copy()
    gone.loc[3] = str(uuid.uuid4())

    report = _report(gone.d365.push("accounts", mode="delete", conn=conn, progress=False))

    assert list(report.rows["status"]) == ["deleted", "deleted", "deleted", "failed"]
    assert report.rows["code"].iloc[3] == "0x80040217"
    assert _accounts(conn, tag).empty


def test_lookups_bind_from_ids_and_alternate_keys(conn: Connection) -> None:
    tag = _tag()
    parents = pd.DataFrame(
        {"name": [f"{tag} P1", f"{tag} P2"], "accountnumber": [f"{tag}-P1", f"{tag}-P2"]}
    )
    made = _report(parents.d365.push("accounts", mode="create", conn=conn, progress=False))
    p1, p2 = made.rows["id"]
    children = pd.DataFrame(
        {
            "name": [f"{tag} C1", f"{tag} C2", f"{tag} C3"],
            "parentaccountid.accountnumber": [f"{tag}-P1", f"{tag}-P2", None],
        }
    )
    _report(children.d365.push("accounts", mode="create", conn=conn, progress=False))
    by_id = pd.DataFrame({"name": [f"{tag} C4"], "parentaccountid": [p2]})
    _report(by_id.d365.push("accounts", mode="create", conn=conn, progress=False))
    contact = pd.DataFrame(
        {"lastname": [tag], "parentcustomerid.account.accountnumber": [f"{tag}-P1"]}
    )
    contact_report = _report(
        contact.d365.push("contacts", mode="create", conn=conn, progress=False)
    )

    back = _accounts(conn, tag).set_index("name")
    assert back.loc[f"{tag} C1", "parentaccountid"] == p1
    assert back.loc[f"{tag} C2", "parentaccountid"] == p2
    assert pd.isna(back.loc[f"{tag} C3", "parentaccountid"])
    assert back.loc[f"{tag} C4", "parentaccountid"] == p2
    people = conn.read("contacts", filter=f"lastname eq '{tag}'", progress=False)
    assert people["parentcustomerid"].tolist() == [p1]
    assert people["parentcustomerid_table"].tolist() == ["account"]
    assert contact_report.ok

    # A missing value in a sent lookup column clears the lookup.
    clear = back.reset_index()[["accountid", "parentaccountid"]].iloc[:1].copy()
    clear["parentaccountid"] = pd.NA
    _report(clear.d365.push("accounts", mode="update", conn=conn, progress=False))
    assert pd.isna(_accounts(conn, tag).set_index("name").loc[f"{tag} C1", "parentaccountid"])


@pytest.mark.parametrize("entity", ["accounts", "contacts", "opportunities", "leads"])
def test_every_dtype_round_trips_unchanged(conn: Connection, entity: str) -> None:
    df = conn.read(entity, progress=False)
    key = df.attrs["d365nb"]["key"]
    nothing = _report(df.d365.push(progress=False))  # nothing changed: nothing is sent
    assert nothing.counts["unchanged"] == len(df) and nothing.requests == 0, nothing
    # Without the read's snapshot every cell is sent: each dtype written as read.
    df.attrs["d365nb"] = {k: v for k, v in df.attrs["d365nb"].items() if k != "original"}

    report = _report(df.d365.push(progress=False))

    assert report.ok, report
    assert report.counts["updated"] == len(df)
    back = conn.read(entity, progress=False)
    before = df.sort_values(key).reset_index(drop=True)
    after = back.sort_values(key).reset_index(drop=True)
    # Only what every write changes may differ: when, by whom, and the row version.
    moving = ("modifiedon", "modifiedby", "versionnumber", "_etag")
    same = [c for c in before.columns if not c.startswith(moving)]
    pd.testing.assert_frame_equal(before[same], after[same])
    assert (after["versionnumber"] > before["versionnumber"]).all()


def test_round_trip_of_edited_values(conn: Connection) -> None:
    tag = _tag()
    seed = pd.DataFrame({"name": [f"{tag} a", f"{tag} b"]})
    seed.d365.push("accounts", mode="create", conn=conn, progress=False)
    df = _accounts(conn, tag)
    df["numberofemployees"] = pd.array([12, None], dtype="Int32")
    df["creditonhold"] = pd.array([True, None], dtype="boolean")
    df["industrycode"] = pd.Categorical(
        ["Consulting", None], categories=df["industrycode"].cat.categories
    )
    df["cr_productinterests"] = [["Software", "Training"], []]
    paris = pd.to_datetime(pd.Series(["2024-05-01 10:30", None])).dt.tz_localize("Europe/Paris")
    df["lastonholdtime"] = paris
    df["cr_foundedon"] = pd.to_datetime(pd.Series(["1999-12-31", None]))
    df["revenue"] = [1234.5, None]

    report = _report(df.d365.push(progress=False))

    assert report.ok, report
    back = _accounts(conn, tag)
    assert back["numberofemployees"].tolist()[0] == 12 and pd.isna(back["numberofemployees"][1])
    assert back["creditonhold"].tolist()[0] is True
    assert back["industrycode"].tolist()[0] == "Consulting"
    assert back["cr_productinterests"].tolist()[0] == ["Software", "Training"]
    assert back["lastonholdtime"][0] == pd.Timestamp("2024-05-01 08:30", tz="UTC")
    assert back["cr_foundedon"][0] == pd.Timestamp("1999-12-31")
    assert back["revenue"][0] == 1234.5 and pd.isna(back["revenue"][1])


def test_columns_chooses_what_is_sent(conn: Connection) -> None:
    tag = _tag()
    pd.DataFrame({"name": [f"{tag} a"], "revenue": [5.0], "telephone1": ["123"]}).d365.push(
        "accounts", mode="create", conn=conn, progress=False
    )
    df = _accounts(conn, tag)
    df["revenue"] = None  # not in columns=: must not be cleared
    df["telephone1"] = "999"

    report = _report(df.d365.push(columns=["telephone1"], progress=False))

    assert report.ok
    back = _accounts(conn, tag)
    assert back["telephone1"][0] == "999" and back["revenue"][0] == 5.0
    nothing = _report(df.d365.push(columns=[], mode="update", progress=False))
    assert list(nothing.rows["status"]) == ["unchanged"]


def test_dry_run_writes_nothing(conn: Connection) -> None:
    tag = _tag()
    df = pd.DataFrame({"name": [f"{tag} {i}" for i in range(3)], "revenue": [1.0, 2.0, 3.0]})

    plan = df.d365.push("accounts", mode="create", conn=conn, dry_run=True, progress=False)

    assert isinstance(plan, PushPlan)
    assert plan.counts == {"create": 3}
    assert plan.requests and "CreateMultiple" in plan.requests[0]
    assert plan.sample is not None and plan.sample["body"]["name"] == f"{tag} 0"
    assert set(plan.columns) >= {"name", "revenue"}
    assert _accounts(conn, tag).empty
    read = conn.read("accounts", top=2, progress=False)
    read["telephone1"] = "555"  # a round trip sends only changed rows and cells
    read_plan = read.d365.push(dry_run=True)
    assert isinstance(read_plan, PushPlan)
    assert dict(read_plan.changed) == {"telephone1": 2}
    assert read_plan.rows["condition"].str.startswith('If-Match: W/"').all()
    assert "_etag" in read_plan.skipped
    assert "would send" in repr(read_plan) and "dry run" in read_plan._repr_html_()


def test_on_error_raise_carries_the_report(conn: Connection) -> None:
    tag = _tag()
    df = pd.DataFrame({"accountid": [str(uuid.uuid4())], "name": [f"{tag} ghost"]})

    with pytest.raises(PushError) as caught:
        df.d365.push("accounts", mode="update", conn=conn, on_error="raise", progress=False)

    report = caught.value.report
    assert isinstance(report, PushReport)
    assert report.counts["failed"] == 1
    assert list(report.failed["name"]) == [f"{tag} ghost"]


def test_no_arguments_uses_the_frame_connection(conn: Connection) -> None:
    df = conn.read("accounts", top=3, progress=False)
    df["telephone1"] = df["telephone1"].fillna("") + "1"  # a change in each row

    report = _report(df.d365.push(progress=False))

    assert report.table == "account" and report.counts["updated"] == 3


@pytest.mark.asyncio
async def test_apush_is_the_async_twin(write_sandbox: Sandbox) -> None:
    tag = _tag()
    connection = connect_to(write_sandbox)
    try:
        df = pd.DataFrame({"name": [f"{tag} async"]})
        report = await df.d365.apush("accounts", mode="create", conn=connection, progress=False)
        assert isinstance(report, PushReport) and report.counts["created"] == 1
        back = await connection.aread(
            "accounts", filter=f"startswith(name,'{tag}')", progress=False
        )
        assert list(back["accountid"]) == list(report.rows["id"])
    finally:
        await connection.aclose()
