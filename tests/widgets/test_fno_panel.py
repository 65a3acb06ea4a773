"""The setup panel on a finance and operations Service URL: the F&O side of the app
registration explained, and the test step showing the user's companies (real sign-in
against the sandbox's F&O environment over HTTPS)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from d365nb._fno_client import FnoConnection
from d365nb.sandbox import Sandbox, start
from d365nb.widgets import SetupController, SetupPanel
from d365nb.widgets._explain import describe_error

from .conftest import browser_types, saved_state, sent_to_browser

FNO_URL = "https://contoso.operations.dynamics.com"
DATAVERSE_URL = "https://contoso.api.crm.dynamics.com/api/data/v9.2/"
FORM = "Microsoft Entra ID applications"


@pytest.fixture(scope="module")
def fno_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    data_dir: Path = tmp_path_factory.mktemp("fno-panel")
    with start(
        data_dir=data_dir,
        database=":memory:",
        rows=10,
        fno=True,
        fno_rows=60,
        device_code_interval=1,
    ) as sb:
        yield sb


def fno_panel(sb: Sandbox, closing: list[SetupController], method: str) -> SetupPanel:
    panel = SetupPanel(environ={}, sandbox=sb, token_cache=False)
    closing.append(panel.controller)
    panel.controller.use_sandbox(method=method)
    browser_types(panel.inputs["service_url"], value=sb.fno_service_url)
    return panel


def test_an_fno_url_explains_the_entra_id_applications_form() -> None:
    panel = SetupPanel(environ={}, sandbox=False, token_cache=False)
    browser_types(panel.inputs["service_url"], value=DATAVERSE_URL)
    assert panel.controller.service == "dataverse" and panel.fno_app_note.value == ""
    browser_types(panel.inputs["service_url"], value=FNO_URL)
    assert panel.controller.service == "fno"
    note = panel.fno_app_note.value
    assert FORM in note and "Client ID" in note and "User ID" in note
    assert "Microsoft Dynamics ERP" in note and "user_impersonation" in note
    assert "System administration" in note
    panel.controller.set_method("client_credentials")
    assert FORM in panel.fno_sign_in_note.value
    assert "/.default" in panel.scope_help.value


def test_fno_refusals_name_fno_pages() -> None:
    from d365nb._exceptions import ODataError

    app = describe_error(ODataError("x", status=401), grant="client_credentials", service="fno")
    assert FORM in app.hint and "Client ID" in app.hint
    user = describe_error(ODataError("x", status=401), grant="device_code", service="fno")
    assert "System administration > Users" in user.hint
    role = describe_error(ODataError("x", status=403), grant="client_credentials", service="fno")
    assert "Assign roles" in role.hint
    dataverse = describe_error(ODataError("x", status=401), grant="client_credentials")
    assert FORM not in dataverse.hint


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_app_sign_in_shows_the_companies(
    fno_sandbox: Sandbox, closing: list[SetupController]
) -> None:
    panel = fno_panel(fno_sandbox, closing, "client_credentials")
    ctl = panel.controller
    panel.sign_in_button.click()
    assert ctl.task is not None
    await ctl.task
    assert ctl.state == "connected", ctl.problem
    assert isinstance(ctl.connection, FnoConnection)
    assert ctl.companies[0] == "usmf"  # the mapped user's default company first
    assert sorted(ctl.companies) == ["demf", "usmf", "usrt"]
    assert ("CustomerV3", "CustomersV3") in ctl.tables or ctl.table_count > len(ctl.tables)
    shown = panel.result.value
    assert "Companies" in shown and "usmf (default), " in shown and "demf" in shown
    assert 'company="usmf"' in shown and "Data entities" in shown
    assert "companies: usmf" in "\n".join(ctl.log)
    secret = fno_sandbox.client_secret
    token = ctl.connection.auth.current
    for hidden in (secret, token.token if token else None):
        assert hidden
        assert hidden not in saved_state(panel.widget)
        assert hidden not in sent_to_browser(panel.result)
        assert hidden not in "\n".join(ctl.log)
    conn = ctl.connection
    ctl.sign_out()
    assert ctl.companies == [] and "Companies" not in panel.result.value
    await conn.aclose()


def _device_sign_in(sb: Sandbox, ctl: SetupController, user: str) -> None:
    def approve_when_shown(what: str) -> None:
        if what == "state" and ctl.state == "device_code" and ctl.device_code is not None:
            code = ctl.device_code.user_code
            threading.Thread(target=sb.approve, args=(code, user)).start()

    ctl.subscribe(approve_when_shown)


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_a_user_sees_their_default_company_first(
    fno_sandbox: Sandbox, closing: list[SetupController]
) -> None:
    panel = fno_panel(fno_sandbox, closing, "device_code")
    ctl = panel.controller
    _device_sign_in(fno_sandbox, ctl, "megan")
    await ctl.start_sign_in()
    assert ctl.state == "connected", ctl.problem
    assert ctl.companies[0] == "usrt" and ctl.whoami is not None
    assert "usrt (default)" in panel.result.value


@pytest.mark.sandbox
@pytest.mark.asyncio
async def test_a_user_fno_does_not_know_is_told_where_to_add_them(
    fno_sandbox: Sandbox, closing: list[SetupController]
) -> None:
    panel = fno_panel(fno_sandbox, closing, "device_code")
    ctl = panel.controller
    _device_sign_in(fno_sandbox, ctl, "norole")
    await ctl.start_sign_in()
    assert ctl.state == "error" and ctl.problem is not None
    assert "HTTP 401" in ctl.problem.message
    assert "System administration > Users" in ctl.problem.hint
    assert ctl.companies == [] and "Companies" not in panel.result.value
