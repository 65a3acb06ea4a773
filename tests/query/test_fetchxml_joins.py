"""`conn.fetchxml()` with `link-entity` equals a pandas merge of `read()`s, dtypes included."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from d365nb import Connection

pytestmark = pytest.mark.sandbox

CONTACT = ["fullname", "statecode", "parentcustomerid", "createdon", "birthdate"]
JOIN = (
    "<fetch><entity name='account'><attribute name='name'/><attribute name='revenue'/>"
    "<attribute name='primarycontactid'/>"
    "<link-entity name='contact' from='contactid' to='primarycontactid' link-type='{kind}' "
    "alias='c'>{columns}{nested}</link-entity></entity></fetch>"
)
NESTED = (
    "<link-entity name='systemuser' from='systemuserid' to='createdby' link-type='outer'>"
    "<attribute name='fullname'/><attribute name='isdisabled'/></link-entity>"
)


def _prefixed(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    return frame.drop(columns="_etag", errors="ignore").add_prefix(prefix)


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    # FetchXML adds the currency of a money column (read(select=...) does not).
    extra = [c for c in got.columns if c.startswith("transactioncurrencyid") or c == "_etag"]
    got = got.drop(columns=extra).sort_values("accountid", ignore_index=True)
    want = want.sort_values("accountid", ignore_index=True)[list(got.columns)]
    for name in got.columns:
        if name.endswith("_table"):  # categories are the tables seen in the rows read
            assert isinstance(got[name].dtype, pd.CategoricalDtype), name
            assert list(got[name].astype(object)) == list(want[name].astype(object)), name
        else:
            pd.testing.assert_series_equal(got[name], want[name], check_names=False, obj=name)


def _fetch(conn: Connection, xml: str) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no dtype guessed with a ColumnTypeWarning
        return conn.fetchxml(xml, progress=False)


@pytest.fixture(scope="module")
def reads(conn: Connection) -> dict[str, pd.DataFrame]:
    return {
        "accounts": conn.read(
            "accounts", select=["name", "revenue", "primarycontactid"], progress=False
        ),
        "contacts": conn.read("contacts", select=[*CONTACT, "createdby"], progress=False),
        "users": conn.read("systemusers", select=["fullname", "isdisabled"], progress=False),
    }


@pytest.mark.parametrize("kind", ["inner", "outer"])
def test_a_join_equals_a_pandas_merge(
    conn: Connection, reads: dict[str, pd.DataFrame], kind: str
) -> None:
    columns = "".join(f"<attribute name='{c}'/>" for c in CONTACT)
    got = _fetch(conn, JOIN.format(kind=kind, columns=columns, nested=""))
    contacts = _prefixed(
        reads["contacts"].drop(columns=["createdby", "createdby_name", "createdby_table"]), "c."
    )
    want = (
        reads["accounts"]
        .drop(columns="_etag")
        .merge(
            contacts,
            how="inner" if kind == "inner" else "left",
            left_on="primarycontactid",
            right_on="c.contactid",
        )
    )
    assert list(got.columns[: len(reads["accounts"].columns) - 1]) == list(
        reads["accounts"].columns.drop("_etag")
    )
    assert "c.contactid" not in got.columns  # the link did not ask for its key
    assert 0 < len(got) <= len(reads["accounts"])
    _same(got, want)
    if kind == "outer":
        assert len(got) == len(reads["accounts"])


def test_a_nested_link_without_an_alias(conn: Connection, reads: dict[str, pd.DataFrame]) -> None:
    got = _fetch(
        conn, JOIN.format(kind="inner", columns="<attribute name='fullname'/>", nested=NESTED)
    )
    contacts = _prefixed(reads["contacts"][["contactid", "fullname", "createdby"]], "c.")
    users = _prefixed(reads["users"], "systemuser2.")
    want = (
        reads["accounts"]
        .drop(columns="_etag")
        .merge(contacts, left_on="primarycontactid", right_on="c.contactid")
        .merge(users, how="left", left_on="c.createdby", right_on="systemuser2.systemuserid")
    )
    assert list(got.columns[-3:]) == ["systemuser2.fullname", "systemuser2.isdisabled", "_etag"]
    assert got["systemuser2.isdisabled"].dtype == "boolean"
    _same(got, want)


def test_dtypes_and_formatted_reach_linked_columns(conn: Connection) -> None:
    columns = "<attribute name='statecode'/><attribute name='createdon'/>"
    got = conn.fetchxml(
        JOIN.format(kind="inner", columns=columns, nested=""),
        dtypes={"c.statecode": "Int32", "revenue": "float32"},
        formatted=True,
        progress=False,
    )
    assert got["c.statecode"].dtype == "Int32" and got["revenue"].dtype == "float32"
    assert got["c.createdon_label"].notna().all()
