"""Planning a push: turn a frame into one step per row.

Pure code, no I/O: `_write` fetches the metadata, and sends what is planned here.

* `plan_push()` takes the frame, the table's metadata and the options and decides, per
  row: the operation
  (`create`, `update`, `upsert`, `delete`, or nothing to send), the URL (primary id or
  alternate-key segment, `accounts(accountnumber='A-1')`), the JSON body
  (`_payloads.build_payloads`, plus `@odata.bind` by a related table's alternate key from
  columns named `<lookup>.<column>`), client-generated ids for creates (uuid5) and the
  conditions (`If-Match` with the read's ETag, `If-Match: *`).  Every problem in the frame
  is raised at once as `InvalidFrameError`: nothing is sent.

`_batching` then groups the planned rows into requests (bulk actions or `$batch`).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._dtypes import ETAG_COLUMN
from ._exceptions import ConfigError, InvalidFrameError, Problem
from ._journal import attempts_of, generated_ids
from ._keys import Keyed, is_na, key_segments, keys_hint, resolve_key
from ._literals import GUID_RE
from ._metadata import Table
from ._odata import entity_path
from ._options import PushOptions, frame_info
from ._payloads import build_payloads
from ._snapshot import ReadSnapshot, changed_cells, snapshot_of

__all__ = ["Plan", "PlannedRow", "loose_key", "plan_push", "related_tables", "row_key"]


# -- planning -----------------------------------------------------------------------------


@dataclass(slots=True)
class PlannedRow:
    """One input row's request: operation, URL path, body, id and conditions."""

    pos: int
    op: str  # create | update | upsert | delete | none
    path: str  # relative to the Web API root
    body: dict[str, Any] | None
    row_id: str | None
    generated: bool = False
    guarded: bool = False  # If-Match with the ETag of a read
    headers: dict[str, str] = field(default_factory=dict)
    # Upserts: the key as Web API property -> JSON value (`{"accountnumber": "A-1"}`),
    # what an existence check filters on and an `UpsertMultiple` target carries.
    key_values: dict[str, Any] | None = None
    # `loose_key(key_values)`, computed once (the plan's check for repeated keys).
    loose: tuple[Any, ...] | None = None
    # Round trips: the columns that changed since the read (None: not compared, sent whole).
    changed: tuple[str, ...] | None = None
    note: str = ""  # why nothing is sent (op "none")


@dataclass
class Plan:
    """Everything a push will send, and the frame as it will be reported."""

    table: Table
    mode: str
    key: tuple[str, ...]
    frame: pd.DataFrame
    rows: list[PlannedRow]
    columns: tuple[str, ...]
    skipped: dict[str, str]
    # This push's attempt id; per row, the fingerprint (index label and values) and the
    # attempt whose ids it uses, for rows a re-run must find again (generated ids, ETags).
    attempt: str = ""
    fingerprints: list[str | None] = field(default_factory=list)
    attempts: list[str | None] = field(default_factory=list)
    # True when the push continues an unfinished attempt (report.remaining, or rows of an
    # interrupted push pushed again): a conflict may be our own earlier write.
    resumed: bool = False


def _lookup_key_columns(
    df: pd.DataFrame, table: Table
) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """Columns `<lookup>.<column>` or `<lookup>.<table>.<column>`: bind by alternate key.

    Returns `{(lookup, target table): [(frame column, target column), ...]}`.
    """
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for name in df.columns:
        if not isinstance(name, str) or "." not in name:
            continue
        parts = name.split(".")
        attribute = table.find_column(parts[0])
        if attribute is None or not attribute.is_lookup or len(parts) not in (2, 3):
            continue
        if len(parts) == 2:
            if len(attribute.targets) != 1:
                raise ConfigError(
                    f"Column {name!r}: lookup {parts[0]!r} can point to "
                    f"{', '.join(attribute.targets)}; which one is unknown.",
                    field="columns",
                    hint=f"Name the table: '{parts[0]}.{attribute.targets[0]}.{parts[1]}'.",
                )
            target = attribute.targets[0]
        else:
            target = parts[1]
            if attribute.targets and target not in attribute.targets:
                raise ConfigError(
                    f"Column {name!r}: lookup {parts[0]!r} cannot point to {target!r}.",
                    field="columns",
                    hint=f"Use one of {', '.join(attribute.targets)}.",
                )
        found.setdefault((attribute.logical_name, target), []).append((name, parts[-1]))
    return found


