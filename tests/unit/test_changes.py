"""`Changes.apply()`: merging a delta into a frame by primary key (no network)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from d365nb._changes import Changes


def _frame(ids: list[str], names: list[str], codes: list[str], index: list[Any]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "leadid": pd.array(ids, dtype="string"),
            "lastname": pd.array(names, dtype="string"),
            "industrycode": pd.Categorical(codes),
            "_etag": pd.array([f'W/"{i}"' for i in range(len(ids))], dtype="string"),
        },
        index=index,
    )


def test_apply_replaces_adds_and_removes_by_key_keeping_labels() -> None:
    df = _frame(
        ["a1", "b2", "c3"], ["A", "B", "C"], ["Retail", "Retail", "Banking"], ["x", "y", "z"]
    )
    df.attrs["d365nb"] = {"table": "lead", "key": "leadid", "delta_link": "old"}
    upserted = _frame(["B2", "d4"], ["B!", "D"], ["Consulting", "Retail"], ["0", "1"])
    ch = Changes(table="lead", key="leadid", upserted=upserted, deleted=("c3",), delta_link="new")
    out = ch.apply(df)
    assert list(out.index[:2]) == ["x", "y"]
    assert out["lastname"].tolist() == ["A", "B!", "D"]
    assert out["industrycode"].tolist() == ["Retail", "Consulting", "Retail"]
    assert out.dtypes.to_dict() == {
        "leadid": df["leadid"].dtype,
        "lastname": df["lastname"].dtype,
        "industrycode": out["industrycode"].dtype,
        "_etag": df["_etag"].dtype,
    }
    assert isinstance(out["industrycode"].dtype, pd.CategoricalDtype)
    assert out.attrs["d365nb"]["delta_link"] == "new" and df.attrs["d365nb"]["delta_link"] == "old"
    assert len(df) == 3 and df.loc["y", "lastname"] == "B"  # the input is not changed


def test_apply_on_an_integer_index_appends_after_the_largest_label() -> None:
    df = _frame(["a1", "b2"], ["A", "B"], ["Retail", "Retail"], [0, 5])
    upserted = _frame(["c3"], ["C"], ["Retail"], [0])
    out = Changes(table="lead", key="leadid", upserted=upserted, deleted=(), delta_link="n").apply(
        df
    )
    assert list(out.index) == [0, 5, 6]
    empty = Changes(
        table="lead",
        key="leadid",
        upserted=upserted.iloc[0:0],
        deleted=("a1", "b2"),
        delta_link="n",
    ).apply(df)
    assert len(empty) == 0 and list(empty.columns) == list(df.columns)
