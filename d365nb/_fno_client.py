"""`FnoConnection`: a `Connection` to a finance and operations environment.

The same sign-in, token cache, transport, limiter, sync twins, progress and push report
as Dataverse; what differs comes from the F&O dialect (`_dialects/fno.py`): metadata from
the `$metadata` CSDL (`_fno_metadata.FnoCatalog`), reads through `_fno_reader`, writes
through `_fno_write` (natural keys with `dataAreaId`, `$batch` change sets), the package
API (`_packages`) for volumes OData is not meant for.  `d365nb.connect()` returns one when
the Service URL is an F&O environment (or `service="fno"`).
"""

from __future__ import annotations

import os
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ._auth import CredentialLike
from ._changes import Changes, OnExpired
from ._client import Connection, WhoAmI
from ._config import Settings
from ._dialects.fno import ENUM_TYPE, FNO, fno_error_from_response
from ._exceptions import ConfigError
from ._fno_metadata import FnoCatalog
from ._fno_reader import read_fno
from ._fno_write import apush_fno
from ._odata import Query
from ._options import PushOptions
from ._packages import aexport_package, aimport_package
from ._report import PushPlan, PushReport
from ._sync import blocking
from ._transport import RetryPolicy
from ._types import OnError, PushMode, VerifyTypes

__all__ = ["FnoConnection"]

_REMEMBER_ROWS = 250_000  # larger reads are not kept: updates then send every column given
_REMEMBERED_READS = 4
_DTYPES = {
    "String": "string",
    "Integer": "Int32",
    "BigInt": "Int64",
    "Decimal": "float64",
    "Double": "float64",
    "Boolean": "boolean",
    "DateTime": "datetime64[us, UTC]",
    "Uniqueidentifier": "string",
    "Binary": "object",
    ENUM_TYPE: "category",
}


