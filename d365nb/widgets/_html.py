"""The setup panel's HTML: its stylesheet and the fragments its `HTML` widgets show.

Colours come from JupyterLab's CSS variables (`--jp-error-color1`, `--jp-ui-font-color1`,
...), so light, dark and high-contrast themes (and Voila, which uses the same themes) read
well; each has a fallback for a page without them.  Text is never drawn in a warning colour
(orange on white is under 3:1): warnings get a coloured mark and a coloured edge instead.
Every value that comes from outside is escaped here.
"""

from __future__ import annotations

import html
import json
import re
from typing import TYPE_CHECKING, Final

from ._explain import FNO_APP_REGISTRATION

if TYPE_CHECKING:
    from .._auth import DeviceCode
    from ._controller import SetupController
    from ._explain import FieldStatus, Problem

__all__ = [
    "INDENT",
    "STYLE",
    "countdown_html",
    "device_code_html",
    "fno_app_html",
    "grant_html",
    "mark_html",
    "problem_html",
    "result_html",
    "step_status_html",
    "text_html",
]

#: Where inputs start: the label column (`description_width`) plus the label's margin.
INDENT: Final = "calc(10em + 10px)"

# Scoped to the panel; `em` is the widgets' font size throughout (set on the root).
STYLE: Final = f"""<style>
.d365nb-setup {{
  font-size: var(--jp-widgets-font-size, 13px);
  color: var(--jp-ui-font-color1, rgba(0, 0, 0, 0.87));
}}
.d365nb-setup .widget-html-content {{
  line-height: 1.45; white-space: normal; overflow-wrap: break-word;
}}
.d365nb-setup .widget-html {{ margin-top: 3px; margin-bottom: 3px; }}
.d365nb-setup .d365nb-indent {{ margin-left: {INDENT}; }}
.d365nb-setup .widget-toggle-buttons {{ display: flex; align-items: baseline; }}
.d365nb-setup .widget-toggle-buttons > .widget-label {{
  display: inline-block; flex-shrink: 0; text-align: right; margin-right: 8px;
}}
.d365nb-setup .widget-toggle-buttons > div {{ display: flex; flex-wrap: wrap; }}
.d365nb-setup .d365nb-mark {{
  margin: 0 0 4px {INDENT}; max-width: calc(760px - {INDENT});
}}
.d365nb-setup .d365nb-help {{ max-width: 760px; }}
.d365nb-setup .d365nb-id {{ white-space: nowrap; }}
.d365nb-setup a {{
  color: var(--jp-content-link-color, #0d47a1); text-decoration: underline;
}}
.d365nb-setup .d365nb-ok {{ color: var(--jp-success-color1, #388e3c); }}
.d365nb-setup .d365nb-bad,
.d365nb-setup .d365nb-message {{ color: var(--jp-error-color1, #d32f2f); }}
.d365nb-setup .d365nb-note {{ color: var(--jp-ui-font-color2, rgba(0, 0, 0, 0.54)); }}
.d365nb-setup .d365nb-hint {{ color: var(--jp-ui-font-color1, rgba(0, 0, 0, 0.87)); }}
.d365nb-setup .d365nb-current {{ color: var(--jp-brand-color1, #1976d2); font-weight: bold; }}
.d365nb-setup .d365nb-warning {{
  border-left: 3px solid var(--jp-warn-color1, #f57c00); padding-left: 8px; margin: 4px 0;
}}
.d365nb-setup .d365nb-warning-mark {{ color: var(--jp-warn-color0, #e65100); }}
.d365nb-setup .d365nb-devicecode {{
  border: var(--jp-border-width, 1px) solid var(--jp-brand-color1, #1976d2);
  border-radius: 2px; padding: 6px 12px; max-width: calc(760px - {INDENT});
}}
.d365nb-setup .d365nb-usercode {{
  font-family: var(--jp-code-font-family, monospace); font-size: 1.8em;
  letter-spacing: 2px; padding: 0 8px; user-select: all; vertical-align: middle;
  color: var(--jp-ui-font-color0, #000); background: var(--jp-layout-color2, #eee);
}}
.d365nb-setup .d365nb-copy {{
  font: inherit; height: var(--jp-widgets-inline-height, 28px); padding: 0 12px;
  margin-left: 8px; vertical-align: middle; cursor: pointer; border-radius: 2px;
  color: var(--jp-ui-font-color1, rgba(0, 0, 0, 0.87));
  background: var(--jp-layout-color2, #eee);
  border: var(--jp-border-width, 1px) solid var(--jp-border-color1, #bdbdbd);
}}
.d365nb-setup .d365nb-copy:hover {{ background: var(--jp-layout-color3, #bdbdbd); }}
.d365nb-setup .d365nb-copy:focus-visible {{
  outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: 1px;
}}
.d365nb-setup .d365nb-copy.d365nb-copied {{ border-color: var(--jp-success-color1, #388e3c); }}
.d365nb-setup .d365nb-whoami th {{ text-align: left; padding-right: 1em; }}
</style>"""

