"""`d365nb.dask.push`: every partition written by a worker, one combined `PushReport`.

Each partition goes through `conn.push()` on a worker, within the cluster's request
budget, so the single-machine rules hold per partition:

* **Exactly once.**  Creates carry ids derived from the table, the row's index label and
  its values (uuid5), so a partition written again (a task retried after its worker
  died, or the whole job run again) finds the rows that had landed instead of creating
  them twice.  Labels must therefore name rows across partitions: a frame whose
  divisions are known keeps its labels, any other gets `(partition, label)` labels.
* **ETags.**  Rows read with an ETag are written with `If-Match` (a row changed since the
  read is a `conflict`), because every partition keeps the read's `attrs` (the table).
* **Retries.**  A task that runs again knows it (a mark on the scheduler): its creates
  that an earlier attempt had landed are reported `created`, as a retried request's are.

Keys must not repeat across partitions (`push()` checks within one): shuffle by the key
first (`ddf.shuffle(on="accountnumber")`) and repeats meet in one partition.

A partition whose input is lost with its worker is computed again, and an input that
reads from the service then reads the first attempt's writes (with their new ETags): a
transformation applied again to them must give the same values (`revenue.fillna(0)`, not
`revenue + 1`).  For other changes make the input outlive a worker first (`persist()` on
a cluster that replicates, `to_parquet()`, or a frame computed into the client).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._exceptions import ConfigError
from .._report import PushPlan, PushReport, raise_for_push
from ._budget import Budget
from ._login import Credentials, Login, login_for, worker_connection
from ._read import cluster_budget, cluster_client

if TYPE_CHECKING:
    import dask.dataframe as dd

    from .._client import Connection

__all__ = ["push"]

PushMode = Literal["create", "update", "upsert", "delete"]
_ATTEMPT_KEY = "d365nb-push"
_LOOKUP_CHUNK = 50
_OURS = "updated by an earlier attempt of this push (the partition ran again)"
_EARLIER = "created by an earlier attempt of this push (the partition ran again)"


@dataclass(frozen=True)
class _PushSpec:
    """What every partition task of one push carries (no secrets: see `Login`)."""

    login: Login
    budget: Budget
    table: str
    options: Mapping[str, Any]
    attrs: Mapping[str, Any] | None
    relabel: bool  # give rows (partition, label) labels
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def _attempt(run_id: str, partition: int) -> int:
    """Count this task's attempts on the scheduler; 1 on the first (or without a cluster)."""
    try:
        from distributed import get_client, get_worker

        get_worker()
        client = get_client()
    except (ImportError, ValueError):
        return 1
    key = [_ATTEMPT_KEY, run_id, str(partition)]
    attempt = int(client.get_metadata(key, 0)) + 1
    client.set_metadata(key, attempt)
    return attempt


def _creates(frame: pd.DataFrame, pk: str, mode: str, key: Any) -> pd.Series[bool]:
    """Which rows the push creates with a derived id (mode create, or upsert by id)."""
    keys = [key] if isinstance(key, str) else list(key or [])
    by_id = not keys or keys == [pk]
    if mode == "upsert" and by_id and pk in frame.columns:
        values = frame[pk].isna().to_numpy()
    else:
        every = mode == "create" or (mode == "upsert" and by_id)
        values = np.full(len(frame), every, dtype=bool)
    mask: pd.Series[bool] = pd.Series(values, index=frame.index, dtype=bool)
    return mask


