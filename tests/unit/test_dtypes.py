"""The type maps, phase 1 of reading, choices both ways and `$select` names (`d365nb._dtypes`)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given, settings, strategies as st

from d365nb._columns import PageColumns
from d365nb._dtypes import (
    ATTRIBUTE_DTYPES,
    EDM_DTYPES,
    arrow_chunk,
    arrow_wire_type,
    choice_labels,
    choice_values,
    multichoice_lists,
    typed_chunk,
    wire_select,
)
from d365nb._exceptions import InvalidFrameError
from tests._support.frames import TABLE, A
from tests._support.raw_values import JUNK, RAW_VALUES, STAMPS


def test_type_maps_are_data_and_cover_every_read_kind() -> None:
    for type_ in ("Integer", "BigInt", "Boolean", "DateTime", "DateOnly", "Money", "Decimal",
                  "Double", "String", "Memo", "Uniqueidentifier", "Picklist", "State", "Status",
                  "MultiSelectPicklist", "Lookup", "Customer", "Owner", "EntityName"):  # fmt: skip
        assert type_ in ATTRIBUTE_DTYPES
    assert EDM_DTYPES["Edm.DateTimeOffset"] == "datetime64[us, UTC]"
    assert EDM_DTYPES["Edm.Int32"] == "Int32"


def test_repeated_labels_are_made_unique() -> None:
    attribute = A("x", "Picklist", options={1: "Same", 2: "Same", 3: "Other"})
    assert choice_labels(attribute) == {1: "Same (1)", 2: "Same (2)", 3: "Other"}


def test_choice_values_raises_for_unknown_labels() -> None:
    series = pd.Series(["Accounting", "Broadcastin"], name="industrycode")
    with pytest.raises(InvalidFrameError, match="Did you mean 'Broadcasting'"):
        choice_values(series, TABLE.attributes["industrycode"])


def test_wire_select() -> None:
    assert wire_select(TABLE, ["name", "parentaccountid", "Name", "_ownerid_value"]) == [
        "name",
        "_parentaccountid_value",
        "_ownerid_value",
    ]


# -- the Arrow path of phase 1 gives what the Python path gives ---------------------------


def _assert_same_chunk(fast: Any, reference: Any) -> None:
    if isinstance(reference, tuple):
        assert isinstance(fast, tuple) and len(fast) == len(reference)
        for a, b in zip(fast, reference, strict=True):
            _assert_same_chunk(a, b)
    elif isinstance(reference, np.ndarray):
        assert isinstance(fast, np.ndarray) and fast.dtype == reference.dtype
        if reference.dtype.kind == "M":
            fast, reference = fast.view(np.int64), reference.view(np.int64)
        np.testing.assert_array_equal(fast, reference)
    else:
        assert type(fast) is type(reference)
        pd.testing.assert_extension_array_equal(fast, reference)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), kind=st.sampled_from(sorted(RAW_VALUES)))
def test_arrow_chunks_equal_the_python_path(data: st.DataObject, kind: str) -> None:
    pytest.importorskip("pyarrow")
    odd = st.one_of(JUNK, STAMPS)
    values = st.one_of(RAW_VALUES[kind], odd) if data.draw(st.booleans()) else RAW_VALUES[kind]
    raw = data.draw(st.lists(values, max_size=6))
    page = PageColumns([{"x": v} for v in raw], {"x": arrow_wire_type(kind, text=True)})
    array = page.arrow("x")
    fast = None if array is None else arrow_chunk(kind, array)
    if fast is None:
        event(f"{kind}: python path")
        return  # the builder then converts `raw` with typed_chunk(), the reference
    event(f"{kind}: arrow path")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas may warn while parsing odd dates
        reference = typed_chunk(kind, raw, None)
    _assert_same_chunk(fast, reference)


def test_arrow_reads_the_services_date_forms() -> None:
    pytest.importorskip("pyarrow")
    raw = ["2023-04-07T21:59:01Z", None, "2024-02-29T09:30:00.123456Z", "2023-04-07T21:59:01+02:00"]
    page = PageColumns([{"x": v} for v in raw], {"x": arrow_wire_type("datetime", text=True)})
    fast = arrow_chunk("datetime", page.arrow("x"))
    assert fast is not None  # not left to pandas
    _assert_same_chunk(fast, typed_chunk("datetime", raw, None))


def _multichoice_reference(values: list[Any], labels: dict[int, str]) -> list[Any]:
    out: list[Any] = []
    for raw in values:
        if raw is None:
            out.append(None)
        elif not isinstance(raw, str):
            out.append([str(raw)])
        else:
            parts = [p for p in raw.split(",") if p.strip()]
            out.append([labels.get(int(p), p) if p.lstrip("-").isdigit() else p for p in parts])
    return out


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.lists(st.sampled_from(["1", "2", "3", "4", " ", "x"]), max_size=3).map(",".join),
            st.integers(0, 3),
        ),
        max_size=12,
    )
)
def test_multichoice_lists_give_each_row_its_own_list(values: list[Any]) -> None:
    attribute = TABLE.attributes["new_tags"]
    result = multichoice_lists(np.array(values, dtype=object), attribute)
    assert result.tolist() == _multichoice_reference(values, choice_labels(attribute))
    lists = [v for v in result if v is not None]
    assert len({id(v) for v in lists}) == len(lists)
