"""The setup panel in a real JupyterLab (and Voila), in headless chromium.

Device code: the browser fills every step, selects the code and copies it (the selection
must survive the countdown's ticks, Copy must say "Copied"), opens the device-login link in
a second tab (the sandbox's page, as a person would on microsoft.com/devicelogin), comes
back to see WhoAmI, and saves the notebook with widget-state saving on.  Client secret: a
wrong secret gives one sentence and its fix, whose contrast is measured in the light, the
dark and the dark high-contrast theme (all three ship with JupyterLab 4); the right one
signs in as the app.  Saved files must hold no secret, no token and no device code.
Screenshots of each step go to test-artifacts/browser/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from d365nb.sandbox import Sandbox

from .conftest import NOTEBOOK, Server, write_setup_notebook

pytestmark = pytest.mark.browser

SECRET = "s3cr3t-VALUE-typed-in-the-browser"


def _field(page: Page, label: str) -> Locator:
    return page.locator(f".widget-inline-hbox:has(> label.widget-label:text-is('{label}')) input")


def _open(page: Page, lab: Server, name: str) -> Locator:
    """Open a notebook, run it, and return the panel."""
    page.goto(lab.url(f"lab/tree/{name}") + "&reset")  # a fresh workspace: this tab only
    page.wait_for_function(
        "(name) => { const w = window.jupyterapp?.shell.currentWidget;"
        " return w?.context?.path === name"
        " && w.sessionContext?.session?.kernel?.status === 'idle'; }",
        arg=name,
        timeout=60_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    panel = page.locator(".d365nb-setup")
    expect(panel).to_be_visible(timeout=60_000)
    return panel


def _save(page: Page, path: Path) -> str:
    """Save the notebook (widget state on) and return the file's text."""
    before = path.stat().st_mtime_ns
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000
    )
    assert path.stat().st_mtime_ns != before
    return path.read_text()


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

    panel = _open(page, lab, NOTEBOOK)
    # The sandbox is offered (found through D365NB_SANDBOX); this test types instead.
    expect(panel).to_contain_text("A local sandbox is running")
    next_button = page.get_by_role("button", name="Next", exact=True)
    expect(next_button).to_be_disabled()
    expect(panel.locator(".d365nb-advice")).to_have_text("Enter the Service URL to continue.")
    shot("01-panel")

    # 1. Service URL: a wrong one first, to see the fix named, then the right one.
    _commit(page, "Service URL", "http://" + sb.service_url.removeprefix("https://"))
    expect(panel.locator(".d365nb-mark .d365nb-bad")).to_contain_text("Use https://")
    expect(panel.locator(".d365nb-mark .d365nb-bad")).not_to_contain_text("service_url")
    # The message stays under its input, single-spaced.
    box = _field(page, "Service URL").bounding_box()
    mark = panel.locator(".d365nb-mark").filter(has_text="Use https://").bounding_box()
    assert box is not None and mark is not None
    assert mark["x"] + mark["width"] <= box["x"] + box["width"] + 2
    line_height = panel.locator(".d365nb-mark .d365nb-bad").evaluate(
        "e => parseFloat(getComputedStyle(e).lineHeight)"
    )
    assert line_height < 24
    _commit(page, "Service URL", sb.service_url)
    expect(panel.locator(".d365nb-ok")).to_have_count(1)
    expect(panel).to_contain_text(f"resource {sb.base_url}")
    expect(next_button).to_be_enabled()
    shot("02-service-url")
    next_button.click()

    # 2. App registration: tenant and client ID (a secret is asked for in step 5, if needed).
    _commit(page, "Tenant", sb.tenant)
    _commit(page, "Client ID", sb.public_client_id)
    expect(_field(page, "Client Secret")).to_have_count(0)
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
    _aligned(page, panel)
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

    # The code stays selected while the countdown ticks (only the countdown is redrawn).
    countdown = panel.locator(".d365nb-countdown")
    ticking = countdown.inner_text()
    selected = page.evaluate(
        """() => {
            const code = document.querySelector('.d365nb-setup .d365nb-usercode');
            const range = document.createRange();
            range.selectNodeContents(code);
            window.getSelection().removeAllRanges();
            window.getSelection().addRange(range);
            return window.getSelection().toString();
        }"""
    )
    assert selected == user_code
    page.wait_for_timeout(3_200)
    assert countdown.inner_text() != ticking  # it did tick meanwhile
    assert page.evaluate("() => window.getSelection().toString()") == user_code
    shot("06b-code-still-selected")

    # Copy says so, and the clipboard holds the code.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.base)
    copy = panel.locator(".d365nb-copy")
    expect(copy).to_have_text("Copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == user_code
    shot("06c-copied")
    expect(copy).to_have_text("Copy", timeout=5_000)  # and goes back
    link = panel.locator(".d365nb-devicecode a").first
    assert link.evaluate("a => getComputedStyle(a).textDecorationLine") == "underline"

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
    text = _save(page, path)
    saved = json.loads(text)
    state = saved["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]
    assert len(state["state"]) > 40  # the panel's widgets were saved...
    assert "Alex Wilber" in text  # ...with what they showed
    assert user_code not in text  # ...but not the device code
    assert "eyJ" not in text  # nor any JWT (access, refresh or id token)
    shot("10-saved")


def _aligned(page: Page, panel: Locator) -> None:
    """Inputs, toggles, marks and button rows of step 5 start at one column."""
    lefts = page.evaluate(
        """() => {
            const root = document.querySelector('.d365nb-setup');
            const step = [...root.querySelectorAll('.widget-toggle-buttons')]
                .find(t => t.offsetParent !== null && t.textContent.includes('Device code'));
            const box = e => e.getBoundingClientRect().left;
            const visible = [...root.querySelectorAll('.d365nb-indent')]
                .filter(e => e.offsetParent !== null && e.getBoundingClientRect().width > 0);
            const inputs = [...root.querySelectorAll('.widget-text input')]
                .filter(e => e.offsetParent !== null);
            return {
                toggle: box(step.querySelector('button')),
                indented: [...visible, ...inputs].map(box),
            };
        }"""
    )
    column = lefts["toggle"]
    for left in lefts["indented"]:
        assert abs(left - column) <= 3, lefts


# Contrast as WCAG 2 defines it, from the colours the browser computed (alpha composited
# over the nearest backgrounds up the tree).
_COLOURS_JS = """(el) => {
    const colours = [getComputedStyle(el).color];
    for (let node = el; node; node = node.parentElement) {
        const bg = getComputedStyle(node).backgroundColor;
        colours.push(bg);
        if (!bg.startsWith('rgba') || bg.endsWith(', 1)')) {
            if (!bg.startsWith('rgba') || !bg.endsWith(', 0)')) break;
        }
    }
    return colours;
}"""


def _rgba(text: str) -> tuple[float, float, float, float]:
    parts = [float(x) for x in re.findall(r"[\d.]+", text)]
    return (parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else 1.0)


def _over(top: tuple[float, ...], bottom: tuple[float, ...]) -> tuple[float, ...]:
    a = top[3]
    return (*(t * a + b * (1 - a) for t, b in zip(top[:3], bottom[:3], strict=True)), 1.0)


def _luminance(c: tuple[float, ...]) -> float:
    def channel(v: float) -> float:
        v /= 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in c[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(locator: Locator) -> float:
    """The contrast ratio of an element's text against what is drawn behind it."""
    fg, *backgrounds = (_rgba(c) for c in locator.evaluate(_COLOURS_JS))
    bg: tuple[float, ...] = (255.0, 255.0, 255.0, 1.0)  # the page, if nothing is painted
    for layer in reversed(backgrounds):
        bg = _over(layer, bg)
    light, dark = sorted((_luminance(_over(fg, bg)), _luminance(bg)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _theme(page: Page, name: str) -> None:
    page.evaluate(
        f"window.jupyterapp.commands.execute('apputils:change-theme', {{theme: {name!r}}})"
    )
    page.wait_for_function(f"() => document.body.dataset.jpThemeName === {name!r}", timeout=30_000)
    page.wait_for_timeout(300)  # let the theme's stylesheet apply


def test_client_secret_sign_in_errors_read_well_in_light_dark_and_high_contrast(
    page: Page, lab: Server, sandbox: Sandbox, artifacts: Path
) -> None:
    """Client credentials: a wrong secret's sentence and fix, in three themes, then the
    sandbox preset's confidential client signs in as the app; nothing secret is saved."""
    path = write_setup_notebook(lab.root, "client-secret.ipynb")
    page.set_default_timeout(30_000)

    def shot(name: str) -> None:
        page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)

    panel = _open(page, lab, path.name)
    page.get_by_role("button", name="Use the sandbox", exact=True).click()
    expect(panel).to_contain_text("Filled in the local sandbox")
    page.get_by_role("button", name="Client secret (app only)", exact=True).click()
    # The preset switched to its confidential client, whose secret it holds in memory.
    secret_mark = panel.locator(".d365nb-mark").filter(has_text="kept in memory only")
    expect(secret_mark).to_be_visible()
    shot("12-client-secret-preset")

    secret_box = _commit(page, "Client Secret", SECRET)  # a wrong one, typed
    expect(secret_box).to_have_value("")  # cleared in the browser at once
    page.get_by_role("button", name="Sign in", exact=True).click()
    problem = panel.locator(".d365nb-problem")
    expect(problem.locator(".d365nb-message")).to_contain_text("secret")
    expect(problem.locator(".d365nb-hint")).to_contain_text("Fix:")
    _aligned(page, panel)
    measured: dict[str, Any] = {}
    try:
        for theme in ("JupyterLab Light", "JupyterLab Dark", "JupyterLab Dark High Contrast"):
            _theme(page, theme)
            for part in ("message", "hint", "note"):
                ratio = contrast(problem.locator(f".d365nb-{part}"))
                measured[f"{theme} {part}"] = round(ratio, 2)
            shot(f"13-client-secret-error-{'-'.join(theme.split()[1:]).lower()}")
    finally:
        _theme(page, "JupyterLab Light")
    assert all(ratio >= 4.5 for ratio in measured.values()), measured

    # The preset again: its own secret, and the app signs in.
    page.get_by_role("button", name="Use the sandbox", exact=True).click()
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(panel.locator(".d365nb-whoami")).to_contain_text("Connected", timeout=30_000)
    shot("14-client-secret-connected")
    text = _save(page, path)
    assert SECRET not in text and str(sandbox.info()["client_secret"]) not in text
    assert "eyJ" not in text


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
