"""A given access token is used until its own expiry; the error names the right time."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from d365nb import AuthError
from d365nb._auth import CLOCK_SKEW, jwt_claims
from d365nb.sandbox import Sandbox
from d365nb.sandbox._connect import connect_to
from d365nb.sandbox._directory import CONFIDENTIAL_CLIENT_ID, app_by_id
from tests._support.oauth import client_credentials_token

pytestmark = pytest.mark.sandbox

APP_USER = app_by_id(CONFIDENTIAL_CLIENT_ID).application_user_id  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def minutes_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox whose access tokens live 100 seconds: less than the 5-minute margin."""
    from d365nb import sandbox as sb_module

    with sb_module.start(
        data_dir=tmp_path_factory.mktemp("minutes"),
        database=":memory:",
        rows=5,
        access_token_lifetime=100,
    ) as sb:
        yield sb


def given(sb: Sandbox, token: str):  # type: ignore[no-untyped-def]
    return connect_to(sb, grant="access_token", client_id=None, client_secret=None,
                      access_token=token)  # fmt: skip


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def test_given_token_with_minutes_left_is_used_until_its_exp(minutes_left: Sandbox) -> None:
    token = client_credentials_token(minutes_left)["access_token"]
    exp = jwt_claims(token)["exp"]
    assert exp - time.time() < 300  # the old margin refused this token outright
    conn = given(minutes_left, token)
    assert conn.whoami().user_id == APP_USER
    assert conn.auth.current is not None and conn.auth.current.expires_on == exp
    assert CLOCK_SKEW < 60


def test_expired_given_token_names_its_real_expiry(short_lived: Sandbox) -> None:
    token = client_credentials_token(short_lived)["access_token"]
    exp = jwt_claims(token)["exp"]
    time.sleep(3)
    conn = given(short_lived, token)
    with pytest.raises(AuthError) as info:
        conn.whoami()
    assert f"expired at {utc(exp)}" in str(info.value)
    assert token not in str(info.value)
    assert info.value.hint and "refresh_token" in info.value.hint


def test_refused_given_token_says_refused_and_when_it_would_expire(
    sandbox: Sandbox, minutes_left: Sandbox
) -> None:
    # A token signed by another sandbox: valid for a while, but this service refuses it.
    token = client_credentials_token(minutes_left)["access_token"]
    exp = jwt_claims(token)["exp"]
    conn = given(sandbox, token)
    with pytest.raises(AuthError) as info:
        conn.whoami()
    assert "refused" in str(info.value) and utc(exp) in str(info.value)
    assert "expired at" not in str(info.value)


def test_opaque_given_token_is_used_until_the_service_refuses_it(sandbox: Sandbox) -> None:
    conn = given(sandbox, "opaque-token-without-claims")
    assert conn.auth.signed_in
    assert conn.auth.identity()["expires_on"] is None
    assert "not signed in" not in repr(conn)
    with pytest.raises(AuthError) as info:
        conn.whoami()
    assert "refused" in str(info.value)
