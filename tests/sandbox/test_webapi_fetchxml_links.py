"""FetchXML `link-entity` over HTTPS: inner and outer joins, nesting, aliases, entityname."""

from __future__ import annotations

from typing import Any

import httpx
import pandas as pd
import pytest

pytestmark = pytest.mark.sandbox

ANN = 'odata.include-annotations="*"'


def _read(api: httpx.Client, path: str, select: str) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    url: str | None = f"{path}?$select={select}"
    while url:
        body = api.get(url).json()
        rows.extend(body["value"])
        url = body.get("@odata.nextLink")
    return pd.DataFrame(rows)


def _fetch(api: httpx.Client, xml: str) -> list[dict[str, Any]]:
    r = api.get("accounts", params={"fetchXml": xml}, headers={"Prefer": ANN})
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["value"]
    return rows


LINK = (
    "<fetch><entity name='account'><attribute name='name'/>"
    "<link-entity name='contact' from='contactid' to='primarycontactid' link-type='{kind}' "
    "alias='contact'><attribute name='fullname'/><attribute name='statecode'/>{inner}"
    "</link-entity>{outer}</entity></fetch>"
)


@pytest.mark.parametrize("kind", ["inner", "outer"])
def test_join_equals_a_pandas_merge(api: httpx.Client, kind: str) -> None:
    rows = _fetch(api, LINK.format(kind=kind, inner="", outer=""))
    accounts = _read(api, "accounts", "name,_primarycontactid_value")
    contacts = _read(api, "contacts", "fullname")
    merged = accounts.merge(
        contacts,
        how="inner" if kind == "inner" else "left",
        left_on="_primarycontactid_value",
        right_on="contactid",
    )
    got = sorted((r["accountid"], r.get("contact.fullname")) for r in rows)
    want = sorted(
        (a, None if pd.isna(f) else f)
        for a, f in zip(merged["accountid"], merged["fullname"], strict=True)
    )
    assert got == want
    joined = [r for r in rows if "contact.fullname" in r]
    assert joined and all(
        "contact.statecode@OData.Community.Display.V1.FormattedValue" in r for r in joined
    )


def test_outer_join_with_a_null_condition_finds_rows_without_a_match(api: httpx.Client) -> None:
    outer = (
        "<filter><condition entityname='contact' attribute='contactid' operator='null'/></filter>"
    )
    rows = _fetch(api, LINK.format(kind="outer", inner="", outer=outer))
    accounts = _read(api, "accounts", "_primarycontactid_value")
    assert sorted(r["accountid"] for r in rows) == sorted(
        accounts.loc[accounts["_primarycontactid_value"].isna(), "accountid"]
    )


def test_filter_inside_a_link_and_nested_links(api: httpx.Client) -> None:
    inner = (
        "<filter><condition attribute='statecode' operator='eq' value='0'/></filter>"
        "<link-entity name='systemuser' from='systemuserid' to='createdby'>"
        "<attribute name='fullname'/></link-entity>"
    )
    rows = _fetch(api, LINK.format(kind="inner", inner=inner, outer=""))
    assert rows
    assert all(r["contact.statecode"] == 0 for r in rows)
    assert all("systemuser2.fullname" in r for r in rows)


@pytest.mark.parametrize(
    "xml",
    [
        LINK.format(kind="any", inner="", outer=""),
        LINK.replace("name='contact'", "name='nosuch'").format(kind="inner", inner="", outer=""),
        LINK.replace("from='contactid'", "from='nosuch'").format(kind="inner", inner="", outer=""),
    ],
)
def test_bad_links_answer_400(api: httpx.Client, xml: str) -> None:
    assert api.get("accounts", params={"fetchXml": xml}).status_code == 400
