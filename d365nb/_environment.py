"""Where d365nb runs: a notebook or not, a remote kernel or not, the user's stack frame."""

from __future__ import annotations

import os
import sys

__all__ = ["caller_stacklevel", "in_notebook", "remote_kernel"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def caller_stacklevel() -> int:
    """The `stacklevel` that points a warning at the first frame outside d365nb.

    Called from the function that warns; the warning then names the user's own line (the
    `connect(...)` cell), however many d365nb frames lie in between.
    """
    frame = sys._getframe(1)  # the warning function: stacklevel 1
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level


def remote_kernel() -> bool:
    """True when the browser is likely not on the kernel's machine (JupyterHub, Binder)."""
    env = os.environ
    if env.get("D365NB_REMOTE_KERNEL"):
        return env["D365NB_REMOTE_KERNEL"] not in ("0", "false", "no")
    return any(
        k in env for k in ("JUPYTERHUB_USER", "JUPYTERHUB_API_URL", "BINDER_SERVICE_HOST")
    ) or (sys.platform.startswith("linux") and not env.get("DISPLAY") and "SSH_CONNECTION" in env)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython `ZMQInteractiveShell`)."""
    try:
        # Lazy: IPython is heavy and optional outside notebooks.
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with ipywidgets
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