def _bind_by_key(
    df: pd.DataFrame,
    table: Table,
    target: Table,
    lookup: str,
    columns: list[tuple[str, str]],
    problems: list[Problem],
) -> tuple[str, list[str | None]]:
    """`<nav>@odata.bind` and `/set(key='v')` per row from alternate-key columns."""
    attribute = table.resolve_column(lookup)
    names = [c for _, c in columns]
    wanted = {n.lower() for n in names}
    if not any({a.lower() for a in k.key_attributes} == wanted for k in target.keys):
        problems.append(
            Problem(
                ", ".join(c for c, _ in columns),
                f"does not name an alternate key of {target.logical_name!r}.",
                (
                    "Its alternate keys: "
                    + "; ".join(", ".join(k.key_attributes) for k in target.keys)
                    + f" (name the columns '{lookup}.<column>')."
                )
                if target.keys
                else f"It has no alternate key: put the related ids in column {lookup!r}.",
            )
        )
        return "", []
    frame = df[[c for c, _ in columns]].copy()
    frame.columns = pd.Index(names)
    inner: list[Problem] = []
    segments, _ = key_segments(frame, target, {}, tuple(names), inner)
    # All values missing: clear the lookup; some missing: a problem.
    nulls = frame.isna()
    partial = (nulls.any(axis=1) & ~nulls.all(axis=1)).to_numpy()
    if partial.any():
        problems.append(
            Problem(
                ", ".join(c for c, _ in columns),
                "has some but not all key values.",
                "Fill in every key column of the related row, or none (to clear the lookup).",
                tuple(df.index[partial][:5]),
                int(partial.sum()),
            )
        )
    problems.extend(p for p in inner if "has no value" not in p.message)
    values = [
        None if seg is None else "/" + entity_path(target.entity_set_name, seg) for seg in segments
    ]
    return f"{attribute.navigation_property(target.logical_name)}@odata.bind", values


def related_tables(df: pd.DataFrame, table: Table, options: PushOptions) -> list[str]:
    """The tables whose metadata `plan_push()` needs besides `table`: those that columns
    named `<lookup>.<column>` bind to by alternate key (fetch them, pass as `related`)."""
    if options.mode == "delete":
        return []
    columns = options.columns
    return [
        target
        for (_, target), cols in _lookup_key_columns(df, table).items()
        if columns is None or any(c in columns for c, _ in cols)
    ]


