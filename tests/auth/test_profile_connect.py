"""`connect(profile=...)` and `connect()` reconnect from a saved profile, CA included."""

from __future__ import annotations

from pathlib import Path

import pytest

import d365nb
from d365nb.sandbox import Sandbox
from d365nb.sandbox._directory import CONFIDENTIAL_CLIENT_ID, app_by_id

pytestmark = pytest.mark.sandbox

APP_USER = app_by_id(CONFIDENTIAL_CLIENT_ID).application_user_id  # type: ignore[union-attr]


@pytest.fixture
def saved(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sandbox's client-credentials settings saved as profile `default` (the secret
    comes from the environment, as profiles never hold it)."""
    path = tmp_path / "profiles.toml"
    monkeypatch.setenv("D365NB_CONFIG", str(path))
    d365nb.Settings(
        service_url=sandbox.service_url,
        client_id=sandbox.confidential_client_id,
        tenant=sandbox.tenant,
        token_uri=sandbox.token_uri,
        client_secret=sandbox.client_secret,  # not saved
        ca_cert=sandbox.ca_cert,
    ).save_profile("default")
    assert sandbox.client_secret not in path.read_text()
    monkeypatch.setenv("D365NB_CLIENT_SECRET", sandbox.client_secret)
    return path


def test_connect_profile_trusts_the_saved_ca(saved: Path) -> None:
    conn = d365nb.connect(profile="default", token_cache=False)
    assert conn.whoami().user_id == APP_USER


def test_connect_with_nothing_given_uses_the_default_profile(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("D365NB_CLIENT_SECRET")  # nothing given at all ...
    monkeypatch.setenv("D365NB_PROFILE", "")
    with pytest.raises(d365nb.ConfigError, match="client_secret"):
        d365nb.connect(token_cache=False)  # ... so the default profile is read
