"""The setup form, as issue 21 asks: words for a form, checks at the right step, the preset.

No widgets and no browser: the controller (`SetupForm` under `SetupController`) is driven
as the panel drives it.
"""

from __future__ import annotations

import re

import pytest

from d365nb.sandbox import Sandbox
from d365nb.sandbox._directory import CONFIDENTIAL_CLIENT_ID, app_by_id
from d365nb.widgets import SetupController
from d365nb.widgets._explain import FIELD_LABELS, form_words
from d365nb.widgets._form import LOG_LINES, STEPS

ORG = "https://contoso.api.crm.dynamics.com/api/data/v9.2/"
CLIENT = "00001111-aaaa-2222-bbbb-3333cccc4444"
MY_APP = "99998888-eeee-7777-ffff-666655554444"
TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
OTHER_TOKEN_URI = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
SECRET = "Zq8~not-a-real-secret.7Hh"
# What the settings layer calls the fields: never shown to someone filling in a form.
INTERNAL = re.compile(r"\b(" + "|".join(n for n in FIELD_LABELS if "_" in n) + r")\b")


def controller(**values: str) -> SetupController:
    return SetupController(environ={}, sandbox=False, token_cache=False, values=values)


# -- messages in a form's words ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "values"),
    [
        ("device_code", {"service_url": "https://login.microsoftonline.com/x"}),
        ("device_code", {"service_url": "http://contoso.crm.dynamics.com", "client_id": "{x}"}),
        ("client_credentials", {"service_url": ORG, "client_id": CLIENT}),
        ("client_credentials", {"service_url": ORG, "tenant": "organizations"}),
        ("token", {"service_url": ORG}),
        ("auth_code", {"service_url": ORG, "redirect_uri": "ftp://x"}),
    ],
)
def test_messages_use_field_labels_and_no_python(method: str, values: dict[str, str]) -> None:
    ctl = controller(**values)
    ctl.set_method(method)
    messages = list(ctl.problems(partial=False).values())
    assert messages
    for text in messages:
        assert not INTERNAL.search(text), text
        assert "pass " not in text and "=" not in text.replace("?", ""), text
        assert "D365NB_" not in text and "grant" not in text, text


def test_form_words_reads_like_a_form() -> None:
    assert form_words("client_id is required for the device_code grant.") == (
        "Client ID is required for device code sign-in."
    )
    assert form_words(
        "The client_credentials grant needs client_secret. Set D365NB_CLIENT_SECRET in the "
        "environment (or pass client_secret=<redacted>; for a signed-in user choose grant "
        "device_code instead."
    ) == (
        "Signing in as the app (client secret) needs the Client Secret. Enter the Client "
        "Secret; for a signed-in user choose Device code instead."
    )
    assert form_words("Put the sign-in address in token_uri; service_url is yours.") == (
        "Put the sign-in address in the Token URI; the Service URL is yours."
    )


def test_first_view_asks_for_the_service_url_without_an_error() -> None:
    ctl = controller()
    status = ctl.step_status()
    assert status.ok is None and status.message == "Enter the Service URL to continue."
    assert ctl.status("service_url").ok is None  # nothing is marked...
    assert "marked" not in status.message  # ...so nothing says "the field marked above"
    ctl.set_value("service_url", "http://contoso.crm.dynamics.com")
    assert ctl.step_status().ok is False
    assert ctl.step_status().message == "Correct the field marked above to continue."
    ctl.set_value("service_url", ORG)
    assert ctl.step_status().ok is True and ctl.can_advance()


# -- a contradiction is caught at the step where it appears --------------------------------


def test_token_uri_contradicting_the_tenant_is_marked_at_the_endpoints_step() -> None:
    ctl = controller(service_url=ORG, client_id=CLIENT)
    ctl.set_value("tenant", TENANT)  # step 2: fine on its own
    ctl.go_to(STEPS.index("app"))
    assert ctl.can_advance()
    ctl.go_to(STEPS.index("endpoints"))
    ctl.set_value("token_uri", OTHER_TOKEN_URI)  # step 3: another tenant
    status = ctl.status("token_uri")
    assert status.ok is False and "differs from the tenant" in status.message
    assert "Token URI" in status.message and "Tenant" in status.message
    assert not ctl.can_advance()  # Next is held here, not after Sign in
    assert ctl.status("tenant").ok is True
    ctl.set_value("token_uri", "")  # follow the tenant again
    assert ctl.can_advance()


