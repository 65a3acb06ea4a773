"""Where d365nb runs (`_environment`): outside IPython, nothing is a notebook."""

from __future__ import annotations

import warnings

from d365nb._environment import caller_stacklevel, in_notebook, remote_kernel


def test_plain_python_is_not_a_notebook_nor_a_remote_kernel() -> None:
    assert in_notebook() is False
    assert remote_kernel() is False


def test_caller_stacklevel_points_warnings_at_the_caller() -> None:
    level = caller_stacklevel()
    assert isinstance(level, int) and level >= 1
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.warn("here", UserWarning, stacklevel=level)
    assert seen and seen[0].filename == __file__
