"""The sandbox's clock knob: expiry tests move time instead of sleeping."""

from __future__ import annotations

import httpx
import pytest

from d365nb import ConfigError
from d365nb.sandbox import Sandbox
from tests._support.oauth import client_credentials_token


def _whoami(https: httpx.Client, sandbox: Sandbox, token: str) -> httpx.Response:
    return https.get(f"{sandbox.service_url}WhoAmI", headers={"Authorization": f"Bearer {token}"})


def test_clock_route_reports_sets_and_advances(sandbox: Sandbox, https: httpx.Client) -> None:
    url = f"{sandbox.base_url}/_sandbox/clock"
    assert https.get(url).json() == {"offset": 0.0}
    try:
        assert https.post(url, json={"offset": 10}).json() == {"offset": 10.0}
        assert https.post(url, json={"advance": 5}).json() == {"offset": 15.0}
        bad = https.post(url, json={"advance": "soon"})
        assert bad.status_code == 400 and "numbers" in bad.json()["message"]
        assert https.post(url, content=b"offset=1").status_code == 415
    finally:
        https.post(url, json={"offset": 0})


def test_tokens_expire_when_the_clock_moves_on(sandbox: Sandbox, https: httpx.Client) -> None:
    token = client_credentials_token(sandbox)["access_token"]
    assert _whoami(https, sandbox, token).status_code == 200
    with sandbox.knobs(clock_offset=sandbox.options.access_token_lifetime + 60):
        expired = _whoami(https, sandbox, token)
        assert expired.status_code == 401
    assert _whoami(https, sandbox, token).status_code == 200


def test_knobs_change_and_restore_web_api_knobs_too(sandbox: Sandbox, https: httpx.Client) -> None:
    knobs = f"{sandbox.base_url}/_sandbox/knobs/"
    before = https.get(knobs).json()["latency_ms"]
    with sandbox.knobs(latency_ms=before + 1, clock_offset=5) as change:
        assert https.get(knobs).json()["latency_ms"] == before + 1
        assert https.get(f"{sandbox.base_url}/_sandbox/clock").json() == {"offset": 5.0}
        assert change.previous == {"latency_ms": before, "clock_offset": 0.0}
    assert https.get(knobs).json()["latency_ms"] == before
    assert https.get(f"{sandbox.base_url}/_sandbox/clock").json() == {"offset": 0.0}


def test_a_bad_knob_is_a_config_error(sandbox: Sandbox) -> None:
    with pytest.raises(ConfigError):
        sandbox.knobs(latency_ms=-1)
    with pytest.raises(ConfigError):
        sandbox.knobs(clock_offset="later")
