"""Token cache and profile files are owner-only whatever the umask; TLS verification is on
by default and turning it off warns loudly."""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import d365nb
from d365nb import AuthError, ConfigError, InsecureTransportWarning, TransportError
from d365nb.sandbox import Sandbox
from d365nb.sandbox._connect import connect_to
from tests._support.ledger import record
from tests._support.oauth import device_code_tokens
from tests._support.proxy import Proxy
from tests.reliability._helpers import stats

pytestmark = pytest.mark.sandbox

AREA = "security/files and TLS"


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: files must still end up owner-only."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_token_cache_is_owner_only_and_holds_no_client_secret(
    sandbox: Sandbox, tmp_path: Path, open_umask: None
) -> None:
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    stale = folder / "other.json"
    stale.write_text("{}")
    tokens = device_code_tokens(sandbox, "alex")
    with connect_to(
        sandbox, grant="refresh_token", refresh_token=tokens["refresh_token"], token_cache=folder
    ) as conn:
        conn.whoami()
    with connect_to(sandbox, token_cache=folder) as app:
        app.whoami()
    files = [p for p in folder.iterdir() if p != stale]
    modes = {p.name: _mode(p) for p in files}
    text = "".join(p.read_text() for p in files)
    record(AREA, "token cache", operations=2, leaks=int(sandbox.client_secret in text), checks=3)
    assert len(files) == 2, modes
    assert set(modes.values()) == {0o600}
    assert _mode(folder) == 0o700
    assert sandbox.client_secret not in text


def test_an_existing_cache_file_with_loose_mode_is_tightened(
    sandbox: Sandbox, tmp_path: Path, open_umask: None
) -> None:
    with connect_to(sandbox, token_cache=tmp_path) as first:
        first.whoami()
    (cache,) = tmp_path.iterdir()
    os.chmod(cache, 0o644)
    with connect_to(sandbox, token_cache=tmp_path) as second:
        run = second.auth.token(force_refresh=True)
        from d365nb._sync import run_sync

        run_sync(run)
    record(AREA, "cache re-written", operations=2, checks=1)
    assert _mode(cache) == 0o600


def test_profile_file_is_owner_only_and_never_holds_a_secret(
    sandbox: Sandbox, tmp_path: Path, open_umask: None
) -> None:
    with connect_to(sandbox) as conn:
        path = conn.settings.save_profile("sb", path=tmp_path / "conf" / "profiles.toml")
    text = path.read_text()
    record(AREA, "profile", operations=1, leaks=int(sandbox.client_secret in text), checks=3)
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert sandbox.client_secret not in text
    assert "secret" not in text.lower().replace("client_secret", "") or "<" not in text


def test_tls_verification_is_on_by_default(sandbox: Sandbox, tmp_path: Path) -> None:
    """The sandbox's CA is not trusted unless asked: the request fails before any token
    leaves the client (the proxy in front of it sees no request at all)."""
    tokens = device_code_tokens(sandbox, "alex")
    with Proxy(sandbox) as front:
        conn = d365nb.connect(
            service_url=front.base_url,
            access_token=tokens["access_token"],
            token_cache=False,
        )
        with conn:
            with pytest.raises(TransportError) as info:
                conn.whoami()
            retries = stats(conn).retries
    record(AREA, "tls default", operations=1, leaks=len(front.seen), checks=1)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "certificate" in str(info.value)
    assert front.seen == []
    assert retries == 0, "a certificate failure is not transient: it is not retried"
    assert info.value.hint and "verify=" in info.value.hint
    assert tokens["access_token"] not in str(info.value)


def test_token_endpoint_is_verified_too(sandbox: Sandbox) -> None:
    conn = d365nb.connect(
        service_url=sandbox.service_url,
        client_id=sandbox.confidential_client_id,
        client_secret=sandbox.client_secret,
        token_uri=sandbox.token_uri,
        grant="client_credentials",
        token_cache=False,
    )
    with conn, pytest.raises((AuthError, TransportError)) as info:
        conn.whoami()
    record(AREA, "tls token endpoint", operations=1, checks=1)
    assert sandbox.client_secret not in str(info.value)
    assert "certificate" in str(info.value).lower() or "ssl" in str(info.value).lower()


def test_turning_verification_off_warns_loudly(sandbox: Sandbox) -> None:
    with pytest.warns(InsecureTransportWarning, match="verification is OFF") as caught:
        conn = connect_to(sandbox, verify=False)
    with conn:
        assert conn.whoami().user_id  # it still works: the warning is the safeguard
    (warning,) = [w for w in caught if issubclass(w.category, InsecureTransportWarning)]
    assert warning.filename == __file__ or "d365nb" not in warning.filename
    # Python's default filters show UserWarnings: it is never silent.
    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()
        with connect_to(sandbox, verify=False):
            pass
    record(AREA, "verify=False", operations=2, checks=2)
    assert any(issubclass(w.category, InsecureTransportWarning) for w in seen)


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/", "ftp://127.0.0.1/", "127.0.0.1:1"])
def test_plain_http_service_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        d365nb.connect(service_url=url, client_id="00001111-aaaa-2222-bbbb-3333cccc4444")
    record(AREA, f"plain http {url}", checks=1)
    assert info.value.field == "service_url"
