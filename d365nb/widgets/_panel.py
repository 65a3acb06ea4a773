"""The setup panel: stock ipywidgets composed around a `SetupController`.

All logic lives in the controller; this module only draws it (`refresh`) and forwards what
the user does.  Secret inputs hand their value to the controller and are emptied at once,
inside the same callback, so a saved notebook's widget state never holds one.
"""

from __future__ import annotations

import asyncio
import html
import json
from typing import TYPE_CHECKING, Any, Final

import ipywidgets as w
from traitlets import Unicode

from .._fields import SECRET_FIELDS
from ._controller import (
    METHOD_TITLES,
    METHODS,
    STEP_TITLES,
    STEPS,
    SetupController,
)

if TYPE_CHECKING:
    from .._client import Connection

__all__ = ["SetupPanel"]

_WIDE: Final = {"description_width": "10em"}
_TOGGLES: Final = {"description_width": "10em", "button_width": "auto"}
_ROW: Final = {"width": "100%", "max_width": "760px"}
_LABELS: Final = {
    "service_url": "Service URL",
    "tenant": "Tenant",
    "client_id": "Client ID",
    "client_secret": "Client Secret",
    "auth_uri": "Auth URI",
    "token_uri": "Token URI",
    "scope": "Scope",
    "redirect_uri": "Redirect URI",
    "access_token": "Access token",
    "refresh_token": "Refresh token",
}
_PLACEHOLDERS: Final = {
    "service_url": "https://org.api.crm.dynamics.com/api/data/v9.2/",
    "tenant": "contoso.onmicrosoft.com or the Directory (tenant) ID",
    "client_id": "Application (client) ID, e.g. 00001111-aaaa-2222-bbbb-3333cccc4444",
    "client_secret": "optional: the secret's Value (kept in memory only)",
    "auth_uri": "https://login.microsoftonline.com/<tenant>/oauth2/v2.0/authorize",
    "token_uri": "https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token",
    "scope": "https://org.crm.dynamics.com/user_impersonation offline_access",
    "redirect_uri": "http://localhost",
    "access_token": "paste an access token (kept in memory only)",
    "refresh_token": "paste a refresh token (kept in memory only)",
}
_HELP: Final = {
    "service": (
        "Where your data lives. <b>Use the Web API URL</b>, e.g. "
        "<code>https://org.api.crm.dynamics.com/api/data/v9.2/</code> (Power Apps &gt; "
        "Settings &gt; Developer resources &gt; Web API endpoint), or the environment URL "
        "<code>https://org.crm.dynamics.com</code>."
    ),
    "app": (
        "From your app registration in the Azure portal (Microsoft Entra ID &gt; App "
        "registrations &gt; your app &gt; <i>Overview</i>): the <b>Directory (tenant) ID</b> "
        "and the <b>Application (client) ID</b>. A <b>Client Secret</b> (<i>Certificates "
        "&amp; secrets</i> &gt; the secret's <i>Value</i>) is only needed to sign in as the "
        "app itself; it is kept in memory and never written to the notebook."
    ),
    "endpoints": (
        "Filled in from the tenant; edit them to match <i>App registrations &gt; "
        "Endpoints</i> if your guide says otherwise (a leading <code>POST </code> is "
        "accepted). <b>v2</b> (Microsoft identity platform) asks for scopes; <b>v1</b> "
        "asks for the resource."
    ),
    "sign_in": (
        "<b>Device code</b> works everywhere: you get a code to enter on a Microsoft page "
        "in any browser."
    ),
}
_METHOD_HELP: Final = {
    "device_code": (
        "You get a link and a short code; sign in with your own account in any browser "
        "(even on your phone). Needs <i>Allow public client flows</i> on the app "
        "registration."
    ),
    "auth_code": (
        "Sign in in a browser tab. <b>This machine</b>: the browser runs where the kernel "
        "runs. <b>Paste the redirected URL</b>: on JupyterHub or Binder, after signing in "
        "copy the address the browser lands on (it may fail to load) and paste it here."
    ),
    "client_credentials": (
        "Sign in as the app itself with its Client Secret (step 2). The app needs an "
        "<i>application user</i> with a security role in the environment."
    ),
    "token": (
        "Use an access token and/or a refresh token you already have. Both are kept in "
        "memory only and cleared from the inputs at once."
    ),
}


