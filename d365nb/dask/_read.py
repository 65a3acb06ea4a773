"""`d365nb.dask.read`: a table as a Dask DataFrame, one partition per `createdon` range."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from .._exceptions import ConfigError
from ._budget import Budget, budget_name, register
from ._checkpoint import load_plan, part_file, restore, save_plan
from ._internals import empty_frame, run_sync, table_of
from ._login import Credentials, Login, login_for, worker_connection
from ._ranges import PartitionPlan, plan_partitions

if TYPE_CHECKING:
    import dask.dataframe as dd

    from .._client import Connection

__all__ = ["MAX_CONCURRENCY", "cluster_client", "cluster_budget", "read"]

#: Dataverse's limit of concurrent requests per user.
MAX_CONCURRENCY = 52
# read() options that need the whole result in one place: not for partitions.
_WHOLE_READ = ("orderby", "top", "expand", "count")
_PARTITION_OPTIONS = ("formatted", "page_size", "parallel", "dtypes", "decimal")


def cluster_client() -> Any | None:
    """The current `distributed.Client`, or None (Dask's local schedulers)."""
    try:
        from distributed import get_client
    except ImportError:  # pragma: no cover - the dask extra installs distributed
        return None
    try:
        return get_client()
    except ValueError:
        return None


def cluster_budget(conn: Connection, client: Any | None, concurrency: int | None) -> Budget:
    """The request budget of `conn`'s identity, registered on `client`'s cluster.

    Call after the connection has made a request (it then knows the token's identity and
    the service's `x-ms-dop-hint`).
    """
    if concurrency is not None and (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not 1 <= concurrency <= MAX_CONCURRENCY
    ):
        raise ConfigError(
            f"concurrency={concurrency!r} is out of range.",
            field="concurrency",
            hint=f"Use 1 to {MAX_CONCURRENCY} (the service's limit per user), or None for "
            "what the service advises (x-ms-dop-hint).",
        )

    async def ceiling() -> int:
        return int(conn.limiter.ceiling)

    leases = concurrency or run_sync(ceiling)
    ident = conn.auth.identity()
    who = f"{ident.get('oid') or ''}|{ident.get('app_id') or ''}"
    return register(Budget(budget_name(conn.api_root, who), leases), client)


@dataclass(frozen=True)
class _ReadSpec:
    """What every partition task of one read carries (no secrets: see `Login`)."""

    login: Login
    budget: Budget
    table: str
    select: tuple[str, ...] | None
    filter: str | None
    options: Mapping[str, Any] = field(default_factory=dict)
    attrs: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None  # a to_parquet folder to restart from
    meta: pd.DataFrame | None = None
    # Every read is a new query of a changing table: never the same Dask key twice.
    read_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def _and(user: str | None, condition: str | None) -> str | None:
    if user and condition:
        return f"({user}) and ({condition})"
    return user or condition


class _ReadPartition:
    """The task of one partition: `conn.read()` of its range on the worker."""

    def __init__(self, spec: _ReadSpec) -> None:
        self.spec = spec

    def __repr__(self) -> str:
        return f"d365nb-read({self.spec.table})"

    def __dask_tokenize__(self) -> str:
        return self.spec.read_id

    def __call__(self, part: tuple[int, str | None]) -> pd.DataFrame:
        spec = self.spec
        index, condition = part
        if spec.checkpoint is not None and spec.meta is not None:
            path = part_file(spec.checkpoint, index)
            if path.is_file():
                written = restore(path, spec.meta, spec.attrs)
                if written is not None:
                    return written
        conn = worker_connection(spec.login, spec.budget)
        frame: pd.DataFrame = conn.read(
            spec.table,
            select=list(spec.select) if spec.select else None,
            filter=_and(spec.filter, condition),
            progress=False,
            **dict(spec.options),
        )
        frame.attrs["d365nb"] = dict(spec.attrs)
        return frame


def read(
    table: str,
    *,
    conn: Connection,
    select: Sequence[str] | None = None,
    filter: str | None = None,  # noqa: A002 - the OData name users know
    npartitions: int | None = None,
    credentials: Credentials = "token",
    concurrency: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    **read_options: Any,
) -> dd.DataFrame:
    """A table (or a filtered part of it) as a Dask DataFrame, read by the workers.

    ```python
    ddf = d365nb.dask.read("accounts", conn=conn, select=["name", "revenue"])
    ddf.groupby("industrycode").revenue.sum().compute()
    ```

    Each partition is a range of `createdon`, the ranges balanced by row count (a few
    small count requests when called); `meta` has exactly the dtypes `conn.read()` gives
    (from metadata, no rows read); the computed frame holds the rows `conn.read()` gives
    (in another order, with an index per partition).

    **Parameters:**

    * **table** - the table: logical name (`account`) or entity set (`accounts`).
    * **conn** - the `Connection` of the client process; workers reach the service as
      its identity (see **credentials**).
    * **select**, **filter** - as in `conn.read()`.
    * **npartitions** - how many partitions; default: two per worker thread of the
      cluster, more for large tables (about 200,000 rows each).
    * **credentials** - `"token"` (default): workers get short-lived access tokens from
      this process, renewed as needed; `"environment"`: workers sign in with secrets
      from their own environment (`D365NB_CLIENT_SECRET`, ...).  A client secret or
      refresh token never travels in the task graph.
    * **concurrency** - requests in flight across the whole cluster for this identity;
      default: what the service advises (`x-ms-dop-hint`).  Every job of the same
      identity shares this budget, and a 429 on one worker pauses all of them.
    * **checkpoint** - a folder for `ddf.to_parquet(folder)`: the plan is kept there,
      and partitions already written there (`part.<i>.parquet`) are taken from their
      files, so a failed job run again reads only the rest from the service.
    * **read_options** - `formatted`, `page_size`, `parallel` (within a partition;
      default `False`: the partitions are the parallelism), `dtypes`, `decimal`.
    """
    for name in read_options:
        if name in _WHOLE_READ:
            raise ConfigError(
                f"{name}= cannot be split into partitions.",
                field=name,
                hint=f"Use conn.read(..., {name}=...) for it, or ddf.nlargest()/"
                "sort_values() after the read.",
            )
        if name not in _PARTITION_OPTIONS and name != "progress":
            raise ConfigError(
                f"Unknown read option {name!r}.",
                field=name,
                hint=f"Options for partitions: {', '.join(_PARTITION_OPTIONS)}.",
            )
    options = {k: v for k, v in read_options.items() if k != "progress"}
    options.setdefault("parallel", False)
    if npartitions is not None and (not isinstance(npartitions, int) or npartitions < 1):
        raise ConfigError(
            f"npartitions={npartitions!r} is not valid.",
            field="npartitions",
            hint="Use a number >= 1, or None to choose from the cluster and the table.",
        )
    import dask
    import dask.dataframe as dd

    client = cluster_client()
    threads = sum(client.nthreads().values()) if client is not None else os.cpu_count() or 1

    async def plan() -> tuple[Any, pd.DataFrame, PartitionPlan]:
        meta_table = await table_of(conn, table)
        meta = empty_frame(
            meta_table,
            select=select,
            formatted=bool(options.get("formatted", False)),
            dtypes=options.get("dtypes"),
            decimal=bool(options.get("decimal", False)),
        )
        saved = None
        if checkpoint is not None:
            saved = load_plan(
                checkpoint, table=meta_table.logical_name, select=select, filter=filter
            )
        if saved is not None:
            return meta_table, meta, PartitionPlan(saved, 0, 0)
        parts = await plan_partitions(
            conn, meta_table, user_filter=filter, npartitions=npartitions, threads=threads
        )
        if checkpoint is not None:
            save_plan(
                checkpoint,
                parts.filters,
                table=meta_table.logical_name,
                select=select,
                filter=filter,
            )
        return meta_table, meta, parts

    meta_table, meta, parts = run_sync(plan)
    budget = cluster_budget(conn, client, concurrency)
    attrs = {
        "table": meta_table.logical_name,
        "entity_set": meta_table.entity_set_name,
        "key": meta_table.primary_id,
        "connection": conn.id,
        "partial": False,
        "count": None,
    }
    meta.attrs["d365nb"] = dict(attrs)
    spec = _ReadSpec(
        login=login_for(conn, credentials, client),
        budget=budget,
        table=meta_table.logical_name,
        select=tuple(select) if select else None,
        filter=filter,
        options=options,
        attrs=attrs,
        checkpoint=None if checkpoint is None else os.fspath(checkpoint),
        meta=meta.copy(),
    )
    # Dask would turn object columns (multi-select choices: lists of labels) into
    # strings; the partitions keep exactly the dtypes conn.read() gives.
    with dask.config.set({"dataframe.convert-string": False}):
        frame: dd.DataFrame = dd.from_map(
            _ReadPartition(spec),
            list(enumerate(parts.filters)),
            meta=meta,
            label=f"d365nb-read-{meta_table.entity_set_name}",
            enforce_metadata=False,
        )
    return frame