def _push_partition(spec: _PushSpec, partition: int, frame: pd.DataFrame) -> PushReport:
    """The task of one partition: `conn.push()` of its rows on the worker."""
    attempt = _attempt(spec.run_id, partition)
    frame = frame.copy(deep=False)
    if spec.relabel:
        frame.index = pd.MultiIndex.from_arrays(
            [[partition] * len(frame), frame.index], names=["partition", frame.index.name]
        )
    if spec.attrs is not None and not frame.attrs.get("d365nb"):
        frame.attrs["d365nb"] = dict(spec.attrs)
    # One push attempt per job and partition (issue 16's rule, across workers): a retried
    # task, or the same job run again, re-uses the partition's ids and settles rows the
    # earlier run landed as its own ("resume"), so nothing is created twice.
    frame.attrs["d365nb"] = {
        **frame.attrs.get("d365nb", {}),
        "attempt": f"{spec.run_id}-{partition}",
        "resume": True,
    }
    conn = worker_connection(spec.login, spec.budget)
    pushed = conn.push(frame, spec.table, progress=False, **dict(spec.options))
    if not isinstance(pushed, PushReport):  # spec.options never holds dry_run=True
        raise TypeError(f"push() returned {type(pushed).__name__}, not a PushReport")
    report = pushed
    if attempt > 1 and len(report.rows):
        pk = str(report.frame.attrs.get("d365nb", {}).get("key") or "")
        mine = _creates(frame, pk, str(spec.options["mode"]), spec.options.get("key"))
        again = (report.rows["status"] == "unchanged") & mine.to_numpy()
        report.rows.loc[again, "status"] = "created"
        report.rows.loc[again, "message"] = _EARLIER
        _settle_own_conflicts(conn, spec, frame, report, pk)
    return report


def _settle_own_conflicts(
    conn: Connection, spec: _PushSpec, frame: pd.DataFrame, report: PushReport, pk: str
) -> None:
    """In a partition that ran again: ETag conflicts that are the earlier attempt's writes.

    The lost attempt may have written a row (its ETag changed); this attempt's `If-Match`
    then fails.  A row that now holds exactly the values sent was ours: `updated`.  Any
    other difference stays a conflict (someone else's change is never overwritten).
    """
    conflicts = report.rows.index[report.rows["status"] == "conflict"]
    if not len(conflicts) or pk not in report.frame.columns:
        return
    sent = frame.loc[conflicts]
    options = {k: v for k, v in spec.options.items() if k != "on_error"}
    plan = conn.push(sent, spec.table, dry_run=True, progress=False, **options)
    if not isinstance(plan, PushPlan):
        return
    columns = [c for c in plan.columns if c in sent.columns and c != pk]
    ids = report.frame.loc[conflicts, pk].dropna().astype(str).tolist()
    found: list[pd.DataFrame] = []
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        found.append(
            conn.read(
                spec.table,
                select=[pk, *columns],
                filter=" or ".join(f"{pk} eq {i}" for i in chunk),
                progress=False,
            )
        )
    now = pd.concat(found).set_index(pk) if found else pd.DataFrame()
    for label in conflicts:
        row_id = str(report.frame.loc[label, pk])
        if row_id not in now.index:
            continue
        if all(_same(sent.loc[label, c], now.loc[row_id, c]) for c in columns):
            report.rows.loc[label, "status"] = "updated"
            report.rows.loc[label, "code"] = pd.NA
            report.rows.loc[label, "message"] = _OURS


def _same(sent: Any, now: Any) -> bool:
    """A value sent and the one read back are the same (NA alike; lists compared whole)."""
    scalar = np.ndim(sent) == 0 and np.ndim(now) == 0
    if scalar and (pd.isna(sent) or pd.isna(now)):
        return bool(pd.isna(sent) and pd.isna(now))
    try:
        return bool(np.all(sent == now))
    except (TypeError, ValueError):
        return False


def _combine(
    reports: Sequence[PushReport], table: str, mode: str, elapsed: float, origin: Mapping[str, Any]
) -> PushReport:
    reports = [r for r in reports if len(r.rows.columns)]
    rows = (
        pd.concat([r.rows for r in reports])
        if reports
        else pd.DataFrame(
            {c: pd.array([], dtype="string") for c in ("status", "code", "message", "id")}
        )
    )
    frame = pd.concat([r.frame for r in reports]) if reports else pd.DataFrame()
    frame.attrs["d365nb"] = dict(origin)
    return PushReport(
        table=table,
        mode=mode,
        rows=rows,
        frame=frame,
        elapsed=elapsed,
        requests=sum(r.requests for r in reports),
    )


