"""Reading a page's row dicts column by column (`d365nb._columns`)."""

from __future__ import annotations

from collections import UserDict
from typing import Any

import pytest

from d365nb._columns import PageColumns

pa = pytest.importorskip("pyarrow")


def test_fields_are_read_by_arrow_in_one_pass_and_missing_keys_are_null() -> None:
    rows = [{"a": 1.5, "b": "x", "c": [1]}, {"a": None, "c": None}]
    page = PageColumns(rows, {"a": pa.float64(), "b": pa.large_string()})
    assert page.arrow("a").to_pylist() == [1.5, None]
    assert page.arrow("b").to_pylist() == ["x", None]
    assert page.arrow("b").type == pa.large_string()
    assert page.arrow("c") is None  # not asked for: Python values
    assert page.values("c") == [[1], None]
    assert page.values("b") == ["x", None]


def test_a_field_that_does_not_fit_is_left_to_the_python_path_alone() -> None:
    rows = [{"a": "not a number", "b": "x"}, {"a": 2.0, "b": "y"}]
    page = PageColumns(rows, {"a": pa.float64(), "b": pa.large_string()})
    assert page.arrow("a") is None
    assert page.values("a") == ["not a number", 2.0]
    assert page.arrow("b").to_pylist() == ["x", "y"]


def test_rows_that_are_not_dicts_are_read_as_python_values() -> None:
    rows: list[Any] = [UserDict({"a": 1.0}), UserDict({})]
    page = PageColumns(rows, {"a": pa.float64()})
    assert page.arrow("a") is None
    assert page.values("a") == [1.0, None]
