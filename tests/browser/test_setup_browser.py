"""The setup panel in a real JupyterLab, in headless chromium, signed in with a device code.

The browser fills every step, opens the device-login link in a second tab (the sandbox's
page, as a person would on microsoft.com/devicelogin), comes back to see WhoAmI, and saves
the notebook with widget-state saving on.  The saved file must hold no secret, no token
and no device code.  Screenshots of each step go to test-artifacts/browser/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from d365nb.sandbox import Sandbox

from .conftest import NOTEBOOK, Server, write_setup_notebook

pytestmark = pytest.mark.browser

SECRET = "s3cr3t-VALUE-typed-in-the-browser"


def _field(page: Page, label: str) -> Locator:
    return page.locator(f".widget-inline-hbox:has(> label.widget-label:text-is('{label}')) input")


def _commit(page: Page, label: str, value: str) -> Locator:
    """Type into a field and press Enter (the panel validates on Enter or leaving it)."""
    box = _field(page, label)
    box.fill(value)
    box.press("Enter")
    return box


def test_device_code_sign_in_in_jupyterlab(
    page: Page, lab: Server, sandbox: Sandbox, artifacts: Path
) -> None:
    sb = sandbox
    path = write_setup_notebook(lab.root)
    page.set_default_timeout(30_000)

    def shot(name: str, on: Page | None = None) -> None:
        (on or page).screenshot(path=str(artifacts / f"{name}.png"), full_page=True)

    page.goto(lab.url(f"lab/tree/{NOTEBOOK}"))
    page.wait_for_function(
        "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
        "?.status === 'idle'",
        timeout=60_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    panel = page.locator(".d365nb-setup")
    expect(panel).to_be_visible(timeout=60_000)
    # The sandbox is offered (found through D365NB_SANDBOX); this test types instead.
    expect(panel).to_contain_text("A local sandbox is running")
    next_button = page.get_by_role("button", name="Next", exact=True)
    expect(next_button).to_be_disabled()
    shot("01-panel")

    # 1. Service URL: a wrong one first, to see the fix named, then the right one.
    _commit(page, "Service URL", "http://" + sb.service_url.removeprefix("https://"))
    expect(panel.locator(".d365nb-bad")).to_contain_text("Use https://")
    _commit(page, "Service URL", sb.service_url)
    expect(panel.locator(".d365nb-ok")).to_have_count(1)
    expect(panel).to_contain_text(f"resource {sb.base_url}")
    expect(next_button).to_be_enabled()
    shot("02-service-url")
    next_button.click()

    # 2. App registration: tenant, client ID, and a client secret that must not be saved.
    _commit(page, "Tenant", sb.tenant)
    _commit(page, "Client ID", sb.public_client_id)
    secret_box = _commit(page, "Client Secret", SECRET)
    expect(panel).to_contain_text("kept in memory only")
    expect(secret_box).to_have_value("")  # cleared in the browser too
    shot("03-app-registration")
    next_button.click()

    # 3. Endpoints, derived from the tenant.
    expect(_field(page, "Token URI")).to_have_value(sb.token_uri)
    expect(_field(page, "Auth URI")).to_have_value(sb.auth_uri)
    shot("04-endpoints")
    next_button.click()

    # 4. Scope, pre-filled for a user sign-in and explained.
    expect(_field(page, "Scope")).to_have_value(f"{sb.base_url}/user_impersonation offline_access")
    expect(panel).to_contain_text("refresh token")
    shot("05-scope")
    next_button.click()

    # 5. Sign in with a device code (the default method).
    page.get_by_role("button", name="Sign in", exact=True).click()
    code_box = panel.locator(".d365nb-usercode")
    expect(code_box).to_be_visible()
    user_code = code_box.inner_text().strip()
    assert user_code
    expect(panel.locator(".d365nb-devicecode")).to_contain_text("expires in")
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_visible()
    # The kernel stays usable while the code is polled.
    status = page.evaluate(
        """async () => {
            const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            const reply = await kernel.requestExecute({code: "kernel_free = 6 * 7"}).done;
            return reply.content.status;
        }"""
    )
    assert status == "ok"
    shot("06-device-code")

    # A second tab: the device-login page, opened from the panel's link.
    with page.expect_popup() as popup_info:
        panel.locator(".d365nb-devicecode a").first.click()
    login = popup_info.value
    login.wait_for_load_state()
    login.locator("input[name=otc]").fill(user_code)
    login.get_by_role("button", name="Next").click()
    login.get_by_label("Alex Wilber").check()
    shot("07-device-login", login)
    login.get_by_role("button", name="Continue").click()
    expect(login.locator("#result")).to_contain_text("signed in")
    shot("08-device-login-done", login)
    login.close()

    # 6. Back in the notebook: signed in, tested, the code gone.
    whoami = panel.locator(".d365nb-whoami")
    expect(whoami).to_contain_text("Alex Wilber", timeout=30_000)
    expect(whoami).to_contain_text("accounts")
    expect(panel.locator(".d365nb-usercode")).to_have_count(0)
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    shot("09-connected")

    # Save with widget state on, then read the file the way anyone would.
    before = path.stat().st_mtime_ns
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000
    )
    text = path.read_text()
    assert path.stat().st_mtime_ns != before
    saved = json.loads(text)
    state = saved["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]
    assert len(state["state"]) > 40  # the panel's widgets were saved...
    assert "Alex Wilber" in text  # ...with what they showed
    assert SECRET not in text  # ...but not the secret typed into the panel
    assert user_code not in text  # nor the device code
    assert "eyJ" not in text  # nor any JWT (access, refresh or id token)
    shot("10-saved")


def test_voila_app_mode_with_the_sandbox_preset(
    page: Page, voila: Server, sandbox: Sandbox, artifacts: Path
) -> None:
    """In Voila (app mode, no code shown) the one-click sandbox preset signs in."""
    page.set_default_timeout(30_000)
    page.goto(voila.url(""))
    panel = page.locator(".d365nb-setup")
    expect(panel).to_be_visible(timeout=60_000)
    expect(page.get_by_text("d365nb.setup(")).to_have_count(0)
    page.get_by_role("button", name="Use the sandbox", exact=True).click()
    expect(panel).to_contain_text("Filled in the local sandbox")
    page.get_by_role("button", name="Sign in", exact=True).click()
    code_box = panel.locator(".d365nb-usercode")
    expect(code_box).to_be_visible()
    sandbox.approve(code_box.inner_text().strip(), "megan")
    expect(panel.locator(".d365nb-whoami")).to_contain_text("Megan Bowen", timeout=30_000)
    expect(code_box).to_have_count(0)
    page.screenshot(path=str(artifacts / "11-voila-connected.png"), full_page=True)