def push(
    ddf: dd.DataFrame,
    table: str | None = None,
    *,
    conn: Connection,
    key: str | Sequence[str] | None = None,
    mode: PushMode = "upsert",
    columns: Sequence[str] | None = None,
    batch_size: int | None = None,
    parallel: bool | int | None = None,
    on_error: Literal["collect", "raise"] = "collect",
    force: bool = False,
    credentials: Credentials = "token",
    concurrency: int | None = None,
    run_id: str | None = None,
) -> PushReport:
    """Write a Dask DataFrame to a table, partitions in parallel; one combined report.

    ```python
    ddf = d365nb.dask.read("accounts", conn=conn)
    fixed = ddf.assign(revenue=ddf.revenue.fillna(0))
    report = d365nb.dask.push(fixed, conn=conn)   # If-Match with each row's ETag
    report.counts, report.failed
    ```

    **Parameters:**

    * **ddf** - the rows; a frame from `d365nb.dask.read()` knows its table and ETags.
    * **table** - the table; default: the one `ddf` was read from.
    * **conn** - the client process's `Connection` (see `read()` for **credentials**
      and **concurrency**: the same budget per identity holds).
    * **key**, **mode**, **columns**, **batch_size**, **parallel**, **on_error**,
      **force** - as in `df.d365.push()`, applied to each partition.
    * **run_id** - the job's push attempt (default: a token of `ddf`'s graph, the table
      and the options).  Each partition pushes as attempt `<run_id>-<partition>`, so a
      task retried on another worker, or the same job run again, re-uses its ids and
      creates nothing twice; pass a new `run_id` to push identical new rows again.

    Returns a `PushReport` with every row once: `rows` indexed by the rows' labels
    (`(partition, label)` when `ddf`'s divisions are unknown), `failed` ready to fix and
    push again (also with `conn.push()`).  Rows whose partition's task ran again (its
    worker died) are reported as the first attempt left them: creates that had landed
    are `created`, nothing is created twice.
    """
    from dask.base import compute, tokenize
    from dask.delayed import delayed

    if isinstance(ddf, pd.DataFrame):
        raise ConfigError(
            "d365nb.dask.push() takes a Dask DataFrame; this is a pandas one.",
            field="ddf",
            hint="Use df.d365.push(...) or conn.push(df, ...) for a pandas DataFrame.",
        )
    info = ddf._meta.attrs.get("d365nb")
    origin = dict(info) if isinstance(info, Mapping) else None
    name = table or (origin or {}).get("table")
    if not name:
        raise ConfigError(
            "This frame was not read from Dataverse, so push() does not know its table.",
            field="table",
            hint="Pass the table, e.g. d365nb.dask.push(ddf, 'accounts', conn=conn).",
        )
    options: dict[str, Any] = {
        "key": key,
        "mode": mode,
        "columns": columns,
        "batch_size": batch_size,
        "parallel": parallel,
        "on_error": "collect",
        "force": force,
    }
    started = time.perf_counter()
    # Every argument, column and key checked here, before any task runs (no rows sent).
    plan = conn.push(ddf._meta, name, dry_run=True, progress=False, **options)
    table_name = str(plan.table)
    client = cluster_client()
    spec = _PushSpec(
        login=login_for(conn, credentials, client),
        budget=cluster_budget(conn, client, concurrency),
        table=table_name,
        options=options,
        attrs=origin if origin and origin.get("table") == table_name else None,
        relabel=not ddf.known_divisions,
        # The job's identity: the same input, table and options are the same job.
        run_id=run_id or tokenize(ddf, table_name, sorted(options.items(), key=str)),
    )
    parts = ddf.to_delayed()
    tasks = [
        delayed(_push_partition, pure=False)(
            spec, i, part, dask_key_name=f"d365nb-push-{i}-{spec.run_id}"
        )
        for i, part in enumerate(parts)
    ]
    reports = list(compute(*tasks))
    report = _combine(
        reports,
        table_name,
        mode,
        time.perf_counter() - started,
        {**(origin or {}), "table": table_name, "connection": conn.id},
    )
    raise_for_push(report, on_error=on_error)
    return report
