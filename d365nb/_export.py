"""`d365nb export`'s files: written whole or not at all, and resumable after a kill.

* `write_atomically()`: the file is written to a temporary file in the same folder and
  renamed over the output on success, so an export killed mid-write leaves the previous
  file as it was (and no truncated file that looks complete).
* `export_streamed()` (`d365nb export`): the read in chunks (`conn.read(chunksize=)`),
  each written as it arrives (a Parquet row group through pyarrow's `ParquetWriter`, or
  CSV lines appended), so memory stays near a chunk or two whatever the table's size;
  into a temporary file renamed at the end, as above.  `write_chunks()` is the writing
  half, for any iterable of frames (another reader, e.g. F&O's package API, can use it).
* `sync_state()` / `write_synced()` (`d365nb sync`): the copy's Parquet file holds its
  state (table, columns, delta link) in its own metadata, and the same state is kept in
  `FILE.d365sync.json` beside it; both are written to temporary files and renamed, the
  Parquet file first, so a kill at any moment leaves a file and a link that belong
  together (the previous ones, or the new ones).
* `export_resumable()` (`d365nb export --resume`): the table is read in ranges of the
  primary key (`<pk> gt <last>`, ordered by it, `--checkpoint-rows` rows each); each
  finished range is saved as a part file in `<output>.d365nb-export/` and recorded in its
  `state.json`.  Run the same command again after a kill and it continues after the last
  recorded range; when every range is in, the parts become the output (atomically) and
  the folder is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ._exceptions import ConfigError

__all__ = [
    "DEFAULT_CHUNKSIZE",
    "SYNC_PAUSE_ENV",
    "checkpoint_dir",
    "export_resumable",
    "export_streamed",
    "flat_for_csv",
    "sync_pause",
    "sync_state",
    "write_atomically",
    "write_chunks",
    "write_frame",
    "write_synced",
]

# Rows per chunk of a streamed export: ten pages, a few tens of MB for a wide table.
DEFAULT_CHUNKSIZE = 50_000

_STATE = "state.json"


def flat_for_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """Multi-choice columns (lists of labels) as 'a;b' text; everything else unchanged."""
    out: pd.DataFrame = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            values = out[column]
            if values.map(lambda v: isinstance(v, (list, tuple))).any():
                out[column] = values.map(
                    lambda v: ";".join(map(str, v)) if isinstance(v, (list, tuple)) else v
                )
    return out


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    """A temporary file beside `path`, renamed to `path` if the block finishes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` then rename `tmp` over `path`: `path` is the old file or the new one,
    never half of one (even if the process is killed)."""
    with _temporary(path) as tmp:
        write(tmp)


def write_frame(frame: pd.DataFrame, path: Path, fmt: str, *, header: bool = True) -> None:
    """`frame` as `fmt` (csv or parquet) at `path` (not atomically: see the callers)."""
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        flat_for_csv(frame).to_csv(path, index=False, header=header)


def checkpoint_dir(output: Path) -> Path:
    """Where `--resume` keeps the finished ranges of an export to `output`."""
    return output.with_name(output.name + ".d365nb-export")


def _fingerprint(query: Mapping[str, Any]) -> str:
    text = json.dumps(query, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save_state(folder: Path, state: Mapping[str, Any]) -> None:
    write_atomically(folder / _STATE, lambda p: p.write_text(json.dumps(state), "utf-8"))


def _load_state(folder: Path, fingerprint: str, output: Path) -> dict[str, Any]:
    path = folder / _STATE
    if not path.exists():
        return {"query": fingerprint, "ranges": []}
    try:
        state = json.loads(path.read_text("utf-8"))
        ranges = list(state["ranges"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"The export checkpoint {str(path)!r} cannot be read ({type(exc).__name__}).",
            field="output",
            hint=f"Delete the folder {str(folder)!r} to start the export over.",
        ) from exc
    if state.get("query") != fingerprint:
        raise ConfigError(
            f"The export checkpoint beside {str(output)!r} was made by another query "
            "(table, --select, --filter, --top, --expand, --formatted or --format differ).",
            field="output",
            hint=f"Run the same command as before, or delete {str(folder)!r} to start over.",
        )
    return {"query": fingerprint, "ranges": ranges}


def export_resumable(
    read: Callable[..., pd.DataFrame],
    *,
    primary_id: str,
    output: Path,
    fmt: str,
    query: Mapping[str, Any],
    top: int | None,
    checkpoint_rows: int,
    report: Callable[[str], object],
) -> tuple[int, int, int]:
    """Read `query` in primary-key ranges through `read(**query)`, checkpointing each; see
    the module docstring.  Returns (rows, columns, rows found already done)."""
    if query.get("orderby"):
        raise ConfigError(
            "--resume reads the table in ranges of its primary key, so it cannot keep --orderby.",
            field="orderby",
            hint="Drop --orderby (sort the file afterwards), or drop --resume.",
        )
    folder = checkpoint_dir(output)
    fingerprint = _fingerprint({**query, "format": fmt, "top": top, "pk": primary_id})
    folder.mkdir(parents=True, exist_ok=True)
    state = _load_state(folder, fingerprint, output)
    ranges: list[dict[str, Any]] = state["ranges"]
    ranges[:] = [r for r in ranges if (folder / str(r["file"])).is_file()]
    already = sum(int(r["rows"]) for r in ranges)
    if ranges:
        report(f"Resuming: {len(ranges)} range(s), {already:,} rows already exported.\n")
    select: list[str] | None = query.get("select")
    dropped = select is not None and primary_id not in select
    if select is not None and dropped:
        query = {**query, "select": [primary_id, *select]}
    user_filter = query.get("filter")
    done = already
    finished = bool(ranges) and bool(ranges[-1].get("last_range"))
    while not finished:
        want = checkpoint_rows if top is None else min(checkpoint_rows, top - done)
        if want <= 0:
            break
        after = ranges[-1]["last"] if ranges else None
        clauses: list[str] = [f"({user_filter})"] if user_filter else []
        if after is not None:
            clauses.append(f"{primary_id} gt {after}")
        part = read(
            **{
                **query,
                "filter": " and ".join(clauses) or None,
                "orderby": primary_id,
                "top": want,
            }
        )
        number = len(ranges) + 1
        name = f"part-{number:05}.{fmt}"
        last = str(part[primary_id].iloc[-1]) if len(part) else after
        out = part.drop(columns=[primary_id]) if dropped else part
        write_atomically(folder / name, lambda p: write_frame(out, p, fmt))  # noqa: B023
        finished = len(part) < want or (top is not None and done + len(part) >= top)
        ranges.append({"file": name, "rows": len(part), "last": last, "last_range": finished})
        _save_state(folder, state)
        done += len(part)
    columns = _assemble(folder, [str(r["file"]) for r in ranges], output, fmt)
    shutil.rmtree(folder, ignore_errors=True)
    return sum(int(r["rows"]) for r in ranges), columns, already


def _assemble(folder: Path, files: list[str], output: Path, fmt: str) -> int:
    """The parts, in order, as one file at `output` (atomically); returns its columns."""
    if fmt == "parquet":
        frames = [pd.read_parquet(folder / f) for f in files]
        whole = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        write_atomically(output, lambda p: whole.to_parquet(p, index=False))
        return int(whole.shape[1])
    columns = 0

    def write(path: Path) -> None:
        nonlocal columns
        with path.open("wb") as sink:
            for i, name in enumerate(files):
                with (folder / name).open("rb") as source:
                    header = source.readline()
                    if i == 0:
                        sink.write(header)
                        columns = len(pd.read_csv(folder / name, nrows=0).columns)
                    shutil.copyfileobj(source, sink)

    write_atomically(output, write)
    return columns


def _arrow_schema(first: pd.DataFrame, list_columns: Iterable[str]) -> Any:
    """The file's schema, from the first chunk: columns that are all empty there (typed
    `null` by pyarrow) get the type later chunks will have (lists of labels for
    multi-choice columns, else text)."""
    pa: Any = importlib.import_module("pyarrow")
    schema = pa.Schema.from_pandas(first, preserve_index=False)
    lists = set(list_columns)
    for i, f in enumerate(schema):
        if pa.types.is_null(f.type):
            kind = pa.list_(pa.string()) if f.name in lists else pa.string()
            schema = schema.set(i, pa.field(f.name, kind))
    return schema


def write_chunks(
    chunks: Iterable[pd.DataFrame],
    path: Path,
    fmt: str,
    *,
    list_columns: Iterable[str] = (),
) -> tuple[int, int]:
    """Write `chunks` one after another to `path` (csv or parquet), atomically.

    Each chunk is written and dropped before the next is taken, so memory holds about
    one chunk; the file appears at `path` only once the last chunk is in (an interrupted
    write leaves the previous file).  Returns (rows, columns).

    **Parameters:**

    * **chunks** - frames with the same columns (as `conn.read(chunksize=)` gives).
    * **path** - the output file.
    * **fmt** - `"csv"` or `"parquet"`.
    * **list_columns** - multi-choice columns (lists of labels), typed as such in the
      Parquet file even when the first chunk has none.
    """
    rows = columns = 0
    with _temporary(path) as tmp:
        if fmt == "parquet":
            pa: Any = importlib.import_module("pyarrow")
            pq: Any = importlib.import_module("pyarrow.parquet")
            writer: Any = None
            try:
                for chunk in chunks:
                    if writer is None:
                        schema = _arrow_schema(chunk, list_columns)
                        writer = pq.ParquetWriter(tmp, schema)
                    table = pa.Table.from_pandas(chunk, schema=schema, preserve_index=False)
                    writer.write_table(table)
                    rows, columns = rows + len(chunk), chunk.shape[1]
                    del chunk, table
            finally:
                if writer is not None:
                    writer.close()
            if writer is None:  # no chunk at all: an empty file, no columns
                pd.DataFrame().to_parquet(tmp, index=False)
        else:
            with tmp.open("w", encoding="utf-8", newline="") as sink:
                for n, chunk in enumerate(chunks):
                    flat_for_csv(chunk).to_csv(sink, index=False, header=n == 0)
                    rows, columns = rows + len(chunk), chunk.shape[1]
                    del chunk
    return rows, columns


def export_streamed(
    conn: Any,
    table: str,
    *,
    output: Path,
    fmt: str,
    chunksize: int = DEFAULT_CHUNKSIZE,
    **read: Any,
) -> tuple[int, int]:
    """`conn.read(table, chunksize=chunksize, **read)` written chunk by chunk to `output`
    (see `write_chunks`); returns (rows, columns).

    **Parameters:**

    * **conn** - a `Connection`.
    * **table** - logical name or entity set.
    * **output**, **fmt** - the file and its format (`"csv"` or `"parquet"`).
    * **chunksize** - rows per chunk (memory holds about two).
    * **read** - `conn.read`'s other options (select, filter, top, parallel, ...).
    """
    import inspect

    from ._sync import run_sync

    meta = run_sync(conn.catalog.table(table))
    lists = [a.logical_name for a in meta.attributes.values() if a.is_multi_choice]
    if "chunksize" not in inspect.signature(conn.aread).parameters:
        # A connection without chunked reads (F&O's): the frame whole, written the same way.
        return write_chunks([conn.read(table, **read)], output, fmt, list_columns=lists)
    with conn.read(table, chunksize=chunksize, **read) as chunks:
        return write_chunks(chunks, output, fmt, list_columns=lists)


# The sync's state (table, columns, delta link) is also kept in the Parquet file's own
# metadata under this key, so the file and its link are replaced by one rename.
_SYNC_KEY = b"d365nb.sync"
# Tests only: `after-temp` or `between-renames` makes `d365nb sync` print a line naming the
# point and sleep there, so a test can kill it at a known moment of its write.
SYNC_PAUSE_ENV = "D365NB_SYNC_TEST_PAUSE"


def sync_pause(point: str) -> None:
    """Tests only: stop at `point` of a sync's write when `SYNC_PAUSE_ENV` names it."""
    import time

    if os.environ.get(SYNC_PAUSE_ENV) == point:
        sys.stderr.write(f"sync paused: {point}\n")
        sys.stderr.flush()
        time.sleep(120)


def sync_state(out: Path, state_path: Path) -> dict[str, Any]:
    """The state of the last complete sync: the one inside the Parquet file (written with
    its rows), else the file beside it; {} when there is none."""
    if not out.exists():
        return {}
    pq: Any = importlib.import_module("pyarrow.parquet")
    meta = pq.read_schema(out).metadata or {}
    if _SYNC_KEY in meta:
        inside: dict[str, Any] = json.loads(meta[_SYNC_KEY])
        return inside
    if state_path.exists():
        beside: dict[str, Any] = json.loads(state_path.read_text("utf-8"))
        return beside
    return {}


def write_synced(frame: pd.DataFrame, out: Path, state_path: Path, state: dict[str, Any]) -> None:
    """The rows and their state, each to a temporary file then renamed into place.

    The Parquet file carries the state too, so whichever moment a kill lands, the file
    and the link the next run uses belong together (old and old, or new and new)."""
    pa: Any = importlib.import_module("pyarrow")
    pq: Any = importlib.import_module("pyarrow.parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in (out.name, state_path.name):  # temporary files left by a killed run
        for stale in out.parent.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[_SYNC_KEY] = json.dumps(state).encode()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    pq.write_table(table.replace_schema_metadata(meta), tmp)
    del table
    tmp_state = state_path.with_name(f".{state_path.name}.{os.getpid()}.tmp")
    tmp_state.write_text(json.dumps(state) + "\n", "utf-8")
    sync_pause("after-temp")
    os.replace(tmp, out)
    sync_pause("between-renames")
    os.replace(tmp_state, state_path)
