"""The vendor guide's connection strings, exactly as written, against the sandbox.

The guide (a JDBC/ODBC driver's "Connecting to hosted Dynamics 365 with OAuth2") has the
user register a *confidential* app, record Client ID, Client Secret, Token URI (written
`POST https://...`), Scope and Service URL, then either sign in in a browser with that
app (its "Configuration Manager"), use the access + refresh token that gives, the refresh
token alone, or client credentials.  Each row connects and answers WhoAmI.
"""

from __future__ import annotations

import secrets
import urllib.parse
from typing import Any

import httpx
import pytest

import d365nb
from d365nb import AuthError
from d365nb._auth import AuthCodeFlow
from d365nb.sandbox import Sandbox
from d365nb.sandbox._directory import CONFIDENTIAL_CLIENT_ID, app_by_id, user_by_name
from tests._support.browser import sign_in_on_page
from tests._support.oauth import tls

pytestmark = pytest.mark.sandbox

ALEX = user_by_name("alex")
APP_USER = app_by_id(CONFIDENTIAL_CLIENT_ID).application_user_id  # type: ignore[union-attr]


def v1_token_uri(sb: Sandbox) -> str:
    return f"{sb.base_url}/{sb.tenant}/oauth2/token"


def guide_string(
    sb: Sandbox, *, version: str = "v2", scope: str | None = "user", **extra: str
) -> str:
    """The guide's connection string for the sandbox's confidential app."""
    token_uri = sb.token_uri if version == "v2" else v1_token_uri(sb)
    parts = {
        "ServiceURL": sb.service_url,
        "ClientID": sb.confidential_client_id,
        "ClientSecret": sb.client_secret,
        "TokenURI": f"POST {token_uri}",
    }
    if scope == "user":
        parts["Scope"] = f"{sb.base_url}/user_impersonation offline_access"
    elif scope is not None:
        parts["Scope"] = scope
    parts.update(extra)
    return "".join(f"{key}={value};" for key, value in parts.items())


def connect(sb: Sandbox, text: str) -> d365nb.Connection:
    return d365nb.connect(text, verify=sb.ca_cert, token_cache=False)


def paste_mode_sign_in(conn: d365nb.Connection, sb: Sandbox, user: str = "alex") -> None:
    """Sign in as the guide's Configuration Manager would: the test plays the browser."""
    shown: list[Any] = []
    conn.prompt = shown.append
    conn.sign_in(loopback=False)
    (flow,) = shown
    assert isinstance(flow, AuthCodeFlow)
    answer = sign_in_on_page(flow.auth_uri, sb, user=user)
    assert answer.status_code in (302, 303), answer.text
    conn.sign_in(redirected_url=answer.headers["location"])


