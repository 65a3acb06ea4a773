"""`d365nb export` on finance and operations: the package API past a size threshold.

OData is F&O's way for synchronous, low-volume reads; for volume Microsoft points at the
Data management package REST API (reference/finance-operations-protocol.md §5.4, "Do not
use the Customers V3 entity in scenarios where high performance is required").  So an
export of a whole entity first asks for its size (`GET <Set>/$count`, one tiny request);
at `--package-threshold` rows or more it runs the export data project through the package
API (`FnoConnection.export_package`: start, poll with progress, download, read the CSV)
and writes that frame, typed and ordered like the OData read.

The reference gives no number for the switch; the default, `PACKAGE_THRESHOLD` (100,000
rows, ten of F&O's 10,000-row pages), is a best guess: below it an OData read takes
seconds, while a package job's fixed cost (a batch job, polling, a blob download) is
seconds to minutes.  The package API exports whole entities of one company, so a query
(`--filter`, `--orderby`, `--top`, `--expand`, `--formatted`) or `--resume` stays on
OData; `--select` picks columns from the package.  The file has no `_etag` column
(packages carry no row versions).  A project the environment does not have (the
definition group must be made in Data management first) is reported, and OData is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._dialects.fno import FNO
from ._exceptions import D365Error
from ._metadata import Table
from ._sync import run_sync

__all__ = ["PACKAGE_THRESHOLD", "export_fno_package", "package_project"]

#: Rows (by `$count`) from which `d365nb export` uses the package API on F&O.
PACKAGE_THRESHOLD = 100_000
_QUERY_ONLY = ("filter", "orderby", "top", "expand", "formatted")


def package_project(entity_set: str) -> str:
    """The default export data project of an entity: `Export-<EntitySet>`."""
    return f"Export-{entity_set}"


def export_fno_package(
    conn: Any,
    table_name: str,
    *,
    output: Path,
    query: Mapping[str, Any],
    threshold: int,
    project: str | None,
    progress: bool,
    report: Callable[[str], object],
    write: Callable[[Any, Path], None],
) -> tuple[int, int] | None:
    """Export through the package API when it applies; `(rows, columns)`, or None: use OData.

    **Parameters:**

    * **conn** - the connection (anything but an `FnoConnection`: None at once).
    * **table_name** - the entity as the user named it.
    * **output** - the file; **write** - `write(frame, path)` writes it (atomically).
    * **query** - the export's query options (`select`, `filter`, ...).
    * **threshold** - rows from which the package API is used (0: never).
    * **project** - the export data project (default `Export-<EntitySet>`).
    * **progress** - show the package job's progress; **report** - writes a line to
      the user (stderr).
    """
    from ._fno_client import FnoConnection

    if not isinstance(conn, FnoConnection) or threshold <= 0:
        return None
    if any(query.get(name) for name in _QUERY_ONLY):
        return None
    table = run_sync(conn.catalog.table(table_name))
    total = run_sync(_count(conn, table.entity_set_name))
    if total < threshold:
        return None
    name = project or package_project(table.entity_set_name)
    report(
        f"{table.entity_set_name}: {total:,} rows (--package-threshold {threshold:,}): "
        f"exporting through the Data management package API, project {name}.\n"
    )
    try:
        frames = conn.export_package(name, progress=progress)
    except D365Error as exc:
        report(f"The package API could not export it ({exc}); reading through OData.\n")
        return None
    frame = frames.get(table.entity_set_name)
    if frame is None:
        report(f"The package of {name} has no {table.entity_set_name} file; using OData.\n")
        return None
    frame = frame[_columns(table, list(frame.columns), query.get("select"))]
    write(frame, output)
    rows, columns = frame.shape
    return int(rows), int(columns)


async def _count(conn: Any, entity_set: str) -> int:
    """The entity's rows in the user's default company (`$count`, a bare number)."""
    response = await conn.arequest("GET", f"{entity_set}/$count")
    return int(response.text.strip() or 0)


def _columns(table: Table, present: list[str], select: Sequence[str] | None) -> list[str]:
    """The OData read's columns: key fields then `select` (or every field), in its order."""
    wanted = list(table.attributes)
    if select:
        chosen = [table.resolve_column(c).logical_name for c in select]
        wanted = [k for k in FNO.key_fields(table) if k not in chosen] + chosen
    return [c for c in wanted if c in present]
