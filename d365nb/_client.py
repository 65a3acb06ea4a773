"""`Connection`: one signed-in link to a Dataverse environment (async verbs, sync twins).

`Connection` is a `Session` (`_session.py`: tokens, one HTTP client per event loop,
`arequest`) with the verbs on top.  The async methods (`asign_in`, `aread`, `apush`, ...)
hold the signatures and docstrings and do the work; the plain ones (`sign_in`, `read`,
`push`, ...) are made from them by `_sync.blocking()`, so notebook users never write
`await` and both twins have the same parameters.  Creating a connection does no network I/O.
"""

from __future__ import annotations

import html
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import pandas as pd

from ._aggregation import aggregate_frame
from ._auth import CredentialLike
from ._catalog import Catalog
from ._changes import (
    TRACK_CHANGES,
    Changes,
    OnExpired,
    check_tracked_read,
    fetch_changes,
    remember_read,
    untracked_error,
)
from ._chunks import Chunks, OnPage, check_chunksize
from ._config import Settings
from ._dtypes import ATTRIBUTE_DTYPES
from ._exceptions import ConfigError, D365Error, ODataError
from ._expand import expand_tables, parse_expand
from ._fetchxml import (
    check_fetchxml_length,
    fetchxml_entity,
    fetchxml_links,
)
from ._odata import Query, check_top, entity_path
from ._options import PushOptions
from ._prefetch import cold_prefetch
from ._reader import MAX_PAGE_SIZE, StaleMetadata, read_fetchxml, read_frame
from ._report import PushPlan, PushReport
from ._session import (
    Session,
    odata_error_from_response,
    session_by_id,
    ssl_context_for,
)
from ._sync import blocking
from ._transport import RetryPolicy
from ._types import OnError, PushMode, SelectTypes, VerifyTypes
from ._write import apush as _apush

__all__ = [
    "Connection",
    "WhoAmI",
    "connection_by_id",
    "odata_error_from_response",
    "ssl_context_for",
]


def connection_by_id(conn_id: str | None) -> Connection | None:
    """The live connection a DataFrame was read through, if it still exists."""
    found = session_by_id(conn_id)
    return found if isinstance(found, Connection) else None


@dataclass(frozen=True)
class WhoAmI:
    """The answer to WhoAmI, with the user's name when the service tells it."""

    user_id: str
    business_unit_id: str
    organization_id: str
    name: str | None = None
    business_unit: str | None = None

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in (
                ("User", self.name or self.user_id),
                ("User id", self.user_id),
                ("Business unit", self.business_unit or self.business_unit_id),
                ("Organization id", self.organization_id),
            )
        )
        return f"<table class='d365nb-whoami'>{rows}</table>"


