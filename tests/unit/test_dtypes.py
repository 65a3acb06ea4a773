"""The type maps, choices both ways and `$select` names (`d365nb._dtypes`)."""

from __future__ import annotations

import pandas as pd
import pytest

from d365nb._dtypes import ATTRIBUTE_DTYPES, EDM_DTYPES, choice_labels, choice_values, wire_select
from d365nb._exceptions import InvalidFrameError
from tests._support.frames import TABLE, A


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
