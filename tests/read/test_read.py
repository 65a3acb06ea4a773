"""`conn.read()` against the sandbox over HTTPS: types, query options, paging, errors."""

from __future__ import annotations

import datetime as dt
import ssl
from typing import Any

import httpx
import pandas as pd
import pytest

import d365nb
from d365nb import ConfigError, Connection
from d365nb._sync import run_sync
from d365nb.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

# What a pandas user should get for each Dataverse attribute type (the README's table).
EXPECTED_DTYPES = {
    "String": "string",
    "Memo": "string",
    "Uniqueidentifier": "string",
    "Integer": "Int32",
    "BigInt": "Int64",
    "Double": "float64",
    "Money": "float64",
    "Decimal": "float64",
    "Boolean": "boolean",
    "DateTime": "datetime64[us, UTC]",
    "DateOnly": "datetime64[us]",
    "Picklist": "category",
    "State": "category",
    "Status": "category",
    "MultiSelectPicklist": "object",
}


def _raw_rows(sb: Sandbox, conn: Connection, path: str) -> list[dict[str, Any]]:
    """The service's own JSON for a query, with every annotation."""
    token = run_sync(conn.auth.token()).token
    response = httpx.get(
        conn.api_root + path,
        headers={
            "Authorization": f"Bearer {token}",
            "Prefer": 'odata.include-annotations="*"',
            "Accept": "application/json",
        },
        verify=ssl.create_default_context(cafile=sb.ca_cert),
    )
    assert response.status_code == 200, response.text
    return list(response.json()["value"])


def test_every_attribute_type_gets_its_dtype(conn: Connection) -> None:
    df = conn.read("accounts", progress=False)
    described = conn.describe("account").set_index("column")
    checked = set()
    for column, row in described.iterrows():
        kind = row["type"]
        if kind in EXPECTED_DTYPES and column in df.columns:
            assert str(df[column].dtype) == EXPECTED_DTYPES[kind], (column, kind)
            checked.add(kind)
        elif kind in ("Lookup", "Customer", "Owner") and column in df.columns:
            assert str(df[column].dtype) == "string"
            assert str(df[f"{column}_name"].dtype) == "string"
            checked.add("Lookup")
    assert {
        "String",
        "Integer",
        "Money",
        "Boolean",
        "DateTime",
        "DateOnly",
        "Picklist",
        "MultiSelectPicklist",
        "Lookup",
        "State",
    } <= checked


def test_values_match_the_wire(sandbox: Sandbox, conn: Connection) -> None:
    df = conn.read("accounts", progress=False).set_index("accountid")
    raw = _raw_rows(sandbox, conn, "accounts")
    assert len(raw) == len(df)
    fmt = "@OData.Community.Display.V1.FormattedValue"
    for row in raw[:25]:
        got = df.loc[row["accountid"]]
        assert got["name"] == row["name"]
        if row["revenue"] is None:
            assert pd.isna(got["revenue"])
        else:
            assert got["revenue"] == pytest.approx(row["revenue"])
        created = dt.datetime.fromisoformat(row["createdon"].replace("Z", "+00:00"))
        assert got["createdon"] == pd.Timestamp(created)
        if row["industrycode"] is not None:
            assert got["industrycode"] == row[f"industrycode{fmt}"]
        if row["_primarycontactid_value"] is not None:
            assert got["primarycontactid"] == row["_primarycontactid_value"]
            assert got["primarycontactid_name"] == row[f"_primarycontactid_value{fmt}"]
            assert got["primarycontactid_table"] == "contact"
        assert got["_etag"] == row["@odata.etag"]


def test_choice_codes_reachable_through_dtypes(conn: Connection) -> None:
    labels = conn.read("accounts", select=["industrycode"], progress=False)
    codes = conn.read(
        "accounts", select=["industrycode"], dtypes={"industrycode": "Int32"}, progress=False
    )
    assert str(codes["industrycode"].dtype) == "Int32"
    assert labels["industrycode"].notna().sum() == codes["industrycode"].notna().sum()


def test_select_filter_orderby_top(conn: Connection) -> None:
    df = conn.read(
        "account",
        select=["name", "revenue"],
        filter=d365nb.where(revenue__gt=1_000_000),
        orderby="revenue desc",
        top=5,
        progress=False,
    )
    assert list(df.columns[:3]) == ["accountid", "name", "revenue"]
    assert len(df) == 5
    assert (df["revenue"] > 1_000_000).all()
    assert df["revenue"].is_monotonic_decreasing