def plan_push(
    df: pd.DataFrame,
    table: Table,
    tables: Mapping[str, Table],
    options: PushOptions,
    *,
    related: Mapping[str, Table],
    connection_id: str,
    attempt: str = "",
    earlier: Mapping[str, str] | None = None,
    keyed: Keyed | None = None,
) -> Plan:
    """Plan one request per row of `df` (see the module docstring); raises before any write.

    **Parameters:**

    * **df** - the frame to push.
    * **table** - the table's metadata (with attributes); **tables** - every table.
    * **options** - the push's options.
    * **related** - the metadata of `related_tables()`, by logical name.
    * **connection_id** - recorded in the planned frame's attrs (`report.failed.d365.push()`).
    * **attempt** - this push's attempt id (default: a new one); **earlier** - rows of
      unfinished attempts, `{fingerprint: attempt id}` (`_journal.Journal.open_rows()`).
    * **keyed** - `upsert_keys()` of this frame and options, when already found.

    Generated ids are uuid5 of (table, attempt, row fingerprint): new per push, the same
    when a row of an unfinished attempt is pushed again (see `_journal`).
    """
    key, mode, columns, force = options.keys, options.mode, options.columns, options.force
    info = frame_info(df)
    same = info.get("table") == table.logical_name
    keys = resolve_key(table, key)
    pk = table.primary_id
    by_pk = keys == (pk,)
    problems: list[Problem] = []
    frame = df.copy(deep=False)
    n = len(frame)

    # Primary ids: client-generated where creates need one.
    ids: list[str | None] = [None] * n
    generated = [False] * n
    if pk in frame.columns:
        for i, value in enumerate(frame[pk].tolist()):
            if not is_na(value):
                ids[i] = str(value).strip("{}").lower()
    bad_ids = [i for i, v in enumerate(ids) if v is not None and not GUID_RE.fullmatch(v)]
    if bad_ids:
        problems.append(
            Problem(
                pk,
                "is not a record id (GUID).",
                f"Put GUIDs in df[{pk!r}], or leave it empty to create rows.",
                tuple(frame.index[bad_ids[:5]]),
                len(bad_ids),
            )
        )
    creates = [
        mode == "create" or (mode == "upsert" and by_pk and ids[i] is None) for i in range(n)
    ]
    need = [i for i in range(n) if creates[i] and ids[i] is None]
    attempt = attempt or uuid.uuid4().hex
    earlier = earlier or {}
    prints: list[str | None] = [None] * n
    attempts: list[str | None] = [None] * n
    attempts_of(frame, pk, need, attempt, earlier, prints, attempts)
    made = generated_ids(
        table.logical_name, [str(attempts[i]) for i in need], [str(prints[i]) for i in need]
    )
    for i, made_id in zip(need, made, strict=True):
        ids[i] = made_id
        generated[i] = True
    if any(generated) or (mode == "create" and pk not in frame.columns):
        frame[pk] = pd.array(ids, dtype="string")
    if mode in ("update", "delete") and by_pk and pk not in frame.columns:
        raise ConfigError(
            f"The frame has no {pk!r} column, so its rows cannot be found.",
            field="key",
            hint=f"Add the ids in df[{pk!r}], or pass an alternate key: {keys_hint(table)}",
        )
    missing_pk = [i for i in range(n) if ids[i] is None and mode in ("update", "delete") and by_pk]
    if missing_pk:
        problems.append(
            Problem(
                pk,
                "has no value, so the row cannot be found.",
                "Fill in the ids, or push these rows with mode='create'.",
                tuple(frame.index[missing_pk[:5]]),
                len(missing_pk),
            )
        )

    # Key segments for alternate keys.
    segments: list[str | None] = [None] * n
    key_values: list[dict[str, Any] | None] = [  # generated ids: creates, need none
        None if ids[i] is None or generated[i] else {pk: ids[i]} for i in range(n)
    ]
    if not by_pk and mode != "create":
        absent = [k for k in keys if k not in frame.columns]
        if absent:
            raise ConfigError(
                f"The frame has no {', '.join(map(repr, absent))} column, which the key needs.",
                field="key",
                hint="Add the key's columns to the frame.",
            )
        if keyed is None:
            segments, key_values = key_segments(frame, table, tables, keys, problems)
        else:
            segments, key_values = list(keyed.segments), list(keyed.values)
            problems.extend(keyed.problems)

    # One row per key: two rows for one record would overwrite each other, silently.
    groups: dict[tuple[Any, ...], list[int]] = {}
    looses: list[tuple[Any, ...] | None] = [None] * n
    for i, key_i in enumerate(key_values):
        if key_i is not None and not generated[i]:  # generated ids are unique
            looses[i] = loose = loose_key(key_i)
            groups.setdefault(loose, []).append(i)
    repeated = [rows for rows in groups.values() if len(rows) > 1]
    if repeated:
        where = [i for rows in repeated for i in rows]
        label = ", ".join(keys)
        problems.append(
            Problem(
                label,
                f"has {len(repeated)} key value(s) that appear more than once (the service "
                "matches keys without case); the later row would overwrite the earlier.",
                f"Keep one row per key, e.g. df.drop_duplicates(subset={list(keys)!r}, "
                "keep='last'), or give each row its own key.",
                tuple(frame.index[where[:5]]),
                len(where),
            )
        )

    # ETags of the read: If-Match, unless force=True.  The guard follows the `_etag`
    # column itself (a merge/concat/join drops `attrs`, never the column); only a frame
    # recorded as read from another table keeps its ETags out (they are that table's).
    etags: list[str | None] = [None] * n
    if (
        not info_foreign(info, table)
        and not force
        and ETAG_COLUMN in frame.columns
        and mode != "create"
    ):
        etags = [None if is_na(e) else str(e) for e in frame[ETAG_COLUMN].tolist()]
        _check_etags(etags, frame.index, problems)

    # Bodies.
    bodies: list[dict[str, Any] | None] = [None] * n
    sent: tuple[str, ...] = ()
    skipped: dict[str, str] = {}
    if mode != "delete":
        by_key = _lookup_key_columns(frame, table)
        key_cols = {c for cols in by_key.values() for c, _ in cols}
        wanted = None if columns is None else [c for c in columns if c not in key_cols]
        plain = frame.drop(columns=list(key_cols)) if key_cols else frame
        payloads = build_payloads(
            plain,
            table=table,
            tables=tables,
            columns=wanted,
            mode="create" if mode == "create" else ("update" if mode == "update" else "upsert"),
            key_columns=() if by_pk else keys,
            expanded=_expanded_names(info, table),
        )
        problems.extend(payloads.problems)
        sent = payloads.columns
        skipped = dict(payloads.skipped)
        binds: list[tuple[str, list[str | None]]] = []
        for (lookup, target_name), cols in by_key.items():
            if columns is not None and not any(c in columns for c, _ in cols):
                for c, _ in cols:
                    skipped[c] = "not in columns="
                continue
            target = related[target_name]
            bind, values = _bind_by_key(frame, table, target, lookup, cols, problems)
            if bind:
                binds.append((bind, values))
                sent += tuple(c for c, _ in cols)
        if not problems:
            for i, (_, body) in enumerate(payloads.rows):
                for bind, values in binds:
                    body[bind] = values[i]
                bodies[i] = body
    if problems:
        raise InvalidFrameError(problems)

    # A round trip sends only the cells changed since the read (`columns=` sends them all).
    changes: list[tuple[str, ...] | None] = [None] * n
    original = snapshot_of(info) if same else None
    if original is not None and columns is None and mode in ("update", "upsert"):
        changes = _only_changes(frame, original, table, sent, bodies, pk)

    # So that `report.failed.d365.push()` knows where the rows go.
    frame.attrs = {
        **frame.attrs,
        "d365nb": {
            "table": table.logical_name,
            "entity_set": table.entity_set_name,
            "key": pk,
            "connection": connection_id,
            "partial": False,
            "count": None,
            **({k: v for k, v in info.items() if k != "resume"} if same else {}),
            "attempt": attempt,
        },
    }
    entity_set = table.entity_set_name
    rows: list[PlannedRow] = []
    for i in range(n):
        row_body = bodies[i]
        if mode == "create" or creates[i]:
            created = {} if row_body is None else row_body  # this row's own dict
            created[pk] = ids[i]
            rows.append(PlannedRow(i, "create", entity_set, created, ids[i], generated[i]))
            continue
        path = entity_path(entity_set, str(ids[i]) if by_pk else str(segments[i]))
        if changes[i] == ():
            note = "nothing changed since the read"
            rows.append(PlannedRow(i, "none", path, None, ids[i], changed=(), note=note))
            continue
        headers: dict[str, str] = {}
        guarded = etags[i] is not None
        if guarded:
            headers["If-Match"] = str(etags[i])
        if mode == "delete":
            rows.append(
                PlannedRow(i, "delete", path, None, ids[i], headers=headers, guarded=guarded)
            )
        elif mode == "update":
            headers.setdefault("If-Match", "*")
            op = "update" if row_body else "none"
            rows.append(
                PlannedRow(
                    i,
                    op,
                    path,
                    row_body,
                    ids[i],
                    headers=headers,
                    guarded=guarded,
                    changed=changes[i],
                )
            )
        else:
            rows.append(
                PlannedRow(
                    i,
                    "upsert",
                    path,
                    row_body,
                    ids[i],
                    headers=headers,
                    guarded=guarded,
                    key_values=key_values[i],
                    loose=looses[i],
                    changed=changes[i],
                )
            )
    # Rows guarded by an ETag: a re-run of an unfinished attempt must not take our own
    # earlier writes for conflicts (only rows that are sent are fingerprinted).
    sent_guarded = [row.pos for row in rows if row.guarded and row.op != "none"]
    attempts_of(df, pk, sent_guarded, attempt, earlier, prints, attempts)
    resumed = bool(info.get("resume")) or any(a not in (None, attempt) for a in attempts)
    return Plan(table, mode, keys, frame, rows, sent, skipped, attempt, prints, attempts, resumed)


