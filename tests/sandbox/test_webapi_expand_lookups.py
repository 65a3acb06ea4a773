"""`$expand` of lookups on collection pages: served by the page's own query (a join), it
must say exactly what separate reads of the related rows say."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.sandbox

PAGE = {"Prefer": "odata.maxpagesize=20"}


def _pages(api: httpx.Client, url: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The rows of the first `limit` pages (the next links followed as given)."""
    rows: list[dict[str, Any]] = []
    for _ in range(limit):
        r = api.get(url, headers=PAGE)
        assert r.status_code == 200, r.text[:300]
        body = r.json()
        rows += body["value"]
        url = body.get("@odata.nextLink")
        if url is None:
            break
    return rows


def _names(api: httpx.Client, entity_set: str, key: str, name: str) -> dict[str, str]:
    """{id: primary name} of every row of `entity_set`, read without `$expand`."""
    out: dict[str, str] = {}
    url: str | None = f"{entity_set}?$select={name}"
    while url is not None:
        body = api.get(url).json()
        out.update({row[key]: row[name] for row in body["value"]})
        url = body.get("@odata.nextLink")
    return out


def test_expanded_lookups_equal_the_related_rows_read_apart(api: httpx.Client) -> None:
    rows = _pages(
        api,
        "accounts?$select=name,_parentaccountid_value,_primarycontactid_value"
        "&$expand=parentaccountid($select=name),primarycontactid($select=fullname)",
    )
    accounts = _names(api, "accounts", "accountid", "name")
    # Every row once over several pages: the next links still page by key alone.
    assert len(accounts) > 2 * 20
    assert sorted(row["accountid"] for row in rows) == sorted(accounts)
    contacts = _names(api, "contacts", "contactid", "fullname")
    seen = {"parentaccountid": 0, "primarycontactid": 0}
    for row in rows:
        for nav, fk, key, names, name in (
            ("parentaccountid", "_parentaccountid_value", "accountid", accounts, "name"),
            ("primarycontactid", "_primarycontactid_value", "contactid", contacts, "fullname"),
        ):
            related = row[nav]
            if row[fk] is None:
                assert related is None
                continue
            seen[nav] += 1
            assert list(related) == ["@odata.etag", name, key]
            assert related[key] == row[fk]
            assert related[name] == names[row[fk]]
            assert related["@odata.etag"].startswith('W/"')
    assert all(seen.values()), seen  # both lookups were set on some rows


def test_page_expand_equals_the_single_row_expand(api: httpx.Client) -> None:
    """A page's expanded rows (one query) equal each row's own GET with `$expand`."""
    expand = "$expand=primarycontactid($select=fullname,statecode),parentaccountid"
    rows = api.get(
        f"accounts?$select=name&$filter=_primarycontactid_value ne null&$top=5&{expand}"
    ).json()["value"]
    assert len(rows) == 5
    for row in rows:
        alone = api.get(f"accounts({row['accountid']})?$select=name&{expand}").json()
        assert row["primarycontactid"] == alone["primarycontactid"]
        assert row["parentaccountid"] == alone["parentaccountid"]
        assert isinstance(row["primarycontactid"]["statecode"], int)


def test_polymorphic_lookup_expands_only_its_own_table(api: httpx.Client) -> None:
    """`parentcustomerid` points at an account or a contact: each navigation property is
    filled only for rows whose lookup points at its table."""
    rows = _pages(
        api,
        "contacts?$select=_parentcustomerid_value&$filter=_parentcustomerid_value ne null"
        "&$expand=parentcustomerid_account($select=name),parentcustomerid_contact($select=fullname)",
        limit=1,
    )
    assert rows
    tables = {
        row["contactid"]: row["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"]
        for row in api.get(
            "contacts?$select=_parentcustomerid_value&$filter=_parentcustomerid_value ne null",
            headers={**PAGE, "Prefer": PAGE["Prefer"] + ',odata.include-annotations="*"'},
        ).json()["value"]
    }
    for row in rows:
        account, contact = row["parentcustomerid_account"], row["parentcustomerid_contact"]
        if tables[row["contactid"]] == "account":
            assert contact is None and account["accountid"] == row["_parentcustomerid_value"]
        else:
            assert account is None and contact["contactid"] == row["_parentcustomerid_value"]


def test_inner_filter_on_a_lookup_still_applies(api: httpx.Client) -> None:
    rows = api.get(
        "accounts?$select=name&$filter=_primarycontactid_value ne null&$top=50"
        "&$expand=primarycontactid($select=statecode;$filter=statecode eq 1)"
    ).json()["value"]
    assert rows
    assert all(
        r["primarycontactid"] is None or r["primarycontactid"]["statecode"] == 1 for r in rows
    )
