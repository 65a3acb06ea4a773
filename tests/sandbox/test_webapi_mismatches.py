"""Small mismatches with the service that hid client bugs (issue 20, item 4)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import jwt
import pytest

from d365nb._odata import in_
from d365nb.sandbox import Sandbox, start

from .conftest import app_token, tls
from .test_identity_errors import assert_aad_error

pytestmark = pytest.mark.sandbox


def test_upsert_by_alternate_key_checks_the_keys_length(api: httpx.Client) -> None:
    # accountnumber holds 20 characters: create rejects more, and so does an upsert that
    # would create the row from its key.
    too_long = "9" * 21
    r = api.patch(f"accounts(accountnumber='{too_long}')", json={"name": "upsert too long"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "0x80044331"
    assert "'accountnumber'" in r.json()["error"]["message"]
    created = api.post("accounts", json={"name": "too long", "accountnumber": too_long})
    assert created.status_code == 400 and created.json()["error"]["code"] == "0x80044331"


def test_top_over_5000_is_refused_not_cut(api: httpx.Client) -> None:
    r = api.get("accounts?$select=name&$top=5500")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "0x80060888"
    assert "5,000" in r.json()["error"]["message"]
    assert api.get("accounts?$select=name&$top=5000").status_code == 200
    assert api.get("accounts?$select=name&$top=-1").status_code == 400


def test_preference_applied_only_when_maxpagesize_was_applied(api: httpx.Client) -> None:
    paged = api.get("accounts?$select=name", headers={"Prefer": "odata.maxpagesize=2"})
    assert paged.headers.get("preference-applied") == "odata.maxpagesize=2"
    topped = api.get("accounts?$select=name&$top=3", headers={"Prefer": "odata.maxpagesize=2"})
    assert len(topped.json()["value"]) == 3
    assert "maxpagesize" not in topped.headers.get("preference-applied", "")


def test_v1_access_tokens_carry_appid_not_azp(sandbox: Sandbox) -> None:
    claims = jwt.decode(app_token(sandbox), options={"verify_signature": False})
    assert claims["ver"] == "1.0"
    assert claims["appid"] == sandbox.confidential_client_id and claims["appidacr"] == "1"
    assert "azp" not in claims and "azpacr" not in claims


@pytest.mark.parametrize(
    ("token", "code"), [("not a token", 9002313), ("", 9002313), ("0." + "A" * 40, 70008)]
)
def test_malformed_refresh_token_is_9002313(
    sandbox: Sandbox, https: httpx.Client, token: str, code: int
) -> None:
    form = {
        "grant_type": "refresh_token",
        "client_id": sandbox.public_client_id,
        "refresh_token": token or "%%%",
        "scope": f"{sandbox.base_url}/user_impersonation",
    }
    r = https.post(sandbox.token_uri, data=form)
    assert_aad_error(r, status=400, error="invalid_grant", code=code)


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with start(
        data_dir=tmp_path_factory.mktemp("throttled"),
        database=":memory:",
        rows=5,
        max_requests_per_window=2,
    ) as sb:
        yield sb


def test_429_carries_the_request_id_headers(throttled: Sandbox) -> None:
    headers = {"Authorization": f"Bearer {app_token(throttled)}"}
    with httpx.Client(base_url=throttled.service_url, verify=tls(throttled), headers=headers) as c:
        for _ in range(10):
            r = c.get("WhoAmI")
            if r.status_code == 429:
                break
        assert r.status_code == 429
        assert r.headers["retry-after"].isdigit()
        uuid.UUID(r.headers["x-ms-service-request-id"])
        assert r.headers["req_id"] == r.headers["x-ms-service-request-id"]
        assert r.json()["error"]["code"] == "0x80072322"


def test_expanded_child_next_link_keeps_filter_and_orderby(api: httpx.Client) -> None:
    expand = (
        "contact_customer_accounts($select=fullname;$filter=fullname ne null;$orderby=fullname)"
    )
    r = api.get(f"accounts?$select=name&$top=2&$expand={quote(expand)}")
    assert r.status_code == 200, r.text
    for account in r.json()["value"]:
        link = account["contact_customer_accounts@odata.nextLink"]
        assert "$filter=fullname%20ne%20null" in link and "$orderby=fullname" in link
        direct = api.get(link)
        assert direct.status_code == 200, direct.text
        names = [c["fullname"] for c in direct.json()["value"]]
        assert names == sorted(names, key=str.lower)


def test_in_with_a_double_quote_in_a_value(api: httpx.Client) -> None:
    name = 'The "Quoted" Company'
    assert api.post("accounts", json={"name": name}).status_code == 204
    r = api.get(f"accounts?$select=name&$filter={quote(in_('name', [name, 'other']))}")
    assert r.status_code == 200, r.text
    assert [row["name"] for row in r.json()["value"]] == [name]
    r = api.get(f"accounts?$select=name&$filter={quote(in_('name', [name]) + ' and name ne null')}")
    assert [row["name"] for row in r.json()["value"]] == [name]


def test_the_sql_preview_is_answered_as_an_environment_without_it(api: httpx.Client) -> None:
    """The SDK's `client.query.sql` sends `?sql=`; without the preview the Web API refuses
    the unknown query option with a 400 in its error shape (no mention of a sandbox)."""
    r = api.get("accounts", params={"sql": "SELECT name FROM account"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "0x80060888"
    assert "sql" in error["message"] and "sandbox" not in error["message"].lower()
