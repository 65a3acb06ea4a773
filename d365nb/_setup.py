"""`d365nb.setup()` and `d365nb.connection()`: the first cell of every notebook.

```python
import d365nb
conn = d365nb.setup()        # shows the setup panel; sign in there
# next cell, once signed in:
conn = d365nb.connection()   # the signed-in Connection (the panel also forwards to it)
df = conn.read("accounts")
```

One panel per kernel: calling `setup()` again shows the same panel in its current state
(signed in: who and where, with Sign out and Switch environment).  Passing settings, a
profile or `new=True` starts a fresh panel; the previous connection stays the current one
until the new panel has signed in.

In IPython (Jupyter), `import d365nb` registers (once, and only if no other handler is
set) a handler that shows a `D365Error` raised in a cell as its message and its fix instead
of a long traceback: in Jupyter as HTML with the full traceback folded in a `<details>`
(one click away), in a terminal as text where `%tb` prints the full traceback.  Outside
IPython importing this module does nothing (it does not even import IPython).
"""

from __future__ import annotations

import functools
import html
import os
import re
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._client import Connection
from ._connstr import parse_connection_string
from ._exceptions import AuthError, D365Error

if TYPE_CHECKING:  # imported when a panel is made: ipywidgets stays out of `import d365nb`
    from .widgets import SetupPanel

__all__ = ["connection", "setup"]

_panel: SetupPanel | None = None
_current: Connection | None = None
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def setup(
    connection_string: str | None = None,
    /,
    *,
    profile: str | None = None,
    sandbox: Any = None,
    verify: bool | str | os.PathLike[str] = True,
    token_cache: bool | str | os.PathLike[str] = True,
    new: bool = False,
    environ: Mapping[str, str] | None = None,
    show: bool = True,
    **settings: str | None,
) -> SetupPanel:
    """Show the setup panel: configure, sign in and test a connection, step by step.

    Fields are pre-filled from the arguments, `connection_string`, the profile
    (`profile`, else `D365NB_PROFILE`) and `D365NB_*` environment variables, in that
    order of precedence.  Secrets given here or in the environment are kept in memory and
    never shown.  A running sandbox (started in this kernel, or described by
    `D365NB_SANDBOX`) is offered as a one-click preset.

    Returns the `SetupPanel`.  Once signed in, `d365nb.connection()` returns the
    `Connection`, and the panel forwards attribute access to it, so
    `conn = d365nb.setup()` followed (after signing in) by `conn.read(...)` works.

    **Parameters:**

    * **connection_string** - `ServiceURL=...;ClientID=...;` as vendor drivers take it.
    * **profile** - a saved profile to start from.
    * **sandbox** - a `Sandbox` (or its `info()` dict) to offer; `False` offers none.
    * **verify** - TLS trust for real environments: `True` or a CA file path.
    * **token_cache** - `True` keeps tokens in the per-user cache, `False` in memory.
    * **new** - start a fresh panel even when one exists.
    * **environ** - the environment to pre-fill from; `os.environ` when omitted.
    * **show** - display the panel (set `False` to display it yourself).
    * **settings** - any `Settings` field (`service_url=`, `client_id=`, `tenant=`, ...).
    """
    global _panel
    # Lazy: ipywidgets (and IPython under it) cost ~0.13 s and are not needed by scripts,
    # the CLI or the sandbox; `import d365nb` never pulls them in.
    from .widgets import SetupPanel

    fresh = new or _panel is None or connection_string or profile or sandbox is not None
    fresh = fresh or any(v is not None for v in settings.values())
    if fresh:
        values: dict[str, str | None] = {}
        if connection_string:
            values.update(parse_connection_string(connection_string))
        values.update({k: v for k, v in settings.items() if v is not None})
        panel = SetupPanel(
            environ=environ,
            profile=profile,
            sandbox=sandbox,
            verify=verify,
            token_cache=token_cache,
            values=values,
        )
        panel.controller.subscribe(functools.partial(_track, panel))
        _panel = panel
    assert _panel is not None
    install_error_display()
    if show:
        _display(_panel)
    return _panel


def connection() -> Connection:
    """The connection signed in through the setup panel.

    Raises `AuthError` (with what to do) when nobody has signed in yet in this kernel.
    """
    if _current is None:
        raise AuthError(
            "Not signed in yet.",
            hint="Run d365nb.setup() and sign in with the panel (step 5), then run this "
            "cell again.",
        )
    return _current