# A GUID breaks at its hyphens; in a message it is kept on one line.
_GUID: Final = re.compile(r"\b[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b")

# The Copy button: the clipboard API where the page may use it, else select the code and
# copy it the old way; the button says what happened for two seconds.
_COPY_JS: Final = (
    "var b=this,c=%s,n=b.parentNode.querySelector('.d365nb-usercode');"
    "var say=function(t){b.textContent=t;b.classList.add('d365nb-copied');"
    "clearTimeout(b.d365nbTimer);b.d365nbTimer=setTimeout(function(){"
    "b.textContent='Copy';b.classList.remove('d365nb-copied')},2000)};"
    "var old=function(){var r=document.createRange(),s=window.getSelection();"
    "r.selectNodeContents(n);s.removeAllRanges();s.addRange(r);var ok=false;"
    "try{ok=document.execCommand('copy')}catch(e){}say(ok?'Copied':'Press Ctrl+C')};"
    "if(navigator.clipboard&&window.isSecureContext){"
    "navigator.clipboard.writeText(c).then(function(){say('Copied')},old)}else{old()}"
)


def text_html(text: str) -> str:
    """`text` escaped, its GUIDs kept whole on one line."""
    return _GUID.sub(lambda m: f"<span class='d365nb-id'>{m[0]}</span>", html.escape(text))


def grant_html(reason: str, notes: tuple[str, ...]) -> str:
    """Which grant the fields mean and why, with the notes on fields not used."""
    items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    return (
        f"<div class='d365nb-help'>{html.escape(reason)}"
        + (f"<ul>{items}</ul>" if items else "")
        + "</div>"
    )


def mark_html(status: FieldStatus) -> str:
    """A field's mark: a tick with its note, a cross with the problem, or nothing."""
    if status.ok is None:
        return ""
    if status.ok:
        note = f" <span class='d365nb-note'>{text_html(status.message)}</span>"
        return f"<span class='d365nb-ok'>&#10003;</span>{note if status.message else ''}"
    return f"<span class='d365nb-bad'>&#10007; {text_html(status.message)}</span>"


def step_status_html(status: FieldStatus) -> str:
    """What Next waits for: a field to correct (marked above) or one to fill in."""
    if status.ok is not False and not status.message:
        return ""
    kind = "d365nb-bad" if status.ok is False else "d365nb-note"
    return f"<span class='d365nb-advice {kind}'>{text_html(status.message)}</span>"


def problem_html(problem: Problem) -> str:
    """An error: the sentence in the error colour, the fix in plain text below it."""
    hint = (
        f"<div class='d365nb-hint'><b>Fix:</b> {text_html(problem.hint)}</div>"
        if problem.hint
        else ""
    )
    return (
        "<div class='d365nb-problem'>"
        f"<div class='d365nb-message'>&#10007; {text_html(problem.message)}</div>{hint}"
        "<div class='d365nb-note'>Details are in the log below.</div></div>"
    )


