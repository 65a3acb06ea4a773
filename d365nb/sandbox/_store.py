"""The sandbox's SQLite database: schema, seeding, a lock, savepoints and the version counter.

One connection, guarded by a re-entrant lock, serves every thread (`:memory:` databases
cannot be shared otherwise, and SQLite serialises writers anyway).  Callers hold the lock
only while SQL runs; turning rows into JSON happens outside it.  File databases use WAL.
Every row carries `versionnumber` from one counter (its ETag); deletions are logged in
`_deleted` with the version at which they happened, which is all change tracking needs.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._activities import INCIDENT, OPTIONAL_RELATIONSHIPS
from ._model import Attribute, Catalog, ManyToMany
from ._options import SandboxOptions
from ._schema import RELATIONSHIPS, TABLES, Table
from ._seed import generate, incidents

__all__ = ["METADATA_VERSION_BASE", "Store", "sqlite_json"]

_SCHEMA_VERSION = "2"  # 2: the _files table
#: `globalmetadataversion` of a freshly seeded database.
METADATA_VERSION_BASE = 1000


@functools.cache
def sqlite_json() -> bool:
    """Whether this SQLite has the JSON functions (built in since 3.38)."""
    try:
        sqlite3.connect(":memory:").execute("SELECT json_object('a', 1)").close()
    except sqlite3.OperationalError:  # pragma: no cover - SQLite < 3.38 without JSON1
        return False
    return True


class Store:
    """The database behind one sandbox Web API.

    **Parameters:**

    * **options** - `database` (`":memory:"`, a path, or None for
      `<data_dir>/dataverse.sqlite`), `rows`, `seed` and `reset`.
    """

    def __init__(self, options: SandboxOptions) -> None:
        self.options = options
        if options.database == ":memory:":
            target = ":memory:"
        else:
            path = Path(options.database or Path(options.data_dir) / "dataverse.sqlite")
            path.parent.mkdir(parents=True, exist_ok=True)
            target = str(path)
        self.path = target
        self.lock = threading.RLock()
        #: Tables created at run time (the metadata API); `reset()` forgets them.
        self.catalog = Catalog()
        self.conn = self._connect()
        self._version = 0
        self._metadata_version = METADATA_VERSION_BASE
        self._savepoints = 0
        self.seed_seconds = 0.0
        if options.reset or self._fingerprint() != self._stored_fingerprint():
            self.reset()
        else:
            self._register_optional()
            self._version = self._max_version()
            stored = self._stored_metadata_version()
            self._metadata_version = stored or METADATA_VERSION_BASE
            if stored is not None and stored > METADATA_VERSION_BASE:
                # Tables and columns created at run time are not restored on start, so a
                # customised database's metadata moved on again.
                self._bump_metadata()

    # -- lifecycle
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _fingerprint(self) -> str:
        optional = "cs" if self.options.customer_service else ""
        return f"{_SCHEMA_VERSION}:{self.options.seed}:{self.options.rows}:{optional}"

    def _stored_fingerprint(self) -> str | None:
        try:
            row = self.conn.execute("SELECT value FROM _meta WHERE key='fingerprint'").fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else str(row[0])

    def _stored_metadata_version(self) -> int | None:
        try:
            row = self.conn.execute(
                "SELECT value FROM _meta WHERE key='metadataversion'"
            ).fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else int(row[0])

    def reset(self) -> None:
        """Drop everything and re-seed from `options.seed` / `options.rows`."""
        started = time.perf_counter()
        with self.lock:
            # The metadata version survives a reset and moves on (the schema may differ).
            stored = self._stored_metadata_version()
            previous = max(self._metadata_version, stored or 0)
            if self.path != ":memory:":
                # A fresh file is faster than dropping millions of rows, and compact.
                self.conn.close()
                for suffix in ("", "-wal", "-shm"):
                    Path(self.path + suffix).unlink(missing_ok=True)
                self.conn = self._connect()
                # Seeding is all-or-nothing (the fingerprint is written last), so the
                # journal is not needed while it runs.
                self.conn.execute("PRAGMA journal_mode=OFF")
                self.conn.execute("PRAGMA synchronous=OFF")
            conn = self.conn
            conn.execute("PRAGMA cache_size=-262144")
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
                )
            ]
            for name in names:
                conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            self.catalog.tables.clear()
            self.catalog.relationships.clear()
            self.catalog.many_to_many.clear()
            self.catalog.system.clear()
            conn.execute("CREATE TABLE _meta (key TEXT PRIMARY KEY, value TEXT)")
            conn.execute(
                "CREATE TABLE _deleted (version INTEGER PRIMARY KEY, entity TEXT, id TEXT)"
            )
            conn.execute(
                "CREATE TABLE _files (entity TEXT, id TEXT, col TEXT, name TEXT, data BLOB, "
                "PRIMARY KEY (entity, id, col))"
            )
            for table in TABLES:
                conn.execute(_ddl(table))
            conn.execute("BEGIN")
            try:
                for entity_set, columns, rows in generate(
                    rows=self.options.rows, seed=self.options.seed
                ):
                    cols = ", ".join(f'"{c}"' for c in columns)
                    marks = ", ".join("?" * len(columns))
                    conn.executemany(f'INSERT INTO "{entity_set}" ({cols}) VALUES ({marks})', rows)
                for sql in _indexes():
                    conn.execute(sql)
                self._register_optional()
                for table in self.catalog.tables.values():
                    conn.execute(_ddl(table))
                if self.options.customer_service:
                    entity_set, columns, rows = incidents(
                        rows=self.options.rows, seed=self.options.seed
                    )
                    cols = ", ".join(f'"{c}"' for c in columns)
                    marks = ", ".join("?" * len(columns))
                    conn.executemany(f'INSERT INTO "{entity_set}" ({cols}) VALUES ({marks})', rows)
                    conn.execute(
                        'CREATE INDEX "ix_incident_customerid" ON "incidents" ("_customerid_value")'
                    )
                self._metadata_version = previous + 1 if stored is not None else previous
                conn.execute(
                    "INSERT INTO _meta VALUES ('metadataversion', ?)", (self._metadata_version,)
                )
                conn.execute("INSERT INTO _meta VALUES ('fingerprint', ?)", (self._fingerprint(),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("PRAGMA analysis_limit=1000")
            conn.execute("ANALYZE")
            conn.execute("PRAGMA cache_size=-65536")
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            self._version = self._max_version()
        self.seed_seconds = time.perf_counter() - started

    def _register_optional(self) -> None:
        """Put the optional system tables the options ask for into the catalog."""
        if self.options.customer_service:
            self.catalog.tables[INCIDENT.logical] = INCIDENT
            self.catalog.system.add(INCIDENT.logical)
            self.catalog.relationships.extend(OPTIONAL_RELATIONSHIPS[INCIDENT.logical])

    # -- tables created at run time
    @property
    def metadata_version(self) -> int:
        """`globalmetadataversion`: moves on whenever a table, column, key or relationship
        is created, changed or deleted (and kept in the database)."""
        return self._metadata_version

    def _bump_metadata(self) -> None:
        with self.lock:
            self._metadata_version += 1
            self.conn.execute(
                "INSERT OR REPLACE INTO _meta VALUES ('metadataversion', ?)",
                (self._metadata_version,),
            )

    def create_table(self, table: Table) -> None:
        """Create `table` (a custom table) and its alternate-key indexes."""
        with self.lock:
            self._bump_metadata()
            self.conn.execute(f'DROP TABLE IF EXISTS "{table.entity_set}"')
            self.conn.execute(_ddl(table))
            self.catalog.tables[table.logical] = table
            for key_name, attrs in table.keys:
                self.add_key(table, key_name, attrs)

    def drop_table(self, table: Table) -> None:
        """Delete a custom table, its rows and its relationships."""
        with self.lock:
            self._bump_metadata()
            self.conn.execute(f'DROP TABLE IF EXISTS "{table.entity_set}"')
            self.catalog.tables.pop(table.logical, None)
            self.catalog.relationships[:] = [
                r
                for r in self.catalog.relationships
                if table.logical not in (r.referenced, r.referencing)
            ]
            for pair in list(self.catalog.many_to_many):
                if table.logical in (pair.entity1, pair.entity2):
                    self.drop_intersect(pair)

    def replace_table(self, table: Table, *, added: Attribute | None = None) -> None:
        """Swap in a changed definition of a custom table (a column or key added)."""
        with self.lock:
            self._bump_metadata()
            if added is not None:
                self.conn.execute(
                    f'ALTER TABLE "{table.entity_set}" ADD COLUMN "{added.column}" {added.sql_type}'
                )
            self.catalog.tables[table.logical] = table

    def create_intersect(self, rel: ManyToMany) -> None:
        """The intersect table of a many-to-many relationship."""
        with self.lock:
            self._bump_metadata()
            self.conn.execute(f'DROP TABLE IF EXISTS "{rel.intersect}"')
            self.conn.execute(
                f'CREATE TABLE "{rel.intersect}" ("{rel.column1}" TEXT, "{rel.column2}" TEXT, '
                f'PRIMARY KEY ("{rel.column1}", "{rel.column2}"))'
            )
            self.catalog.many_to_many.append(rel)

    def drop_intersect(self, rel: ManyToMany) -> None:
        """Forget a many-to-many relationship and its pairs."""
        with self.lock:
            self._bump_metadata()
            self.conn.execute(f'DROP TABLE IF EXISTS "{rel.intersect}"')
            self.catalog.many_to_many.remove(rel)

    def drop_column(self, table: Table, attr: Attribute) -> None:
        """Remove a column of a custom table (its definition is `table`, without it)."""
        with self.lock:
            self._bump_metadata()
            self.conn.execute(f'ALTER TABLE "{table.entity_set}" DROP COLUMN "{attr.column}"')
            self.catalog.tables[table.logical] = table

    def add_key(self, table: Table, key_name: str, attrs: Sequence[str]) -> None:
        """A unique index for an alternate key (fails on existing duplicates)."""
        cols = ", ".join(f'"{a.column}"' for a in table.attributes if a.name in attrs)
        with self.lock:
            self._bump_metadata()
            self.conn.execute(
                f'CREATE UNIQUE INDEX "ix_{key_name}" ON "{table.entity_set}" ({cols})'
            )

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()

    def _max_version(self) -> int:
        tables = (*TABLES, *self.catalog.tables.values())
        parts = " UNION ALL ".join(
            f'SELECT MAX(versionnumber) AS v FROM "{t.entity_set}"' for t in tables
        )
        row = self.conn.execute(
            f"SELECT MAX(v) FROM ({parts} UNION ALL SELECT MAX(version) FROM _deleted)"
        ).fetchone()
        return int(row[0] or 0)

    # -- access
    def next_version(self) -> int:
        """A new, never used row version (the ETag number)."""
        with self.lock:
            self._version += 1
            return self._version

    @property
    def version(self) -> int:
        """The latest row version handed out."""
        return self._version

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a SELECT and return all rows."""
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the number of rows changed."""
        with self.lock:
            return self.conn.execute(sql, params).rowcount

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement for each of `rows`; return the number of rows changed."""
        with self.lock:
            return self.conn.executemany(sql, rows).rowcount

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """All statements inside commit together or roll back together (a SAVEPOINT).

        Holds the lock for the whole block, so a `$batch` change set is isolated too.
        """
        with self.lock:
            self._savepoints += 1
            name = f"sp{self._savepoints}"
            self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
                raise
            else:
                self.conn.execute(f"RELEASE {name}")
            finally:
                self._savepoints -= 1


def _ddl(table: Table) -> str:
    cols = []
    for attr in table.attributes:
        col = f'"{attr.column}" {attr.sql_type}'
        if attr.name == table.primary_id:
            col += " PRIMARY KEY"
        cols.append(col)
        if attr.polymorphic:
            cols.append(f'"{attr.type_column}" TEXT')
    return f'CREATE TABLE "{table.entity_set}" ({", ".join(cols)})'


def _indexes() -> list[str]:
    out = []
    for table in TABLES:
        for key_name, attrs in table.keys:
            cols = ", ".join(f'"{attr.column}"' for attr in table.attributes if attr.name in attrs)
            out.append(f'CREATE UNIQUE INDEX "ix_{key_name}" ON "{table.entity_set}" ({cols})')
    seen = set()
    for rel in RELATIONSHIPS:
        if rel.attribute in ("createdby", "modifiedby", "transactioncurrencyid"):
            continue
        for table in TABLES:
            if table.logical == rel.referencing and (table.logical, rel.attribute) not in seen:
                seen.add((table.logical, rel.attribute))
                out.append(
                    f'CREATE INDEX "ix_{table.logical}_{rel.attribute}" ON '
                    f'"{table.entity_set}" ("_{rel.attribute}_value")'
                )
    return out
