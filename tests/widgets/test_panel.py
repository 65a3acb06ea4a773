"""The setup panel's widgets, driven as the browser would, with a recording comm (no browser)."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path
from unittest import mock

import httpx
import ipywidgets as w
import pytest

import d365nb._setup as d365nb_setup
from d365nb import AuthError, ConfigError
from d365nb.sandbox import Sandbox
from d365nb.widgets import SetupController, SetupPanel
from d365nb.widgets._explain import describe_error
from d365nb.widgets._form import LOG_LINES, STEPS
from d365nb.widgets._html import STYLE
from tests._support.browser import sign_in_on_page

from .conftest import (
    app_access_token,
    browser_types,
    saved_state,
    sent_to_browser,
    wait_for,
    widget_tree,
)

ORG = "https://contoso.api.crm.dynamics.com/api/data/v9.2/"
SECRET = "Zq8~not-a-real-secret.7Hh"


def plain_panel(**options: object) -> SetupPanel:
    return SetupPanel(environ={}, sandbox=False, token_cache=False, **options)  # type: ignore[arg-type]


def sandbox_panel(sb: Sandbox, closing: list[SetupController]) -> SetupPanel:
    panel = SetupPanel(environ={}, sandbox=sb, token_cache=False)
    closing.append(panel.controller)
    return panel


def test_first_step_validates_as_the_user_types_and_gates_next() -> None:
    panel = plain_panel()
    assert isinstance(panel.steps, w.Stack) and panel.steps.selected_index == 0
    assert panel.next_button.disabled
    url = panel.inputs["service_url"]
    assert url.continuous_update is False  # validated on Enter or leaving the field

    browser_types(url, value="http://contoso.crm.dynamics.com")
    assert "&#10007;" in panel.marks["service_url"].value
    assert "https://contoso.crm.dynamics.com" in panel.marks["service_url"].value
    assert panel.next_button.disabled

    browser_types(url, value=ORG)
    assert "&#10003;" in panel.marks["service_url"].value
    assert "resource https://contoso.crm.dynamics.com" in panel.marks["service_url"].value
    assert not panel.next_button.disabled
    panel.next_button.click()
    assert panel.steps.selected_index == 1
    assert "<span class='d365nb-current'>2 App registration</span>" in panel.breadcrumbs.value
    panel.back_button.click()
    assert panel.steps.selected_index == 0


def test_endpoints_and_scope_are_prefilled_and_explained() -> None:
    panel = plain_panel(values={"service_url": ORG, "tenant": "contoso.onmicrosoft.com"})
    token = panel.inputs["token_uri"]
    assert token.value.endswith("/contoso.onmicrosoft.com/oauth2/v2.0/token")
    browser_types(token, value="POST " + token.value)
    assert "&#10003;" in panel.marks["token_uri"].value
    panel.version.value = "v1"
    assert panel.inputs["scope"].disabled and "resource" in panel.scope_help.value
    panel.version.value = "v2"
    assert "offline_access" in panel.scope_help.value
    panel.method.value = "client_credentials"
    assert panel.inputs["scope"].value.endswith("/.default")
    assert "/.default" in panel.scope_help.value


def test_client_secret_is_taken_out_of_the_widget_at_once() -> None:
    panel = plain_panel(values={"service_url": ORG})
    secret_box = panel.inputs["client_secret"]
    assert isinstance(secret_box, w.Password)
    browser_types(secret_box, value=SECRET)
    assert secret_box.value == ""
    assert panel.controller.has_secret("client_secret")
    assert "kept in memory only" in panel.marks["client_secret"].value
    # Nothing sent back to the browser (no echo) and nothing in the saved state holds it.
    assert SECRET not in sent_to_browser(secret_box)
    assert SECRET not in saved_state(panel.widget)
    assert panel.forget["client_secret"].layout.display is None
    panel.forget["client_secret"].click()
    assert not panel.controller.has_secret("client_secret")
    assert panel.forget["client_secret"].layout.display == "none"


def test_sign_in_without_a_running_loop_says_so() -> None:
    panel = plain_panel(values={"service_url": ORG})
    panel.sign_in_button.click()
    assert "needs a running Jupyter kernel" in panel.status.value


def test_profile_save_button_never_writes_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    panel = plain_panel(
        values={"service_url": ORG, "client_id": "00001111-aaaa-2222-bbbb-3333cccc4444"},
        profile_path=path,
    )
    browser_types(panel.inputs["client_secret"], value=SECRET)
    panel.profile_name.value = "work"
    panel.save_button.click()
    assert "Saved profile &#x27;work&#x27;" in panel.status.value
    assert SECRET not in path.read_text() and "contoso" in path.read_text()
    other = plain_panel(profile_path=path)
    assert other.profile_box.layout.display is None
    assert other.profile_picker.options == ("work",)
    other.load_profile_button.click()
    assert other.inputs["service_url"].value == ORG


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_device_code_display_countdown_and_removal(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    panel = sandbox_panel(sandbox, closing)
    assert "sandbox" in panel.sandbox_note.value
    panel.use_sandbox_button.click()
    assert panel.steps.selected_index == STEPS.index("sign_in")
    assert panel.inputs["client_id"].value == sandbox.public_client_id
    panel.sign_in_button.click()
    ctl = panel.controller
    await wait_for(lambda: ctl.state == "device_code")
    code = ctl.device_code
    assert code is not None
    shown = panel.device.value
    assert code.user_code in shown and "navigator.clipboard.writeText" in shown
    assert f"href='{code.verification_uri}' target='_blank' rel='noopener'" in shown
    assert "expires in" in panel.countdown.value
    assert panel.cancel_button.layout.display is None and panel.sign_in_button.disabled
    assert panel.next_button.layout.display == "none"
    threading.Thread(target=sandbox.approve, args=(code.user_code, "alex")).start()
    assert ctl.task is not None
    await ctl.task
    assert ctl.state == "connected", ctl.problem
    assert panel.device.value == "" and panel.countdown.value == ""  # the code is gone
    assert panel.device_box.layout.display == "none"
    assert code.user_code not in saved_state(panel.widget)
    assert panel.steps.selected_index == STEPS.index("test")
    assert "Alex Wilber" in panel.result.value and "<code>accounts</code>" in panel.result.value
    assert panel.connection is ctl.connection
    assert panel.api_root == sandbox.service_url  # the panel stands in for the connection
    assert "Signed in." in "".join(item["text"] for item in panel.log.outputs)


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_cancel_button_stops_the_device_code(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    panel = sandbox_panel(sandbox, closing)
    panel.use_sandbox_button.click()
    panel.sign_in_button.click()
    ctl = panel.controller
    await wait_for(lambda: ctl.state == "device_code")
    panel.cancel_button.click()
    assert ctl.task is not None
    await ctl.task
    assert ctl.state == "editing" and panel.device.value == ""
    assert "cancelled" in panel.status.value and not panel.sign_in_button.disabled


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_wrong_secret_is_one_sentence_with_the_fix_and_a_log(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    panel = sandbox_panel(sandbox, closing)
    panel.controller.use_sandbox(method="client_credentials")
    browser_types(panel.inputs["client_secret"], value=SECRET)
    panel.controller.go_to(STEPS.index("sign_in"))
    panel.sign_in_button.click()
    assert panel.controller.task is not None
    await panel.controller.task
    assert "AADSTS7000215" in panel.status.value and "<b>Fix:</b>" in panel.status.value
    assert panel.steps.selected_index == STEPS.index("sign_in")
    log = "".join(item["text"] for item in panel.log.outputs)
    assert "Traceback" in log and "AuthError" in log
    assert SECRET not in log and SECRET not in saved_state(panel.widget)
    assert panel.details.selected_index is None  # the log stays collapsed until opened


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_no_secret_token_or_redirect_url_survives_in_any_widget(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    """Every secret-bearing input, one sign-in each; then walk every widget's state."""
    shown: list[str] = [sandbox.client_secret, SECRET]

    # 1. client secret typed into the panel (client credentials).
    panel = sandbox_panel(sandbox, closing)
    panel.controller.use_sandbox(method="client_credentials")
    panel.controller.set_secret("client_secret", None)
    browser_types(panel.inputs["client_secret"], value=sandbox.client_secret)
    panel.sign_in_button.click()
    assert panel.controller.task is not None
    await panel.controller.task
    assert panel.controller.state == "connected", panel.controller.problem
    assert panel.controller.connection is not None
    await panel.controller.connection.aclose()

    # 2. an access token pasted into the same panel (existing-token method).
    token = await asyncio.to_thread(app_access_token, sandbox)
    shown.append(token)
    panel.controller.use_sandbox()
    panel.method.value = "token"
    browser_types(panel.inputs["access_token"], value=token)
    assert panel.inputs["access_token"].value == ""
    panel.sign_in_button.click()
    assert panel.controller.task is not None
    await panel.controller.task
    assert panel.controller.state == "connected", panel.controller.problem
    assert panel.controller.connection is not None
    await panel.controller.connection.aclose()

    # 3. authorization code, paste mode: the redirected URL carries a one-time code.
    panel.controller.use_sandbox(method="auth_code")
    panel.auth_mode.value = "paste"
    panel.sign_in_button.click()
    ctl = panel.controller
    await wait_for(lambda: ctl.state == "paste")
    assert (
        panel.paste_box.layout.display is None and "Open the sign-in page" in panel.auth_link.value
    )
    assert ctl.auth_flow is not None
    answer = await asyncio.to_thread(sign_in_on_page, ctl.auth_flow.auth_uri, sandbox)
    redirected = answer.headers["location"]
    shown += [redirected, dict(httpx.URL(redirected).params)["code"]]
    panel.finish_button.click()  # clicked before pasting: says what to do
    assert "Paste the address" in panel.status.value
    browser_types(panel.paste, value=redirected)
    assert panel.paste.value == ""
    assert not ctl.waiting_for_redirect
    assert ctl.task is not None
    await ctl.task
    assert ctl.state == "connected", ctl.problem
    assert ctl.connection is not None and ctl.connection.auth.current is not None
    shown.append(ctl.connection.auth.current.token)

    state = saved_state(panel.widget)
    messages = "".join(sent_to_browser(widget) for widget in widget_tree(panel.widget))
    log = "".join(item.get("text", "") for item in panel.log.outputs)
    assert len(widget_tree(panel.widget)) > 40  # the walk reached every child
    for secret in shown:
        assert secret not in state
        assert secret not in messages
        assert secret not in log
        assert secret not in repr(panel) and secret not in repr(ctl.connection)


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_sign_out_and_switch_buttons(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    panel = sandbox_panel(sandbox, closing)
    panel.controller.use_sandbox(method="client_credentials")
    panel.sign_in_button.click()
    assert panel.controller.task is not None
    await panel.controller.task
    conn = panel.connection
    assert conn is not None
    panel.switch_button.click()
    assert panel.steps.selected_index == 0
    assert panel.controller.connection is conn
    panel.controller.go_to(STEPS.index("test"))
    panel.sign_out_button.click()
    assert panel.connection is None and not conn.auth.signed_in
    assert panel.steps.selected_index == STEPS.index("sign_in")
    with pytest.raises(AuthError, match="Not signed in yet"):
        panel.read  # noqa: B018 - the forwarded attribute says what to do
    await conn.aclose()


# -- d365nb.setup() and d365nb.connection() ------------------------------------------------


@pytest.fixture
def fresh_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(d365nb_setup, "_panel", None)
    monkeypatch.setattr(d365nb_setup, "_current", None)


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_setup_returns_one_panel_and_connection_follows_it(
    fresh_setup: None, sandbox: Sandbox, closing: list[SetupController]
) -> None:
    with pytest.raises(AuthError, match="Not signed in yet"):
        d365nb_setup.connection()
    panel = d365nb_setup.setup(environ={}, sandbox=sandbox, token_cache=False, show=False)
    closing.append(panel.controller)
    assert d365nb_setup.setup(show=False) is panel  # again: the same panel, current state
    panel.controller.use_sandbox(method="client_credentials")
    panel.sign_in_button.click()
    assert panel.controller.task is not None
    await panel.controller.task
    assert d365nb_setup.connection() is panel.connection is not None
    other = d365nb_setup.setup(environ={}, sandbox=False, new=True, show=False)
    assert other is not panel
    assert d365nb_setup.connection() is panel.connection  # until the new one signs in
    conn = panel.connection
    assert conn is not None
    panel.sign_out_button.click()
    with pytest.raises(AuthError):
        d365nb_setup.connection()
    await conn.aclose()


def test_setup_takes_a_connection_string_and_keeps_secrets_out_of_fields(fresh_setup: None) -> None:
    panel = d365nb_setup.setup(
        f"ServiceURL={ORG};ClientID=00001111-aaaa-2222-bbbb-3333cccc4444;"
        f"TenantID=contoso.onmicrosoft.com;ClientSecret={SECRET};",
        environ={},
        sandbox=False,
        show=False,
    )
    assert panel.inputs["service_url"].value == ORG
    assert panel.method.value == "client_credentials"
    assert SECRET not in saved_state(panel.widget)


def test_d365_errors_show_as_two_lines_in_ipython(capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        with mock.patch("IPython.get_ipython", return_value=shell):
            assert d365nb_setup.install_error_display()
            assert d365nb_setup.install_error_display()  # idempotent
        capsys.readouterr()
        result = shell.run_cell(  # type: ignore[no-untyped-call]
            "import d365nb\nraise d365nb.ConfigError('Bad Service URL.', hint='Use https.')"
        )
        out = capsys.readouterr().out
        assert isinstance(result.error_in_exec, ConfigError)  # the cell still failed
        assert "ConfigError\x1b[0m: Bad Service URL." in out and "Use https." in out
        assert "Traceback" not in out and "%tb" in out
        result = shell.run_cell("1 / 0")  # type: ignore[no-untyped-call]  # other errors keep IPython's traceback
        assert "ZeroDivisionError" in capsys.readouterr().out
    finally:
        shell.set_custom_exc((), None)  # type: ignore[no-untyped-call]
        InteractiveShell.clear_instance()


# -- issue 21: the panel polished ------------------------------------------------------------


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_device_code_box_is_drawn_once_and_only_the_countdown_ticks(
    sandbox: Sandbox, closing: list[SetupController]
) -> None:
    panel = sandbox_panel(sandbox, closing)
    panel.use_sandbox_button.click()
    panel.sign_in_button.click()
    ctl = panel.controller
    await wait_for(lambda: ctl.state == "device_code")
    drawn, sent = panel.device.value, len(panel.device.comm.messages)
    first = panel.countdown.value
    await wait_for(lambda: panel.countdown.value != first, timeout=5)
    second = panel.countdown.value
    await wait_for(lambda: panel.countdown.value != second, timeout=5)
    # The box with the link, the code and Copy was not sent again: a selection survives.
    assert panel.device.value == drawn and len(panel.device.comm.messages) == sent
    assert "class='d365nb-copy'" in drawn and "Copied" in drawn  # feedback on click
    assert "class='d365nb-usercode'" in drawn
    panel.cancel_button.click()
    assert ctl.task is not None
    await ctl.task
    assert panel.device.value == "" and panel.countdown.value == ""


def test_client_secret_field_sits_in_step_5_with_the_method_that_needs_it() -> None:
    panel = plain_panel(values={"service_url": ORG})
    sign_in_step = panel.steps.children[STEPS.index("sign_in")]
    app_step = panel.steps.children[STEPS.index("app")]
    assert panel.rows["client_secret"] in sign_in_step.children
    assert panel.rows["client_secret"] not in app_step.children
    assert panel.rows["client_secret"].layout.display == "none"  # device code: no secret
    panel.method.value = "client_credentials"
    assert panel.rows["client_secret"].layout.display is None
    assert "Certificates & secrets" in panel.inputs["client_secret"].placeholder
    panel.method.value = "auth_code"
    assert panel.rows["client_secret"].layout.display is None
    assert panel.inputs["client_secret"].placeholder.startswith("optional")
    browser_types(panel.inputs["client_secret"], value=SECRET)
    assert panel.inputs["client_secret"].value == ""
    assert SECRET not in saved_state(panel.widget)


def test_first_view_has_no_error_and_asks_for_the_service_url() -> None:
    panel = plain_panel()
    assert "Enter the Service URL to continue." in panel.status.value
    assert "marked" not in panel.status.value and "d365nb-bad" not in panel.status.value
    browser_types(panel.inputs["service_url"], value="http://contoso.crm.dynamics.com")
    assert "Correct the field marked above" in panel.status.value
    assert "service_url" not in panel.marks["service_url"].value


_HEX = re.compile(r"(?<!&)#[0-9a-fA-F]{3,8}\b")  # not &#10007; (an entity)


def test_colours_come_from_jupyterlab_css_variables() -> None:
    """No hard-coded colour in what the panel draws; the stylesheet uses --jp-* variables."""
    panel = plain_panel(values={"service_url": "http://contoso.crm.dynamics.com"})
    panel.controller.problem = describe_error(ConfigError("Bad.", hint="Fix it."))
    panel.refresh()
    for widget in widget_tree(panel.widget):
        value = getattr(widget, "value", None)
        if not isinstance(widget, w.HTML) or not isinstance(value, str):
            continue
        shown = value.replace(STYLE, "")
        assert "color" not in shown and not _HEX.search(shown), shown
    for line in STYLE.splitlines():
        for prop in re.findall(r"(?:^|[;{\s])((?:color|background|border[\w-]*)\s*:[^;]+)", line):
            if _HEX.search(prop) or "rgba(" in prop:
                assert "var(--jp-" in prop, prop  # a fallback only, inside var()


def test_log_shows_the_last_lines_only() -> None:
    panel = plain_panel()
    for n in range(LOG_LINES + 30):
        panel.controller._log(f"line {n}")
    panel.refresh()
    assert len(panel.log.outputs) == 1
    lines = panel.log.outputs[0]["text"].splitlines()
    assert len(lines) == LOG_LINES and lines[-1].endswith(f"line {LOG_LINES + 29}")


def test_field_messages_keep_guids_whole_and_use_labels() -> None:
    panel = plain_panel(values={"service_url": ORG})
    browser_types(panel.inputs["client_id"], value="{not-a-guid}")
    mark = panel.marks["client_id"].value
    assert mark.startswith("<span class='d365nb-bad'>&#10007; Client ID must be")
    assert "<span class='d365nb-id'>00001111-aaaa-2222-bbbb-3333cccc4444</span>" in mark
    assert "client_id" not in mark
