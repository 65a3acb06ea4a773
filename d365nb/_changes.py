"""Change tracking on the client: `Changes`, reading a delta link, applying it to a frame.

A read with `track_changes=True` keeps the service's `@odata.deltaLink` in
`df.attrs["d365nb"]["delta_link"]` (`df.d365.delta_link`) together with the read's typing
options.  `conn.changes(...)` GETs that link: new and changed rows come back as a typed
frame (the read's columns and dtypes), deletions as ids, and a fresh delta link for next
time.  `Changes.apply(df)` (what `df.d365.refresh()` does) merges them by primary key.

```python
df = conn.read("accounts", select=["name", "revenue"], track_changes=True)
...                                        # later, after others edited accounts
df = df.d365.refresh()                     # only the changes travel
ch = conn.changes(df.d365.delta_link)      # or look at them first
ch.upserted, ch.deleted, ch.delta_link
```
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd

from ._catalog import Reader
from ._exceptions import ConfigError, D365Error, ODataError, PartialReadError
from ._frames import FrameBuilder
from ._metadata import Table
from ._options import frame_info
from ._transport import check_same_origin

__all__ = [
    "TRACK_CHANGES",
    "Changes",
    "DeltaExpiredError",
    "OnExpired",
    "check_tracked_read",
    "fetch_changes",
    "remember_read",
    "untracked_error",
]

TRACK_CHANGES = "odata.track-changes"
OnExpired = Literal["raise", "reread"]
_STAMP = "%m/%d/%Y %H:%M:%S"
_ANNOTATIONS = (
    'odata.include-annotations="OData.Community.Display.V1.FormattedValue,'
    "Microsoft.Dynamics.CRM.lookuplogicalname,"
    'Microsoft.Dynamics.CRM.associatednavigationproperty"'
)


class DeltaExpiredError(ODataError):
    """The service refused a delta link: its token expired (or is not valid).

    Dataverse keeps changes for `Organization.ExpireChangeTrackingInDays` (7 by default);
    after that only a full read with `track_changes=True` gives a new delta link.
    """


@dataclass(frozen=True)
class Changes:
    """What changed in a table between two delta tokens.

    * **table** - the table's logical name.
    * **upserted** - new and changed rows, typed like the read (same columns and dtypes).
    * **deleted** - primary ids of the rows deleted since.
    * **delta_link** - the link to ask for the next changes with.
    * **since** / **until** - when the old and the new token were issued (UTC; `since` is
      None for a full read).
    * **reread** - True when this is a full read (the delta link had expired and
      `on_expired="reread"`): `upserted` then holds every row and `apply()` replaces.
    """

    table: str
    key: str
    upserted: pd.DataFrame
    deleted: tuple[str, ...]
    delta_link: str
    since: datetime | None = None
    until: datetime | None = None
    reread: bool = False
    options: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        return (
            f"<Changes {self.table}: +~{len(self.upserted):,} -{len(self.deleted):,} rows"
            + (" (full re-read)" if self.reread else "")
            + (f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else "")
            + ">"
        )

    def _repr_html_(self) -> str:
        return f"<div class='d365nb-changes'>{html.escape(repr(self))}</div>"

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """A new frame: `df` with these changes merged in by primary key.

        Changed rows are replaced where they are (their index label kept), new rows are
        added at the end, deleted rows removed; `df` itself is not changed.  The result
        carries the new delta link.
        """
        key = self.key
        if key not in df.columns:
            raise ConfigError(
                f"The frame has no {key!r} column to match changed rows by.",
                field="df",
                hint="Keep the primary id column of a tracked read, or read the table again.",
            )
        if self.reread:
            out = self.upserted.copy()
        else:
            out = _merge(df, self.upserted, key, set(self.deleted))
        out.attrs = {k: v for k, v in df.attrs.items() if k != "d365"}
        info = dict(frame_info(df))
        info["delta_link"] = self.delta_link
        out.attrs["d365nb"] = info
        result: pd.DataFrame = out
        return result


def _merge(df: pd.DataFrame, upserted: pd.DataFrame, key: str, deleted: set[str]) -> pd.DataFrame:
    ids = df[key].astype("string").str.lower()
    changed = upserted.copy()
    changed.index = pd.Index(changed[key].astype("string").str.lower())
    changed = changed[~changed.index.duplicated(keep="last")]
    gone = ids.isin(deleted)
    kept = df.loc[~gone]
    kept_ids = ids.loc[~gone]
    hit = kept_ids.isin(changed.index)
    shared = [c for c in df.columns if c in changed.columns]
    replaced = kept.loc[hit].copy()
    if len(replaced):
        values = changed.loc[kept_ids.loc[hit].to_numpy()]
        values.index = replaced.index
        for col in shared:
            replaced[col] = values[col]
    # New rows: the changed ids not matched above (isin over the few hit ids, not over
    # every id of the frame: an Arrow string isin walks its argument in Python).
    fresh = changed.loc[~changed.index.isin(kept_ids.loc[hit].to_numpy())]
    fresh = fresh[[c for c in df.columns if c in fresh.columns]]
    fresh.index = _new_labels(df.index, len(fresh))
    parts = [p for p in (kept.loc[~hit], replaced, fresh) if len(p)]
    if not parts:
        empty: pd.DataFrame = df.iloc[0:0].copy()
        return empty
    merged: pd.DataFrame = pd.concat(parts) if len(parts) > 1 else parts[0].copy()
    merged = merged.reindex(columns=df.columns)
    order = [label for label in kept.index] + list(fresh.index)
    merged = merged.loc[order]
    for col in df.columns:
        if merged[col].dtype != df[col].dtype:
            merged[col] = _restore_dtype(merged[col], df[col].dtype)
    return merged


def _restore_dtype(values: pd.Series, dtype: Any) -> pd.Series:
    """`values` back in the read's dtype (concat widens e.g. categories and ints)."""
    if isinstance(dtype, pd.CategoricalDtype):
        cats = list(dtype.categories) + [
            c for c in pd.unique(values.dropna()) if c not in set(dtype.categories)
        ]
        return values.astype(pd.CategoricalDtype(cats, ordered=dtype.ordered))
    try:
        return values.astype(dtype)
    except (TypeError, ValueError):
        return values


