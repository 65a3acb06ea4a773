"""The sign-in step says which grant the fields mean and why; the driver string is a click away."""

from __future__ import annotations

import pytest

from d365nb.sandbox import Sandbox
from d365nb.widgets import SetupController, SetupPanel
from d365nb.widgets._form import STEPS
from d365nb.widgets._html import grant_html

from .conftest import browser_types, saved_state, sent_to_browser, widget_tree

TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
ORG = "https://contoso.api.crm.dynamics.com/api/data/v9.2/"
CLIENT = "00001111-aaaa-2222-bbbb-3333cccc4444"
SECRET = "Zq8~not-a-real-secret.7Hh"


def test_grant_and_its_reason_and_notes_are_explained_at_sign_in() -> None:
    ctl = SetupController(environ={}, sandbox=False, token_cache=False)
    ctl.set_value("service_url", ORG)
    ctl.set_value("client_id", CLIENT)
    ctl.set_value("tenant", TENANT)
    ctl.set_method("client_credentials")
    ctl.set_secret("client_secret", SECRET)
    explained = ctl.grant_explanation
    assert explained is not None
    reason, notes = explained
    assert reason.startswith("Grant client_credentials: ") and len(reason) > 30
    assert SECRET not in reason and not notes

    # A v1 Token URI: the form keeps no Scope for it, so the settings hold none to note.
    ctl.set_value("token_uri", f"https://login.microsoftonline.com/{TENANT}/oauth2/token")
    ctl.set_value("scope", "https://contoso.api.crm.dynamics.com/user_impersonation")
    explained = ctl.grant_explanation
    assert explained is not None and "scope" not in ctl.settings_values()

    ctl.set_value("service_url", "not a url")
    assert ctl.grant_explanation is None  # invalid fields: their problems show instead


def test_grant_html_lists_the_notes_escaped() -> None:
    text = grant_html("Grant client_credentials: a <reason>.", ("scope is not used: v1",))
    assert "&lt;reason&gt;" in text and "<li>scope is not used: v1</li>" in text


def test_panel_shows_the_grant_reason_at_the_sign_in_step_only() -> None:
    panel = SetupPanel(environ={}, sandbox=False, token_cache=False)
    ctl = panel.controller
    ctl.set_value("service_url", ORG)
    ctl.set_value("client_id", CLIENT)
    ctl.set_value("tenant", TENANT)
    ctl.go_to(STEPS.index("sign_in"))
    panel.refresh()
    assert ctl.grant_explanation is not None
    assert "Grant " in panel.grant_note.value
    ctl.go_to(0)
    panel.refresh()
    assert panel.grant_note.value == ""


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_driver_string_only_after_the_click_and_without_secrets(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    panel = SetupPanel(environ={}, sandbox=sandbox, token_cache=False)
    ctl = panel.controller
    closing.append(ctl)
    assert ctl.show_connection_string() == "" and ctl.problem is not None  # not signed in

    ctl.use_sandbox(method="client_credentials")
    ctl.set_secret("client_secret", None)
    browser_types(panel.inputs["client_secret"], value=sandbox.client_secret)
    panel.sign_in_button.click()
    assert ctl.task is not None
    await ctl.task
    assert ctl.state == "connected", ctl.problem
    assert ctl.connection is not None and ctl.connection.auth.current is not None
    token = ctl.connection.auth.current.token
    assert ctl.driver_string == "" and panel.driver_text.value == ""
    assert panel.driver_text.layout.display == "none"

    panel.driver_button.click()
    text = ctl.driver_string
    assert text == ctl.connection.connection_string(tokens=False)
    assert panel.driver_text.value == text and panel.driver_text.layout.display is None
    assert ctl.values["client_id"] in text and "=" in text and ";" in text
    for secret in (sandbox.client_secret, token):
        assert secret not in text
        assert secret not in saved_state(panel.widget)
        assert secret not in "".join(sent_to_browser(x) for x in widget_tree(panel.widget))

    conn = ctl.connection
    ctl.sign_out()
    await conn.aclose()
    assert ctl.driver_string == "" and panel.driver_text.value == ""
