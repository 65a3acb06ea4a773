"""`_snapshot`: the read's columns kept to find changed cells, without copying them."""

from __future__ import annotations

import copy
import json
import pickle

import pandas as pd

from d365nb._snapshot import ReadSnapshot, changed_cells, snapshot, snapshot_of


def _read() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "accountid": pd.array(["a", "b", "c"], dtype="string"),
            "name": pd.array(["x", "y", None], dtype="string"),
            "revenue": [1.0, float("nan"), 3.0],
            "tags": [["p"], [], None],
        }
    )
    frame.attrs["d365nb"] = {"table": "account", "original": snapshot(frame)}
    return frame


def test_the_snapshot_shares_the_columns_and_survives_copies_of_attrs() -> None:
    df = _read()
    original = snapshot_of(df.attrs["d365nb"])
    assert original is not None and original.columns["name"].array is df["name"].array
    derived = df[df["revenue"] > 0]
    assert snapshot_of(derived.attrs["d365nb"]) is original  # shared, not deep-copied
    assert copy.deepcopy(original) is original
    assert json.loads(json.dumps(df.attrs))["d365nb"]["original"]  # attrs stay JSON
    unpickled = pickle.loads(pickle.dumps(df))
    assert snapshot_of(unpickled.attrs["d365nb"]) is None  # a pickle keeps no data


def test_changed_cells_finds_every_change_and_nothing_else() -> None:
    df = _read()
    original = snapshot_of(df.attrs["d365nb"])
    assert isinstance(original, ReadSnapshot)
    df.loc[1, "revenue"] = 5.0  # NaN -> 5
    df.loc[2, "name"] = "z"  # NA -> z
    df.loc[0, "tags"] = ["p", "q"]
    mine = df.sort_values("accountid", ascending=False)
    matched, masks = changed_cells(mine, original, ["name", "revenue", "tags"], "accountid")
    assert matched.all()
    assert masks["revenue"].tolist() == [False, True, False]  # rows c, b, a
    assert masks["name"].tolist() == [True, False, False]
    assert masks["tags"].tolist() == [False, False, True]
    other = mine.assign(accountid=["c", "x", "a"])  # a row that is not the read's
    matched, masks = changed_cells(other, original, ["name"], "accountid")
    assert matched.tolist() == [True, False, True] and masks["name"].tolist()[1]