def _expanded_names(info: Mapping[str, Any], table: Table) -> set[str]:
    """Columns that may hold a read's `$expand`ed rows: the expands the read recorded and
    the table's single-valued navigation properties."""
    names = {str(n) for n in info.get("expand") or ()}
    for attribute in table.attributes.values():
        if attribute.is_lookup:
            names.update(attribute.navigation_property(t) for t in attribute.targets or (None,))
    return names


# An entity tag as RFC 9110 writes it: optional weak prefix, then printable ASCII in quotes.
_ETAG = re.compile(r'^(W/)?"[\x21\x23-\x7e]*"$')


def _check_etags(etags: list[str | None], index: pd.Index, problems: list[Problem]) -> None:
    """ETags go in an `If-Match` header: one that is not an entity tag (a line break, a
    stray quote) would fail its whole `$batch` at send time, after other chunks landed."""
    bad = [i for i, e in enumerate(etags) if e is not None and not _ETAG.match(e)]
    if bad:
        problems.append(
            Problem(
                ETAG_COLUMN,
                'is not an ETag (W/"<digits>"), so it cannot guard the row (If-Match).',
                "Read the rows again to get their ETags, or push with force=True to write "
                "without the guard.",
                tuple(index[bad[:5]]),
                len(bad),
            )
        )


