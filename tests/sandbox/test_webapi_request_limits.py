"""URL and body size limits answered as the Web API's JSON errors (issue 20)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from d365nb._multipart import BatchRequest, decode_batch_response, encode_batch_request
from d365nb.sandbox import Sandbox, start

from .conftest import app_token, tls

pytestmark = pytest.mark.sandbox


def _long_filter(length: int) -> str:
    terms: list[str] = []
    size = 0
    while size < length:
        terms.append(f"name%20eq%20%27n{len(terms)}%27")
        size += len(terms[-1]) + len("%20or%20")
    return "%20or%20".join(terms)


def test_url_over_32_kb_is_a_json_414(api: httpx.Client, sandbox: Sandbox) -> None:
    ok = api.get(f"accounts?$select=name&$filter={_long_filter(30_000)}")
    assert ok.status_code == 200, ok.text
    r = api.get(f"accounts?$select=name&$filter={_long_filter(40_000)}")
    assert r.status_code == 414
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert set(error) == {"code", "message"}
    assert "32,768" in error["message"]
    huge = api.get(f"accounts?$select=name&$filter={_long_filter(60_000)}")
    assert huge.status_code == 414 and "error" in huge.json()


def test_a_get_in_batch_may_be_up_to_64_kb(api: httpx.Client) -> None:
    items = [
        BatchRequest("GET", f"/api/data/v9.2/accounts?$select=name&$filter={_long_filter(n)}")
        for n in (40_000, 70_000)
    ]
    content_type, body = encode_batch_request(items)
    r = api.post(
        "$batch",
        content=body,
        headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
    )
    parts = decode_batch_response(r.content, r.headers["content-type"])
    assert [p.status for p in parts] == [200, 414]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with start(
        data_dir=tmp_path_factory.mktemp("small"),
        database=":memory:",
        rows=5,
        max_request_bytes=4096,
    ) as sb:
        yield sb


def test_body_over_the_limit_is_a_json_413(small: Sandbox) -> None:
    headers = {"Authorization": f"Bearer {app_token(small)}"}
    with httpx.Client(base_url=small.service_url, verify=tls(small), headers=headers) as client:
        fits = client.post("accounts", json={"name": "x" * 100})
        assert fits.status_code == 204
        r = client.post("accounts", json={"name": "x" * 5000})
        assert r.status_code == 413
        assert set(r.json()["error"]) == {"code", "message"}
        assert "4,096" in r.json()["error"]["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
            yield b'{"name": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        chunked = client.post(
            "accounts", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert chunked.status_code == 413


def test_default_limit_is_128_mib(tmp_path: Path) -> None:
    from d365nb.sandbox import SandboxOptions

    assert SandboxOptions(data_dir=tmp_path).max_request_bytes == 128 * 1024 * 1024
