"""The Data management package REST API: whole-entity exports and imports (§5.4).

OData is for synchronous, low-volume work; for volume F&O offers data packages (a zip
with one data file per entity plus `Manifest.xml`/`PackageHeader.xml`).  Every action is
`POST <root>/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.<Action>`
with a JSON body and answers `{"value": ...}` (sometimes nested as `value.value`: both
are read).

* export: `ExportToPackage` → execution id; poll `GetExecutionSummaryStatus` until it
  leaves `NotRun`/`Executing`; `GetExportedPackageUrl` → a blob URL with a SAS token;
  download it **without** the bearer token (another host); read each CSV into a typed
  DataFrame (the entity is recognised by its columns in `$metadata`).
* import: write one CSV per frame into a zip (`<EntitySet>.csv`; [UNVERIFIED] real F&O
  matches files by the project's manifest); `GetAzureWriteUrl` → `{"BlobId","BlobUrl"}`
  (a JSON string); PUT the zip with `x-ms-blob-type: BlockBlob`; `ImportFromPackage`;
  poll; `GetExecutionErrors` lists row errors.

The data project (definition group) must already exist in F&O's Data management workspace.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pandas as pd

from ._dialects.fno import COMPANY, DATE_SENTINELS, ENUM_TYPE, NAMESPACE
from ._exceptions import D365Error, TransportError
from ._fno_write import wire_value
from ._metadata import Table
from ._progress import progress_bar

if TYPE_CHECKING:
    from ._fno_client import FnoConnection

__all__ = ["aexport_package", "aimport_package", "csv_frame"]

_ACTIONS = f"DataManagementDefinitionGroups/{NAMESPACE}."
_RUNNING = ("NotRun", "Executing", "Unknown")


def _unwrap(value: Any) -> Any:
    """`{"value": x}` (the nested form some actions answer) -> x."""
    while isinstance(value, Mapping) and "value" in value:
        value = value["value"]
    return value


async def _action(conn: FnoConnection, name: str, **body: Any) -> Any:
    response = await conn.arequest("POST", _ACTIONS + name, json=body)
    return _unwrap(response.json())


async def _wait(
    conn: FnoConnection,
    execution_id: str,
    *,
    what: str,
    progress: bool,
    poll: float,
    timeout: float,
) -> str:
    bar = progress_bar(f"{what} (package API)") if progress else None
    started = time.monotonic()
    try:
        while True:
            status = str(await _action(conn, "GetExecutionSummaryStatus", executionId=execution_id))
            if bar is not None:
                bar.set_postfix_str(status, refresh=True)
            if status not in _RUNNING:
                return status
            if time.monotonic() - started > timeout:
                raise D365Error(
                    f"The package execution {execution_id} is still {status} after "
                    f"{timeout:.0f} s.",
                    hint="Look at the job in F&O's Data management workspace.",
                )
            await asyncio.sleep(poll)
    finally:
        if bar is not None:
            bar.close()


def _blob_client(conn: FnoConnection) -> httpx.AsyncClient:
    # No Authorization: the SAS in the URL is the credential, as on Azure storage.
    return httpx.AsyncClient(verify=conn._ssl_context, trust_env=False, timeout=conn.timeout)


def _match_table(header: list[str], tables: Mapping[str, Table]) -> Table | None:
    best: tuple[int, Table] | None = None
    wanted = set(header)
    for table in tables.values():
        names = set(table.attributes)
        if wanted <= names:
            extra = len(names - wanted)
            if best is None or extra < best[0]:
                best = (extra, table)
    return best[1] if best else None


def csv_frame(text: str, table: Table | None) -> pd.DataFrame:
    """A package CSV as a DataFrame typed like an OData read of `table`."""
    df: pd.DataFrame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    if table is None:
        untyped: pd.DataFrame = df.astype("string")
        return untyped
    for name in df.columns:
        attribute = table.attributes.get(name)
        kind = attribute.attribute_type if attribute is not None else "String"
        values = df[name]
        if attribute is not None and kind == ENUM_TYPE:
            categories = list(dict.fromkeys(attribute.options.values()))
            df[name] = pd.Categorical(values, categories=categories, ordered=True)
        elif kind == "DateTime":
            cleaned = values.where(~values.isin(DATE_SENTINELS) & (values != ""), None)
            df[name] = pd.to_datetime(cleaned, utc=True, format="ISO8601")
        elif kind in ("Integer", "BigInt"):
            df[name] = pd.to_numeric(values.replace("", None)).astype(
                "Int32" if kind == "Integer" else "Int64"
            )
        elif kind in ("Decimal", "Double"):
            df[name] = pd.to_numeric(values.replace("", None)).astype("float64")
        elif kind == "Boolean":
            df[name] = values.str.lower().map({"true": True, "false": False}).astype("boolean")
        else:
            df[name] = values.astype("string")
    if COMPANY in df.columns:
        df[COMPANY] = df[COMPANY].astype("category")
    df.attrs["d365nb"] = {
        "table": table.logical_name,
        "entity_set": table.entity_set_name,
        "key": table.primary_id,
        "service": "fno",
    }
    return df


async def aexport_package(
    conn: FnoConnection,
    project: str,
    *,
    company: str | None = None,
    progress: bool = True,
    poll: float = 1.0,
    timeout: float = 3600.0,
) -> dict[str, pd.DataFrame]:
    """Export `project` and read its files: `{entity set (or file name): DataFrame}`."""
    execution_id = str(
        await _action(
            conn,
            "ExportToPackage",
            definitionGroupId=project,
            packageName=f"{project}.zip",
            executionId="",
            reExecute=False,
            legalEntityId=company or "",
        )
    )
    status = await _wait(
        conn, execution_id, what=f"Exporting {project}", progress=progress, poll=poll,
        timeout=timeout,
    )  # fmt: skip
    if status not in ("Succeeded", "PartiallySucceeded"):
        raise D365Error(
            f"The export of {project} ended {status} (execution {execution_id}).",
            hint="Look at the job's log in F&O's Data management workspace.",
        )
    url = str(await _action(conn, "GetExportedPackageUrl", executionId=execution_id))
    if httpx.URL(url).host == httpx.URL(conn.api_root).host and "sig=" not in url:
        raise TransportError("The package URL points at the environment, not blob storage.")
    async with _blob_client(conn) as blob:
        response = await blob.get(url)
    if response.status_code != 200:
        raise TransportError(f"Downloading the package failed: HTTP {response.status_code}.")
    tables = {name: await conn.catalog.table(name) for name in await conn.catalog.tables()}
    out: dict[str, pd.DataFrame] = {}
    with zipfile.ZipFile(io.BytesIO(response.content)) as package:
        for name in package.namelist():
            if not name.lower().endswith(".csv"):
                continue
            text = package.read(name).decode("utf-8-sig")
            header = next(csv.reader(io.StringIO(text)), [])
            table = _match_table(header, tables)
            key = table.entity_set_name if table else name.rsplit("/", 1)[-1][:-4]
            out[key] = csv_frame(text, table)
    return out


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    columns = [str(c) for c in frame.columns if not str(c).startswith("_")]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for record in frame[columns].itertuples(index=False, name=None):
        writer.writerow(["" if (v := wire_value(x)) is None else v for x in record])
    return out.getvalue().encode("utf-8-sig")


async def aimport_package(
    conn: FnoConnection,
    project: str,
    frames: Mapping[str, pd.DataFrame],
    *,
    company: str | None = None,
    progress: bool = True,
    poll: float = 1.0,
    timeout: float = 3600.0,
) -> dict[str, Any]:
    """Import `{entity set: frame}` through `project`; the status and the row errors."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as package:
        for name, frame in frames.items():
            table = await conn.catalog.table(name)
            package.writestr(f"{table.entity_set_name}.csv", _csv_bytes(frame))
    target = await _action(conn, "GetAzureWriteUrl", uniqueFileName=f"{uuid.uuid4().hex}.zip")
    if isinstance(target, str):
        target = orjson.loads(target)
    async with _blob_client(conn) as blob:
        put = await blob.put(
            str(target["BlobUrl"]),
            content=data.getvalue(),
            headers={"x-ms-blob-type": "BlockBlob"},
        )
    if put.status_code not in (200, 201):
        raise TransportError(f"Uploading the package failed: HTTP {put.status_code}.")
    execution_id = str(
        await _action(
            conn,
            "ImportFromPackage",
            packageUrl=str(target["BlobUrl"]),
            definitionGroupId=project,
            executionId="",
            execute=True,
            overwrite=True,
            legalEntityId=company or "",
        )
    )
    status = await _wait(
        conn, execution_id, what=f"Importing {project}", progress=progress, poll=poll,
        timeout=timeout,
    )  # fmt: skip
    errors: list[str] = []
    if status != "Succeeded":
        raw = await _action(conn, "GetExecutionErrors", executionId=execution_id)
        try:
            parsed = orjson.loads(raw) if isinstance(raw, str) and raw else raw
        except orjson.JSONDecodeError:
            parsed = [raw]
        errors = [str(e) for e in parsed or []]
    return {"status": status, "errors": errors, "execution_id": execution_id}