def _new_labels(index: pd.Index, n: int) -> pd.Index:
    """Labels for `n` appended rows: the next integers for an integer index."""
    start = 0
    if n and len(index) and pd.api.types.is_integer_dtype(index.dtype):
        start = int(index.max()) + 1
    labels: pd.Index = pd.RangeIndex(start, start + n)
    return labels


# -- reading ------------------------------------------------------------------------------


def check_tracked_read(
    *,
    filter: str | None,  # noqa: A002 - the read's keyword
    orderby: Any,
    top: int | None,
    expand: Any,
) -> None:
    """Refuse read options the service does not allow with change tracking."""
    for name, value in (("filter", filter), ("orderby", orderby), ("top", top), ("expand", expand)):
        if value is not None and value != [] and value != "":
            raise ConfigError(
                f"read(track_changes=True) cannot take {name}=: Dataverse tracks changes "
                "of whole tables only ($filter, $orderby, $top and $expand are refused).",
                field=name,
                hint="Drop it from the read and filter the frame with pandas instead.",
            )


def remember_read(
    df: pd.DataFrame,
    *,
    select: Sequence[str] | None,
    formatted: bool,
    dtypes: Mapping[str, Any] | None,
    decimal: bool,
) -> pd.DataFrame:
    """Keep a tracked read's typing options beside its delta link (for `changes()`)."""
    info = df.attrs.setdefault("d365nb", {})
    info["tracking"] = {
        "select": list(select) if select else None,
        "formatted": formatted,
        "dtypes": dict(dtypes) if dtypes else None,
        "decimal": decimal,
    }
    return df


async def untracked_error(conn: Reader, table: Table, exc: D365Error) -> D365Error:
    """The error to raise when a tracked read failed: names the table setting if it is off.

    Anything but the service's 400 refusal (as it is, or wrapped in `PartialReadError`
    before the first row) comes back as `exc`.
    """
    refusal = exc if isinstance(exc, ODataError) else exc.__cause__
    if not isinstance(refusal, ODataError) or refusal.status != 400:
        return exc
    if isinstance(exc, PartialReadError) and len(exc.partial):
        return exc
    try:
        response = await conn.arequest(
            "GET",
            f"EntityDefinitions(LogicalName='{table.logical_name}')",
            params={"$select": "ChangeTrackingEnabled"},
        )
        enabled = response.json().get("ChangeTrackingEnabled")
    except D365Error:
        return exc
    if enabled is False:
        return ConfigError(
            f"Table {table.logical_name!r} does not track changes (its "
            "ChangeTrackingEnabled setting is off), so it has no delta link.",
            field="track_changes",
            hint="Turn on 'Track changes' in the table's properties (make.powerapps.com, "
            "Tables > the table > Properties > Advanced options), or read without "
            "track_changes=True.",
        )
    return exc


