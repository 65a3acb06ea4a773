"""Restarting a read from the partitions `ddf.to_parquet(folder)` already wrote.

`read(..., checkpoint=folder)` keeps the read's plan (its partitions' filters) in
`folder/_d365nb_plan.json` the first time, and reuses it when called again, so partition
`i` is the same range in every run.  A partition whose `part.<i>.parquet` (Dask's default
file name) is already in the folder is taken from that file; only the others are read
from the service.  So a failed `ddf.to_parquet(folder)` job, run again with the same
arguments, reads only what it had not written yet.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._exceptions import ConfigError

__all__ = ["PLAN_FILE", "load_plan", "part_file", "restore", "save_plan"]

PLAN_FILE = "_d365nb_plan.json"


def _query(table: str, select: Sequence[str] | None, filter: str | None) -> dict[str, Any]:  # noqa: A002
    return {"table": table, "select": list(select) if select else None, "filter": filter}


def load_plan(
    folder: str | os.PathLike[str],
    *,
    table: str,
    select: Sequence[str] | None,
    filter: str | None,  # noqa: A002
) -> list[str | None] | None:
    """The partitions' filters saved in `folder` for this query, or None (no plan yet)."""
    path = Path(folder) / PLAN_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved.get("query") != _query(table, select, filter):
        raise ConfigError(
            f"{path} holds the plan of another read ({saved.get('query')}).",
            field="checkpoint",
            hint="Use a new folder for another table, select or filter, or delete the old one.",
        )
    filters: list[str | None] = list(saved["filters"])
    return filters


def save_plan(
    folder: str | os.PathLike[str],
    filters: Sequence[str | None],
    *,
    table: str,
    select: Sequence[str] | None,
    filter: str | None,  # noqa: A002
) -> None:
    """Keep the partitions' filters in `folder` (created if needed)."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    body = {"query": _query(table, select, filter), "filters": list(filters)}
    (path / PLAN_FILE).write_text(json.dumps(body, indent=1), encoding="utf-8")


def part_file(folder: str | os.PathLike[str], partition: int) -> Path:
    """Where `ddf.to_parquet(folder)` writes partition `partition`."""
    return Path(folder) / f"part.{partition}.parquet"


def restore(path: Path, meta: pd.DataFrame, attrs: Mapping[str, Any]) -> pd.DataFrame | None:
    """A partition written by `to_parquet`, with `meta`'s columns and dtypes; None if the
    file cannot be read (a write cut short): the partition is then read again."""
    try:
        frame: pd.DataFrame = pd.read_parquet(path)
    except Exception:  # a half-written file: read the partition from the service instead
        return None
    if list(frame.columns) != list(meta.columns):
        return None
    frame = frame.reset_index(drop=True)
    for column, dtype in meta.dtypes.items():
        if pd.api.types.is_object_dtype(dtype):
            # Parquet gives lists (multi-select choices) back as arrays.
            frame[column] = [list(v) if isinstance(v, np.ndarray) else v for v in frame[column]]
        elif frame[column].dtype != dtype:
            frame[column] = frame[column].astype(dtype)
    frame.attrs["d365nb"] = dict(attrs)
    return frame
