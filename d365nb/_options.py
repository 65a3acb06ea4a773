"""A push's options (`PushOptions`), checked once, and the frame checks made before any I/O.

`df.d365.push()`, `df.d365.apush()` and `Connection.push()`/`apush()` take the same
keywords; they become one `PushOptions` value, checked when it is made (`ConfigError`
naming the option and the fix).  `check_push()` checks the frame against them (index, key
and column names) before anything is fetched or sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import pandas as pd

from ._exceptions import ConfigError
from ._metadata import suggest
from ._multipart import MAX_BATCH_OPERATIONS
from ._types import OnError, PushMode

__all__ = [
    "MAX_BULK_ROWS",
    "MODES",
    "ON_ERROR",
    "PushOptions",
    "check_push",
    "frame_info",
    "key_list",
    "validate_push",
]

#: The most rows a caller may ask per request (`batch_size=`): a bulk action takes them
#: all, a `$batch` at most `MAX_BATCH_OPERATIONS` (larger sizes are cut to that).
MAX_BULK_ROWS = 10_000

MODES: tuple[PushMode, ...] = get_args(PushMode)
ON_ERROR: tuple[OnError, ...] = get_args(OnError)


def frame_info(df: pd.DataFrame) -> dict[str, Any]:
    """The frame's `attrs["d365nb"]` (what a read recorded), or an empty dict."""
    info = df.attrs.get("d365nb")
    return dict(info) if isinstance(info, Mapping) else {}


def key_list(key: str | Sequence[str] | None) -> list[str] | None:
    """`key=` as a list of names (`None` stays `None`)."""
    if key is None:
        return None
    return [key] if isinstance(key, str) else list(key)


@dataclass(frozen=True)
class PushOptions:
    """A push's options, checked when made: what `df.d365.push()` and `conn.push()` take.

    ```python
    options = d365nb.PushOptions(key="accountnumber", mode="upsert", batch_size=500)
    ```

    **Parameters:**

    * **key** - how rows are found: the primary id (`None`), an alternate key's column(s)
      or its name.
    * **mode** - `"upsert"`, `"create"`, `"update"` or `"delete"`.
    * **columns** - the columns to send (`None`: every writable column).
    * **batch_size** - rows per request, up to 10,000 (`None`: the default for each kind
      of request: bulk actions up to 5,000 rows, cut finer to use the service's allowed
      concurrency; 250 operations per `$batch`, which takes at most 1,000).
    * **parallel** - `True`/`None` adaptive, `False` one request at a time, or a maximum.
    * **on_error** - `"collect"` (failed rows in the report) or `"raise"` (`PushError`).
    * **dry_run** - plan only: return a `PushPlan`, write nothing.
    * **progress** - show a progress bar.
    * **force** - overwrite rows changed since the read (no `If-Match`).

    A bad value raises `ConfigError` naming the option and the fix.
    """

    key: str | Sequence[str] | None = None
    mode: PushMode = "upsert"
    columns: Sequence[str] | None = None
    batch_size: int | None = None
    parallel: bool | int | None = None
    on_error: OnError = "collect"
    dry_run: bool = False
    progress: bool = True
    force: bool = False

    def __post_init__(self) -> None:
        mode, on_error, batch_size = self.mode, self.on_error, self.batch_size
        if mode not in MODES:
            raise ConfigError(
                f"mode={mode!r} is not a push mode.",
                field="mode",
                hint=f"Use one of {', '.join(repr(m) for m in MODES)}.",
            )
        if on_error not in ON_ERROR:
            raise ConfigError(
                f"on_error={on_error!r} is not valid.",
                field="on_error",
                hint="Use 'collect' (failed rows in the report) or 'raise' (PushError).",
            )
        if batch_size is not None and (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or not 1 <= batch_size <= MAX_BULK_ROWS
        ):
            raise ConfigError(
                f"batch_size={batch_size!r} is out of range.",
                field="batch_size",
                hint=(
                    f"Use 1 to {MAX_BULK_ROWS:,} rows per request (a $batch takes at most "
                    f"{MAX_BATCH_OPERATIONS:,}), or None for the default."
                ),
            )
        parallel = self.parallel
        if parallel is not None and not isinstance(parallel, bool):
            if not isinstance(parallel, int) or parallel < 1:
                raise ConfigError(
                    f"parallel={parallel!r} is not valid.",
                    field="parallel",
                    hint="Use True (adaptive), False (one request at a time) or a number >= 1.",
                )
        if not isinstance(self.force, bool):
            raise ConfigError(f"force={self.force!r} must be True or False.", field="force")
        if isinstance(self.columns, str):
            raise ConfigError(
                f"columns={self.columns!r} must be a list of column names.",
                field="columns",
                hint=f"Use columns=[{self.columns!r}].",
            )
        keys = key_list(self.key)
        if keys is not None and (not keys or not all(isinstance(k, str) and k for k in keys)):
            raise ConfigError(
                f"key={self.key!r} is not a column name or a list of them.",
                field="key",
                hint="Pass a column (key='accountnumber') or several (key=['a', 'b']).",
            )

    @property
    def keys(self) -> list[str] | None:
        """`key` as a list of names (`None` stays `None`)."""
        return key_list(self.key)


