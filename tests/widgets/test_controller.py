"""The setup panel's controller: validation, steps, pre-fill, every sign-in method, errors."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import httpx
import pytest

from d365nb import AuthError, ConfigError
from d365nb._client import odata_error_from_response
from d365nb.sandbox import Sandbox
from d365nb.sandbox._directory import CONFIDENTIAL_CLIENT_ID, app_by_id, user_by_name
from d365nb.sandbox._info import find_sandbox
from d365nb.widgets._controller import SetupController
from d365nb.widgets._explain import describe_error
from d365nb.widgets._form import STEPS
from tests._support.browser import sign_in_on_page, submit_form_post

from .conftest import app_access_token, user_refresh_token, wait_for

ORG = "https://contoso.api.crm.dynamics.com/api/data/v9.2/"
CLIENT = "00001111-aaaa-2222-bbbb-3333cccc4444"
TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
SECRET = "Zq8~not-a-real-secret.7Hh"  # unlikely to occur in any message by chance
APP_USER = app_by_id(CONFIDENTIAL_CLIENT_ID).application_user_id  # type: ignore[union-attr]


def controller(**values: str) -> SetupController:
    return SetupController(environ={}, sandbox=False, token_cache=False, values=values)


# -- live validation, field by field ------------------------------------------------------


def test_service_url_web_api_url_is_ticked_and_derives_the_resource() -> None:
    ctl = controller()
    ctl.set_value("service_url", ORG)
    status = ctl.status("service_url")
    assert status.ok is True
    assert "https://contoso.crm.dynamics.com" in status.message
    assert ctl.suggestion("scope") == (
        "https://contoso.crm.dynamics.com/user_impersonation offline_access"
    )


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("http://contoso.crm.dynamics.com", "https://contoso.crm.dynamics.com"),
        ("contoso.crm.dynamics.com", "https://contoso.crm.dynamics.com"),
        ("https://login.microsoftonline.com/x", "in the Token URI"),
        ("https://contoso.crm.dynamics.com/main.aspx?app=x", "without the page path"),
    ],
)
def test_service_url_problems_name_the_fix(url: str, fix: str) -> None:
    ctl = controller()
    ctl.set_value("service_url", url)
    status = ctl.status("service_url")
    assert status.ok is False
    assert fix in status.message


def test_empty_field_is_neutral_and_service_url_gates_the_first_step() -> None:
    ctl = controller()
    assert ctl.status("service_url").ok is None
    assert not ctl.can_advance()
    assert "Web API URL" in ctl.step_problems(0)["service_url"]
    ctl.set_value("service_url", "https://bad url")
    assert not ctl.can_advance()
    ctl.set_value("service_url", ORG)
    assert ctl.can_advance()


def test_client_id_and_tenant_validation() -> None:
    ctl = controller(service_url=ORG)
    ctl.set_value("client_id", "{" + CLIENT + "}")
    assert "Remove the braces" in ctl.status("client_id").message
    ctl.set_value("client_id", CLIENT)
    assert ctl.status("client_id").ok is True
    ctl.set_value("tenant", "not a tenant!")
    assert "Tenant ID" in ctl.status("tenant").message
    ctl.go_to(1)
    assert not ctl.can_advance()
    ctl.set_value("tenant", "contoso.onmicrosoft.com")
    assert ctl.status("tenant").ok is True
    assert ctl.can_advance()


def test_endpoints_follow_the_tenant_until_edited() -> None:
    ctl = controller(service_url=ORG, tenant="contoso.onmicrosoft.com")
    token = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert ctl.values["token_uri"] == token
    assert ctl.status("token_uri").message.startswith("derived")
    assert "token_uri" not in ctl.settings_values()  # derived values are not pinned
    ctl.set_value("tenant", TENANT)
    assert ctl.values["token_uri"] == token.replace("contoso.onmicrosoft.com", TENANT)
    # A pasted "POST " prefix is accepted; the edited value then stays put.
    ctl.set_value("token_uri", f"POST https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
    assert ctl.status("token_uri").ok is True
    ctl.set_value("tenant", "contoso.onmicrosoft.com")
    assert ctl.values["token_uri"].startswith("POST ")
    assert "differs from the tenant" in ctl.status("tenant").message
    ctl.set_value("token_uri", "")  # clearing it makes it follow again
    assert ctl.values["token_uri"] == token
    assert ctl.status("tenant").ok is True


def test_v1_endpoints_switch_uris_and_drop_the_scope() -> None:
    ctl = controller(service_url=ORG, tenant=TENANT)
    ctl.set_endpoint_version("v1")
    assert ctl.values["token_uri"].endswith(f"/{TENANT}/oauth2/token")
    assert ctl.values["auth_uri"].endswith(f"/{TENANT}/oauth2/authorize")
    assert "scope" not in ctl.values
    values = ctl.settings_values()
    assert values["token_uri"].endswith("/oauth2/token") and "scope" not in values
    assert ctl.problems(partial=True) == {}
    # Pasting a v1 endpoint picks v1 by itself.
    other = controller(service_url=ORG)
    other.set_value("token_uri", f"https://login.microsoftonline.com/{TENANT}/oauth2/token")
    assert other.endpoint_version == "v1"


def test_mismatched_endpoints_are_reported_on_auth_uri() -> None:
    ctl = controller(service_url=ORG)
    ctl.set_value("token_uri", f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
    ctl.set_value("auth_uri", f"https://login.microsoftonline.com/{TENANT}/oauth2/authorize")
    assert "same version" in ctl.status("auth_uri").message


def test_scope_prefill_follows_the_method_and_is_explained_by_its_checks() -> None:
    ctl = controller(service_url=ORG, tenant=TENANT)
    assert ctl.values["scope"].endswith("/user_impersonation offline_access")
    ctl.set_method("client_credentials")
    assert ctl.values["scope"] == "https://contoso.crm.dynamics.com/.default"
    ctl.set_value("scope", "https://contoso.crm.dynamics.com/user_impersonation")
    assert "/.default" in ctl.status("scope").message
    ctl.set_value("scope", "a, b")
    assert "spaces" in ctl.status("scope").message


def test_redirect_uri_must_be_https_or_loopback() -> None:
    ctl = controller(service_url=ORG, client_id=CLIENT)
    ctl.set_method("auth_code")
    ctl.set_value("redirect_uri", "http://example.com/cb")
    assert "localhost" in ctl.status("redirect_uri").message
    ctl.set_value("redirect_uri", "http://localhost")
    assert ctl.status("redirect_uri").ok is True


def test_secrets_live_outside_values_and_statuses() -> None:
    ctl = controller(service_url=ORG, client_id=CLIENT, tenant=TENANT)
    ctl.set_secret("client_secret", SECRET)
    assert ctl.has_secret("client_secret")
    assert SECRET not in json.dumps(ctl.values)
    status = ctl.status("client_secret")
    assert status.ok is True and SECRET not in status.message and "memory" in status.message
    # Device code must not silently become a confidential-client sign-in.
    assert "client_secret" not in ctl.settings_values()
    ctl.set_method("client_credentials")
    assert ctl.settings_values()["client_secret"] == SECRET
    ctl.set_secret("client_secret", None)
    assert not ctl.has_secret("client_secret")
    assert "client_secret" in ctl.problems(partial=False)


# -- pre-fill: environment, profiles, sandbox ---------------------------------------------


def test_environment_prefills_fields_and_keeps_secrets_out_of_them() -> None:
    ctl = SetupController(
        environ={
            "D365NB_SERVICE_URL": ORG,
            "D365NB_CLIENT_ID": CLIENT,
            "D365NB_TENANT": TENANT,
            "D365NB_CLIENT_SECRET": SECRET,
        },
        sandbox=False,
    )
    assert ctl.values["service_url"] == ORG and ctl.values["client_id"] == CLIENT
    assert ctl.method == "client_credentials"
    assert "environment" in ctl.status("client_secret").message
    assert SECRET not in json.dumps(ctl.values)
    assert ctl.problems(partial=False) == {}


def test_save_profile_writes_no_secret_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    ctl = SetupController(
        environ={}, sandbox=False, profile_path=path, values={"service_url": ORG, "tenant": TENANT}
    )
    ctl.set_value("client_id", CLIENT)
    ctl.set_secret("client_secret", SECRET)
    ctl.set_method("client_credentials")
    saved = ctl.save_profile("work")
    text = saved.read_text()
    assert saved == path and CLIENT in text and SECRET not in text
    assert "client_credentials" in text  # the intent survives without the secret
    assert "Saved profile 'work'" in ctl.notice
    assert ctl.profiles() == ["work"]

    again = SetupController(environ={}, sandbox=False, profile_path=path, profile="work")
    assert again.values["client_id"] == CLIENT and again.method == "client_credentials"
    assert not again.has_secret("client_secret")
    via_env = SetupController(
        environ={"D365NB_PROFILE": "work", "D365NB_CONFIG": str(path)}, sandbox=False
    )
    assert via_env.values["service_url"] == ORG


def test_save_profile_with_a_bad_field_is_a_problem(tmp_path: Path) -> None:
    ctl = SetupController(environ={}, sandbox=False, profile_path=tmp_path / "p.toml")
    ctl.set_value("service_url", "http://nope")
    with pytest.raises(ConfigError):
        ctl.save_profile("x")
    assert ctl.problem is not None and ctl.problem.field == "service_url"
    assert not (tmp_path / "p.toml").exists()


def test_find_sandbox_reads_the_env_contract(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = sandbox.info()
    line = json.dumps(info)
    # A sandbox started in this process wins over the environment (the test session may
    # run more than one: any of them will do).
    found = find_sandbox({"D365NB_SANDBOX": "/nonexistent"})
    assert found is not None and found.tenant == sandbox.tenant
    assert found.service_url.startswith("https://127.0.0.1:") and Path(found.ca_cert).is_file()
    file = tmp_path / "sandbox.json"
    file.write_text(line + "\n")
    from d365nb.sandbox import _info

    monkeypatch.setattr(_info, "_sandboxes_in_process", list)  # a fresh Binder kernel
    from_json = find_sandbox({"D365NB_SANDBOX": line})
    from_file = find_sandbox({"D365NB_SANDBOX": str(file)})
    assert from_json == from_file
    assert from_json is not None and from_json.ca_cert == info["ca_cert"]
    assert find_sandbox({"D365NB_SANDBOX": "{not json"}) is None
    assert find_sandbox({"D365NB_SANDBOX": str(tmp_path / "missing.json")}) is None
    assert find_sandbox({"D365NB_SANDBOX": json.dumps({"service_url": "x"})}) is None
    assert find_sandbox({}) is None


def test_sandbox_preset_fills_every_step(sandbox: Sandbox) -> None:
    ctl = SetupController(environ={}, sandbox=sandbox)
    ctl.use_sandbox()
    assert ctl.values["service_url"] == sandbox.service_url
    assert ctl.values["client_id"] == sandbox.public_client_id
    assert ctl.values["token_uri"] == sandbox.token_uri
    assert ctl.values["auth_uri"] == sandbox.auth_uri
    assert ctl.problems(partial=False) == {}
    ctl.use_sandbox(method="client_credentials")
    assert ctl.values["client_id"] == sandbox.confidential_client_id
    assert ctl.has_secret("client_secret") and ctl.problems(partial=False) == {}
    assert "sandbox-secret" not in json.dumps(ctl.values)
    with pytest.raises(ConfigError, match="No running sandbox"):
        controller().use_sandbox()


# -- errors as one sentence with the fix ---------------------------------------------------


def _odata(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


def test_service_errors_become_one_sentence_with_the_fix() -> None:
    not_member = odata_error_from_response(
        _odata(403, "0x80072560", "The user is not a member of the organization.")
    )
    p = describe_error(not_member, grant="client_credentials")
    assert "not a user of this environment" in p.message
    assert "application user" in p.hint and "Power Platform admin center" in p.hint

    no_role = odata_error_from_response(
        _odata(403, "0x80040220", "Principal user is missing prvReadAccount privilege")
    )
    p = describe_error(no_role, grant="device_code")
    assert "lacks a security role" in p.message and "security role" in p.hint
    assert "prvReadAccount" in p.detail

    refused = odata_error_from_response(_odata(401, "", ""))
    assert "application user" in describe_error(refused, grant="client_credentials").hint
    assert "Service URL" in describe_error(refused, grant="device_code").hint


def test_auth_errors_name_their_field_and_unexpected_errors_are_scrubbed() -> None:
    err = AuthError(
        "Signing in failed: AADSTS700016: app not found", code="AADSTS700016", hint="Copy it."
    )
    p = describe_error(err)
    assert p.field == "client_id" and p.sentence == err.message + " Copy it."
    try:
        raise RuntimeError(f"boom with {SECRET} inside")
    except RuntimeError as exc:
        p = describe_error(exc, secrets=[SECRET])
    assert p.message.startswith("Unexpected RuntimeError") and SECRET not in p.message
    assert "boom" in p.detail and SECRET not in p.detail


# -- sign-in against the sandbox, every method ---------------------------------------------


def sandbox_controller(
    sb: Sandbox, closing: list[SetupController], method: str = "device_code"
) -> SetupController:
    ctl = SetupController(environ={}, sandbox=sb, token_cache=False)
    ctl.use_sandbox(method=method)
    closing.append(ctl)
    return ctl


def log_text(ctl: SetupController) -> str:
    return "\n".join(ctl.log)


def assert_no_token_shown(ctl: SetupController, *extra: str) -> None:
    shown = log_text(ctl) + repr(ctl.problem) + ctl.notice + repr(ctl.values)
    token = ctl.connection.auth.current if ctl.connection is not None else None
    for secret in (*extra, token.token if token else None):
        if secret:
            assert secret not in shown


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_device_code_signs_in_tests_and_removes_the_code(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    ctl = sandbox_controller(sandbox, closing)
    seen_codes: list[str] = []

    def approve_when_shown(what: str) -> None:
        if what == "state" and ctl.state == "device_code":
            assert ctl.device_code is not None
            seen_codes.append(ctl.device_code.user_code)
            threading.Thread(target=sandbox.approve, args=(seen_codes[-1], "alex")).start()

    ctl.subscribe(approve_when_shown)
    task = ctl.start_sign_in()
    assert ctl.start_sign_in() is task  # a second click does not start another
    await task
    assert ctl.problem is None, ctl.problem
    assert ctl.state == "connected" and ctl.step == STEPS.index("test")
    assert ctl.device_code is None and seen_codes
    assert ctl.whoami is not None and ctl.whoami.name == "Alex Wilber"
    assert ctl.whoami.user_id == user_by_name("alex").systemuserid
    assert ("account", "accounts") in ctl.tables and ctl.table_count >= len(ctl.tables)
    assert ctl.warning is None and "Read one row of accounts." in log_text(ctl)
    assert ctl.connection is not None and ctl.connection.auth.signed_in
    assert_no_token_shown(ctl)


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_user_without_a_role_is_warned_with_the_fix(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    ctl = sandbox_controller(sandbox, closing)
    ctl.subscribe(
        lambda what: (
            threading.Thread(
                target=sandbox.approve, args=(ctl.device_code.user_code, "norole")
            ).start()
            if what == "state" and ctl.state == "device_code" and ctl.device_code
            else None
        )
    )
    await ctl.start_sign_in()
    assert ctl.state == "connected", ctl.problem
    assert ctl.whoami is not None and ctl.whoami.user_id == user_by_name("norole").systemuserid
    assert ctl.warning is not None
    assert "lacks a security role" in ctl.warning.message
    assert "HTTP 403" in ctl.warning.message
    assert "Power Platform admin center" in ctl.warning.hint
    assert "prvReadAccount" in log_text(ctl)


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_paste_mode_cancel(sandbox: Sandbox, closing: list[SetupController]) -> None:
    ctl = sandbox_controller(sandbox, closing, "auth_code")
    ctl.set_auth_code_mode("paste")
    task = ctl.start_sign_in()
    await wait_for(lambda: ctl.state == "paste")
    ctl.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ctl.state == "editing" and ctl.auth_flow is None and ctl.problem is None


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_device_code_cancel_stops_polling(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    ctl = sandbox_controller(sandbox, closing)
    task = ctl.start_sign_in()
    await wait_for(lambda: ctl.state == "device_code")
    code = ctl.device_code
    assert code is not None and code.seconds_left > 0
    ctl.cancel()
    await task  # the poll ends within a second; no request is cut off
    assert code.cancelled
    assert ctl.state == "editing" and ctl.device_code is None
    assert ctl.notice == "Sign-in cancelled." and ctl.problem is None
    assert ctl.connection is not None and not ctl.connection.auth.signed_in


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_device_code_declined_shows_the_fix(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    ctl = sandbox_controller(sandbox, closing)
    task = ctl.start_sign_in()
    await wait_for(lambda: ctl.state == "device_code")
    assert ctl.device_code is not None
    await asyncio.to_thread(sandbox.decline, ctl.device_code.user_code)
    await task
    assert ctl.state == "error" and ctl.problem is not None
    assert "declined" in ctl.problem.hint
    assert "AuthError" in log_text(ctl)


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_client_credentials_signs_in_as_the_application_user(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    ctl = sandbox_controller(sandbox, closing, "client_credentials")
    await ctl.start_sign_in()
    assert ctl.state == "connected", ctl.problem
    assert ctl.whoami is not None and ctl.whoami.user_id == APP_USER
    assert_no_token_shown(ctl, sandbox.client_secret)


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_wrong_client_secret_is_one_sentence_and_never_shown(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    ctl = sandbox_controller(sandbox, closing, "client_credentials")
    ctl.set_secret("client_secret", SECRET)
    ctl.go_to(STEPS.index("sign_in"))
    await ctl.start_sign_in()
    assert ctl.state == "error" and ctl.problem is not None
    assert "AADSTS7000215" in ctl.problem.message
    assert "Certificates & secrets" in ctl.problem.hint
    assert ctl.problem.field == "client_secret" and ctl.step == STEPS.index("sign_in")
    assert "Traceback" in ctl.problem.detail
    assert_no_token_shown(ctl, SECRET)
    assert SECRET not in ctl.problem.detail


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_v1_endpoints_sign_in(sandbox: Sandbox, closing: list[SetupController]) -> None:
    ctl = sandbox_controller(sandbox, closing, "client_credentials")
    ctl.set_endpoint_version("v1")
    assert ctl.settings_values()["token_uri"].endswith("/oauth2/token")
    await ctl.start_sign_in()
    assert ctl.state == "connected", ctl.problem
    assert ctl.connection is not None and ctl.connection.settings.version == "v1"


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_existing_access_token(sandbox: Sandbox, closing: list[SetupController]) -> None:
    token = await asyncio.to_thread(app_access_token, sandbox)
    ctl = sandbox_controller(sandbox, closing)
    ctl.set_secret("access_token", token)
    assert ctl.method == "token" and ctl.grant == "access_token"
    await ctl.start_sign_in()
    assert ctl.state == "connected", ctl.problem
    assert ctl.whoami is not None and ctl.whoami.user_id == APP_USER
    assert_no_token_shown(ctl, token)


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_existing_refresh_token(sandbox: Sandbox, closing: list[SetupController]) -> None:
    refresh = await asyncio.to_thread(user_refresh_token, sandbox, "megan")
    ctl = sandbox_controller(sandbox, closing)
    ctl.set_method("token")
    ctl.set_secret("refresh_token", refresh)
    assert ctl.grant == "refresh_token"
    await ctl.start_sign_in()
    assert ctl.state == "connected", ctl.problem
    assert ctl.whoami is not None and ctl.whoami.name == "Megan Bowen"
    assert_no_token_shown(ctl, refresh)


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_auth_code_paste_mode(sandbox: Sandbox, closing: list[SetupController]) -> None:
    ctl = sandbox_controller(sandbox, closing, "auth_code")
    ctl.set_auth_code_mode("paste")
    task = ctl.start_sign_in()
    await wait_for(lambda: ctl.state == "paste")
    assert ctl.auth_flow is not None
    assert ctl.auth_flow.redirect_uri == "http://localhost"
    answer = await asyncio.to_thread(sign_in_on_page, ctl.auth_flow.auth_uri, sandbox, user="megan")
    assert answer.status_code in (302, 303), answer.text
    redirected = answer.headers["location"]
    assert "code=" in redirected
    ctl.submit_redirect(redirected)
    await task
    assert ctl.state == "connected", ctl.problem
    assert ctl.whoami is not None and ctl.whoami.name == "Megan Bowen"
    assert ctl.auth_flow is None
    code = dict(httpx.URL(redirected).params)["code"]
    assert_no_token_shown(ctl, redirected, code)


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_auth_code_with_a_browser_on_this_machine(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    ctl = sandbox_controller(sandbox, closing, "auth_code")
    ctl.set_auth_code_mode("browser")
    task = ctl.start_sign_in()
    await wait_for(lambda: ctl.state == "browser")
    assert ctl.auth_flow is not None and ctl.auth_flow.redirect_uri.startswith("http://127.0.0.1:")
    page = await asyncio.to_thread(sign_in_on_page, ctl.auth_flow.auth_uri, sandbox)
    done = await asyncio.to_thread(submit_form_post, page)  # the browser posts it back
    assert done.status_code == 200
    await task
    assert ctl.state == "connected", ctl.problem
    assert ctl.whoami is not None and ctl.whoami.name == "Alex Wilber"


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_pasting_without_a_waiting_sign_in_says_what_to_do(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    ctl = sandbox_controller(sandbox, closing, "auth_code")
    ctl.submit_redirect("http://localhost/?code=abc&state=def")
    assert ctl.problem is not None and "Sign in first" in ctl.problem.hint


@pytest.mark.asyncio
async def test_missing_field_at_sign_in_jumps_to_its_step() -> None:
    ctl = controller(service_url=ORG)
    ctl.go_to(STEPS.index("sign_in"))
    await ctl.start_sign_in()
    assert ctl.state == "error" and ctl.problem is not None
    assert ctl.problem.field == "client_id" and ctl.step == STEPS.index("app")
    assert "Application (client) ID" in ctl.problem.hint
    assert ctl.connection is None
    ctl.set_value("client_id", CLIENT)  # fixing the field clears the old error
    assert ctl.problem is None and ctl.state == "editing"


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_sign_out_forgets_tokens(sandbox: Sandbox, closing: list[SetupController]) -> None:
    ctl = sandbox_controller(sandbox, closing, "client_credentials")
    events: list[str] = []
    ctl.subscribe(events.append)
    await ctl.start_sign_in()
    conn = ctl.connection
    assert conn is not None and conn.auth.signed_in
    ctl.sign_out()
    assert not conn.auth.signed_in and ctl.connection is None
    assert ctl.state == "editing" and ctl.step == STEPS.index("sign_in")
    assert "signed_out" in events and ctl.whoami is None
    await conn.aclose()