class Connection(Session):
    """A link to one Dataverse environment.  Build it with `d365nb.connect(...)`.

    **Parameters:**

    * **settings** - the resolved `Settings` (`conn.settings`; secrets hidden in its repr).
    * **verify** - `True`, a CA file path or an `ssl.SSLContext`; `False` only with a warning.
    * **credential** - an azure-identity style credential to take tokens from.
    * **token_cache** - `True` (per-user cache folder), a folder path, or `False` (memory).
    * **timeout** - seconds for each HTTP request.
    * **max_concurrency** - the most requests in flight at once (the adaptive limit
      starts here, or at the service's `x-ms-dop-hint` as last seen in this environment,
      follows the hint of each answer and halves on 429s).
    * **retry** - a `RetryPolicy` for 429/503/network errors.
    * **metadata_cache** - `True` (per-user folder beside the token cache), a folder path,
      or `False` (memory only): where table metadata is kept between processes.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        verify: VerifyTypes = True,
        credential: CredentialLike | None = None,
        token_cache: bool | str | os.PathLike[str] = True,
        timeout: float = 120.0,
        max_concurrency: int = 16,
        retry: RetryPolicy | None = None,
        metadata_cache: bool | str | os.PathLike[str] = True,
    ) -> None:
        super().__init__(
            settings,
            verify=verify,
            credential=credential,
            token_cache=token_cache,
            timeout=timeout,
            max_concurrency=max_concurrency,
            retry=retry,
        )
        self._whoami: WhoAmI | None = None
        self.catalog = Catalog(self, directory=metadata_cache)
        self.hints = self.catalog  # x-ms-dop-hint kept with the metadata

    # -- presentation -------------------------------------------------------------

    def connection_string(self, *, tokens: bool = False) -> str:
        """The vendor driver's `Key=Value;` string for these settings, without secrets.

        `d365nb.connect()` reads it back, and a JDBC/ODBC driver takes its settings.
        `tokens=True` adds `AccessToken=` and `RefreshToken=` from this connection's
        sign-in (the driver's access-token flow) and warns: the string is then a
        credential, not to be saved in a notebook.

        **Parameters:**

        * **tokens** - also write the current access token and the refresh token.
        """
        if not tokens:
            return self._settings.to_connection_string()
        warnings.warn(
            "The connection string holds an access token and a refresh token: treat it as a "
            "password (keep it out of notebooks, logs and version control).",
            UserWarning,
            stacklevel=2,
        )
        access = self.auth.current.token if self.auth.signed_in and self.auth.current else None
        return self._settings.to_connection_string(
            access_token=access, refresh_token=self.auth.refresh_token()
        )

    def _status(self) -> dict[str, Any]:
        ident = self.auth.identity()
        expires = ident.get("expires_on")
        return {
            "org": self._settings.org_url,
            "grant": self._settings.grant,
            "signed_in": self.auth.signed_in,
            "who": (self._whoami.name if self._whoami else None)
            or ident.get("name")
            or (f"app {ident['app_id']}" if ident.get("is_app") and ident.get("app_id") else None),
            "expires": time.strftime("%H:%M:%S UTC", time.gmtime(expires)) if expires else None,
        }

    def __repr__(self) -> str:
        s = self._status()
        who = f", as={s['who']!r}" if s["who"] else ""
        exp = f", token_expires={s['expires']!r}" if s["signed_in"] and s["expires"] else ""
        state = "signed in" if s["signed_in"] else "not signed in"
        return f"<Connection {s['org']} grant={s['grant']!r} ({state}{who}{exp})>"

    def _repr_html_(self) -> str:
        s = self._status()
        state = (
            f"<span style='color:green'>signed in</span> as {html.escape(str(s['who']))}, "
            f"token valid until {s['expires']}"
            if s["signed_in"]
            else "<span style='color:#b60'>not signed in</span> (run <code>conn.sign_in()</code>)"
        )
        return (
            f"<div class='d365nb-connection'><b>d365nb connection</b> to "
            f"<code>{html.escape(str(s['org']))}</code> &middot; grant "
            f"<code>{html.escape(str(s['grant']))}</code> &middot; {state}</div>"
        )

    def sign_out(self) -> None:
        """Forget this connection's tokens, in memory and in the token cache."""
        super().sign_out()
        self._whoami = None

    # -- who am I -----------------------------------------------------------------

    async def awhoami(self) -> WhoAmI:
        """Who the service thinks you are: user (or application user), business unit, org."""
        response = await self.arequest("GET", "WhoAmI")
        body = response.json()
        user_id = str(body.get("UserId"))
        name = bu_name = None
        try:
            user = await self.arequest(
                "GET", entity_path("systemusers", user_id), params={"$select": "fullname"}
            )
            name = user.json().get("fullname")
            bu = await self.arequest(
                "GET",
                entity_path("businessunits", str(body.get("BusinessUnitId"))),
                params={"$select": "name"},
            )
            bu_name = bu.json().get("name")
        except ODataError:
            pass  # a user without read access to systemusers still gets the ids
        self._whoami = WhoAmI(
            user_id=user_id,
            business_unit_id=str(body.get("BusinessUnitId")),
            organization_id=str(body.get("OrganizationId")),
            name=name,
            business_unit=bu_name,
        )
        return self._whoami

    whoami = blocking(awhoami)

    # -- reading ------------------------------------------------------------------

    @overload
    async def aread(
        self,
        entity: str | Query,
        *,
        select: SelectTypes = None,
        filter: str | None = None,  # noqa: A002 - the OData name users know
        orderby: str | Sequence[str] | None = None,
        top: int | None = None,
        expand: str | Sequence[str] | None = None,
        formatted: bool = False,
        page_size: int = MAX_PAGE_SIZE,
        parallel: bool | int = True,
        dtypes: Mapping[str, Any] | None = None,
        decimal: bool = False,
        count: bool = False,
        progress: bool = True,
        track_changes: bool = False,
        refresh_metadata: bool = False,
        chunksize: None = None,
    ) -> pd.DataFrame: ...

    @overload
    async def aread(
        self,
        entity: str | Query,
        *,
        select: SelectTypes = None,
        filter: str | None = None,  # noqa: A002 - the OData name users know
        orderby: str | Sequence[str] | None = None,
        top: int | None = None,
        expand: str | Sequence[str] | None = None,
        formatted: bool = False,
        page_size: int = MAX_PAGE_SIZE,
        parallel: bool | int = True,
        dtypes: Mapping[str, Any] | None = None,
        decimal: bool = False,
        count: bool = False,
        progress: bool = True,
        track_changes: bool = False,
        refresh_metadata: bool = False,
        chunksize: int,
    ) -> Chunks: ...

    async def aread(
        self,
        entity: str | Query,
        *,
        select: SelectTypes = None,
        filter: str | None = None,  # noqa: A002 - the OData name users know
        orderby: str | Sequence[str] | None = None,
        top: int | None = None,
        expand: str | Sequence[str] | None = None,
        formatted: bool = False,
        page_size: int = MAX_PAGE_SIZE,
        parallel: bool | int = True,
        dtypes: Mapping[str, Any] | None = None,
        decimal: bool = False,
        count: bool = False,
        progress: bool = True,
        track_changes: bool = False,
        refresh_metadata: bool = False,
        chunksize: int | None = None,
    ) -> pd.DataFrame | Chunks:
        """Every row of a table (or of a query) as a typed DataFrame.

        ```python
        df = conn.read("accounts", select=["name", "revenue", "industrycode"],
                       filter=d365nb.where(revenue__gt=1_000_000))
        df = conn.read(d365nb.Query("accounts").select("name").filter(statecode=0))
        ```

        **Parameters:**

        * **entity** - the table: logical name (`account`) or entity set (`accounts`), or a
          `d365nb.Query` (its select, filter, orderby, top, expand and count are used; do
          not pass them again as keywords).
        * **select** - columns (logical names; lookups as `parentaccountid`).
        * **filter** - an OData filter; build it with `d365nb.where(...)` or `d365nb.F(...)`
          so that values are always quoted correctly.
        * **orderby**, **top** - as in OData (`top` is honoured exactly).
        * **expand** - navigation properties, nested ones too
          (`"primarycontactid($select=fullname;$expand=parentcustomerid_account($select=name))"`):
          a single-valued one becomes typed columns `primarycontactid.fullname`,
          `primarycontactid.parentcustomerid_account.name` (typed as a read of its table);
          a collection one column of lists.
        * **formatted** - add `<col>_label` columns with the service's formatted values.
        * **page_size** - rows per page (at most 5,000).
        * **parallel** - split a large read into `createdon` ranges fetched concurrently
          (`True`: the service's `x-ms-dop-hint`, 2 to 16; an int: that many; `False`: none).
        * **dtypes** - per-column dtype overrides (e.g. `{"industrycode": "Int32"}` for
          the choice's integer values).
        * **decimal** - Money/Decimal as `decimal.Decimal` instead of float.
        * **count** - ask for `@odata.count` (in `df.attrs["d365nb"]["count"]`).
        * **progress** - a progress bar for reads of more than one page.
        * **track_changes** - ask for a delta link (`df.d365.delta_link`) so that
          `df.d365.refresh()` / `conn.changes(df)` fetch only what changed since; the
          table must track changes, and filter/orderby/top/expand are not allowed.
        * **refresh_metadata** - fetch the table's metadata again instead of using the
          cache (kept per environment, in memory and on disk, for an hour, and dropped
          when the service's metadata version changes).
        * **chunksize** - return an iterator of DataFrames of this many rows (`Chunks`,
          also an async iterator) instead of one frame, for more rows than memory holds;
          typed like `read()`, same engine, bounded memory (see `d365nb._chunks`).

        A read that cannot finish raises `PartialReadError` with the rows so far and
        `resume()`.  Ctrl-C (the Stop button) does the same.
        """
        if isinstance(entity, Query):
            if select or filter or orderby or top is not None or expand or count:
                raise ConfigError(
                    "read() was given a Query and query keywords at once.",
                    field="entity",
                    hint="Put select/filter/orderby/top/expand/count on the Query, or pass "
                    "the table name with keywords.",
                )
            if entity.aggregation:
                raise ConfigError(
                    "read() does not run $apply aggregations.",
                    field="entity",
                    hint="Drop .apply(...) and aggregate the frame with pandas.",
                )
            name = entity.entity_set
            select = list(entity.columns) or None
            filter = entity.filter_expr  # noqa: A001
            orderby = list(entity.order) or None
            top = entity.limit
            expand = list(entity.expansions) or None
            count = entity.with_count
        else:
            name = entity
        check_top(top)  # before any I/O: top="5" or top=True is a ConfigError, not a 400
        if chunksize is not None:
            chunksize = check_chunksize(chunksize)
        catalog = self.catalog
        # A cold cache: the first page goes out now, beside the metadata requests (not for
        # a chunked read, whose pages start when the caller iterates).
        prefetch = (
            None
            if track_changes or refresh_metadata or chunksize is not None
            else await cold_prefetch(
                self,
                catalog,
                name,
                select=select,
                filter=filter,
                orderby=orderby,
                top=top,
                expand=expand,
                count=count,
                formatted=formatted,
                page_size=page_size,
                parallel=parallel,
            )
        )
        try:
            table = await catalog.table(name, refresh=refresh_metadata)
        except BaseException:
            if prefetch is not None:
                await prefetch.drop()
            raise
        if select and not catalog.fetched(table.logical_name):
            if any(table.find_column(c) is None for c in select):
                # A column the cached metadata does not know may be new: fetch once more.
                table = await catalog.table(name, refresh=True)
        if track_changes:
            check_tracked_read(filter=filter, orderby=orderby, top=top, expand=expand)

            async def tracked(on_page: OnPage | None = None) -> pd.DataFrame:
                try:
                    df = await read_frame(
                        self,
                        table,
                        select=select,
                        formatted=formatted,
                        page_size=page_size,
                        dtypes=dtypes,
                        decimal=decimal,
                        count=count,
                        progress=progress,
                        prefer=TRACK_CHANGES,
                        on_page=on_page,
                    )
                except D365Error as exc:  # a refusal comes wrapped in PartialReadError
                    error = await untracked_error(self, table, exc)
                    if error is exc:
                        raise
                    raise error from exc
                return remember_typing(df)

            def remember_typing(df: pd.DataFrame) -> pd.DataFrame:
                return remember_read(
                    df, select=select, formatted=formatted, dtypes=dtypes, decimal=decimal
                )

            if chunksize is not None:
                return Chunks(tracked, chunksize=chunksize, finish=remember_typing)
            return await tracked()
        names = {t.logical_name: t.primary_name for t in (await catalog.tables()).values()}
        reached = (
            await expand_tables(table, parse_expand(",".join(_items(expand))), catalog.table)
            if expand
            else None
        )
        logical = table.logical_name

        async def run(on_page: OnPage | None = None) -> pd.DataFrame:
            nonlocal table
            for attempt in (1, 2):
                try:
                    return await read_frame(
                        self,
                        table,
                        select=select,
                        filter=filter,
                        orderby=orderby,
                        top=top,
                        expand=expand,
                        formatted=formatted,
                        page_size=page_size,
                        parallel=parallel,
                        dtypes=dtypes,
                        decimal=decimal,
                        count=count,
                        progress=progress,
                        lookup_names={k: v for k, v in names.items() if v},
                        expand_tables=reached,
                        check_version=(
                            (lambda v: catalog.check_version(logical, v)) if attempt == 1 else None
                        ),
                        on_page=on_page,
                        prefetch=prefetch if attempt == 1 else None,
                    )
                except StaleMetadata:  # the cached metadata is older than the service's
                    table = await catalog.table(name, refresh=True)
            raise AssertionError("unreachable")  # pragma: no cover

        if chunksize is not None:
            return Chunks(run, chunksize=chunksize, top=top)
        return await run()

    read = blocking(aread)

    async def achanges(
        self,
        source: str | pd.DataFrame,
        *,
        on_expired: OnExpired = "raise",
        progress: bool = False,
    ) -> Changes:
        """What changed in a table since a tracked read: new/changed rows, deleted ids.

        ```python
        df = conn.read("accounts", select=["name"], track_changes=True)
        ch = conn.changes(df.d365.delta_link)     # or conn.changes(df)
        ch.upserted, ch.deleted, ch.delta_link    # ch.apply(df) merges them
        ```

        **Parameters:**

        * **source** - a delta link (`df.d365.delta_link`), a frame read with
          `track_changes=True` (its read options type the rows alike), or a table name
          (a first, full tracked read).
        * **on_expired** - `"raise"` (`DeltaExpiredError` when the service refuses the
          link, e.g. older than its 7-day retention) or `"reread"` (read the table again:
          the result is a full read, `reread=True`).
        * **progress** - a progress bar for a full (re-)read.
        """
        return await fetch_changes(self, source, on_expired=on_expired, progress=progress)

    changes = blocking(achanges)

    async def afetchxml(
        self,
        xml: str,
        *,
        page_size: int = MAX_PAGE_SIZE,
        dtypes: Mapping[str, Any] | None = None,
        formatted: bool = False,
        progress: bool = True,
    ) -> pd.DataFrame:
        """Run a FetchXML query, every page (paging cookies followed), typed like `read`.

        Columns of a `link-entity` are named `alias.column` and typed from the linked
        table's metadata, as a `read()` of that table would type them (`dtypes=` names
        them so too).
        """
        name, _ = fetchxml_entity(xml)
        table = await self.catalog.table(name)
        check_fetchxml_length(self.api_root + table.entity_set_name, xml, page_size)
        links = [(link, await self.catalog.table(link.table)) for link in fetchxml_links(xml)]
        return await read_fetchxml(
            self,
            table,
            xml,
            page_size=page_size,
            dtypes=dtypes,
            formatted=formatted,
            progress=progress,
            links=links,
        )

    fetchxml = blocking(afetchxml)

    async def aaggregate(
        self,
        table: str,
        by: str | tuple[str, str] | Sequence[str | tuple[str, str]] | None = None,
        *,
        filter: str | None = None,  # noqa: A002 - the OData name users know
        **named: tuple[str, str],
    ) -> pd.DataFrame:
        """Aggregate on the server (`$apply`), in pandas' named-aggregation style.

        ```python
        conn.aggregate("opportunities", by="statuscode",
                       total=("estimatedvalue", "sum"), n=("opportunityid", "count"))
        ```

        equals `conn.read("opportunities").groupby("statuscode", dropna=False,
        observed=True).agg(total=..., n=...)` without reading the rows.

        **Parameters:**

        * **table** - logical name or entity set.
        * **by** - a column or list of columns to group by: choices (labels as categories,
          like `read()`), lookups (GUIDs), numbers, text, yes/no; or a date column's
          part, `("createdon", "year")` with part `year`, `quarter`, `month`, `week` or
          `day` (of the month), as an `Int64` level named `createdon_year`.  Groups with no
          value are kept (index NaN).  None: one row over every matching row.
        * **filter** - an OData filter applied first (`d365nb.where(...)`); with date
          parts (grouped by FetchXML aggregate, `$apply` cannot) it is sent as FetchXML,
          so it may use comparisons, and/or/not, contains/startswith/endswith and query
          functions, not lookup paths or lambdas.
        * **named** - `name=(column, func)`, func one of `sum`, `mean`, `min`, `max`,
          `count` (non-null values) and `nunique`.

        Past the service's 50,000-row aggregate limit the query runs per `createdon`
        range and the parts are combined exactly; with `nunique` the columns are read
        instead (a `D365Warning` says so).
        """
        meta = await self.catalog.table(table)
        return await aggregate_frame(self, meta, by, filter=filter, named=named)

    aggregate = blocking(aaggregate)

    async def atables(self) -> pd.DataFrame:
        """The tables of the environment: logical name, entity set, display name, keys."""
        tables = await self.catalog.tables()
        rows = [
            {
                "logical_name": t.logical_name,
                "entity_set": t.entity_set_name,
                "display_name": t.display_name,
                "primary_id": t.primary_id,
                "primary_name": t.primary_name,
            }
            for t in sorted(tables.values(), key=lambda t: t.logical_name)
        ]
        frame: pd.DataFrame = pd.DataFrame(
            rows,
            columns=["logical_name", "entity_set", "display_name", "primary_id", "primary_name"],
        ).astype("string")
        return frame

    tables = blocking(atables)

    async def adescribe(self, table: str) -> pd.DataFrame:
        """One row per column of `table`: type, dtype in DataFrames, writability, choices."""
        meta = await self.catalog.table(table)
        rows = []
        for a in meta.attributes.values():
            if a.attribute_of is not None:
                continue
            kind = a.attribute_type
            if a.is_multi_choice:
                kind = "MultiSelectPicklist"
            elif a.is_date_only:
                kind = "DateOnly"
            rows.append(
                {
                    "column": a.logical_name,
                    "display_name": a.display_name,
                    "type": kind,
                    "dtype": ATTRIBUTE_DTYPES.get(kind, "object"),
                    "required": a.required_level,
                    "create": a.is_valid_for_create,
                    "update": a.is_valid_for_update,
                    "choices": len(a.options) if a.options else None,
                    "targets": ",".join(a.targets) if a.targets else None,
                    "max_length": a.max_length,
                }
            )
        frame = pd.DataFrame(rows)
        frame.attrs["d365nb"] = {
            "table": meta.logical_name,
            "keys": [list(k.key_attributes) for k in meta.keys],
        }
        ordered: pd.DataFrame = frame.sort_values("column", ignore_index=True)
        ordered.attrs = frame.attrs
        return ordered

    describe = blocking(adescribe)

    # -- writing ------------------------------------------------------------------

    async def apush(
        self,
        df: pd.DataFrame,
        table: str | None = None,
        *,
        key: str | Sequence[str] | None = None,
        mode: PushMode = "upsert",
        columns: Sequence[str] | None = None,
        batch_size: int | None = None,
        parallel: bool | int | None = None,
        on_error: OnError = "collect",
        dry_run: bool = False,
        progress: bool = True,
        force: bool = False,
    ) -> PushReport | PushPlan:
        """Write a DataFrame to a table; the same as `df.d365.push(..., conn=conn)`.

        Returns a `PushReport` (a `PushPlan` with `dry_run=True`): every row's outcome,
        `report.failed` ready to fix and push again.  The parameters are those of
        `df.d365.push()` (`PushOptions`), as is the rule that makes creates exactly once
        per push attempt (an interrupted push, pushed again, creates nothing twice).
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
        return await _apush(self, self.catalog, df, table, options)

    push = blocking(apush)

    # -- lifecycle ----------------------------------------------------------------

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _items(expand: str | Sequence[str]) -> list[str]:
    return [expand] if isinstance(expand, str) else list(expand)
