"""`$expand` of lookups on collection pages: served by the page's own query (a join), it
must say exactly what separate reads of the related rows say."""

from __future__ import annotations

import json
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


# Text that JSON must escape, and text it must keep as it is.
_AWKWARD = (
    'Quote " back\\slash /slash\nnew\ttab \x01ctl \u00e9t\u00e9 \u4e2d\u6587 \U0001f680 </script>'
)
_SHORT = 'Q"\\/\n\t\x01 \u00e9 \u4e2d \U0001f680'  # contact names: at most 50 characters


def test_awkward_names_come_through_the_joined_json_exactly(api: httpx.Client) -> None:
    """A page's expanded lookup (JSON text made by SQLite) parses to the very values the
    single-row read (a dictionary per related row) gives, escapes and all."""
    parent = api.post("accounts", json={"name": _AWKWARD})
    assert parent.status_code == 204, parent.text[:300]
    parent_id = parent.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    contact = api.post("contacts", json={"firstname": "Zo\u00eb", "lastname": _SHORT})
    assert contact.status_code == 204, contact.text[:300]
    contact_id = contact.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    child = api.post(
        "accounts",
        json={
            "name": "Child of awkward",
            "parentaccountid@odata.bind": f"/accounts({parent_id})",
            "primarycontactid@odata.bind": f"/contacts({contact_id})",
        },
    )
    assert child.status_code == 204, child.text[:300]
    child_id = child.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    expand = "$expand=parentaccountid($select=name),primarycontactid($select=fullname,statecode)"
    try:
        page = api.get(f"accounts?$select=name&$filter=accountid eq {child_id}&{expand}")
        assert page.status_code == 200, page.text[:300]
        (row,) = page.json()["value"]
        alone = api.get(f"accounts({child_id})?$select=name&{expand}").json()
        assert row["parentaccountid"] == alone["parentaccountid"]
        assert row["primarycontactid"] == alone["primarycontactid"]
        assert row["parentaccountid"]["name"] == _AWKWARD
        assert row["parentaccountid"]["accountid"] == parent_id
        assert row["primarycontactid"]["fullname"] == f"Zo\u00eb {_SHORT}"
        assert row["primarycontactid"]["statecode"] == 0
        keys = ["@odata.etag", "fullname", "statecode", "contactid"]
        assert list(row["primarycontactid"]) == keys
        # The body is valid JSON that a strict parser reads the same way.
        assert json.loads(page.content)["value"][0] == row
    finally:
        for path in (f"accounts({child_id})", f"accounts({parent_id})", f"contacts({contact_id})"):
            api.delete(path)


def test_json_made_by_sqlite_only_for_text_and_integer_related_rows() -> None:
    """SQLite writes a REAL with 15 significant digits (orjson: the shortest exact form)
    and knows nothing of yes/no columns or annotations: those related rows stay dicts."""
    from d365nb.sandbox._rows import Annotations, RowPlan
    from d365nb.sandbox._schema import table_by_logical

    account = table_by_logical("account")
    assert account is not None

    def plan(*names: str, annotations: str | None = None) -> RowPlan:
        select = [account.attribute(n) for n in names]
        assert all(select), names
        return RowPlan(account, select, Annotations(annotations), alias="x0")  # type: ignore[arg-type]

    text = plan("name", "numberofemployees").json_sql()
    assert text is not None and text.startswith("json_object('@odata.etag', ")
    assert "'name', x0.\"name\"" in text and "'accountid', x0.\"accountid\"" in text
    assert plan("revenue").json_sql() is None  # Money: REAL
    assert plan("address1_latitude").json_sql() is None  # Double: REAL
    assert plan("creditonhold").json_sql() is None  # Boolean: stored 0/1, sent true/false
    assert plan("name", annotations="*").json_sql() is None  # annotations per value
