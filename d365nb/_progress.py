"""The progress bar of the running read or push, and the factory that makes one.

`progress_var` holds the bar of the read or push running in this context; the transport
reports its waits (429 Retry-After, backoff) to it through `report_wait()`.

In a notebook the bar is not a widget but one output updated in place (an IPython display
handle: HTML plus a text fallback).  It stays after the read with its final count, it is
saved with the notebook as it ended (never "0 rows"), and it renders wherever outputs do:
JupyterLab, Notebook 7, Voila, nbconvert, with or without saved widget state.  Elsewhere
it is tqdm's text bar.
"""

from __future__ import annotations

import contextvars
import html
import io
from collections.abc import Mapping
from typing import Any

from ._environment import in_notebook

__all__ = ["bar_html", "progress_bar", "progress_var", "report_wait", "set_total"]

#: The progress bar of the read running in this context (the transport reports waits to it).
progress_var: contextvars.ContextVar[Any] = contextvars.ContextVar("d365nb_progress", default=None)

_UNIT = " rows"
_NOTEBOOK_BAR: Any = None


def progress_bar(desc: str, *, total: int | None = None) -> Any:
    """A bar counting rows: in a notebook an output updated in place that stays with its
    final count; elsewhere tqdm's text bar, removed when closed.

    **Parameters:**

    * **desc** - what is counted, e.g. ``Reading accounts``.
    * **total** - how many rows are expected, when known (set `bar.total` later if it
      becomes known; `None` counts without a total).
    """
    if in_notebook():
        return _notebook_bar_class()(
            desc=desc, total=total, unit=_UNIT, leave=True, mininterval=0.25
        )
    # Lazy: tqdm.auto probes for ipywidgets, which is slow to import.
    from tqdm.auto import tqdm

    return tqdm(desc=desc, total=total, unit=_UNIT, leave=False, dynamic_ncols=True)


def set_total(bar: Any, total: int | None, *, at_most: int | None = None) -> None:
    """Give `bar` its total once it is known (e.g. from `@odata.count`); a bar that has one
    keeps it.

    **Parameters:**

    * **bar** - the bar, or `None` (nothing to do).
    * **total** - the number of rows expected, or `None` (still unknown).
    * **at_most** - a limit on the rows read (`top=`), when there is one.
    """
    if bar is None or total is None or bar.total is not None:
        return
    bar.total = total if at_most is None else min(total, at_most)
    bar.refresh()


def report_wait(seconds: float, reason: str) -> None:
    """Show the transport's waits (429 Retry-After, backoff) on the running read's bar."""
    bar = progress_var.get()
    if bar is not None:
        bar.set_postfix_str(f"{reason}: waiting {seconds:.0f} s", refresh=True)


def bar_html(values: Mapping[str, Any], *, closed: bool = False) -> str:
    """The HTML of a bar from tqdm's `format_dict` (`n`, `total`, `elapsed`, `rate`,
    `prefix`, `postfix`): colours from JupyterLab's theme variables, text that reads
    without them.

    **Parameters:**

    * **values** - the bar's `format_dict`.
    * **closed** - the bar is finished (shown in the success colour).
    """
    from tqdm.std import tqdm

    n = int(values.get("n") or 0)
    total = values.get("total")
    elapsed = tqdm.format_interval(float(values.get("elapsed") or 0))
    rate = values.get("rate")
    count = f"{n:,}/{int(total):,}{_UNIT}" if total else f"{n:,}{_UNIT}"
    details = [count, elapsed]
    if rate:
        details.append(f"{float(rate):,.0f}{_UNIT}/s")
    postfix = values.get("postfix")
    if postfix:
        details.append(str(postfix).lstrip(", "))
    colour = "var(--jp-success-color1, #388e3c)" if closed else "var(--jp-brand-color1, #1976d2)"
    if total:
        width = f"{min(100.0, 100.0 * n / float(total)):.1f}%"
    else:
        width = "100%" if closed else "0%"
    track = (
        "<span style='display:inline-block;width:16em;height:0.75em;vertical-align:middle;"
        "border:1px solid var(--jp-border-color1, #9e9e9e);border-radius:2px;overflow:hidden'>"
        f"<span style='display:block;height:100%;width:{width};background:{colour}'></span>"
        "</span>"
    )
    return (
        "<div class='d365nb-progress' style='font-family:var(--jp-ui-font-family, sans-serif);"
        "color:var(--jp-ui-font-color1, inherit)'>"
        f"{html.escape(str(values.get('prefix') or ''))} {track} "
        f"{html.escape(' · '.join(details))}</div>"
    )


def _notebook_bar_class() -> Any:
    """tqdm with its output replaced by a display handle (built once, on first use)."""
    global _NOTEBOOK_BAR
    if _NOTEBOOK_BAR is not None:
        return _NOTEBOOK_BAR
    from IPython.display import display
    from tqdm.std import tqdm

    base: Any = tqdm  # tqdm's stubs make it generic; at run time it is not subscriptable

    class NotebookBar(base):  # type: ignore[misc]
        """A tqdm bar shown as one notebook output, updated in place."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._handle: Any = None
            self._closing = False
            kwargs["file"] = io.StringIO()  # tqdm's own text output goes nowhere
            super().__init__(*args, **kwargs)

        def display(self, msg: str | None = None, pos: int | None = None) -> None:
            values = self.format_dict
            bundle = {
                "text/plain": self.format_meter(**values) if msg is None else msg,
                "text/html": bar_html(values, closed=self._closing),
            }
            if self._handle is None:
                self._handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]
            else:
                self._handle.update(bundle, raw=True)

        def close(self) -> None:
            self._closing = True  # tqdm (leave=True) shows the final state once more
            super().close()

    _NOTEBOOK_BAR = NotebookBar
    return NotebookBar
