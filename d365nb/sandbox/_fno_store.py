"""The SQLite database behind the sandbox's finance and operations environment.

One table per data entity, named after its collection, with `_id` (the RecId) and
`_version` (bumped on every write; the row's ETag) ahead of the entity's fields.  Text
columns are ``COLLATE NOCASE`` because F&O compares strings case-insensitively (SQL
Server collation; [UNVERIFIED], §3.1) - so ``'USMF'`` finds ``usmf`` and a key that
differs only in case is a duplicate.  Enums are stored as their integer values and
dates as ISO text (``YYYY-MM-DDTHH:MM:SSZ``, which sorts as time does).  Like
`_store.Store`, one connection guarded by a re-entrant lock serves every thread.
"""

from __future__ import annotations

import base64
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._fno_schema import DATA_PROJECTS, ENTITIES, ENUMS, Entity, Prop
from ._fno_seed import generate, sequence_value
from ._options import SandboxOptions

__all__ = ["FnoStore", "etag", "to_sql", "to_wire"]

_SCHEMA_VERSION = "1"


def to_sql(prop: Prop, value: Any) -> Any:
    """A wire value (already validated) as the column stores it."""
    if prop.kind == "Enum":
        assert prop.enum is not None
        return ENUMS[prop.enum].value(value)
    if prop.kind == "Decimal":
        return float(value)
    return value


def to_wire(prop: Prop, value: Any) -> Any:
    """A stored value as JSON shows it (enum member names)."""
    if prop.kind == "Enum":
        assert prop.enum is not None
        return ENUMS[prop.enum].member(int(value))
    if prop.kind == "Decimal":
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


def etag(rec_id: int, version: int) -> str:
    """A weak ETag in F&O's shape: base64 of a quoted version string (§3.6)."""
    raw = f"'0,{rec_id};0,{version}'".encode("ascii")
    return f'W/"{base64.b64encode(raw).decode("ascii")}"'


def _ddl(entity: Entity) -> list[str]:
    types = {"Int32": "INTEGER", "Int64": "INTEGER", "Enum": "INTEGER", "Decimal": "REAL"}
    cols = ["_id INTEGER PRIMARY KEY", "_version INTEGER NOT NULL DEFAULT 0"]
    for prop in entity.props:
        sql = types.get(prop.kind, "TEXT COLLATE NOCASE")
        cols.append(f'"{prop.name}" {sql} NOT NULL')
    keys = ", ".join(f'"{k}"' for k in entity.keys)
    out = [
        f'CREATE TABLE "{entity.entity_set}" ({", ".join(cols)})',
        f'CREATE UNIQUE INDEX "ix_{entity.entity_set}_key" ON "{entity.entity_set}" ({keys})',
    ]
    for rel in entity.relations:
        by = f'"dataAreaId", "{rel.field}"' if entity.company else f'"{rel.field}"'
        out.append(
            f'CREATE INDEX "ix_{entity.entity_set}_{rel.field}" ON "{entity.entity_set}" ({by})'
        )
    return out