def _body_keys(table: Table, column: str) -> set[str]:
    """The body keys a frame column writes: its logical name, or `<nav>@odata.bind`."""
    attribute = table.find_column(column.split(".")[0])
    if attribute is None:
        return set()
    keys = {attribute.logical_name}
    if attribute.is_lookup:
        keys |= {
            f"{attribute.navigation_property(t)}@odata.bind" for t in attribute.targets or (None,)
        }
    return keys


def _only_changes(
    frame: pd.DataFrame,
    original: ReadSnapshot,
    table: Table,
    sent: tuple[str, ...],
    bodies: list[dict[str, Any] | None],
    pk: str,
) -> list[tuple[str, ...] | None]:
    """Cut the bodies of rows of the read down to the cells that changed since; returns
    per row the changed columns (None for rows not of the read: sent whole)."""
    compare = [c for c in sent if c in frame.columns]
    matched, masks = changed_cells(frame, original, compare, pk)
    out: list[tuple[str, ...] | None] = [None] * len(frame)
    if not compare:
        return out
    grid = np.column_stack([masks[c] for c in compare])
    keys = [_body_keys(table, c) for c in compare]
    for i in np.flatnonzero(matched & ~grid.any(axis=1)):
        out[i] = ()
        bodies[i] = {}
    for i in np.flatnonzero(matched & grid.any(axis=1)):
        which = np.flatnonzero(grid[i])
        allowed = set().union(*(keys[j] for j in which))
        out[i] = tuple(compare[j] for j in which)
        body = bodies[i] or {}
        bodies[i] = {k: v for k, v in body.items() if k in allowed}
    return out


def info_foreign(info: Mapping[str, Any], table: Table) -> bool:
    """True when the frame is recorded as read from another table (its ETags are not ours)."""
    return bool(info.get("table")) and info.get("table") != table.logical_name


def row_key(row: PlannedRow) -> tuple[Any, ...]:
    """`loose_key()` of a planned row's key (computed by the plan when it could)."""
    return row.loose if row.loose is not None else loose_key(row.key_values or {})


def loose_key(values: Mapping[str, Any]) -> tuple[Any, ...]:
    """A key as the service may compare it: text without case, accents or trailing spaces.

    Dataverse's default collation is case- and accent-insensitive and SQL ignores trailing
    spaces, so `'A-1'` and `'a-1 '` name the same row.  Used to find rows of a frame that
    may be the same row (sent one by one, in order) and to match existence checks; it
    errs towards "maybe the same", which only sends rows the exact, slower way.
    """
    if len(values) == 1 and type(one := next(iter(values.values()))) is str and one.isascii():
        return (one.lower().rstrip(),)  # one ASCII text (the common key): no loop
    out: list[Any] = []
    for name in sorted(values):
        value = values[name]
        if isinstance(value, str):
            if value.isascii():  # the same as below, without the Unicode work
                out.append(value.lower().rstrip())
                continue
            text = unicodedata.normalize("NFKD", value.casefold().rstrip())
            out.append("".join(c for c in text if not unicodedata.combining(c)))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(float(value))
        else:
            out.append(value)
    return tuple(out)