def test_top_is_exact_across_pages(conn: Connection) -> None:
    df = conn.read("accounts", select=["name"], top=7, page_size=3, progress=False)
    assert len(df) == 7


def test_every_page_is_read_sequentially_and_in_parallel(conn: Connection) -> None:
    full = conn.read("accounts", select=["name"], page_size=5000, progress=False)
    paged = conn.read("accounts", select=["name"], page_size=7, parallel=False, progress=False)
    split = conn.read("accounts", select=["name"], page_size=7, parallel=4, progress=False)
    assert len(full) > 7
    for other in (paged, split):
        assert other["accountid"].is_unique
        assert sorted(other["accountid"]) == sorted(full["accountid"])


def test_count_is_surfaced(conn: Connection) -> None:
    df = conn.read("accounts", select=["name"], count=True, progress=False)
    assert df.attrs["d365nb"]["count"] == len(df)


def test_frame_remembers_its_origin(conn: Connection) -> None:
    df = conn.read("accounts", select=["name"], top=3, progress=False)
    origin = df.attrs["d365nb"]
    assert origin["table"] == "account" and origin["key"] == "accountid"
    assert origin["entity_set"] == "accounts" and origin["partial"] is False
    from d365nb._client import connection_by_id

    assert connection_by_id(origin["connection"]) is conn


def test_expand_single_valued_navigation(conn: Connection) -> None:
    df = conn.read(
        "accounts",
        select=["name"],
        expand="primarycontactid($select=fullname)",
        top=5,
        progress=False,
    )
    assert len(df) == 5
    assert "primarycontactid.fullname" in df.columns
    assert df.columns[-1] == "_etag"
    contacts = conn.read("contacts", select=["fullname"], progress=False).set_index("contactid")
    for _, row in df.dropna(subset=["primarycontactid.contactid"]).iterrows():
        assert (
            contacts.loc[row["primarycontactid.contactid"], "fullname"]
            == row["primarycontactid.fullname"]
        )


def test_misspelled_table_and_column_say_did_you_mean(conn: Connection) -> None:
    with pytest.raises(ConfigError, match="accounts|account") as info:
        conn.read("acounts", progress=False)
    assert "did you mean" in str(info.value).lower()
    with pytest.raises(ConfigError, match="revenue"):
        conn.read("accounts", select=["revenu"], progress=False)


def test_quoted_literals_never_change_the_query(conn: Connection) -> None:
    tricky = "O'Brien & Sons' or name ne 'x"
    run_sync(conn.arequest("POST", "accounts", json={"name": tricky}))
    found = conn.read("accounts", select=["name"], filter=d365nb.where(name=tricky), progress=False)
    assert list(found["name"]) == [tricky]
    none = conn.read(
        "accounts", select=["name"], filter=d365nb.where(name="x' or name ne 'x"), progress=False
    )
    assert len(none) == 0


def test_fetchxml_pages_with_cookies(conn: Connection) -> None:
    xml = (
        "<fetch><entity name='account'><attribute name='name'/><attribute name='accountid'/>"
        "<order attribute='accountid'/></entity></fetch>"
    )
    paged = conn.fetchxml(xml, page_size=9, progress=False)
    whole = conn.read("accounts", select=["name"], progress=False)
    assert len(paged) == len(whole) > 9
    assert sorted(paged["accountid"]) == sorted(whole["accountid"])


def test_bad_fetchxml_is_a_config_error(conn: Connection) -> None:
    with pytest.raises(ConfigError, match="FetchXML"):
        conn.fetchxml("<fetch><entity", progress=False)


def test_tables_and_describe(conn: Connection) -> None:
    tables = conn.tables()
    assert {"account", "contact", "opportunity", "lead"} <= set(tables["logical_name"])
    row = tables.set_index("logical_name").loc["account"]
    assert row["entity_set"] == "accounts" and row["primary_id"] == "accountid"
    described = conn.describe("accounts")
    assert "industrycode" in set(described["column"])
    industry = described.set_index("column").loc["industrycode"]
    assert industry["type"] == "Picklist" and industry["choices"] > 0


def test_page_size_out_of_range(conn: Connection) -> None:
    with pytest.raises(ConfigError, match="page_size"):
        conn.read("accounts", page_size=6000, progress=False)
