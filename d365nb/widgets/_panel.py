"""The setup panel: stock ipywidgets composed around a `SetupController`.

All logic lives in the controller; this module only draws it (`refresh`) and forwards what
the user does.  Secret inputs hand their value to the controller and are emptied at once,
inside the same callback, so a saved notebook's widget state never holds one.
"""

from __future__ import annotations

import asyncio
import html
from typing import TYPE_CHECKING, Any, Final

import ipywidgets as w
from IPython import get_ipython
from IPython.display import display
from traitlets import Unicode

from .._exceptions import AuthError, ConfigError
from .._fields import SECRET_FIELDS
from ._controller import SetupController
from ._explain import FIELD_LABELS
from ._form import METHOD_TITLES, METHODS, STEP_TITLES, STEPS
from ._html import (
    STYLE,
    countdown_html,
    device_code_html,
    fno_app_html,
    grant_html,
    mark_html,
    problem_html,
    result_html,
    step_status_html,
)

if TYPE_CHECKING:
    from .._client import Connection

__all__ = ["SetupPanel"]

_WIDE: Final = {"description_width": "10em"}
_TOGGLES: Final = {"description_width": "10em", "button_width": "auto"}
_ROW: Final = {"width": "100%", "max_width": "760px"}
# The fields the panel has an input for (the API version comes from the Service URL).
_FIELDS_SHOWN: Final = tuple(name for name in FIELD_LABELS if name != "api_version")
_PLACEHOLDERS: Final = {
    "service_url": "https://org.api.crm.dynamics.com/api/data/v9.2/",
    "tenant": "contoso.onmicrosoft.com or the Directory (tenant) ID",
    "client_id": "Application (client) ID, e.g. 00001111-aaaa-2222-bbbb-3333cccc4444",
    "client_secret": "the secret's Value from Certificates & secrets (kept in memory only)",
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
        "and the <b>Application (client) ID</b>. A client secret, if your sign-in method "
        "needs one, is asked for in step 5."
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
        "copy the address the browser lands on (it may fail to load) and paste it here. A "
        "<b>Client Secret</b> is needed only for a confidential (web) app."
    ),
    "client_credentials": (
        "Sign in as the app itself with its <b>Client Secret</b> (<i>Certificates &amp; "
        "secrets</i> &gt; the secret's <i>Value</i>; kept in memory, never written to the "
        "notebook). The app needs an <i>application user</i> with a security role in the "
        "environment."
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


def _indented(*children: w.Widget) -> w.HBox:
    """A row that starts where the inputs start (under the labels' column)."""
    box = w.HBox(list(children))
    box.add_class("d365nb-indent")
    return box


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

        self.title = w.HTML(  # carries the panel's stylesheet
            f"{STYLE}<b style='font-size:1.15em'>d365nb &middot; connect to Dynamics 365</b>"
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
        for name in _FIELDS_SHOWN:
            kwargs: dict[str, Any] = {
                "description": FIELD_LABELS[name],
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
            self.marks[name] = w.HTML()
            self.marks[name].add_class("d365nb-mark")
        self.forget = {
            name: _button("Forget", tooltip=f"Forget the {FIELD_LABELS[name]} held in memory")
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
        self.grant_note = w.HTML()  # which grant the fields mean, and why
        # F&O only: the app's row in F&O's Microsoft Entra ID applications form (steps 2, 5).
        self.fno_app_note = w.HTML()
        self.fno_sign_in_note = w.HTML()
        self.sign_in_button = _button("Sign in", style="primary")
        self.cancel_button = _button("Cancel", style="warning")
        # The device-code box: the link and code are drawn once per code (a selection
        # survives); only the countdown below them changes every second.
        self.device = w.HTML()
        self.countdown = w.HTML()
        self.device_box = w.VBox([self.device, self.countdown])
        self.device_box.add_class("d365nb-devicecode")
        self.device_box.add_class("d365nb-indent")
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
        self.finish_button.add_class("d365nb-indent")
        self.paste_box = w.VBox([self.paste, self.finish_button])

        self.result = w.HTML()
        self.profile_name = w.Text(description="Profile name", value="default", style=_WIDE)
        self.save_button = _button("Save profile", tooltip="Save these settings (never secrets)")
        self.sign_out_button = _button("Sign out")
        self.switch_button = _button("Switch environment")
        self.driver_button = _button(
            "Connection string for a JDBC/ODBC driver",
            tooltip="The vendor driver's Key=Value; string for these settings (no secrets)",
        )
        self.driver_text = w.Textarea(layout=w.Layout(width="100%"), disabled=True)
        self.connected_box = w.VBox(
            [
                self.result,
                w.HBox([self.profile_name, self.save_button]),
                _indented(self.sign_out_button, self.switch_button),
                _indented(self.driver_button),
                self.driver_text,
            ]
        )

        self.rows: dict[str, w.VBox] = {}

        def field(name: str, *extra: w.Widget) -> w.VBox:
            line = w.HBox([self.inputs[name], *extra]) if extra else self.inputs[name]
            self.rows[name] = w.VBox([line, self.marks[name]])
            return self.rows[name]

        def help_html(step: str) -> w.HTML:
            return w.HTML(f"<div class='d365nb-help'>{_HELP[step]}</div>")

        self.steps = w.Stack(
            [
                w.VBox([help_html("service"), field("service_url")]),
                w.VBox(
                    [
                        help_html("app"),
                        self.fno_app_note,
                        field("tenant"),
                        field("client_id"),
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
                        self.grant_note,
                        self.fno_sign_in_note,
                        self.auth_mode,
                        field("client_secret", self.forget["client_secret"]),
                        field("redirect_uri"),
                        field("access_token", self.forget["access_token"]),
                        field("refresh_token", self.forget["refresh_token"]),
                        _indented(self.sign_in_button, self.cancel_button),
                        self.device_box,
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
        self.status.add_class("d365nb-indent")
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
                _indented(self.back_button, self.next_button),
                self.status,
                self.details,
            ],
            layout=w.Layout(max_width="800px"),
        )
        self.widget.add_class("d365nb-setup")

        self.next_button.on_click(lambda _: ctl.go_to(ctl.step + 1))
        self.back_button.on_click(lambda _: ctl.go_to(ctl.step - 1))
        self.sign_in_button.on_click(self._on_sign_in)
        self.driver_button.on_click(lambda _: self.controller.show_connection_string())
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
                "<span class='d365nb-note'>Paste the address into the box above and press "
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
                "<span class='d365nb-bad'>Signing in from this panel needs a running Jupyter "
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
        try:
            self.controller.save_profile(self.profile_name.value.strip() or "default")
        except ConfigError:
            pass  # shown in the status line by the controller
        self._profile_names = self.controller.profiles()
        self.refresh()

    # -- drawing ---------------------------------------------------------------------

    def _on_change(self, what: str) -> None:
        if what == "tick":  # only the countdown: the link and code stay as drawn
            self.countdown.value = self._countdown()
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
                self.marks[name].value = mark_html(ctl.status(name))
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
            kind = "d365nb-current" if index == ctl.step else "d365nb-note"
            crumbs.append(f"<span class='{kind}'>{index + 1} {STEP_TITLES[step]}</span>")
        self.breadcrumbs.value = " <span class='d365nb-note'>&rsaquo;</span> ".join(crumbs)
        if ctl.endpoint_version == "v1":
            self.scope_help.value = (
                "v1 endpoints take no scope: they ask for the <b>resource</b> "
                f"<code>{html.escape(ctl.resource or 'from the Service URL')}</code>."
            )
        elif ctl.service == "fno":
            self.scope_help.value = (
                "Finance and operations takes one scope, <code>&lt;environment&gt;/.default"
                "</code> (Dynamics ERP has no <code>user_impersonation</code>), plus "
                "<code>offline_access</code> for a <b>refresh token</b> when you sign in as "
                "yourself."
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
        self.method_help.value = f"<div class='d365nb-help'>{_METHOD_HELP[ctl.method]}</div>"
        fno = ctl.service == "fno"
        self.fno_app_note.value = fno_app_html() if fno else ""
        self.fno_sign_in_note.value = (
            "<div class='d365nb-help'>In finance and operations the app signs in as the F&amp;O "
            "user its Client ID is mapped to in <i>System administration &gt; Setup &gt; "
            "Microsoft Entra ID applications</i> (step 2 explains it), not as an "
            "application user.</div>"
            if fno and ctl.method == "client_credentials"
            else ""
        )
        self.inputs["client_secret"].placeholder = (
            "optional: only for a confidential (web) app; kept in memory only"
            if ctl.method == "auth_code"
            else _PLACEHOLDERS["client_secret"]
        )

    def _draw_state(self) -> None:
        ctl = self.controller
        busy = ctl.busy
        self.steps.selected_index = ctl.step
        on_sign_in = STEPS[ctl.step] == "sign_in"
        _hide(self.auth_mode, ctl.method != "auth_code")
        for name in ("client_secret", "redirect_uri", "access_token", "refresh_token"):
            _hide(self.rows[name], not ctl.shows(name))
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
        code = ctl.device_code if ctl.state == "device_code" else None
        # Set only when the code changes: the same value is not sent again, so the box
        # (and a selection in it) is left alone.  After sign-in the code is gone.
        self.device.value = device_code_html(code) if code is not None else ""
        self.countdown.value = self._countdown()
        _hide(self.device_box, code is None)
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
        explained = ctl.grant_explanation if on_sign_in else None
        self.grant_note.value = grant_html(*explained) if explained else ""
        self.driver_text.value = ctl.driver_string
        _hide(self.driver_text, not ctl.driver_string)
        self.result.value = result_html(ctl)
        self.status.value = self._status_html()

    def _countdown(self) -> str:
        code = self.controller.device_code
        if code is None or self.controller.state != "device_code":
            return ""
        return countdown_html(code.seconds_left)

    def _status_html(self) -> str:
        ctl = self.controller
        if ctl.problem is not None:
            return problem_html(ctl.problem)
        busy = {
            "starting": "Contacting the sign-in service&hellip;",
            "device_code": "Waiting for the device code to be entered&hellip;",
            "browser": "Waiting for the browser sign-in&hellip;",
            "paste": "Waiting for the redirected address&hellip;",
            "testing": "Signed in; testing the connection (WhoAmI, tables)&hellip;",
        }.get(ctl.state)
        if busy:
            return f"<span class='d365nb-busy d365nb-note'>{busy}</span>"
        if ctl.notice:
            return f"<span class='d365nb-notice d365nb-note'>{html.escape(ctl.notice)}</span>"
        return step_status_html(ctl.step_status())

    def _flush_log(self) -> None:
        """Show the controller's log (its last `LOG_LINES` lines) when it has grown."""
        ctl = self.controller
        if ctl.log_count == self._logged:
            return
        self._logged = ctl.log_count
        text = "".join(line + "\n" for line in ctl.log)
        self.log.outputs = ({"output_type": "stream", "name": "stdout", "text": text},)
