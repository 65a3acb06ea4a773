"""`PushOptions` and the frame checks of a push (`_options`): every bad value named."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from d365nb import ConfigError, PushOptions
from d365nb._options import check_push, frame_info, key_list


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"mode": "merge"}, "mode"),
        ({"on_error": "ignore"}, "on_error"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"batch_size": 1_000_000}, "batch_size"),
        ({"parallel": 0}, "parallel"),
        ({"parallel": "yes"}, "parallel"),
        ({"force": "no"}, "force"),
        ({"columns": "name"}, "columns"),
        ({"key": ""}, "key"),
        ({"key": []}, "key"),
    ],
)
def test_bad_options_name_their_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PushOptions(**options)
    assert caught.value.field == field


def test_good_options_and_keys() -> None:
    opts = PushOptions(key=["a", "b"], mode="delete", parallel=4, batch_size=10)
    assert opts.keys == ["a", "b"]
    assert key_list("k") == ["k"] and key_list(None) is None
    assert PushOptions(parallel=False).parallel is False


def test_check_push_needs_a_table_for_a_frame_not_read_from_dataverse() -> None:
    df = pd.DataFrame({"name": ["a"]})
    with pytest.raises(ConfigError, match="does not know its table") as caught:
        check_push(df, None, PushOptions())
    assert caught.value.field == "table"
    check_push(df, "accounts", PushOptions())  # named: fine
    df.attrs["d365nb"] = {"table": "account"}
    assert frame_info(df)["table"] == "account"
    check_push(df, None, PushOptions())


def test_check_push_names_missing_columns_keys_and_duplicate_labels() -> None:
    df = pd.DataFrame({"name": ["a", "b"], "accountnumber": ["1", "2"]})
    with pytest.raises(ConfigError, match="'nmae'") as caught:
        check_push(df, "accounts", PushOptions(columns=["nmae"]))
    assert "name" in (caught.value.hint or "")
    with pytest.raises(ConfigError, match="accountnumbr"):
        check_push(df, "accounts", PushOptions(key="accountnumbr"))
    with pytest.raises(ConfigError, match="duplicate labels"):
        check_push(df.set_axis([0, 0]), "accounts", PushOptions())
    with pytest.raises(ConfigError, match="DataFrame"):
        check_push([1, 2], "accounts", PushOptions())