class FnoStore:
    """The F&O environment's rows, number sequences and row versions.

    **Parameters:**

    * **options** - `database` (``":memory:"`` keeps this database in memory too;
      otherwise it is ``fno.sqlite`` beside the Dataverse one), `fno_rows`, `seed`, `reset`.
    """

    def __init__(self, options: SandboxOptions) -> None:
        self.options = options
        if options.database == ":memory:":
            self.path = ":memory:"
        else:
            folder = Path(options.database).parent if options.database else Path(options.data_dir)
            folder.mkdir(parents=True, exist_ok=True)
            self.path = str(folder / "fno.sqlite")
        self.lock = threading.RLock()
        self.conn = self._connect()
        self.rows = options.fno_rows
        self._version = 0
        self._savepoints = 0
        self._numbers: dict[tuple[str, str], int] = {}
        self.seed_seconds = 0.0
        if options.reset or self._stored_fingerprint() != self._fingerprint():
            self.reset()
        else:
            self._version = self._max_version()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _fingerprint(self) -> str:
        return f"{_SCHEMA_VERSION}:{self.options.seed}:{self.rows}"

    def _stored_fingerprint(self) -> str | None:
        try:
            row = self.conn.execute("SELECT value FROM _meta WHERE key='fingerprint'").fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else str(row[0])

    def _max_version(self) -> int:
        parts = " UNION ALL ".join(
            f'SELECT MAX(_version) AS v FROM "{e.entity_set}"' for e in ENTITIES
        )
        row = self.conn.execute(f"SELECT MAX(v) FROM ({parts})").fetchone()
        return int(row[0] or 0)

    def reset(self, *, rows: int | None = None) -> None:
        """Drop everything and seed again (`rows` customers; default: as at start)."""
        started = time.perf_counter()
        if rows is not None:
            self.rows = rows
        with self.lock:
            conn = self.conn
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
                )
            ]
            for name in names:
                conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            conn.execute("CREATE TABLE _meta (key TEXT PRIMARY KEY, value TEXT)")
            conn.execute("BEGIN")
            try:
                for entity in ENTITIES:
                    for sql in _ddl(entity):
                        conn.execute(sql)
                for entity_set, rows_ in generate(rows=self.rows, seed=self.options.seed):
                    self._insert_many(entity_set, rows_)
                projects = [
                    {
                        "DefinitionGroupId": p.name,
                        "Description": p.description,
                        "OperationType": p.operation,
                        "Entities": ",".join(p.entity_sets),
                    }
                    for p in DATA_PROJECTS.values()
                ]
                self._insert_many("DataManagementDefinitionGroups", projects)
                conn.execute("INSERT INTO _meta VALUES ('fingerprint', ?)", (self._fingerprint(),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("ANALYZE")
            self._numbers.clear()
            self._version = self._max_version()
        self.seed_seconds = time.perf_counter() - started

    def _insert_many(self, entity_set: str, rows: list[dict[str, Any]]) -> None:
        entity = next(e for e in ENTITIES if e.entity_set == entity_set)
        names = ", ".join(f'"{p.name}"' for p in entity.props)
        marks = ", ".join("?" * len(entity.props))
        self.conn.executemany(
            f'INSERT INTO "{entity_set}" ({names}) VALUES ({marks})',
            ([to_sql(p, row.get(p.name, p.blank)) for p in entity.props] for row in rows),
        )

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()

    # -- access

    def next_version(self) -> int:
        """A new, never used row version."""
        with self.lock:
            self._version += 1
            return self._version

    def next_number(self, entity: Entity, company: str) -> str:
        """The next free number-sequence value of `entity` in `company`."""
        assert entity.number_sequence is not None
        field, prefix = entity.number_sequence
        with self.lock:
            key = (entity.entity_set, company)
            if key not in self._numbers:
                where = '"dataAreaId" = ?' if entity.company else "1 = 1"
                args = (company,) if entity.company else ()
                (count,) = self.conn.execute(
                    f'SELECT COUNT(*) FROM "{entity.entity_set}" WHERE {where}', args
                ).fetchone()
                self._numbers[key] = int(count)
            while True:
                self._numbers[key] += 1
                value = sequence_value(company, prefix, self._numbers[key])
                taken = self.conn.execute(
                    f'SELECT 1 FROM "{entity.entity_set}" WHERE "{field}" = ?'
                    + (' AND "dataAreaId" = ?' if entity.company else ""),
                    (value, company) if entity.company else (value,),
                ).fetchone()
                if taken is None:
                    return value

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a SELECT and return all rows."""
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the number of rows changed."""
        with self.lock:
            return self.conn.execute(sql, params).rowcount

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """All statements inside commit or roll back together (a SAVEPOINT, lock held)."""
        with self.lock:
            self._savepoints += 1
            name = f"fno{self._savepoints}"
            self.conn.execute(f"SAVEPOINT {name}")
            numbers = dict(self._numbers)
            try:
                yield
            except BaseException:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
                self._numbers = numbers
                raise
            else:
                self.conn.execute(f"RELEASE {name}")
            finally:
                self._savepoints -= 1
