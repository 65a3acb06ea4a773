"""`df.d365`: the pandas accessor that writes a DataFrame back to Dataverse.

Importing this module registers the accessor (`pd.api.extensions.register_dataframe_accessor`);
`d365nb/__init__.py` imports it once, on purpose.  pandas builds a new accessor object on
every attribute access, so it holds no state: it checks the arguments (before any I/O),
finds the connection (`resolve_connection()`) and delegates to the engine, `_write.apush()`.

```python
df = conn.read("accounts", select=["name", "revenue"])
df["revenue"] *= 1.1
report = df.d365.push()                 # same table, key and connection as the read
report = df.d365.push("contacts", key=["firstname", "emailaddress1"], conn=conn)
plan = df.d365.push(dry_run=True)       # what would be sent; nothing is written
```
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from . import _setup
from ._changes import OnExpired
from ._client import Connection, connection_by_id
from ._exceptions import ConfigError
from ._options import PushOptions, check_push, frame_info
from ._report import PushPlan, PushReport
from ._sync import blocking
from ._types import OnError, PushMode
from ._write import apush as _apush

__all__ = ["D365Accessor", "resolve_connection"]


def resolve_connection(df: pd.DataFrame, conn: Connection | None = None) -> Connection:
    """`conn`, else the connection the frame was read through, else `d365nb.connection()`."""
    if conn is not None:
        return conn
    found = connection_by_id(frame_info(df).get("connection"))
    if found is not None and not found._closed:
        return found
    try:  # d365nb.connection(): the one signed in through the setup panel
        current = _setup.connection()
    except Exception as exc:  # not signed in through the panel
        raise ConfigError(
            "No connection to push through: this frame was not read through an open "
            "connection and nobody signed in with d365nb.setup().",
            field="conn",
            hint="Pass conn=, e.g. df.d365.push('accounts', conn=conn).",
        ) from exc
    return current


@pd.api.extensions.register_dataframe_accessor("d365")
class D365Accessor:
    """`df.d365.push(...)` and `await df.d365.apush(...)`: write the frame's rows to a table."""

    def __init__(self, pandas_obj: pd.DataFrame) -> None:
        if not isinstance(pandas_obj, pd.DataFrame):  # pragma: no cover - pandas only passes frames
            raise AttributeError("df.d365 is only available on pandas DataFrames.")
        self._obj = pandas_obj

    async def apush(
        self,
        table: str | None = None,
        *,
        key: str | Sequence[str] | None = None,
        mode: PushMode = "upsert",
        conn: Connection | None = None,
        columns: Sequence[str] | None = None,
        batch_size: int | None = None,
        parallel: bool | int | None = None,
        on_error: OnError = "collect",
        dry_run: bool = False,
        progress: bool = True,
        force: bool = False,
    ) -> PushReport | PushPlan:
        """Write the frame's rows to a Dataverse table and report on every row.

        ```python
        report = df.d365.push()                       # back where it was read from
        report = df.d365.push("accounts", key="accountnumber", mode="upsert")
        report.failed                                 # rows to fix and push again
        ```

        **Parameters:**

        * **table** - logical (`account`) or entity set name (`accounts`); default: the
          table the frame was read from.
        * **key** - how rows are found: the primary id (default), an alternate key's
          column(s) (`"accountnumber"`, `["firstname", "emailaddress1"]`) or its name.
        * **mode** - `"upsert"` (update or create), `"create"` (never overwrites),
          `"update"` (never creates) or `"delete"`.
        * **conn** - the connection; default: the one the frame was read through, else
          the one signed in with `d365nb.setup()`.
        * **columns** - the columns to send (default: every writable column; for a frame
          read with `conn.read()`, only the cells changed since the read).  Missing
          values (NaN, NA, NaT) of sent columns clear the value on the service.
          Lookups bind from id columns (`parentaccountid`) or from a related table's
          alternate key in columns named `<lookup>.<key column>`
          (`parentaccountid.accountnumber`; `<lookup>.<table>.<column>` for lookups that
          can point to several tables).
        * **batch_size** - rows per request, up to 10,000 (default: a bulk action takes up
          to 5,000 rows, cut finer to fill the service's allowed concurrency; a `$batch`
          250 operations, at most 1,000).
        * **parallel** - `True`/`None` adaptive (grows while the service answers well,
          shrinks on 429), `False` one request at a time, or a maximum.
        * **on_error** - `"collect"` reports failed rows; `"raise"` raises `PushError`
          (carrying the report) when any row failed or conflicted.
        * **dry_run** - return the `PushPlan` (operations, requests, a sample payload)
          without writing.
        * **progress** - show a progress bar.
        * **force** - overwrite rows changed on the service since the read (no `If-Match`).
          Without it the `_etag` column guards each row, wherever the frame came from.

        Returns a `PushReport` (or a `PushPlan` for a dry run); `push()` is the same without
        `await`.

        **Exactly once, per push attempt.**  Rows created without an id get one derived
        from the push attempt and the row (`report.frame` holds it).  A request sent again
        after a lost answer, `report.failed` or `report.remaining` pushed again, or the
        same frame pushed again after an interrupted push (Ctrl-C, the Stop button, a
        killed kernel) continue that attempt: nothing is created twice.  A push that
        finished is done: pushing identical new rows again creates them again.  Ctrl-C
        raises `PushError` with the report so far (rows in flight: code `interrupted`);
        `err.report.remaining.d365.push()` pushes the rest.
        """
        options = PushOptions(
            key=key,
            mode=mode,
            columns=columns,
            batch_size=batch_size,
            parallel=parallel,
            on_error=on_error,
            dry_run=dry_run,
            progress=progress,
            force=force,
        )
        check_push(self._obj, table, options)
        connection = resolve_connection(self._obj, conn)
        return await _apush(connection, connection.catalog, self._obj, table, options)

    push = blocking(apush)

    @property
    def delta_link(self) -> str | None:
        """The delta link of a read with `track_changes=True` (None otherwise)."""
        link = frame_info(self._obj).get("delta_link")
        return str(link) if link else None

    async def arefresh(
        self, *, conn: Connection | None = None, on_expired: OnExpired = "raise"
    ) -> pd.DataFrame:
        """A new frame with the table's changes since the read (only the changes travel).

        Changed and new rows are replaced/added by primary key, deleted rows removed,
        `_etag` updated and the delta link moved on; the frame itself is not changed.

        **Parameters:**

        * **conn** - the connection; default: the one the frame was read through.
        * **on_expired** - `"raise"` (`DeltaExpiredError`) or `"reread"` (a full read).
        """
        connection = resolve_connection(self._obj, conn)
        found = await connection.achanges(self._obj, on_expired=on_expired)
        return found.apply(self._obj)

    refresh = blocking(arefresh)
