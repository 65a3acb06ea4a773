"""Device-code polling answers each state exactly as Entra does; the device login page."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import msal
import pytest

from d365nb.sandbox import start
from d365nb.sandbox._devicecode import DeviceCodes, normalize_user_code
from d365nb.sandbox._directory import APPS, USERS

from .test_identity_errors import assert_aad_error

pytestmark = pytest.mark.sandbox

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def begin(sandbox: Any, https: httpx.Client, *, client_id: str | None = None) -> Any:
    response = https.post(
        f"{sandbox.authority}/oauth2/v2.0/devicecode",
        data={
            "client_id": client_id or sandbox.public_client_id,
            "scope": f"{sandbox.base_url}/user_impersonation offline_access openid profile",
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


def poll(
    sandbox: Any, https: httpx.Client, flow: dict[str, Any], *, client_id: str | None = None
) -> httpx.Response:
    return https.post(
        sandbox.token_uri,
        data={
            "grant_type": DEVICE_GRANT,
            "client_id": client_id or sandbox.public_client_id,
            "device_code": flow["device_code"],
        },
    )


def test_device_code_response_shape(sandbox, https):
    flow = begin(sandbox, https)
    assert set(flow) == {
        "user_code",
        "device_code",
        "verification_uri",
        "expires_in",
        "interval",
        "message",
    }
    assert flow["expires_in"] == sandbox.options.device_code_lifetime == 900
    assert flow["interval"] == sandbox.options.device_code_interval
    assert len(flow["user_code"]) == 9 and flow["user_code"].isalnum()
    assert flow["message"] == (
        f"To sign in, use a web browser to open the page {flow['verification_uri']} "
        f"and enter the code {flow['user_code']} to authenticate."
    )


def test_pending_then_slow_down_then_success(sandbox, https):
    flow = begin(sandbox, https)
    assert_aad_error(
        poll(sandbox, https, flow), status=400, error="authorization_pending", code=70016
    )
    # Polling again at once, well within `interval`: slow down.
    too_soon = poll(sandbox, https, flow)
    assert too_soon.status_code == 400
    assert too_soon.json()["error"] == "slow_down"
    sandbox.approve(flow["user_code"], user="alex")
    done = poll(sandbox, https, flow)
    assert done.status_code == 200, done.text
    body = done.json()
    assert {"access_token", "refresh_token", "id_token", "expires_in", "scope"} <= set(body)
    # A device code is redeemed once.
    assert_aad_error(
        poll(sandbox, https, flow), status=400, error="bad_verification_code", code=70018
    )


def test_msal_keeps_polling_while_pending(sandbox, requests_session, https):
    app = msal.PublicClientApplication(
        sandbox.public_client_id,
        authority=sandbox.authority,
        instance_discovery=False,
        http_client=requests_session,
    )
    flow = app.initiate_device_flow(scopes=[f"{sandbox.base_url}/user_impersonation"])
    # One non-blocking poll: msal hands back the pending state.
    result = app.acquire_token_by_device_flow(flow, exit_condition=lambda f: True)
    assert result["error"] == "authorization_pending"


def test_declined(sandbox, https):
    flow = begin(sandbox, https)
    sandbox.decline(flow["user_code"])
    assert_aad_error(
        poll(sandbox, https, flow), status=400, error="authorization_declined", code=65004
    )


def test_declined_on_the_page(sandbox, https, forms):
    flow = begin(sandbox, https)
    page = https.post(flow["verification_uri"], data={"otc": flow["user_code"]})
    (form,) = forms(page.text)
    done = https.post(
        f"{sandbox.base_url}{form['action']}",
        data={"user_code": flow["user_code"], "user": USERS[0].upn, "action": "decline"},
    )
    assert "declined" in done.text
    assert poll(sandbox, https, flow).json()["error"] == "authorization_declined"


def test_bad_verification_code(sandbox, https):
    response = poll(sandbox, https, {"device_code": "not-a-device-code"})
    assert_aad_error(response, status=400, error="bad_verification_code", code=70018)


def test_device_code_of_another_client_is_not_recognised(sandbox, https):
    flow = begin(sandbox, https)
    sandbox.approve(flow["user_code"])
    response = https.post(
        sandbox.token_uri,
        data={
            "grant_type": DEVICE_GRANT,
            "client_id": sandbox.confidential_client_id,
            "client_secret": sandbox.client_secret,
            "device_code": flow["device_code"],
        },
    )
    assert response.json()["error"] == "bad_verification_code"


def test_wrong_code_on_the_page_says_so(sandbox, https):
    page = https.post(f"{sandbox.base_url}/devicelogin", data={"otc": "WRONGCODE"})
    assert page.status_code == 200
    assert "Check the code and try again" in page.text


def test_unknown_user_on_approve_endpoint(sandbox, https):
    flow = begin(sandbox, https)
    response = https.post(
        sandbox.approve_url, json={"user_code": flow["user_code"], "user": "mallory"}
    )
    assert response.status_code == 400
    assert "alex" in response.json()["hint"]


def test_expired_token(tmp_path):
    with start(data_dir=tmp_path, database=":memory:", rows=5, device_code_lifetime=1) as sb:
        context = ssl.create_default_context(cafile=sb.ca_cert)
        with httpx.Client(verify=context, trust_env=False) as client:
            flow = begin(sb, client)
            assert flow["expires_in"] == 1
            sb.knobs(clock_offset=2)  # the sandbox's clock, not a sleep
            assert_aad_error(poll(sb, client, flow), status=400, error="expired_token", code=70020)
            # Too late to approve, too.
            assert (
                client.post(sb.approve_url, json={"user_code": flow["user_code"]}).status_code
                == 404
            )


def test_auto_approve(tmp_path):
    with start(data_dir=tmp_path, database=":memory:", rows=5, auto_approve=True) as sb:
        context = ssl.create_default_context(cafile=sb.ca_cert)
        with httpx.Client(verify=context, trust_env=False) as client:
            flow = begin(sb, client)
            response = poll(sb, client, flow)
    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


# -- the polling state machine itself (pure, no server)


def test_slow_down_adds_five_seconds_and_on_time_polls_pass():
    codes = DeviceCodes(lifetime=900, interval=5)
    entry = codes.create(app=APPS[0], grant=object(), version="2.0")
    assert codes.poll(entry.device_code, now=entry.expires_at - 800)[0] == "pending"
    assert codes.poll(entry.device_code, now=entry.expires_at - 799)[0] == "slow_down"
    assert entry.interval == 10
    assert codes.poll(entry.device_code, now=entry.expires_at - 789)[0] == "pending"
    assert codes.poll(entry.device_code, now=entry.expires_at)[0] == "expired"


def test_user_codes_are_matched_loosely():
    codes = DeviceCodes(lifetime=900, interval=5)
    entry = codes.create(app=APPS[0], grant=object(), version="2.0")
    typed = f" {entry.user_code[:4].lower()}-{entry.user_code[4:]} "
    assert normalize_user_code(typed) == entry.user_code
    assert codes.lookup(typed) is entry
    assert codes.approve(typed, USERS[1]) is entry
    assert codes.lookup(typed) is None  # no longer pending
