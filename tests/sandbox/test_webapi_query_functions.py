"""`$filter` over HTTPS: parameter aliases (`@p1`) and query functions written as Microsoft does."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.sandbox


def _ids(r: httpx.Response) -> set[str]:
    assert r.status_code == 200, r.text
    return {row["accountid"] for row in r.json()["value"]}


def test_parameter_aliases_equal_inline_values(api: httpx.Client) -> None:
    first = api.get("accounts", params={"$select": "name", "$top": "1"}).json()["value"][0]
    inline = api.get("accounts", params={"$filter": f"name eq '{first['name']}'"})
    aliased = api.get("accounts", params={"$filter": "name eq @p1", "@p1": f"'{first['name']}'"})
    assert _ids(aliased) == _ids(inline) and first["accountid"] in _ids(aliased)
    # [MS] WA/query/filter-rows: a query function with aliased parameters
    r = api.get(
        "accounts",
        params={
            "$select": "name",
            "$filter": "Microsoft.Dynamics.CRM.LastXDays(PropertyName=@p1,PropertyValue=@p2)",
            "@p1": "'createdon'",
            "@p2": "36500",
        },
    )
    every = api.get("accounts", params={"$select": "name", "$count": "true"})
    assert len(_ids(r)) == len(every.json()["value"])


def test_alias_inside_a_string_is_text_and_a_missing_alias_is_400(api: httpx.Client) -> None:
    r = api.get("accounts", params={"$filter": "name eq '@p1'", "@p1": "'x'"})
    assert r.status_code == 200 and r.json()["value"] == []
    assert api.get("accounts", params={"$filter": "name eq @nope"}).status_code == 400