def device_code_html(code: DeviceCode) -> str:
    """The link and the code to enter, with a Copy button: drawn once per code."""
    uri = html.escape(code.verification_uri, quote=True)
    copy = html.escape(_COPY_JS % json.dumps(code.user_code), quote=True)
    return (
        f"<div>1. Open <a href='{uri}' target='_blank' rel='noopener'>{uri}</a> "
        "(opens a new tab)</div>"
        "<div>2. Enter this code: "
        f"<code class='d365nb-usercode'>{html.escape(code.user_code)}</code>"
        "<button type='button' class='d365nb-copy' title='Copy the code' aria-live='polite' "
        f'onclick="{copy}">Copy</button></div>'
    )


def countdown_html(seconds_left: int) -> str:
    """The only part of the device-code box that changes while it waits."""
    left = max(0, seconds_left)
    return (
        f"<span class='d365nb-countdown d365nb-note'>The code expires in "
        f"{left // 60}:{left % 60:02d}. Waiting for you to sign in; this notebook stays "
        "usable meanwhile.</span>"
    )


def fno_app_html() -> str:
    """The F&O side of the app registration (the Microsoft Entra ID applications form)."""
    title, items = FNO_APP_REGISTRATION
    lines = "".join(f"<li>{html.escape(item)}</li>" for item in items)
    return f"<div class='d365nb-help d365nb-fno'><b>{html.escape(title)}</b><ul>{lines}</ul></div>"


def result_html(ctl: SetupController) -> str:
    """The test step: who is signed in where, a few tables, a warning to act on."""
    who = ctl.whoami
    conn = ctl.connection
    if ctl.state != "connected" or who is None or conn is None:
        return "<i class='d365nb-note'>Sign in (step 5) to test the connection.</i>"
    fno = conn.settings.service == "fno"
    rows: tuple[tuple[str, str], ...] = (
        ("Signed in as", who.name or who.user_id),
        ("Organization", f"{conn.settings.org_url} (id {who.organization_id})"),
        ("Business unit", who.business_unit or who.business_unit_id),
    )
    if fno:
        companies = [f"{c} (default)" if i == 0 else c for i, c in enumerate(ctl.companies)]
        rows = (
            ("Signed in as", who.name or who.user_id),
            ("Environment", f"{conn.settings.org_url} (finance and operations)"),
            ("Companies", ", ".join(companies) or "none visible"),
        )
    table = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    tables = ", ".join(f"<code>{html.escape(name)}</code>" for _logical, name in ctl.tables)
    more = (
        f" and {ctl.table_count - len(ctl.tables)} more"
        if ctl.table_count > len(ctl.tables)
        else ""
    )
    first_read = _first_read(ctl) if fno else 'conn.read("accounts")'
    warning = ""
    if ctl.warning is not None:
        warning = (
            "<div class='d365nb-warning'><span class='d365nb-warning-mark'>&#9888;</span> "
            f"{text_html(ctl.warning.message)}<br><b>Fix:</b> "
            f"{text_html(ctl.warning.hint)}</div>"
        )
    return (
        "<div class='d365nb-whoami'><span class='d365nb-ok'>&#10003;</span> <b>Connected.</b>"
        f"{warning}"
        f"<table>{table}</table>"
        f"<div>{'Data entities' if fno else 'Tables'}: "
        f"{tables or '<i>none visible</i>'}{more}.</div>"
        "<div class='d365nb-note'>Use it in the next cell: "
        "<code>conn = d365nb.connection()</code>, then "
        f"<code>{html.escape(first_read, quote=False)}</code>."
        "</div></div>"
    )


def _first_read(ctl: SetupController) -> str:
    company = ctl.companies[0] if ctl.companies else "usmf"
    return f'conn.read("CustomersV3", company="{company}")'