def test_tenant_contradicting_a_given_token_uri_is_marked_on_the_tenant() -> None:
    ctl = controller(service_url=ORG, client_id=CLIENT, token_uri=OTHER_TOKEN_URI)
    ctl.go_to(STEPS.index("app"))
    ctl.set_value("tenant", TENANT)  # typed after the Token URI came from the profile
    assert ctl.status("tenant").ok is False
    assert ctl.status("token_uri").ok is True
    assert not ctl.can_advance()


# -- the secret sits with the method that needs it -----------------------------------------


@pytest.mark.parametrize(
    ("method", "shown"),
    [("device_code", False), ("auth_code", True), ("client_credentials", True), ("token", False)],
)
def test_client_secret_is_asked_for_where_the_method_needs_it(method: str, shown: bool) -> None:
    ctl = controller(service_url=ORG, client_id=CLIENT, tenant=TENANT)
    ctl.set_method(method)
    assert ctl.shows("client_secret") is shown
    assert ctl.step_of("client_secret") == STEPS.index("sign_in")
    assert "client_secret" not in (ctl.step_problems(STEPS.index("app")))


def test_client_credentials_without_a_secret_names_the_field_in_step_5() -> None:
    ctl = controller(service_url=ORG, client_id=CLIENT, tenant=TENANT)
    ctl.set_method("client_credentials")
    message = ctl.problems(partial=False)["client_secret"]
    assert message.startswith("Signing in as the app (client secret) needs the Client Secret.")
    ctl.set_secret("client_secret", SECRET)
    assert ctl.status("client_secret").ok is True
    assert SECRET not in ctl.status("client_secret").message


# -- the sandbox preset follows the method ------------------------------------------------


def test_sandbox_preset_switches_to_the_confidential_client_for_client_credentials(
    sandbox: Sandbox,
) -> None:
    info = sandbox.info()
    ctl = SetupController(environ={}, sandbox=sandbox, token_cache=False)
    ctl.use_sandbox()  # device code: the public client
    assert ctl.values["client_id"] == info["public_client_id"]
    assert not ctl.has_secret("client_secret")
    ctl.set_method("client_credentials")
    assert ctl.values["client_id"] == info["confidential_client_id"] == CONFIDENTIAL_CLIENT_ID
    assert ctl.has_secret("client_secret") and ctl.secret_sources["client_secret"] == "sandbox"
    assert not ctl.problems(partial=False)
    ctl.set_method("device_code")  # back to a user sign-in: the public client, no secret
    assert ctl.values["client_id"] == info["public_client_id"]
    assert not ctl.has_secret("client_secret")


def test_sandbox_preset_keeps_a_client_id_the_user_typed(sandbox: Sandbox) -> None:
    ctl = SetupController(environ={}, sandbox=sandbox, token_cache=False)
    ctl.use_sandbox()
    ctl.set_value("client_id", MY_APP)
    ctl.set_method("client_credentials")
    assert ctl.values["client_id"] == MY_APP and not ctl.has_secret("client_secret")


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_sandbox_preset_then_client_credentials_signs_in_as_the_app(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    ctl = SetupController(environ={}, sandbox=sandbox, token_cache=False)
    closing.append(ctl)
    ctl.use_sandbox()
    ctl.set_method("client_credentials")
    await ctl.start_sign_in()
    assert ctl.state == "connected", ctl.problem
    app = app_by_id(CONFIDENTIAL_CLIENT_ID)
    assert app is not None and ctl.whoami is not None
    assert ctl.whoami.user_id == app.application_user_id


# -- a bounded log ---------------------------------------------------------------------------


def test_log_keeps_the_last_lines_only() -> None:
    ctl = controller()
    for n in range(LOG_LINES + 50):
        ctl._log(f"line {n}")
    assert len(ctl.log) == LOG_LINES and ctl.log_count == LOG_LINES + 50
    assert ctl.log[0].endswith("line 50") and ctl.log[-1].endswith(f"line {LOG_LINES + 49}")