def _stamp(link: str) -> datetime | None:
    token = parse_qs(urlsplit(link).query).get("$deltatoken")
    if not token:
        return None
    _, _, text = unquote(token[0]).partition("!")
    try:
        return datetime.strptime(text, _STAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _entity_set(link: str, api_root: str) -> str:
    path = urlsplit(link).path
    root = urlsplit(api_root).path
    return path[len(root) :] if path.startswith(root) else path.rsplit("/", 1)[-1]


def _select_from(link: str, table: Table) -> list[str] | None:
    select = parse_qs(urlsplit(link).query).get("$select")
    if not select:
        return None
    names = []
    for prop in select[0].split(","):
        found = table.find_column(prop.strip())
        if found is not None and found.logical_name != table.primary_id:
            names.append(found.logical_name)
    return names or None


async def fetch_changes(
    conn: Reader,
    source: str | pd.DataFrame,
    *,
    on_expired: OnExpired = "raise",
    progress: bool = False,
) -> Changes:
    """The changes since a delta link, or (for a table name) a first tracked read."""
    if on_expired not in ("raise", "reread"):
        raise ConfigError(
            f"on_expired={on_expired!r} is not an option.",
            field="on_expired",
            hint='Use "raise" or "reread".',
        )
    options: dict[str, Any] = {}
    if isinstance(source, pd.DataFrame):
        info = frame_info(source)
        link = info.get("delta_link")
        if not link:
            raise ConfigError(
                "This frame has no delta link: it was not read with track_changes=True.",
                field="df",
                hint="Read it with conn.read(table, ..., track_changes=True) first.",
            )
        options = dict(info.get("tracking") or {})
        source = str(link)
    if "$deltatoken=" not in source:
        table = await conn.catalog.table(source)
        df = await conn.aread(table.entity_set_name, track_changes=True, progress=progress)
        return _full(table, df, since=None)
    link = source
    check_same_origin(link, conn.api_root)
    table = await conn.catalog.table(_entity_set(link, conn.api_root))
    if not options:
        options = {"select": _select_from(link, table)}
    select = options.get("select")
    builder = FrameBuilder(
        table,
        select=select,
        formatted=bool(options.get("formatted")),
        dtypes=options.get("dtypes"),
        decimal=bool(options.get("decimal")),
    )
    lookups = any(
        a.is_lookup
        for a in (
            (table.resolve_column(c) for c in select) if select else table.attributes.values()
        )
    )
    headers = {"Prefer": _ANNOTATIONS} if lookups or options.get("formatted") else {}
    deleted: list[str] = []
    new_link: str | None = None
    url: str | None = link
    while url is not None:
        check_same_origin(url, conn.api_root)
        try:
            response = await conn.arequest("GET", url, headers=headers)
        except ODataError as exc:
            if exc.status in (401, 403, 429) or exc.status >= 500:
                raise
            if on_expired == "reread":
                df = await conn.aread(
                    table.entity_set_name,
                    select=select,
                    formatted=bool(options.get("formatted")),
                    dtypes=options.get("dtypes"),
                    decimal=bool(options.get("decimal")),
                    track_changes=True,
                    progress=progress,
                )
                return _full(table, df, since=_stamp(link))
            raise DeltaExpiredError(
                exc.service_message,
                status=exc.status,
                code=exc.code,
                request_id=exc.request_id,
                hint=f"The delta link of {table.entity_set_name} has expired or is not valid "
                "(Dataverse keeps changes for 7 days by default): read the table again with "
                "track_changes=True, or pass on_expired='reread'.",
            ) from exc
        body = response.json()
        rows = []
        for row in body.get("value", []):
            if row.get("reason") == "deleted" or str(row.get("@odata.context", "")).endswith(
                "$deletedEntity"
            ):
                deleted.append(str(row.get("id", "")).lower())
            else:
                rows.append(row)
        builder.add_page(rows)
        new_link = body.get("@odata.deltaLink", new_link)
        url = body.get("@odata.nextLink")
    if new_link is None:
        raise ODataError(
            "The delta response carried no @odata.deltaLink.",
            status=200,
            hint="Read the table again with track_changes=True.",
        )
    upserted = builder.finish()
    return Changes(
        table=table.logical_name,
        key=table.primary_id,
        upserted=upserted,
        deleted=tuple(deleted),
        delta_link=new_link,
        since=_stamp(link),
        until=_stamp(new_link),
        options=options,
    )


def _full(table: Table, df: pd.DataFrame, *, since: datetime | None) -> Changes:
    info = frame_info(df)
    link = str(info.get("delta_link", ""))
    return Changes(
        table=table.logical_name,
        key=table.primary_id,
        upserted=df,
        deleted=(),
        delta_link=link,
        since=since,
        until=_stamp(link),
        reread=True,
        options=dict(info.get("tracking") or {}),
    )