def confidential_user_tokens(sb: Sandbox, user: str = "alex") -> dict[str, Any]:
    """What the Configuration Manager hands back: the confidential app's user tokens."""
    redirect = "http://localhost"
    query = {
        "client_id": sb.confidential_client_id,
        "response_type": "code",
        "redirect_uri": redirect,
        "scope": f"{sb.base_url}/user_impersonation offline_access",
        "state": secrets.token_urlsafe(8),
    }
    answer = sign_in_on_page(f"{sb.auth_uri}?{urllib.parse.urlencode(query)}", sb, user=user)
    location = urllib.parse.urlsplit(answer.headers["location"])
    code = urllib.parse.parse_qs(location.query)["code"][0]
    response = httpx.post(
        sb.token_uri,
        data={
            "grant_type": "authorization_code",
            "client_id": sb.confidential_client_id,
            "client_secret": sb.client_secret,
            "code": code,
            "redirect_uri": redirect,
            "scope": query["scope"],
        },
        verify=tls(sb),
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_guide_configuration_manager_row_is_confidential_auth_code(
    sandbox: Sandbox, version: str
) -> None:
    conn = connect(sandbox, guide_string(sandbox, version=version))
    assert conn.settings.grant == "auth_code"
    assert "confidential app" in conn.settings.grant_reason
    if version == "v1":
        (note,) = conn.settings.notes
        assert note.startswith("scope is not used")
    paste_mode_sign_in(conn, sandbox)
    assert conn.whoami().user_id == ALEX.systemuserid


def test_guide_access_token_flow_with_access_and_refresh_token(sandbox: Sandbox) -> None:
    tokens = confidential_user_tokens(sandbox)
    text = guide_string(
        sandbox, AccessToken=tokens["access_token"], RefreshToken=tokens["refresh_token"]
    )
    conn = connect(sandbox, text)
    assert conn.settings.grant == "access_token"
    assert conn.whoami().user_id == ALEX.systemuserid
    assert conn.auth.current is not None and conn.auth.current.token == tokens["access_token"]


def test_guide_refresh_token_alone(sandbox: Sandbox) -> None:
    tokens = confidential_user_tokens(sandbox, "megan")
    conn = connect(sandbox, guide_string(sandbox, RefreshToken=tokens["refresh_token"]))
    assert conn.settings.grant == "refresh_token"
    assert conn.whoami().user_id == user_by_name("megan").systemuserid


@pytest.mark.parametrize(
    ("version", "scope"), [("v2", None), ("v2", "default"), ("v1", None)], ids=str
)
def test_guide_client_credentials(sandbox: Sandbox, version: str, scope: str | None) -> None:
    if scope == "default":
        scope = f"{sandbox.base_url}/.default"
    conn = connect(sandbox, guide_string(sandbox, version=version, scope=scope))
    assert conn.settings.grant == "client_credentials"
    assert conn.whoami().user_id == APP_USER


def test_confidential_app_without_its_secret_is_aadsts7000218(sandbox: Sandbox) -> None:
    conn = d365nb.connect(
        service_url=sandbox.service_url,
        client_id=sandbox.confidential_client_id,
        token_uri=sandbox.token_uri,
        grant="auth_code",
        verify=sandbox.ca_cert,
        token_cache=False,
    )
    with pytest.raises(AuthError) as info:
        paste_mode_sign_in(conn, sandbox)
    assert info.value.code == "AADSTS7000218"
    assert info.value.hint and "client_secret" in info.value.hint


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_confidential_auth_code_loopback_receives_the_form_post(
    sandbox: Sandbox, version: str
) -> None:
    import threading

    from tests._support.browser import submit_form_post

    conn = connect(sandbox, guide_string(sandbox, version=version))

    def browser(flow: Any) -> None:
        assert isinstance(flow, AuthCodeFlow)
        assert flow.redirect_uri.startswith("http://127.0.0.1:")
        submit_form_post(sign_in_on_page(flow.auth_uri, sandbox))

    conn.prompt = lambda flow: threading.Thread(target=browser, args=(flow,)).start()
    conn.sign_in(loopback=True, open_browser=False, timeout=30)
    assert conn.whoami().user_id == ALEX.systemuserid


# -- the way back: conn.connection_string() --------------------------------------------------


def test_connection_string_round_trip_through_connect(sandbox: Sandbox) -> None:
    conn = connect(sandbox, guide_string(sandbox, scope=None))
    text = conn.connection_string()
    assert text.startswith("ServiceURL=") and "TokenURI=POST https://" in text
    assert sandbox.client_secret not in text and "AccessToken" not in text
    again = d365nb.connect(text, client_secret=sandbox.client_secret, verify=sandbox.ca_cert,
                           token_cache=False)  # fmt: skip
    assert again.settings == conn.settings
    assert again.settings.grant == "client_credentials"
    assert again.whoami().user_id == APP_USER


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_connection_string_with_tokens_is_the_access_token_flow(
    sandbox: Sandbox, version: str
) -> None:
    conn = connect(sandbox, guide_string(sandbox, version=version))
    paste_mode_sign_in(conn, sandbox)
    with pytest.warns(UserWarning, match="treat it as a password"):
        text = conn.connection_string(tokens=True)
    assert conn.auth.current is not None
    parsed = d365nb.Settings.from_connection_string(text)
    assert parsed.access_token == conn.auth.current.token
    assert parsed.refresh_token and sandbox.client_secret not in text
    # The driver's access-token flow, read back by d365nb (the secret from elsewhere).
    again = d365nb.connect(text, client_secret=sandbox.client_secret, verify=sandbox.ca_cert,
                           token_cache=False)  # fmt: skip
    assert again.settings.grant == "access_token"
    assert again.whoami().user_id == ALEX.systemuserid
    # The refresh token in it works too.
    rt_only = connect(sandbox, guide_string(sandbox, version=version,
                                            RefreshToken=parsed.refresh_token))  # fmt: skip
    assert rt_only.whoami().user_id == ALEX.systemuserid
