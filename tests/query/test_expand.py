"""`read(expand=...)` with nested `$expand`: typed, flattened columns equal pandas merges."""

from __future__ import annotations

import pandas as pd
import pytest

import d365nb
from d365nb import Connection

pytestmark = pytest.mark.sandbox

NESTED = (
    "primarycontactid($select=fullname,statecode,createdon;"
    "$expand=parentcustomerid_account($select=name,industrycode,revenue))"
)


def _prefixed(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    return frame.drop(columns="_etag").add_prefix(prefix)


def test_nested_single_valued_expand_equals_pandas_merges(conn: Connection) -> None:
    got = conn.read("accounts", select=["name"], expand=NESTED, progress=False)
    accounts = conn.read("accounts", select=["name", "primarycontactid"], progress=False)
    contacts = conn.read(
        "contacts",
        select=["fullname", "statecode", "createdon", "parentcustomerid"],
        progress=False,
    )
    parents = conn.read("accounts", select=["name", "industrycode", "revenue"], progress=False)
    contacts = contacts.assign(
        parent=contacts["parentcustomerid"].where(contacts["parentcustomerid_table"] == "account")
    )
    c = "primarycontactid."
    p = c + "parentcustomerid_account."
    want = (
        accounts.drop(columns="_etag")
        .merge(
            _prefixed(contacts, c), how="left", left_on="primarycontactid", right_on=c + "contactid"
        )
        .merge(_prefixed(parents, p), how="left", left_on=c + "parent", right_on=p + "accountid")
    )
    expected = [
        "accountid", "name",
        *(c + n for n in ("contactid", "fullname", "statecode", "createdon")),
        *(p + n for n in ("accountid", "name", "industrycode", "revenue")),
        "_etag",
    ]  # fmt: skip
    assert list(got.columns) == expected
    assert got[p + "name"].notna().any() and got[c + "fullname"].notna().any()
    got = got.drop(columns="_etag").sort_values("accountid", ignore_index=True)
    want = want.sort_values("accountid", ignore_index=True)
    for name in got.columns:  # values and dtypes (labels as categories, UTC dates, floats)
        pd.testing.assert_series_equal(got[name], want[name], check_names=False, obj=name)


def test_lookups_inside_expanded_rows_carry_their_names_and_tables(conn: Connection) -> None:
    got = conn.read(
        "accounts",
        select=["name"],
        expand="primarycontactid($select=fullname,_parentcustomerid_value)",
        progress=False,
    )
    contacts = conn.read("contacts", select=["parentcustomerid"], progress=False)
    c = "primarycontactid."
    lookup = c + "parentcustomerid"
    assert {lookup, lookup + "_name", lookup + "_table"} <= set(got.columns)
    linked = got.dropna(subset=[lookup])
    assert len(linked) > 0
    want = contacts.set_index("contactid")
    for column in ("parentcustomerid_name", "parentcustomerid_table"):
        expected = want.loc[linked[c + "contactid"], column].to_numpy()
        assert linked[c + column].notna().all(), column
        assert list(linked[c + column]) == list(expected), column


def test_a_collection_with_a_nested_lookup_stays_a_column_of_lists(conn: Connection) -> None:
    expand = (
        "contact_customer_accounts($select=fullname;$expand=parentcustomerid_account($select=name))"
    )
    got = conn.read("accounts", select=["name"], expand=expand, progress=False)
    contacts = conn.read("contacts", select=["fullname", "parentcustomerid"], progress=False)
    names = dict(zip(got["accountid"], got["name"], strict=True))
    seen = 0
    for account, items in zip(got["accountid"], got["contact_customer_accounts"], strict=True):
        mine = contacts[contacts["parentcustomerid"] == account]
        assert sorted(i["fullname"] for i in items) == sorted(mine["fullname"])
        for item in items:
            assert item["parentcustomerid_account"]["name"] == names[account]
            seen += 1
    assert seen


@pytest.mark.parametrize(
    "expand",
    [
        "contact_customer_accounts($top=1;$expand=parentcustomerid_account)",
        "primarycontactid($expand=opportunity_parent_contact($orderby=name))",
    ],
)
def test_top_or_orderby_in_a_nested_tree_with_a_collection_is_refused(
    conn: Connection, expand: str
) -> None:
    with pytest.raises(d365nb.ODataError) as info:
        conn.read("accounts", select=["name"], expand=expand, progress=False)
    assert info.value.status == 400 and info.value.code == "0x80060888"
    assert "Only $select and $filter" in str(info.value)


def test_more_than_15_expand_items_in_all_is_refused(conn: Connection) -> None:
    inner = ",".join(["createdby($select=fullname)", "modifiedby($select=fullname)"] * 4)
    expand = f"primarycontactid($expand={inner}),parentaccountid($expand={inner})"
    with pytest.raises(d365nb.ODataError, match="15"):
        conn.read("accounts", select=["name"], expand=expand, progress=False)


def test_a_nested_expand_with_a_filter_inside(conn: Connection) -> None:
    expand = (
        "primarycontactid($select=fullname;"
        "$expand=parentcustomerid_account($select=name;$filter=statecode eq 0))"
    )
    got = conn.read("accounts", select=["name"], expand=expand, progress=False)
    states = conn.read("accounts", select=["statecode"], progress=False).set_index("accountid")
    ids = got["primarycontactid.parentcustomerid_account.accountid"].dropna()
    assert len(ids) and (states.loc[list(ids), "statecode"] == "Active").all()
