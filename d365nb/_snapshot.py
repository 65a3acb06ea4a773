"""What a read returned, kept to find what the user changed: only changed cells are pushed.

The reader records `snapshot(df)` in `df.attrs["d365nb"]["original"]`: the frame's own
column arrays, shared with it under pandas copy-on-write.  It costs nothing until the
user modifies a column; then pandas copies that column for the frame and the snapshot
keeps the old values: memory in proportion to the columns changed, never a fingerprint
that could miss a change.  Derived frames (a filter, a sort, `df.copy()`) share it
through `attrs` (copying `attrs` returns the same snapshot); a pickle or a parquet file
keeps only its name.

`changed_cells()` compares a frame with its snapshot, row by row (rows are matched by
their index label, the read's position, and checked by primary id) and column by column.
Pure code, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ReadSnapshot", "changed_cells", "snapshot", "snapshot_of"]


class ReadSnapshot(str):
    """The columns of a read as read (a `str` subclass, so `attrs` stay JSON: parquet)."""

    columns: dict[str, pd.Series]
    length: int

    def __new__(cls, frame: pd.DataFrame | None = None) -> ReadSnapshot:
        self = super().__new__(cls, "d365nb read snapshot (kept in memory only)")
        self.columns = {}
        self.length = 0
        if frame is not None:
            self.columns = {c: frame[c] for c in frame.columns if isinstance(c, str)}
            self.length = len(frame)
        return self

    def __deepcopy__(self, memo: Any) -> ReadSnapshot:
        return self  # pandas deep-copies attrs on every operation: share, never copy

    def __copy__(self) -> ReadSnapshot:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (ReadSnapshot, ())  # a pickle keeps no copy of the data


def snapshot(frame: pd.DataFrame) -> ReadSnapshot:
    """The snapshot of a frame just read (its columns, shared, not copied)."""
    return ReadSnapshot(frame)


def snapshot_of(info: Mapping[str, Any]) -> ReadSnapshot | None:
    """The snapshot a frame's `attrs["d365nb"]` holds, if any (with data)."""
    found = info.get("original")
    return found if isinstance(found, ReadSnapshot) and found.columns else None


def _same_buffer(a: pd.Series, b: pd.Series) -> bool:
    """True when `a` and `b` are the same array (nothing changed, O(1))."""
    if len(a) != len(b):
        return False
    if a.array is b.array:
        return True
    if isinstance(a.dtype, np.dtype) and isinstance(b.dtype, np.dtype) and a.dtype == b.dtype:
        x, y = a.to_numpy(copy=False), b.to_numpy(copy=False)
        return bool(
            x.__array_interface__["data"][0] == y.__array_interface__["data"][0]
            and x.strides == y.strides
        )
    return False


def _differs(now: pd.Series, was: pd.Series) -> np.ndarray:
    """Per row: does `now` hold another value than `was` (NA equals NA)?"""
    now = now.reset_index(drop=True)
    was = was.reset_index(drop=True)
    try:
        equal = now == was
    except (TypeError, ValueError):
        try:
            equal = now.astype(object) == was.astype(object)
        except (TypeError, ValueError):
            return np.ones(len(now), dtype=bool)
    same = equal.fillna(False).astype(bool).to_numpy() | (now.isna() & was.isna()).to_numpy()
    return np.asarray(~same, dtype=bool)


def changed_cells(
    frame: pd.DataFrame, original: ReadSnapshot, columns: Sequence[str], pk: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Which rows of `frame` are rows of the read (`matched`), and for each of `columns`
    which of those rows changed (`{column: bool mask}`; every row for a column the read
    did not have).  Rows not matched must be sent whole."""
    n = len(frame)
    matched = np.zeros(n, dtype=bool)
    if pk not in original.columns or pk not in frame.columns or not n:
        return matched, {}
    labels = frame.index
    if not pd.api.types.is_integer_dtype(labels.dtype):
        return matched, {}
    positions = labels.to_numpy(dtype=np.int64)
    inside = (positions >= 0) & (positions < original.length)
    where = np.where(inside, positions, 0)
    identity = np.arange(n) == positions if n == original.length else np.zeros(n, dtype=bool)
    straight = bool(identity.all())  # the read's rows, in the read's order
    was_pk = original.columns[pk]
    now_pk = frame[pk]
    if straight and _same_buffer(now_pk, was_pk):
        matched[:] = True
    else:
        matched = inside & ~_differs(now_pk, was_pk.take(where))
    out: dict[str, np.ndarray] = {}
    for name in columns:
        now = frame[name]
        was = original.columns.get(name)
        if was is None:
            out[name] = np.ones(n, dtype=bool)
        elif straight and _same_buffer(now, was):
            out[name] = np.zeros(n, dtype=bool)
        else:
            out[name] = _differs(now, was.take(where)) | ~matched
    return matched, out