def _track(panel: SetupPanel, what: str) -> None:
    """Keep `connection()` pointing at the last connection a panel signed in."""
    global _current
    ctl = panel.controller
    if what == "signed_out":
        if _current is not None and _current is ctl.connection:
            _current = None
    elif panel.connection is not None:
        _current = panel.connection


def _display(panel: SetupPanel) -> None:
    # IPython is imported here, not at the top: `import d365nb` stays free of it.
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with ipywidgets
        return
    shell = get_ipython()
    if shell is None:
        return
    panel._shown_in = getattr(shell, "execution_count", None)
    display(panel.widget)  # type: ignore[no-untyped-call]


# -- short errors in notebooks --------------------------------------------------------------


def _short_traceback(
    shell: Any,
    etype: type[BaseException],
    value: BaseException,
    tb: TracebackType | None,
    tb_offset: int | None = None,
) -> list[str]:
    """IPython custom-exception handler: a `D365Error` as message + hint, not a traceback."""
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
    if sys.version_info >= (3, 12):
        sys.last_exc = value
    stb = error_lines(value)
    if getattr(shell, "kernel", None) is None:  # a terminal: the lines, `%tb` for more
        shell._showtraceback(etype, value, stb)
        return stb
    # A Jupyter kernel: one HTML output, the full traceback folded in it.  The reply still
    # says "error" (Run All stops); no separate error output repeats the message.
    full = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
    sys.stdout.flush()
    sys.stderr.flush()
    shell.display_pub.publish(
        data={"text/plain": "\n".join(stb), "text/html": error_html(value, full)},
        metadata={},
    )
    shell._last_traceback = stb
    return stb


def error_html(value: BaseException, traceback: list[str]) -> str:
    """`error_lines` as HTML: message and fix shown, `traceback` (ANSI) in a folded `<details>`.

    Colours come from JupyterLab's CSS variables, so light, dark and high-contrast themes
    read well.
    """
    message = html.escape(getattr(value, "message", None) or str(value))
    hint = getattr(value, "hint", None)
    full = html.escape(_ANSI.sub("", "\n".join(traceback)))
    parts = [
        '<div class="d365nb-error" style="white-space: pre-wrap;'
        ' color: var(--jp-content-font-color1, inherit)">',
        f'<div><b style="color: var(--jp-error-color1, #c62828)">'
        f"{html.escape(type(value).__name__)}</b>: {message}</div>",
    ]
    if hint:
        parts.append(f"<div><b>Fix:</b> {html.escape(hint)}</div>")
    parts.append(
        '<details><summary style="cursor: pointer; color: var(--jp-content-font-color2, inherit)">'
        f"Full traceback</summary><pre>{full}</pre></details></div>"
    )
    return "".join(parts)


def error_lines(value: BaseException) -> list[str]:
    """How a `D365Error` shows in a notebook: its message, its hint, where to see more."""
    red, bold, dim, reset = "\x1b[31m", "\x1b[1m", "\x1b[2m", "\x1b[0m"
    message = getattr(value, "message", None) or str(value)
    hint = getattr(value, "hint", None)
    lines = [f"{red}{type(value).__name__}{reset}: {message}"]
    if hint:
        lines.append(f"{bold}Fix:{reset} {hint}")
    lines.append(f"{dim}(%tb shows the full traceback){reset}")
    return lines


def install_error_display() -> bool:
    """Show `D365Error`s in this IPython kernel as two lines; True when installed.

    Leaves an existing custom exception handler of someone else alone.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    if shell is None:
        return False
    current = tuple(getattr(shell, "custom_exceptions", ()))
    if current == (D365Error,):
        return True
    if current:
        return False
    shell.set_custom_exc((D365Error,), _short_traceback)
    return True


def _install_in_ipython() -> None:
    """At import: in a running IPython shell, `install_error_display()`; else nothing.

    Looks only at modules already loaded: a script or the CLI never imports IPython here.
    """
    ipython = sys.modules.get("IPython")
    get_shell = getattr(ipython, "get_ipython", None)
    if get_shell is not None and get_shell() is not None:
        install_error_display()


# `import d365nb` in a notebook: errors show as one line plus their fix from the first cell.
_install_in_ipython()
