"""The progress bar factory and the wait notice (`_progress`)."""

from __future__ import annotations

from d365nb._progress import progress_bar, progress_var, report_wait


def test_progress_bar_has_its_total_and_description() -> None:
    bar = progress_bar("accounts", total=10)
    try:
        bar.update(4)
        assert bar.total == 10 and bar.n == 4
        assert "accounts" in str(bar.desc)
    finally:
        bar.close()


def test_report_wait_reaches_the_running_bar() -> None:
    bar = progress_bar("accounts", total=2)
    token = progress_var.set(bar)
    try:
        report_wait(3.0, "throttled (429)")
        assert "429" in str(bar.postfix) and "3 s" in str(bar.postfix)
    finally:
        progress_var.reset(token)
        bar.close()
