"""The setup panel and a progress bar in Jupyter Notebook 7 (the `notebook` package), in
headless chromium: device-code sign-in through the sandbox's device-login page, and a read
whose bar stays with its final count (a plain output, no widget state needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from d365nb.sandbox import Sandbox

from .conftest import Server, write_panel_and_read_notebook

pytestmark = pytest.mark.browser


def test_device_code_sign_in_in_notebook7(
    page: Page, notebook7: Server, sandbox: Sandbox, artifacts: Path
) -> None:
    path = write_panel_and_read_notebook(notebook7.root, "nb7.ipynb")
    page.set_default_timeout(30_000)

    def shot(name: str, on: Page | None = None) -> None:
        (on or page).screenshot(path=str(artifacts / f"{name}.png"), full_page=True)

    page.goto(notebook7.url(f"notebooks/{path.name}"))
    page.wait_for_function(
        "() => window.jupyterapp?.shell.currentWidget"
        "?.sessionContext?.session?.kernel?.status === 'idle'",
        timeout=60_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    panel = page.locator(".d365nb-setup")
    expect(panel).to_be_visible(timeout=60_000)

    # The read's bar: its final count, no "model not found" (it is not a widget).
    bar = page.locator(".d365nb-progress")
    expect(bar).to_contain_text("50/50 rows", timeout=60_000)
    expect(page.get_by_text("model not found")).to_have_count(0)
    shot("nb7-01-panel-and-bar")

    # Device code through the sandbox preset, approved on the device-login page.
    page.get_by_role("button", name="Use the sandbox", exact=True).click()
    expect(panel).to_contain_text("Filled in the local sandbox")
    page.get_by_role("button", name="Sign in", exact=True).click()
    code_box = panel.locator(".d365nb-usercode")
    expect(code_box).to_be_visible()
    user_code = code_box.inner_text().strip()
    shot("nb7-02-device-code")
    with page.expect_popup() as popup_info:
        panel.locator(".d365nb-devicecode a").first.click()
    login = popup_info.value
    login.wait_for_load_state()
    login.locator("input[name=otc]").fill(user_code)
    login.get_by_role("button", name="Next").click()
    expect(login.get_by_text("no security role")).to_be_visible()  # the role-less user's note
    login.get_by_label("Alex Wilber").check()
    login.get_by_role("button", name="Continue").click()
    expect(login.locator("#result")).to_contain_text("signed in")
    login.close()

    whoami = panel.locator(".d365nb-whoami")
    expect(whoami).to_contain_text("Alex Wilber", timeout=30_000)
    expect(code_box).to_have_count(0)
    shot("nb7-03-connected")


def test_progress_bar_renders_in_voila(page: Page, voila_read: Server, artifacts: Path) -> None:
    """Voila shows the read's bar with its final count (tqdm's widget bars said "model not
    found" there once closed)."""
    page.set_default_timeout(30_000)
    page.goto(voila_read.url(""))
    expect(page.locator(".d365nb-setup")).to_be_visible(timeout=60_000)
    expect(page.locator(".d365nb-progress")).to_contain_text("50/50 rows", timeout=60_000)
    expect(page.get_by_text("model not found")).to_have_count(0)
    page.screenshot(path=str(artifacts / "voila-progress.png"), full_page=True)
