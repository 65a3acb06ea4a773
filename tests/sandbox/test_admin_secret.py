"""The control routes (`/_sandbox/*`) and the per-sandbox admin secret (issue 20)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from d365nb import ConfigError
from d365nb.sandbox import Sandbox, SandboxInfo, start
from d365nb.sandbox._info import ADMIN_HEADER

from .conftest import tls

pytestmark = pytest.mark.sandbox

CONTROL = (
    ("GET", "/_sandbox/clock", None),
    ("GET", "/_sandbox/knobs/", None),
    ("POST", "/_sandbox/devicecode/approve", {"user_code": "NOPE"}),
    ("POST", "/_sandbox/refresh-tokens/revoke", {}),
    ("POST", "/_sandbox/reset", {}),
    ("GET", "/fno/_sandbox/knobs", None),
    ("POST", "/fno/_sandbox/reset", {}),
    ("GET", "/fno/_sandbox/requests", None),
)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with start(
        data_dir=tmp_path_factory.mktemp("guarded"),
        database=":memory:",
        rows=5,
        require_admin_secret=True,
        fno=True,
        fno_rows=20,
    ) as sb:
        yield sb


def test_the_secret_is_published_in_the_json_line_only(sandbox: Sandbox) -> None:
    info = sandbox.info()
    assert info["admin_secret"] and len(info["admin_secret"]) >= 24
    described = SandboxInfo.from_mapping(info)
    assert described.admin_secret == info["admin_secret"]
    assert info["admin_secret"] not in repr(described) + repr(sandbox)
    assert json.loads(described.to_json())["admin_secret"] == info["admin_secret"]


@pytest.mark.parametrize(("method", "path", "body"), CONTROL)
def test_control_routes_refuse_requests_without_the_secret(
    guarded: Sandbox, method: str, path: str, body: object
) -> None:
    with httpx.Client(verify=tls(guarded), trust_env=False) as client:
        for headers in ({}, {ADMIN_HEADER: "wrong"}):
            r = client.request(method, f"{guarded.base_url}{path}", json=body, headers=headers)
            assert r.status_code == 401, path
            assert ADMIN_HEADER in r.json()["hint"]
        r = client.request(
            method,
            f"{guarded.base_url}{path}",
            json=body,
            headers={ADMIN_HEADER: str(guarded.admin_secret)},
        )
        assert r.status_code != 401


def test_the_handle_sends_the_secret(guarded: Sandbox) -> None:
    with guarded.knobs(clock_offset=1, latency_ms=0):
        pass
    assert guarded.revoke_refresh_tokens() == 0
    with pytest.raises(ConfigError, match="NOPE"):
        guarded.approve("NOPE")


def test_sign_in_and_the_web_api_need_no_admin_secret(guarded: Sandbox) -> None:
    with guarded.connect() as conn:
        assert conn.whoami().user_id


def test_a_loopback_sandbox_keeps_its_routes_open_by_default(
    sandbox: Sandbox, https: httpx.Client
) -> None:
    assert https.get(f"{sandbox.base_url}/_sandbox/clock").status_code == 200


def test_a_non_loopback_host_warns_and_requires_the_secret(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb = start(host="0.0.0.0", data_dir=tmp_path, database=":memory:", rows=5)
    with sb:
        assert any(issubclass(w.category, RuntimeWarning) for w in caught)
        assert "0.0.0.0" in str(caught[0].message)
        with httpx.Client(verify=tls(sb), trust_env=False) as client:
            assert client.get(f"{sb.base_url}/_sandbox/clock").status_code == 401
        assert sb.knobs(clock_offset=0).previous == {"clock_offset": 0.0}
