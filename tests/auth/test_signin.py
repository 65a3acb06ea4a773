"""Every grant, v2 (msal) and v1 (httpx), against the sandbox over HTTPS."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import d365nb
from d365nb import AuthError, TransportError
from d365nb._auth import AuthCodeFlow, jwt_claims
from d365nb._sync import run_sync
from d365nb.sandbox import Sandbox
from d365nb.sandbox._connect import connect_to
from d365nb.sandbox._directory import CONFIDENTIAL_CLIENT_ID, USERS, app_by_id, user_by_name
from tests._support.oauth import client_credentials_token, device_code_tokens

pytestmark = pytest.mark.sandbox

ALEX = user_by_name("alex")
APP_USER = app_by_id(CONFIDENTIAL_CLIENT_ID).application_user_id  # type: ignore[union-attr]


def test_connect_does_no_network_io_until_first_use(sandbox: Sandbox) -> None:
    conn = d365nb.connect(
        service_url="https://127.0.0.1:1/api/data/v9.2/",  # nothing listens there
        client_id=sandbox.public_client_id,
        tenant=sandbox.tenant,
        token_uri=f"https://127.0.0.1:1/{sandbox.tenant}/oauth2/v2.0/token",
        token_cache=False,
    )
    assert not conn.auth.signed_in
    assert "not signed in" in repr(conn)


def test_client_credentials_v2_whoami_is_the_application_user(sandbox: Sandbox) -> None:
    conn = connect_to(sandbox, grant="client_credentials")
    who = conn.whoami()
    assert who.user_id == APP_USER
    claims = jwt_claims(conn.auth.current.token)  # type: ignore[union-attr]
    assert claims["aud"].rstrip("/") == sandbox.base_url
    assert "roles" in claims and "scp" not in claims
    conn.close()


def test_client_credentials_v1_resource_endpoint(sandbox: Sandbox) -> None:
    conn = connect_to(sandbox, grant="client_credentials", version="v1")
    assert conn.settings.version == "v1"
    assert conn.whoami().user_id == APP_USER
    conn.close()


def test_device_code_v2_signs_in_the_approving_user(
    sandbox: Sandbox, approve_as: Callable[[str], Any]
) -> None:
    conn = connect_to(sandbox, grant="device_code")
    conn.prompt = approve_as("alex")
    conn.sign_in()
    assert conn.whoami().user_id == ALEX.systemuserid
    assert "signed in" in repr(conn)
    conn.close()


def test_device_code_v1(sandbox: Sandbox, approve_as: Callable[[str], Any]) -> None:
    conn = connect_to(sandbox, grant="device_code", version="v1")
    conn.prompt = approve_as("megan")
    conn.sign_in()
    assert conn.whoami().user_id == user_by_name("megan").systemuserid
    conn.close()


def test_device_code_declined_is_an_auth_error(sandbox: Sandbox) -> None:
    conn = connect_to(sandbox, grant="device_code")
    conn.prompt = lambda code: sandbox.decline(code.user_code)
    with pytest.raises(AuthError) as info:
        conn.sign_in()
    assert info.value.error == "authorization_declined"
    assert not conn.auth.signed_in


def test_device_code_cancel_stops_polling(sandbox: Sandbox) -> None:
    conn = connect_to(sandbox, grant="device_code")
    conn.prompt = lambda code: code.cancel()
    with pytest.raises(AuthError, match="cancelled"):
        conn.sign_in()


def test_first_use_of_an_interactive_grant_signs_in_by_itself(
    sandbox: Sandbox, approve_as: Callable[[str], Any]
) -> None:
    conn = connect_to(sandbox, grant="device_code")
    conn.prompt = approve_as("alex")
    assert conn.whoami().user_id == ALEX.systemuserid  # no explicit sign_in()


def _play_browser(flow: AuthCodeFlow, sb: Sandbox, user: str = "alex") -> httpx.Response:
    """Follow the authorize URL, sign in as `user` on the sandbox page, return its answer."""
    from tests._support.browser import sign_in_on_page

    return sign_in_on_page(flow.auth_uri, sb, user=user)


def test_auth_code_pkce_paste_the_redirected_url(sandbox: Sandbox) -> None:
    conn = connect_to(sandbox, grant="auth_code", redirect_uri="http://localhost")
    shown: list[AuthCodeFlow] = []
    conn.prompt = shown.append
    conn.sign_in(loopback=False)
    assert not conn.auth.signed_in and len(shown) == 1
    flow = shown[0]
    assert "code_challenge=" in flow.auth_uri and "code_challenge_method=S256" in flow.auth_uri
    answer = _play_browser(flow, sandbox)
    assert answer.status_code in (302, 303)
    redirected = answer.headers["location"]
    assert redirected.startswith("http://localhost")
    conn.sign_in(redirected_url=redirected)
    assert conn.whoami().user_id == ALEX.systemuserid


def test_auth_code_pasted_url_of_another_attempt_is_refused(sandbox: Sandbox) -> None:
    conn = connect_to(sandbox, grant="auth_code", redirect_uri="http://localhost")
    conn.prompt = lambda flow: None
    conn.sign_in(loopback=False)
    with pytest.raises(AuthError, match="does not belong"):
        conn.sign_in(redirected_url="http://localhost/?code=abc&state=not-this-one")


def test_auth_code_loopback_receives_the_form_post(sandbox: Sandbox) -> None:
    from tests._support.browser import submit_form_post

    conn = connect_to(sandbox, grant="auth_code")

    def browser(flow: Any) -> None:
        assert isinstance(flow, AuthCodeFlow)
        assert flow.redirect_uri.startswith("http://127.0.0.1:")
        page = _play_browser(flow, sandbox)
        submit_form_post(page)  # the page's auto-submitting form, as a browser would

    import threading

    conn.prompt = lambda flow: threading.Thread(target=browser, args=(flow,)).start()
    conn.sign_in(loopback=True, open_browser=False, timeout=30)
    assert conn.whoami().user_id == ALEX.systemuserid


def test_refresh_token_grant(sandbox: Sandbox) -> None:
    tokens = device_code_tokens(sandbox, "megan")
    conn = connect_to(sandbox, grant="refresh_token", refresh_token=tokens["refresh_token"])
    assert conn.whoami().user_id == user_by_name("megan").systemuserid


def test_given_access_token(sandbox: Sandbox) -> None:
    token = client_credentials_token(sandbox)["access_token"]
    conn = connect_to(
        sandbox, grant="access_token", client_id=None, client_secret=None, access_token=token
    )
    assert conn.whoami().user_id == APP_USER


def test_given_access_token_expired_without_refresh_is_a_clear_error(
    short_lived: Sandbox,
) -> None:
    token = client_credentials_token(short_lived)["access_token"]
    short_lived.knobs(clock_offset=3)  # the sandbox's clock, not a sleep
    conn = connect_to(
        short_lived, grant="access_token", client_id=None, client_secret=None, access_token=token
    )
    with pytest.raises(AuthError) as info:
        conn.whoami()
    assert "expired" in str(info.value)
    assert token not in str(info.value)
    assert info.value.hint and "refresh_token" in info.value.hint


def test_token_expiring_mid_session_is_refreshed_silently(
    short_lived: Sandbox, approve_as: Callable[[str], Any]
) -> None:
    conn = connect_to(short_lived, grant="device_code")
    calls: list[Any] = []

    def prompt(code: Any) -> None:
        calls.append(code)
        import threading

        threading.Thread(target=short_lived.approve, args=(code.user_code, "alex")).start()

    conn.prompt = prompt
    first = conn.whoami()
    token_1 = conn.auth.current
    short_lived.knobs(clock_offset=3)  # the 2-second access token is dead now
    second = conn.whoami()
    assert first.user_id == second.user_id == ALEX.systemuserid
    assert conn.auth.current is not token_1
    assert len(calls) == 1  # signed in once; the refresh needed nobody


def test_revoked_refresh_token_is_a_clear_auth_error(
    short_lived: Sandbox, approve_as: Callable[[str], Any]
) -> None:
    tokens = device_code_tokens(short_lived, "alex")
    conn = connect_to(short_lived, grant="refresh_token", refresh_token=tokens["refresh_token"])
    conn.whoami()
    short_lived.revoke_refresh_tokens()
    short_lived.knobs(clock_offset=3)
    with pytest.raises(AuthError):
        conn.whoami()


def test_cache_is_shared_by_two_connections_to_one_environment(
    sandbox: Sandbox, approve_as: Callable[[str], Any], tmp_path: Path
) -> None:
    first = connect_to(sandbox, grant="device_code", token_cache=tmp_path)
    first.prompt = approve_as("alex")
    first.sign_in()
    second = connect_to(sandbox, grant="device_code", token_cache=tmp_path)

    def must_not_prompt(item: Any) -> None:
        raise AssertionError("the second connection should use the cached refresh token")

    second.prompt = must_not_prompt
    assert second.whoami().user_id == ALEX.systemuserid
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and (files[0].stat().st_mode & 0o777) == 0o600
    second.sign_out()
    assert list(tmp_path.iterdir()) == []


def test_azure_identity_style_credential(sandbox: Sandbox) -> None:
    class Credential:
        def __init__(self) -> None:
            self.scopes: list[tuple[str, ...]] = []

        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            from azure.core.credentials import AccessToken

            self.scopes.append(scopes)
            body = client_credentials_token(sandbox)
            return AccessToken(body["access_token"], int(time.time()) + 3600)

    credential = Credential()
    conn = d365nb.connect(
        service_url=sandbox.service_url,
        credential=credential,
        verify=sandbox.ca_cert,
        token_cache=False,
    )
    assert conn.whoami().user_id == APP_USER
    assert credential.scopes == [(f"{sandbox.base_url}/.default",)]


def test_token_is_only_sent_to_the_configured_host(sandbox: Sandbox) -> None:
    conn = connect_to(sandbox, grant="client_credentials")
    other = sandbox.base_url.replace("127.0.0.1", "localhost")
    with pytest.raises(TransportError, match="localhost"):
        run_sync(conn.arequest("GET", f"{other}/api/data/v9.2/WhoAmI"))


def test_ca_bundle_environment_variables_do_not_break_trust(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, str(bogus))
    conn = connect_to(sandbox, grant="device_code")
    conn.prompt = lambda code: sandbox.approve(code.user_code, "alex")
    assert conn.whoami().user_id == ALEX.systemuserid


def test_no_secret_or_token_in_repr_or_logs(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    conn = connect_to(sandbox, grant="client_credentials")
    conn.whoami()
    token = conn.auth.current.token  # type: ignore[union-attr]
    texts = [
        repr(conn),
        str(conn),
        conn._repr_html_(),
        repr(conn.settings),
        repr(conn.auth),
        repr(conn.auth.current),
        caplog.text,
    ]
    for text in texts:
        assert sandbox.client_secret not in text
        assert token not in text
        assert token[:40] not in text


def test_users_without_a_role_get_a_403_with_a_hint(
    sandbox: Sandbox, approve_as: Callable[[str], Any]
) -> None:
    conn = connect_to(sandbox, grant="device_code")
    conn.prompt = approve_as("norole")
    conn.sign_in()
    with pytest.raises(d365nb.ODataError) as info:
        run_sync(conn.arequest("GET", "accounts", params={"$top": "1"}))
    assert info.value.status == 403
    assert info.value.hint and "security role" in info.value.hint
    assert USERS[2].name  # the seeded no-role user exists


def test_sandbox_connect_shortcut(sandbox: Sandbox) -> None:
    conn = sandbox.connect()
    assert conn.settings.grant == "client_credentials"
    assert conn.whoami().user_id == APP_USER
    conn.close()


def test_concurrent_401s_share_one_refresh(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    conn = sandbox.connect()
    first = run_sync(conn.auth.token())
    backend = conn.auth._backend
    calls: list[bool] = []
    original = backend.for_client

    def counting(*, force_refresh: bool) -> dict[str, Any]:
        calls.append(force_refresh)
        return original(force_refresh=force_refresh)

    monkeypatch.setattr(backend, "for_client", counting)

    async def storm() -> list[Any]:
        return await asyncio.gather(
            *(conn._token(force_refresh=True, stale=first) for _ in range(10))
        )

    tokens = run_sync(storm())
    assert calls == [True], "ten requests that saw a 401 caused one refresh"
    assert all(t is tokens[0] for t in tokens) and tokens[0] is not first
    conn.close()


def test_auth_code_pkce_v1_paste_the_redirected_url(sandbox: Sandbox) -> None:
    conn = connect_to(sandbox, grant="auth_code", version="v1", redirect_uri="http://localhost")
    shown: list[AuthCodeFlow] = []
    conn.prompt = shown.append
    conn.sign_in(loopback=False)
    flow = shown[0]
    assert "/oauth2/authorize?" in flow.auth_uri and "resource=" in flow.auth_uri
    answer = _play_browser(flow, sandbox)
    assert answer.status_code in (302, 303)
    conn.sign_in(redirected_url=answer.headers["location"])
    assert conn.whoami().user_id == ALEX.systemuserid


def test_refresh_token_grant_v1(sandbox: Sandbox) -> None:
    tokens = device_code_tokens(sandbox, "megan")
    conn = connect_to(
        sandbox, grant="refresh_token", version="v1", refresh_token=tokens["refresh_token"]
    )
    assert conn.settings.version == "v1"
    assert conn.whoami().user_id == user_by_name("megan").systemuserid