def check_push(df: Any, table: str | None, options: PushOptions) -> None:
    """Check a push's frame against its options without any I/O; raise `ConfigError`."""
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"push() needs a pandas DataFrame, not {type(df).__name__}.", field="df")
    if table is not None and (not isinstance(table, str) or not table.strip()):
        raise ConfigError(
            f"table={table!r} is not a table name.",
            field="table",
            hint="Pass the logical name (account) or entity set name (accounts).",
        )
    info = frame_info(df)
    if table is None and not info.get("table"):
        if "_etag" in df.columns:  # read from Dataverse, then merged, concatenated, joined
            raise ConfigError(
                "This frame has the _etag column of a read but no longer knows its table "
                "(merge, concat and join drop df.attrs), so push() cannot tell where its "
                "rows go.",
                field="table",
                hint="Name the table, e.g. df.d365.push('accounts', ...): the _etag column "
                "still guards each row against changes made since the read.",
            )
        raise ConfigError(
            "This frame was not read from Dataverse, so push() does not know its table.",
            field="table",
            hint="Pass the table, e.g. df.d365.push('accounts').",
        )
    names = [str(c) for c in df.columns]
    for column in options.columns or ():
        if column not in df.columns:
            raise ConfigError(
                f"columns= names {column!r}, which is not a column of the frame.",
                field="columns",
                hint=suggest(str(column), names) or "Check the spelling.",
            )
    if options.keys is not None and options.mode != "create":
        for k in options.keys:
            if k not in df.columns and not _is_key_name(k):
                raise ConfigError(
                    f"key={k!r} is not a column of the frame.",
                    field="key",
                    hint=suggest(k, names)
                    or "Add the key column, or pass the column that identifies rows.",
                )
    if not df.index.is_unique:
        dupes = df.index[df.index.duplicated()].unique()[:5].tolist()
        raise ConfigError(
            f"The frame's index has duplicate labels ({', '.join(map(repr, dupes))}); the "
            "push report names rows by label.",
            field="df",
            hint="Use df.reset_index(drop=True) before pushing.",
        )


def validate_push(df: Any, table: str | None = None, **options: Any) -> PushOptions:
    """`PushOptions(**options)`, checked against the frame (`check_push`); no I/O."""
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"push() needs a pandas DataFrame, not {type(df).__name__}.", field="df")
    checked = PushOptions(**options)
    check_push(df, table, checked)
    return checked


def _is_key_name(name: str) -> bool:
    """True for names that may be an alternate key's name (checked against metadata later)."""
    return "key" in name.lower()