class _SecretInput(w.Password):  # type: ignore[misc]
    """A password box whose value is never echoed back to the browser."""

    value = Unicode(help="Secret text (cleared as soon as it is read)").tag(
        sync=True, echo_update=False
    )


def _button(description: str, *, style: str = "", tooltip: str = "") -> w.Button:
    return w.Button(
        description=description,
        button_style=style,
        tooltip=tooltip or description,
        layout=w.Layout(width="auto", min_width="7em"),
    )


def _hide(widget: w.DOMWidget, hidden: bool) -> None:
    widget.layout.display = "none" if hidden else None


class SetupPanel:
    """The d365nb setup panel: configure, sign in and test, step by step.

    Usage:

    ```python
    panel = SetupPanel()          # or d365nb.setup(), which also shows it
    panel                         # displays the widget
    panel.connection              # the Connection, once signed in
    ```

    **Parameters:**

    * **controller** - the `SetupController` to draw; a new one when omitted.
    * **options** - passed to `SetupController` when `controller` is omitted (`environ`,
      `profile`, `profile_path`, `sandbox`, `verify`, `token_cache`, `values`).
    """

    def __init__(self, controller: SetupController | None = None, **options: Any) -> None:
        self.controller = ctl = controller or SetupController(**options)
        self._updating = False
        self._logged = 0
        self._shown_in: int | None = None  # the cell d365nb.setup() displayed it in
        self._profile_names = ctl.profiles()  # read again after a save, not on every redraw

        self.title = w.HTML(
            "<b style='font-size:1.15em'>d365nb &middot; connect to Dynamics 365</b>"
        )
        self.breadcrumbs = w.HTML()
        self.sandbox_note = w.HTML()
        self.use_sandbox_button = _button("Use the sandbox", style="info")
        self.sandbox_box = w.HBox([self.sandbox_note, self.use_sandbox_button])
        self.profile_picker = w.Dropdown(description="Profile", style=_WIDE)
        self.load_profile_button = _button("Load")
        self.profile_box = w.HBox([self.profile_picker, self.load_profile_button])

        # -- fields
        self.inputs: dict[str, w.Text] = {}
        self.marks: dict[str, w.HTML] = {}
        for name, label in _LABELS.items():
            kwargs: dict[str, Any] = {
                "description": label,
                "placeholder": _PLACEHOLDERS[name],
                "continuous_update": False,
                "style": _WIDE,
                "layout": w.Layout(**_ROW),
            }
            if name in SECRET_FIELDS:
                widget: w.Text = _SecretInput(**kwargs)
            elif name == "tenant":
                widget = w.Combobox(
                    options=["organizations", "common"], ensure_option=False, **kwargs
                )
            else:
                widget = w.Text(**kwargs)
            widget.observe(self._on_input, names="value")
            self.inputs[name] = widget
            self.marks[name] = w.HTML(layout=w.Layout(margin="0 0 6px 10.5em"))
        self.forget = {
            name: _button("Forget", tooltip=f"Forget the {_LABELS[name]} held in memory")
            for name in SECRET_FIELDS
        }
        for name, button in self.forget.items():
            button.on_click(lambda _, n=name: self.controller.set_secret(n, None))

        self.version = w.ToggleButtons(
            options=[("v2 (scopes)", "v2"), ("v1 (resource)", "v1")],
            description="Endpoints",
            style=_TOGGLES,
        )
        self.version.observe(self._on_version, names="value")
        self.scope_help = w.HTML()
        self.method = w.ToggleButtons(
            options=[(METHOD_TITLES[m], m) for m in METHODS],
            description="Sign in with",
            style=_TOGGLES,
        )
        self.method.observe(self._on_method, names="value")
        self.method_help = w.HTML()
        self.auth_mode = w.ToggleButtons(
            options=[("This machine", "browser"), ("Paste the redirected URL", "paste")],
            description="Browser on",
            style=_TOGGLES,
        )
        self.auth_mode.observe(self._on_auth_mode, names="value")
        self.sign_in_button = _button("Sign in", style="primary")
        self.cancel_button = _button("Cancel", style="warning")
        self.device = w.HTML()
        self.auth_link = w.HTML()
        self.paste = _SecretInput(
            description="Redirected URL",
            placeholder="paste the whole address from the browser's address bar, then Enter",
            continuous_update=False,
            style=_WIDE,
            layout=w.Layout(**_ROW),
        )
        self.paste.observe(self._on_paste, names="value")
        self.finish_button = _button("Finish sign-in", style="primary")
        self.paste_box = w.VBox([self.paste, self.finish_button])

        self.result = w.HTML()
        self.profile_name = w.Text(description="Profile name", value="default", style=_WIDE)
        self.save_button = _button("Save profile", tooltip="Save these settings (never secrets)")
        self.sign_out_button = _button("Sign out")
        self.switch_button = _button("Switch environment")
        self.connected_box = w.VBox(
            [
                self.result,
                w.HBox([self.profile_name, self.save_button]),
                w.HBox([self.sign_out_button, self.switch_button]),
            ]
        )

        self.rows: dict[str, w.VBox] = {}

        def field(name: str, *extra: w.Widget) -> w.VBox:
            line = w.HBox([self.inputs[name], *extra]) if extra else self.inputs[name]
            self.rows[name] = w.VBox([line, self.marks[name]])
            return self.rows[name]

        def help_html(step: str) -> w.HTML:
            return w.HTML(f"<div style='max-width:760px'>{_HELP[step]}</div>")

        self.steps = w.Stack(
            [
                w.VBox([help_html("service"), field("service_url")]),
                w.VBox(
                    [
                        help_html("app"),
                        field("tenant"),
                        field("client_id"),
                        field("client_secret", self.forget["client_secret"]),
                    ]
                ),
                w.VBox(
                    [help_html("endpoints"), self.version, field("auth_uri"), field("token_uri")]
                ),
                w.VBox([self.scope_help, field("scope")]),
                w.VBox(
                    [
                        self.method,
                        self.method_help,
                        self.auth_mode,
                        field("redirect_uri"),
                        field("access_token", self.forget["access_token"]),
                        field("refresh_token", self.forget["refresh_token"]),
                        w.HBox([self.sign_in_button, self.cancel_button]),
                        self.device,
                        self.auth_link,
                        self.paste_box,
                    ]
                ),
                self.connected_box,
            ],
            selected_index=0,
        )
        self.back_button = _button("Back")
        self.next_button = _button("Next", style="primary")
        self.status = w.HTML()
        self.log = w.Output()
        self.details = w.Accordion(
            children=[self.log], titles=("Details (log)",), selected_index=None
        )
        self.widget = w.VBox(
            [
                self.title,
                self.sandbox_box,
                self.profile_box,
                self.breadcrumbs,
                self.steps,
                w.HBox([self.back_button, self.next_button]),
                self.status,
                self.details,
            ],
            layout=w.Layout(max_width="800px"),
        )
        self.widget.add_class("d365nb-setup")

        self.next_button.on_click(lambda _: ctl.go_to(ctl.step + 1))
        self.back_button.on_click(lambda _: ctl.go_to(ctl.step - 1))
        self.sign_in_button.on_click(self._on_sign_in)
        self.cancel_button.on_click(lambda _: ctl.cancel())
        self.finish_button.on_click(self._on_finish)
        self.use_sandbox_button.on_click(self._on_use_sandbox)
        self.load_profile_button.on_click(self._on_load_profile)
        self.save_button.on_click(self._on_save)
        self.sign_out_button.on_click(lambda _: ctl.sign_out())
        self.switch_button.on_click(lambda _: ctl.switch())
        ctl.subscribe(self._on_change)
        self.refresh()

    # -- display ---------------------------------------------------------------------

    @property
    def connection(self) -> Connection | None:
        """The signed-in `Connection`, or `None` until the test step has passed."""
        ctl = self.controller
        return ctl.connection if ctl.state == "connected" else None

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:
        from IPython import get_ipython
        from IPython.display import display

        count = getattr(get_ipython(), "execution_count", None)
        if self._shown_in is not None and self._shown_in == count:
            return  # d365nb.setup() has shown it in this very cell already
        display(self.widget)  # type: ignore[no-untyped-call]

    def __getattr__(self, name: str) -> Any:
        # Stand in for the connection once signed in: `conn = d365nb.setup()`, then
        # `conn.read(...)`.  Private names and our own attributes are never forwarded.
        if name.startswith("_") or "controller" not in self.__dict__:
            raise AttributeError(name)
        conn = self.connection
        if conn is None:
            from .._exceptions import AuthError

            raise AuthError(
                f"Not signed in yet, so there is no connection to call {name!r} on.",
                hint="Finish signing in with the setup panel above (step 5), then run this "
                "cell again.",
            )
        return getattr(conn, name)

    def __repr__(self) -> str:
        return f"<SetupPanel state={self.controller.state!r} step={STEPS[self.controller.step]!r}>"

    # -- user actions ----------------------------------------------------------------

    def _on_input(self, change: dict[str, Any]) -> None:
        if self._updating:
            return
        widget = change["owner"]
        name = next(n for n, wdg in self.inputs.items() if wdg is widget)
        value = str(change["new"] or "")
        if name in SECRET_FIELDS:
            if not value:
                return
            widget.value = ""  # out of the widget before anything else happens
            self.controller.set_secret(name, value)
            return
        self.controller.set_value(name, value)

    def _on_paste(self, change: dict[str, Any]) -> None:
        value = str(change["new"] or "")
        if not value:
            return
        self.paste.value = ""
        self.controller.submit_redirect(value)

    def _on_finish(self, _: Any) -> None:
        # The pasted text arrives through `_on_paste` when the input loses focus; a click
        # on an empty input says what to do.
        if self.controller.waiting_for_redirect:
            self.status.value = (
                "<span style='color:#555'>Paste the address into the box above and press "
                "Enter.</span>"
            )

    def _on_version(self, change: dict[str, Any]) -> None:
        if not self._updating:
            self.controller.set_endpoint_version(str(change["new"]))

    def _on_method(self, change: dict[str, Any]) -> None:
        if not self._updating:
            self.controller.set_method(str(change["new"]))

    def _on_auth_mode(self, change: dict[str, Any]) -> None:
        if not self._updating:
            self.controller.set_auth_code_mode(str(change["new"]))

    def _on_sign_in(self, _: Any) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.status.value = (
                "<span style='color:#b00'>Signing in from this panel needs a running Jupyter "
                "kernel.</span> Outside Jupyter use <code>d365nb.connect(...).sign_in()</code>."
            )
            return
        self.controller.start_sign_in()

    def _on_use_sandbox(self, _: Any) -> None:
        self.controller.use_sandbox()
        self.controller.go_to(STEPS.index("sign_in"))

    def _on_load_profile(self, _: Any) -> None:
        if self.profile_picker.value:
            self.controller.load_profile(str(self.profile_picker.value))

    def _on_save(self, _: Any) -> None:
        from .._exceptions import ConfigError

        try:
            self.controller.save_profile(self.profile_name.value.strip() or "default")
        except ConfigError:
            pass  # shown in the status line by the controller
        self._profile_names = self.controller.profiles()
        self.refresh()

    # -- drawing ---------------------------------------------------------------------

    def _on_change(self, what: str) -> None:
        if what == "tick":
            self.device.value = self._device_html()
        else:
            self.refresh()

    def refresh(self) -> None:
        """Redraw every widget from the controller's state."""
        ctl = self.controller
        self._updating = True
        try:
            for name, widget in self.inputs.items():
                if name not in SECRET_FIELDS:
                    widget.value = ctl.values.get(name, "")
                status = ctl.status(name)
                self.marks[name].value = _mark(status.ok, status.message)
            for name, button in self.forget.items():
                _hide(button, not ctl.has_secret(name))
            self.version.value = ctl.endpoint_version
            self.method.value = ctl.method
            self.auth_mode.value = ctl.auth_code_mode
            self._draw_context()
            self._draw_state()
        finally:
            self._updating = False
        self._flush_log()

    def _draw_context(self) -> None:
        ctl = self.controller
        sb = ctl.sandbox
        _hide(self.sandbox_box, sb is None or ctl.state == "connected")
        if sb is not None:
            self.sandbox_note.value = (
                "A local <b>sandbox</b> is running at "
                f"<code>{html.escape(sb.origin)}</code> (no Azure account needed). "
            )
        names = self._profile_names
        if tuple(names) != tuple(self.profile_picker.options):
            self.profile_picker.options = names
        if names and self.profile_picker.value is None:
            self.profile_picker.value = names[0]
        _hide(self.profile_box, not names or ctl.state == "connected")
        crumbs = []
        for index, step in enumerate(STEPS):
            title = f"{index + 1} {STEP_TITLES[step]}"
            if index == ctl.step:
                crumbs.append(f"<b style='color:#0067b8'>{title}</b>")
            else:
                crumbs.append(f"<span style='color:#777'>{title}</span>")
        self.breadcrumbs.value = " &rsaquo; ".join(crumbs)
        if ctl.endpoint_version == "v1":
            self.scope_help.value = (
                "v1 endpoints take no scope: they ask for the <b>resource</b> "
                f"<code>{html.escape(ctl.resource or 'from the Service URL')}</code>."
            )
        elif ctl.grant == "client_credentials":
            self.scope_help.value = (
                "Signing in as the app (client credentials) takes exactly one scope ending in "
                "<code>/.default</code>: every permission granted to the app."
            )
        else:
            self.scope_help.value = (
                "Pre-filled for signing in as a user: <code>&lt;org&gt;/user_impersonation"
                "</code> lets d365nb act as you, <code>offline_access</code> adds a "
                "<b>refresh token</b> so you stay signed in. Choosing client credentials in "
                "the next step switches it to <code>&lt;org&gt;/.default</code>."
            )
        self.inputs["scope"].disabled = ctl.endpoint_version == "v1"
        self.method_help.value = f"<div style='max-width:760px'>{_METHOD_HELP[ctl.method]}</div>"

    def _draw_state(self) -> None:
        ctl = self.controller
        busy = ctl.busy
        self.steps.selected_index = ctl.step
        on_sign_in = STEPS[ctl.step] == "sign_in"
        _hide(self.auth_mode, ctl.method != "auth_code")
        for name in ("access_token", "refresh_token"):
            _hide(self.rows[name], ctl.method != "token")
        _hide(self.rows["redirect_uri"], ctl.method != "auth_code" or ctl.auth_code_mode != "paste")
        for widget in (self.method, self.auth_mode, self.version):
            widget.disabled = busy
        self.sign_in_button.disabled = busy
        _hide(self.cancel_button, not busy)
        self.back_button.disabled = busy or ctl.step == 0
        at_sign_in = STEPS.index("sign_in")
        self.next_button.disabled = (
            busy or not ctl.can_advance() or (ctl.step == at_sign_in and ctl.state != "connected")
        )
        _hide(
            self.next_button,
            ctl.step == len(STEPS) - 1 or (ctl.step >= at_sign_in and ctl.state != "connected"),
        )
        self.device.value = self._device_html()
        flow = ctl.auth_flow
        if flow is not None and ctl.state in ("browser", "paste"):
            uri = html.escape(flow.auth_uri, quote=True)
            where = (
                "The answer comes back to this kernel by itself."
                if ctl.state == "browser"
                else "After signing in, copy the address the browser lands on (it may show "
                "an error page: that is expected) and paste it below."
            )
            self.auth_link.value = (
                f"<a href='{uri}' target='_blank' rel='noopener' style='font-size:1.2em'>"
                f"<b>Open the sign-in page</b></a> (new tab). {where}"
            )
        else:
            self.auth_link.value = ""
        _hide(self.paste_box, ctl.state != "paste")
        _hide(self.sign_in_button, not on_sign_in)
        self.result.value = self._result_html()
        self.status.value = self._status_html()

    def _device_html(self) -> str:
        code = self.controller.device_code
        if code is None or self.controller.state != "device_code":
            return ""
        uri = html.escape(code.verification_uri, quote=True)
        text = html.escape(code.user_code)
        copy = html.escape(f"navigator.clipboard.writeText({json.dumps(code.user_code)})")
        left = code.seconds_left
        return (
            "<div class='d365nb-devicecode' style='border:1px solid #0067b8;padding:10px;"
            "max-width:740px'>"
            f"1. Open <a href='{uri}' target='_blank' rel='noopener'><b>{uri}</b></a> "
            "(opens a new tab)<br>2. Enter this code: "
            f"<code class='d365nb-usercode' style='font-size:1.8em;letter-spacing:2px;"
            f"user-select:all;padding:2px 8px'>{text}</code> "
            f"<button onclick=\"{copy}\" title='Copy the code'>Copy</button><br>"
            f"<span class='d365nb-countdown' style='color:#555'>The code expires in "
            f"{left // 60}:{left % 60:02d}. Waiting for you to sign in; this notebook stays "
            "usable meanwhile.</span></div>"
        )

    def _result_html(self) -> str:
        ctl = self.controller
        who = ctl.whoami
        conn = ctl.connection
        if ctl.state != "connected" or who is None or conn is None:
            return "<i>Sign in (step 5) to test the connection.</i>"
        rows = (
            ("Signed in as", who.name or who.user_id),
            ("Organization", f"{conn.settings.org_url} (id {who.organization_id})"),
            ("Business unit", who.business_unit or who.business_unit_id),
        )
        table = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{k}</th>"
            f"<td>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        tables = ", ".join(
            f"<code>{html.escape(set_name)}</code>" for _logical, set_name in ctl.tables
        )
        more = (
            f" and {ctl.table_count - len(ctl.tables)} more"
            if ctl.table_count > len(ctl.tables)
            else ""
        )
        warning = ""
        if ctl.warning is not None:
            warning = (
                "<div class='d365nb-warning' style='color:#a60'>&#9888; "
                f"{html.escape(ctl.warning.message)}<br><b>Fix:</b> "
                f"{html.escape(ctl.warning.hint)}</div>"
            )
        return (
            "<div class='d365nb-whoami'><b style='color:green'>&#10003; Connected.</b>"
            f"{warning}"
            f"<table>{table}</table>"
            f"<div>Tables: {tables or '<i>none visible</i>'}{more}.</div>"
            "<div style='color:#555'>Use it in the next cell: "
            "<code>conn = d365nb.connection()</code>, then "
            '<code>conn.read("accounts")</code>.</div></div>'
        )

    def _status_html(self) -> str:
        ctl = self.controller
        if ctl.problem is not None:
            hint = f"<br><b>Fix:</b> {html.escape(ctl.problem.hint)}" if ctl.problem.hint else ""
            return (
                "<div class='d365nb-problem' style='color:#a00'>&#10007; "
                f"{html.escape(ctl.problem.message)}{hint}"
                "<br><span style='color:#777'>Details are in the log below.</span></div>"
            )
        busy = {
            "starting": "Contacting the sign-in service&hellip;",
            "device_code": "Waiting for the device code to be entered&hellip;",
            "browser": "Waiting for the browser sign-in&hellip;",
            "paste": "Waiting for the redirected address&hellip;",
            "testing": "Signed in; testing the connection (WhoAmI, tables)&hellip;",
        }.get(ctl.state)
        if busy:
            return f"<span class='d365nb-busy' style='color:#555'>{busy}</span>"
        if ctl.notice:
            return (
                f"<span class='d365nb-notice' style='color:#555'>{html.escape(ctl.notice)}</span>"
            )
        problems = ctl.step_problems(ctl.step)
        if problems:
            return "<span style='color:#a60'>Correct the field marked above to continue.</span>"
        return ""

    def _flush_log(self) -> None:
        lines = self.controller.log[self._logged :]
        self._logged = len(self.controller.log)
        if lines:
            self.log.append_stdout("".join(line + "\n" for line in lines))


def _mark(ok: bool | None, message: str) -> str:
    if ok is None:
        return ""
    if ok:
        text = f" <span style='color:#555'>{html.escape(message)}</span>" if message else ""
        return f"<span class='d365nb-ok' style='color:green'>&#10003;</span>{text}"
    return f"<span class='d365nb-bad' style='color:#a00'>&#10007; {html.escape(message)}</span>"
