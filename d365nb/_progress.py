"""The progress bar of the running read or push, and the factory that makes one.

`progress_var` holds the bar of the read or push running in this context; the transport
reports its waits (429 Retry-After, backoff) to it through `report_wait()`.
"""

from __future__ import annotations

import contextvars
from typing import Any

__all__ = ["progress_bar", "progress_var", "report_wait"]

#: The progress bar of the read running in this context (the transport reports waits to it).
progress_var: contextvars.ContextVar[Any] = contextvars.ContextVar("d365nb_progress", default=None)


def progress_bar(desc: str, *, total: int | None = None) -> Any:
    """A tqdm bar (widget in a notebook, text elsewhere) that disappears when closed."""
    # Lazy: tqdm.auto probes for ipywidgets, which is slow to import.
    from tqdm.auto import tqdm

    if total is None:
        return tqdm(desc=desc, unit=" rows", leave=False, dynamic_ncols=True)
    return tqdm(total=total, desc=desc, unit=" rows", leave=False, dynamic_ncols=True)


def report_wait(seconds: float, reason: str) -> None:
    """Show the transport's waits (429 Retry-After, backoff) on the running read's bar."""
    bar = progress_var.get()
    if bar is not None:
        bar.set_postfix_str(f"{reason}: waiting {seconds:.0f} s", refresh=True)
