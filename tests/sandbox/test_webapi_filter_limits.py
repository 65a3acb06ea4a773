"""Filters a client may legally send never crash the sandbox (issue 20: no HTTP 500)."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from d365nb._multipart import BatchRequest, decode_batch_response, encode_batch_request

pytestmark = pytest.mark.sandbox


def _get(api: httpx.Client, table: str, filter_: str) -> httpx.Response:
    return api.get(f"{table}?$select=name&$filter={quote(filter_)}")


def _names(api: httpx.Client, count: int) -> list[str]:
    rows = api.get(f"accounts?$select=name&$top={count}&$orderby=name").json()["value"]
    return [row["name"] for row in rows]


@pytest.mark.parametrize("count", [90, 150, 1000])
def test_long_or_chains_are_answered(api: httpx.Client, count: int) -> None:
    wanted = _names(api, 3)
    terms = [f"name eq '{n.replace(chr(39), chr(39) * 2)}'" for n in wanted]
    terms += [f"name eq 'n{i}'" for i in range(count - len(terms))]
    r = _get(api, "accounts", " or ".join(terms))
    assert r.status_code == 200, r.text
    assert sorted(row["name"] for row in r.json()["value"]) == sorted(wanted)


@pytest.mark.parametrize("count", [150, 1000])
def test_long_and_chains_are_answered(api: httpx.Client, count: int) -> None:
    terms = [f"name ne 'n{i}'" for i in range(count)]
    r = _get(api, "accounts", " and ".join(terms) + " and name ne null")
    assert r.status_code == 200, r.text
    assert len(r.json()["value"]) > 0


@pytest.mark.parametrize("depth", [1, 2, 99, 100, 901])
def test_deeply_nested_not_is_answered(api: httpx.Client, depth: int) -> None:
    name = _names(api, 1)[0].replace("'", "''")
    r = _get(api, "accounts", "not (" * depth + f"name eq '{name}'" + ")" * depth)
    assert r.status_code == 200, r.text
    matched = {row["name"] for row in r.json()["value"]}
    assert (_names(api, 1)[0] in matched) == (depth % 2 == 0)


def test_not_pushed_through_and_or_keeps_the_meaning(api: httpx.Client) -> None:
    a, b = _names(api, 2)
    qa, qb = a.replace("'", "''"), b.replace("'", "''")
    both = _get(api, "accounts", f"not (name ne '{qa}' and name ne '{qb}')").json()["value"]
    assert sorted(row["name"] for row in both) == sorted([a, b])
    r = _get(api, "accounts", f"not (not (name eq '{qa}') or name eq '{qb}')")
    assert [row["name"] for row in r.json()["value"]] == [a]


def test_alternations_nested_past_the_sandboxs_depth_are_a_400(api: httpx.Client) -> None:
    text = "name eq 'x'"
    for i in range(40):
        op = "and" if i % 2 else "or"
        text = f"name eq 'y{i}' {op} ({text})"
    r = _get(api, "accounts", text)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "0x80060888"


def test_alternations_within_the_depth_run(api: httpx.Client) -> None:
    text = "name ne null"
    for i in range(15):
        op = "and" if i % 2 else "or"
        text = f"name ne 'y{i}' {op} ({text})"
    r = api.get(f"accounts?$select=name&$top=3&$filter={quote(text)}&$orderby=name")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("literal", "status"),
    [("9" * 5000, 400), ("1" * 30, 200), ("1e400", 400), ("123456789012345678901234567890.5", 200)],
)
def test_huge_number_literals(api: httpx.Client, literal: str, status: int) -> None:
    r = _get(api, "accounts", f"revenue gt {literal}")
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["error"]["code"] == "0x80060888"
    else:
        assert r.json()["value"] == []


def test_the_same_filters_inside_batch(api: httpx.Client) -> None:
    ors = " or ".join(f"name eq 'nobody {i}'" for i in range(150))
    nots = "not (" * 200 + "name eq 'x'" + ")" * 200
    items = [
        BatchRequest("GET", f"/api/data/v9.2/accounts?$select=name&$filter={quote(text)}")
        for text in (ors, nots, f"revenue gt {'9' * 5000}")
    ]
    content_type, body = encode_batch_request(items)
    r = api.post("$batch", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 400  # the batch stops at its first failed part, as Dataverse's
    parts = decode_batch_response(r.content, r.headers["content-type"])
    assert [p.status for p in parts] == [200, 200, 400]  # type: ignore[union-attr]
