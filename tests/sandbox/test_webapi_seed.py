"""The seeded dataset and its database over HTTPS: determinism, data-quality traps, reuse, reset."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._seed import guid

from .conftest import app_token, tls

pytestmark = pytest.mark.sandbox

SEEDED = "startswith(accountnumber,'ACC-')"


def _client(sb: Sandbox) -> httpx.Client:
    return httpx.Client(
        base_url=sb.service_url,
        verify=tls(sb),
        headers={"Authorization": f"Bearer {app_token(sb)}"},
        timeout=30,
    )


def _seeded(api: httpx.Client, select: str) -> list[dict[str, object]]:
    r = api.get(
        "accounts", params={"$select": select, "$filter": SEEDED, "$orderby": "accountnumber"}
    )
    assert r.status_code == 200, r.text
    return list(r.json()["value"])


def test_seed_is_deterministic_and_sized_by_rows(api: httpx.Client, sandbox: Sandbox) -> None:
    rows = sandbox.options.rows
    accounts = _seeded(api, "name,accountnumber")
    assert len(accounts) == rows
    assert accounts[0]["accountid"] == guid(1, 0, sandbox.options.seed)
    assert accounts[0]["accountnumber"] == "ACC-0000001"
    seed = sandbox.options.seed
    for entity_set, tag, count in (
        ("contacts", 2, rows),
        ("opportunities", 3, rows // 2),
        ("leads", 4, rows // 4),
    ):
        assert api.get(f"{entity_set}({guid(tag, count - 1, seed)})").status_code == 200
        assert api.get(f"{entity_set}({guid(tag, count, seed)})").status_code == 404


def test_seed_has_every_column_kind(api: httpx.Client) -> None:
    rows = _seeded(
        api,
        "revenue,numberofemployees,address1_latitude,exchangerate,"
        "creditonhold,cr_foundedon,createdon,industrycode,cr_productinterests,"
        "statecode,statuscode,_ownerid_value,description,_parentaccountid_value",
    )
    assert any(isinstance(r["revenue"], float) for r in rows)
    assert all(isinstance(r["numberofemployees"], int) for r in rows)
    assert any(isinstance(r["address1_latitude"], float) for r in rows)
    assert all(isinstance(r["creditonhold"], bool) for r in rows)
    assert any(r["description"] for r in rows)
    assert any(r["_parentaccountid_value"] for r in rows)
    assert {r["statecode"] for r in rows} <= {0, 1}
    assert all(r["statuscode"] == int(str(r["statecode"])) + 1 for r in rows)
    assert any(re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(r["cr_foundedon"])) for r in rows)


def test_seed_has_deliberate_data_quality_problems(api: httpx.Client) -> None:
    rows = _seeded(api, "name,accountnumber,emailaddress1,telephone1")
    number = [f"ACC-{i + 1:07d}" for i in range(len(rows))]
    missing = [r["accountnumber"] for r in rows if r["emailaddress1"] is None]
    assert missing == [n for i, n in enumerate(number) if i % 29 == 3]  # every 29th
    bad = [r for r in rows if not re.fullmatch(r"\+1-\d{2,3}-555-\d{4}", str(r["telephone1"]))]
    assert [r["accountnumber"] for r in bad] == [n for i, n in enumerate(number) if i % 37 == 5]
    assert len(bad) >= 1 and len(missing) >= 2
    # every 50th account repeats the previous one's name, exactly, in upper case or padded
    for i in range(7, len(rows), 50):
        assert str(rows[i]["name"]).strip().lower() == str(rows[i - 1]["name"]).lower()


def test_concurrent_requests_do_not_corrupt_the_store(api: httpx.Client) -> None:
    def work(i: int) -> tuple[int, int]:
        created = api.post("leads", json={"lastname": f"Parallel {i}"})
        read = api.get("contacts?$select=fullname", headers={"Prefer": "odata.maxpagesize=10"})
        return created.status_code, read.status_code

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(24)))
    assert results == [(204, 200)] * 24
    found = api.get(
        "leads", params={"$filter": "startswith(lastname,'Parallel ')", "$select": "lastname"}
    ).json()["value"]
    assert len(found) == 24


def test_file_database_is_reused_and_reset(tmp_path: Path) -> None:
    with start(data_dir=tmp_path, rows=20) as sb:
        assert (tmp_path / "dataverse.sqlite").is_file()
        with _client(sb) as api:
            assert api.post("accounts", json={"name": "Survivor"}).status_code == 204
    with start(data_dir=tmp_path, rows=20) as sb, _client(sb) as api:
        found = api.get("accounts", params={"$filter": "name eq 'Survivor'"}).json()["value"]
        assert len(found) == 1
        sb.reset()
        found = api.get("accounts", params={"$filter": "name eq 'Survivor'"}).json()["value"]
        assert found == []
        assert api.post("accounts", json={"name": "Survivor"}).status_code == 204
    with start(data_dir=tmp_path, rows=20, reset=True) as sb, _client(sb) as api:
        assert api.get("accounts", params={"$filter": "name eq 'Survivor'"}).json()["value"] == []
    with start(data_dir=tmp_path, rows=21) as sb, _client(sb) as api:
        assert len(_seeded(api, "name")) == 21


def test_count_cap_and_default_page_size_with_more_than_5000_rows() -> None:
    with start(database=":memory:", rows=5200) as sb, _client(sb) as api:
        r = api.get(
            "accounts?$select=name&$count=true", headers={"Prefer": 'odata.include-annotations="*"'}
        )
        body = r.json()
        assert body["@odata.count"] == 5000
        assert body["@Microsoft.Dynamics.CRM.totalrecordcount"] == 5000
        assert body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] is True
        assert len(body["value"]) == 5000
        rest = api.get(body["@odata.nextLink"]).json()
        assert len(rest["value"]) == 200 and "@odata.nextLink" not in rest
        assert rest["value"][0]["accountid"] > body["value"][-1]["accountid"]
        assert api.get("accounts/$count").content == b"\xef\xbb\xbf5000"