class FnoConnection(Connection):
    """A link to one finance and operations environment (`<root>/data/`).

    Parameters as `Connection`, plus **metadata_cache** (a folder for the compressed
    `$metadata` copy; `None`: the per-user cache folder; `False`: memory only).
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
        metadata_cache: bool | str | os.PathLike[str] | None = None,
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
        self.dialect = FNO
        self._error_from_response = fno_error_from_response
        cache = (
            metadata_cache
            if isinstance(metadata_cache, bool | None)
            else Path(os.fspath(metadata_cache))
        )
        self.catalog = FnoCatalog(self, cache=cache)  # type: ignore[assignment]
        # Nothing kept: the F&O reference documents no x-ms-dop-hint on /data/.
        self.hints = None
        # The last reads as they came (by read id), so a push sends only changed columns.
        self._reads: OrderedDict[str, pd.DataFrame] = OrderedDict()
        #: The companies the user can read, default first (set by `whoami()`).
        self.company_ids: list[str] = []

    def _remember(self, frame: pd.DataFrame) -> pd.DataFrame:
        if len(frame) <= _REMEMBER_ROWS:
            read_id = uuid.uuid4().hex
            self._reads[read_id] = frame.copy()
            while len(self._reads) > _REMEMBERED_READS:
                self._reads.popitem(last=False)
            frame.attrs["d365nb"]["read_id"] = read_id
        return frame

    def _original(self, read_id: Any) -> pd.DataFrame | None:
        """The frame of read `read_id` as it was read (None when forgotten)."""
        return self._reads.get(read_id) if isinstance(read_id, str) else None

    async def _dialect_push(
        self, df: pd.DataFrame, table: str | None, options: PushOptions
    ) -> PushReport | PushPlan:
        """`df.d365.push()` on F&O: the accessor's push comes here (`_write.apush`)."""
        return await apush_fno(self, df, table, options)

    def __repr__(self) -> str:
        return "<Fno" + super().__repr__()[1:]

    # -- who and where --------------------------------------------------------------

    async def awhoami(self) -> WhoAmI:
        """Who the token speaks for, and the companies that user can read.

        F&O has no WhoAmI function: the user (or app) comes from the token, the
        companies from `LegalEntities` (`business_unit` lists them, default company first
        when the service shows it), the organization is the environment root.
        """
        await self._token()
        ident = self.auth.identity()
        companies = await self.acompanies()
        ids = [str(c).lower() for c in companies["LegalEntityId"]]
        default = await self.aread("CustomerGroups", top=1, select=["dataAreaId"], progress=False)
        if len(default):
            first = str(default["dataAreaId"].iloc[0])
            ids = [first] + [c for c in ids if c != first]
        self.company_ids = ids
        user = ident.get("oid") or ident.get("app_id") or "unknown"
        self._whoami = WhoAmI(
            user_id=str(user),
            business_unit_id=ids[0] if ids else "",
            organization_id=self.settings.resource,
            name=ident.get("name") or (f"app {ident['app_id']}" if ident.get("app_id") else None),
            business_unit="companies: " + ", ".join(ids) if ids else None,
        )
        return self._whoami

    whoami = blocking(awhoami)  # type: ignore[arg-type]

    async def acompanies(self) -> pd.DataFrame:
        """The legal entities (companies) the signed-in user can read, from `LegalEntities`."""
        frame = await self.aread("LegalEntities", progress=False)
        return frame

    companies = blocking(acompanies)

    # -- reading --------------------------------------------------------------------

    async def aread(  # type: ignore[override]
        self,
        entity: str | Query,
        *,
        select: Sequence[str] | str | None = None,
        filter: str | None = None,  # noqa: A002 - the OData name users know
        orderby: str | Sequence[str] | None = None,
        top: int | None = None,
        expand: str | Sequence[str] | None = None,
        company: str | None = None,
        cross_company: bool = False,
        page_size: int | None = None,
        parallel: bool | int = True,
        dtypes: Mapping[str, Any] | None = None,
        decimal: bool = False,
        count: bool = False,
        progress: bool = True,
        formatted: bool = False,
    ) -> pd.DataFrame:
        """Every row of a data entity as a typed DataFrame.

        ```python
        df = conn.read("CustomersV3", select=["CustomerAccount", "CustomerGroupId"],
                       filter="PartyType eq 'Organization'", company="usmf")
        df = conn.read("CustomersV3", cross_company=True)          # every company
        ```

        **Parameters:**

        * **entity** - the entity set (`CustomersV3`), its entity name (`CustomerV3`),
          or a `d365nb.Query`.
        * **select**, **filter**, **orderby**, **top**, **expand** - as in OData.  Enum
          fields compare by member name (`PartyType eq 'Person'` is sent with F&O's
          qualified literal); `contains()`/`startswith()`/`endswith()` become F&O's
          `eq '*x*'` wildcards.
        * **company** - one company's rows (`"usrt"`): sent as `cross-company=true` plus a
          `dataAreaId` filter, because the filter alone returns nothing.
        * **cross_company** - every company the user can read (default: only the user's
          default company, as the service does).
        * **page_size** - rows per page (F&O pages at 10,000).
        * **parallel** - read a large entity in key ranges at once (`True`: as many as
          the limiter allows; an int: that many; `False`: page after page).
        * **dtypes** - per-column dtype overrides; **decimal** - Decimal fields as
          `decimal.Decimal`; **count** - ask for `@odata.count`; **progress** - a bar.
        * **formatted** - accepted for the Dataverse signature; F&O sends no formatted
          values (enums already arrive as member names).

        A read that cannot finish raises `PartialReadError` with the rows so far and
        `resume()`.
        """
        if isinstance(entity, Query):
            name = entity.entity_set
            select = list(entity.columns) or None
            filter = entity.filter_expr  # noqa: A001
            orderby = list(entity.order) or None
            top = entity.limit
            expand = list(entity.expansions) or None
            count = entity.with_count
        else:
            name = entity
        del formatted  # nothing to format on F&O
        if isinstance(select, str):
            select = [s.strip() for s in select.split(",") if s.strip()]
        table = await self.catalog.table(name)
        frame = await read_fno(
            self,
            table,
            dialect=FNO,
            select=select,
            filter=filter,
            orderby=orderby,
            top=top,
            expand=expand,
            company=company,
            cross_company=cross_company,
            page_size=page_size,
            parallel=parallel,
            dtypes=dtypes,
            decimal=decimal,
            count=count,
            progress=progress,
        )
        return self._remember(frame)

    read = blocking(aread)  # type: ignore[arg-type,assignment]

    async def afetchxml(self, xml: str, **_: Any) -> pd.DataFrame:
        """FetchXML is Dataverse's; F&O has none."""
        raise ConfigError(
            "FetchXML is a Dataverse query language; finance and operations apps do not "
            "understand it.",
            field="service",
            hint="Use conn.read(entity, filter=...) on F&O.",
        )

    fetchxml = blocking(afetchxml)  # type: ignore[arg-type]

    async def achanges(
        self,
        source: str | pd.DataFrame,
        *,
        on_expired: OnExpired = "raise",
        progress: bool = False,
    ) -> Changes:
        """F&O's OData has no change tracking: says so and points to the package API."""
        raise ConfigError(
            "finance and operations apps have no OData change tracking (no delta links).",
            field="service",
            hint="Enable change tracking on the entity in F&O's Data management and use "
            "conn.export_package(project) (incremental export), or filter on "
            "ModifiedDateTime (which misses deletes).",
        )

    changes = blocking(achanges)  # type: ignore[arg-type]  # self is an FnoConnection here

    async def atables(self) -> pd.DataFrame:
        """The public data entities: entity set, entity name."""
        tables = await self.catalog.tables()
        rows = [
            {"entity_set": t.entity_set_name, "entity": t.logical_name}
            for t in sorted(tables.values(), key=lambda t: t.entity_set_name)
        ]
        frame: pd.DataFrame = pd.DataFrame(rows, columns=["entity_set", "entity"]).astype("string")
        return frame

    tables = blocking(atables)  # type: ignore[arg-type]

    async def adescribe(self, table: str) -> pd.DataFrame:
        """One row per field of an entity: type, dtype, key, label, enum members."""
        meta = await self.catalog.table(table)
        keys = FNO.key_fields(meta)
        rows = [
            {
                "column": a.logical_name,
                "display_name": a.display_name,
                "type": a.format if a.attribute_type == ENUM_TYPE else a.attribute_type_name,
                "dtype": "category"
                if a.logical_name == "dataAreaId"
                else _DTYPES.get(a.attribute_type, "object"),
                "key": a.logical_name in keys,
                "choices": ", ".join(a.options.values()) if a.options else None,
                "max_length": a.max_length,
            }
            for a in meta.attributes.values()
        ]
        frame = pd.DataFrame(rows)
        frame.attrs["d365nb"] = {"table": meta.entity_set_name, "keys": [list(keys)]}
        described: pd.DataFrame = frame
        return described

    describe = blocking(adescribe)  # type: ignore[arg-type]

    # -- writing --------------------------------------------------------------------

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
        """Write a DataFrame to a data entity by its natural key (see `df.d365.push()`)."""
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
        return await apush_fno(self, df, table, options)

    push = blocking(apush)  # type: ignore[arg-type]

    # -- the package API ------------------------------------------------------------

    async def aexport_package(
        self,
        project: str,
        *,
        company: str | None = None,
        progress: bool = True,
        poll: float = 1.0,
        timeout: float = 3600.0,
    ) -> dict[str, pd.DataFrame]:
        """Export a data project through the Data management package API.

        Starts `ExportToPackage`, polls `GetExecutionSummaryStatus` (with a progress bar),
        downloads the package (a zip; the bearer token never goes to blob storage) and
        reads each entity's CSV file into a typed DataFrame: `{entity set: frame}`.

        **Parameters:**

        * **project** - the data project (definition group) made in Data management.
        * **company** - the legal entity to export (default: the user's).
        * **progress** - show the polling state; **poll** - seconds between polls;
          **timeout** - give up after this many seconds.
        """
        return await aexport_package(
            self, project, company=company, progress=progress, poll=poll, timeout=timeout
        )

    export_package = blocking(aexport_package)

    async def aimport_package(
        self,
        project: str,
        frames: Mapping[str, pd.DataFrame],
        *,
        company: str | None = None,
        progress: bool = True,
        poll: float = 1.0,
        timeout: float = 3600.0,
    ) -> dict[str, Any]:
        """Import DataFrames through the package API (`{entity set: frame}`).

        Writes one CSV per entity into a package zip, uploads it to the URL from
        `GetAzureWriteUrl`, runs `ImportFromPackage` and polls to the end.  Returns
        `{"status": ..., "errors": [...], "execution_id": ...}`.
        """
        return await aimport_package(
            self, project, frames, company=company, progress=progress, poll=poll, timeout=timeout
        )

    import_package = blocking(aimport_package)
