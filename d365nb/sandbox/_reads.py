"""GET on tables: collections (paged), single rows, `$expand`, `$count`, change tracking."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from itertools import repeat
from operator import itemgetter, setitem
from typing import Any
from urllib.parse import quote

import orjson

from ._errors import ApiError, not_found, syntax_error
from ._exchange import Call, Reply
from ._limits import ROWS_HEADER
from ._nested import check_nesting, expand_nested
from ._query import (
    Expand,
    Query,
    cookie_values,
    keyset_where,
    make_cookie,
    parse_expand,
    parse_filter,
    parse_orderby,
    parse_select,
    resolve_aliases,
    skiptoken_param,
)
from ._rows import Annotations, RowPlan
from ._schema import Attribute, Table, table_by_logical
from ._store import Store
from ._tracking import check_token_age, require_tracking

__all__ = ["COUNT_CAP", "MAX_TOP", "Reader", "metadata_context"]

COUNT_CAP = 5000
_SAFE = "$,()'=/:@*;!"
_TRACK_FORBIDDEN = ("$filter", "$orderby", "$expand", "$top")
# The most rows `$top` may ask for (the SDK's QueryExpression.TopCount range is 0..5000).
MAX_TOP = 5000


def metadata_context(root: str, fragment: str) -> str:
    """`{root}$metadata#{fragment}`."""
    return f"{root}$metadata#{fragment}"


def _select_text(select: list[Attribute] | None, expand: list[Expand]) -> str:
    parts = [a.column for a in select] if select is not None else []
    for exp in expand:
        parts.append(f"{exp.nav.name}({exp.select_text or ''})")
    return f"({','.join(parts)})" if parts else ""


def _chunks(values: list[Any], size: int = 900) -> list[list[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


class _Joins:
    """Single-valued `$expand` items (lookups) served by the page's own query.

    Each lookup without a nested `$filter` becomes a `LEFT JOIN` of its target table on
    the primary key, with the target's columns appended to the select list, so a page's
    related rows cost one indexed probe per row instead of two more `IN (...)` queries and
    dictionaries.  The JSON is the same as `Reader.expand()` builds (None when the lookup
    is empty, dangling, or points at another table of a polymorphic lookup).

    A related row of text and integer columns with nothing nested in it is made into JSON
    text by SQLite (`RowPlan.json_sql()`) and put in the page as an `orjson.Fragment`, as
    a database serialises a join: no dictionary and no Python string per value.
    """

    def __init__(self, table: Table, expands: list[Expand], ann: Annotations, *, start: int):
        self.columns: list[str] = []
        self.sql = ""
        # id(expand) → (row plan, first column, one past the last, primary key column)
        self._plans: dict[int, tuple[RowPlan, int, int, int]] = {}
        # id(expand) → (keys, getter) for plain related rows: one C-level gather per row,
        # the ETag text built by SQLite.
        self._plain: dict[int, tuple[tuple[str, ...], Callable[[tuple[Any, ...]], Any]]] = {}
        # id(expand) → column of the related row's JSON text ('null': no related row)
        self._json: dict[int, int] = {}
        for i, exp in enumerate(expands):
            if exp.nav.collection or exp.filter is not None:
                continue
            attr = table.attribute(exp.nav.relationship.attribute)
            target = table_by_logical(exp.nav.target)
            if attr is None or target is None:
                continue
            alias = f"x{i}"
            sub = RowPlan(target, exp.select, ann, alias=alias)
            on = f'{alias}."{target.primary_id}" = t."{attr.column}"'
            if attr.polymorphic:
                on += f" AND t.\"{attr.type_column}\" = '{target.logical}'"
            self.sql += f' LEFT JOIN "{target.entity_set}" {alias} ON {on}'
            json = None if exp.expand else sub.json_sql()
            if json is not None:
                self._json[id(exp)] = start + len(self.columns)
                missing = f'{alias}."{target.primary_id}" IS NULL'
                self.columns.append(f"CASE WHEN {missing} THEN 'null' ELSE {json} END")
                continue
            first = start + len(self.columns)
            self.columns += sub.columns
            pk = first + sub.columns.index(f'{alias}."{target.primary_id}"')
            self._plans[id(exp)] = (sub, first, first + len(sub.columns), pk)
            plain = sub.plain_keys()
            if plain is not None:
                keys, positions = plain
                etag = len(self.columns) + start
                self.columns.append(f"'W/\"' || {alias}.\"versionnumber\" || '\"'")
                self._plain[id(exp)] = (
                    ("@odata.etag", *keys),
                    itemgetter(etag, *(first + i for i in positions)),
                )

    def emit(self, exp: Expand, rows: list[tuple[Any, ...]], values: list[dict[str, Any]]) -> bool:
        """Put `exp`'s related rows into `values`; False when `exp` is not joined."""
        name = exp.nav.name
        at = self._json.get(id(exp))
        if at is not None:  # value[name] = Fragment(row[at]) for every row, at C speed
            fragments = map(orjson.Fragment, map(itemgetter(at), rows))
            deque(map(setitem, values, repeat(name), fragments), maxlen=0)
            return True
        found = self._plans.get(id(exp))
        if found is None:
            return False
        sub, first, end, pk = found
        plain = self._plain.get(id(exp))
        if plain is not None:
            keys, getter = plain
            for row, value in zip(rows, values, strict=True):
                related = row[pk] is not None
                value[name] = dict(zip(keys, getter(row), strict=True)) if related else None
            return True
        for row, value in zip(rows, values, strict=True):
            value[name] = sub.emit(row[first:end]) if row[pk] is not None else None
        return True


class Reader:
    """Answers GET requests on table data."""

    def __init__(
        self, store: Store, *, max_page_size: int, change_tracking_days: float = 7.0
    ) -> None:
        self.store = store
        self.max_page_size = max_page_size
        #: How long delta tokens stay valid (`Organization.ExpireChangeTrackingInDays`).
        self.change_tracking_days = change_tracking_days

    # -- option parsing
    def parse(self, table: Table, params: dict[str, str]) -> Query:
        for name in params:
            if name in ("$skip", "$search", "$format", "$apply", "$compute"):
                raise ApiError(400, "0x80060888", f"The query parameter {name} is not supported")
        q = Query(table)
        if "$select" in params:
            q.select = parse_select(table, params["$select"])
        if "$filter" in params:
            q.where.append(parse_filter(table, resolve_aliases(params["$filter"], params)))
        if "$orderby" in params:
            q.orderby = parse_orderby(table, params["$orderby"])
        if "$expand" in params:
            q.expand = parse_expand(table, params["$expand"])
            check_nesting(q.expand)
        if "$top" in params:
            try:
                q.top = int(params["$top"])
            except ValueError:
                raise syntax_error(f"Invalid value '{params['$top']}' for $top.") from None
            if q.top < 0:
                raise syntax_error(f"Invalid value '{params['$top']}' for $top.")
            if q.top > MAX_TOP:
                # [UNVERIFIED] code and message: the SDK's TopCount must be 0..5000 and the
                # service refuses more instead of cutting the result silently.
                raise syntax_error(
                    f"The $top value {q.top} is larger than the maximum of {MAX_TOP:,}: a "
                    "query returns at most 5,000 rows; page with odata.maxpagesize instead."
                )
        return q

    def page_size(self, call: Call) -> tuple[int, int | None]:
        """(rows per page, the maxpagesize to echo or None)."""
        raw = call.prefer.get("odata.maxpagesize")
        if raw is None:
            return self.max_page_size, None
        try:
            size = int(raw.strip('"'))
        except ValueError:
            return self.max_page_size, None
        # [UNVERIFIED] above 5,000 the service "ignores" the preference; the sandbox caps it
        # and echoes the size it applied.
        size = max(1, min(size, self.max_page_size))
        return size, size

    # -- collections
    def collection(
        self,
        call: Call,
        table: Table,
        *,
        extra: tuple[str, list[Any]] | None = None,
        path: str | None = None,
    ) -> Reply:
        """GET `{entity set}` (or a filtered collection via a navigation property)."""
        params = call.params
        if "$deltatoken" in params:
            return self.delta(call, table)
        tracking = "odata.track-changes" in call.prefer
        if tracking:
            require_tracking(table)
            for name in _TRACK_FORBIDDEN:
                if name in params:
                    raise ApiError(
                        400,
                        "0x80060888",
                        f'The "{name}" query parameter isn\'t '
                        "supported when Change Tracking is enabled.",
                    )
        q = self.parse(table, params)
        if extra is not None:
            q.where.append(extra)
        ann = Annotations(call.prefer.get("odata.include-annotations", "").strip('"') or None)
        size, applied = self.page_size(call)
        plan = RowPlan(table, q.select, ann)
        # Lookups sort by their GUID and GUIDs sort as text here; Dataverse sorts lookups by
        # the related row's name and GUIDs in SQL Server's uniqueidentifier byte order.
        order = [(a.column, desc) for a, desc in q.orderby]
        if not any(col == table.primary_id for col, _ in order):
            order.append((table.primary_id, False))
        key_start = len(plan.columns)
        cols = plan.columns + [f't."{col}"' for col, _ in order]
        key_end = len(cols)
        joins = _Joins(table, q.expand, ann, start=key_end)
        cols += joins.columns
        where = [w for w, _ in q.where]
        args: list[Any] = [p for _, ps in q.where for p in ps]
        page_no = 1
        # Tracking pages carry the snapshot version in an extra `deltaversion` cookie
        # attribute, so the final deltaLink covers changes made while paging.
        delta_version = self.store.version
        if "$skiptoken" in params:
            page_no, lasts, outer = cookie_values(params["$skiptoken"])
            if [c for c, _ in lasts] != [c for c, _ in order]:
                raise syntax_error("The $skiptoken does not match the query's $orderby.")
            values = [
                self._cookie_value(table, col, v)
                for (col, _), (_, v) in zip(order, lasts, strict=True)
            ]
            kw, kp = keyset_where(order, values)
            where.append(kw)
            args.extend(kp)
            if "deltaversion" in outer:
                delta_version = int(outer["deltaversion"])
        limit = size
        # [UNVERIFIED] Microsoft's pages disagree on $top with odata.maxpagesize; $top wins:
        # up to $top rows (at most 5,000) and no nextLink.
        if q.top is not None:
            limit = min(q.top, self.max_page_size)
        sql = (
            f'SELECT {", ".join(cols)} FROM "{table.entity_set}" t'
            + joins.sql
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY "
            + ", ".join(f't."{c}"{" DESC" if d else ""}' for c, d in order)
            + f" LIMIT {limit + 1}"
        )
        rows = self.store.query(sql, args)
        more = len(rows) > limit and q.top is None
        rows = rows[:limit]
        values = [plan.emit(r) for r in rows]
        for exp in q.expand:  # in the asked order, so the properties keep it
            if not joins.emit(exp, rows, values):
                self.expand(call, table, [exp], rows, values, plan, ann)
        if q.expand:
            expand_nested(self.store, call, q.expand, values, ann)
        body: dict[str, Any] = {
            "@odata.context": metadata_context(
                call.root, (path or table.entity_set) + _select_text(q.select, q.expand)
            ),
        }
        if params.get("$count") == "true" or ann.wants("Microsoft.Dynamics.CRM.totalrecordcount"):
            total = self.count(table, q.where)
            if params.get("$count") == "true":
                body["@odata.count"] = min(total, COUNT_CAP)
            if ann.wants("Microsoft.Dynamics.CRM.totalrecordcount"):
                body["@Microsoft.Dynamics.CRM.totalrecordcount"] = (
                    min(total, COUNT_CAP) if params.get("$count") == "true" else -1
                )
            if ann.wants("Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"):
                body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = total > COUNT_CAP
        if ann.wants("Microsoft.Dynamics.CRM.globalmetadataversion"):
            body["@Microsoft.Dynamics.CRM.globalmetadataversion"] = str(self.store.metadata_version)
        body["value"] = values
        headers: list[tuple[str, str]] = []
        if applied is not None and q.top is None:
            # $top overrides the page size: the preference was not applied, so not echoed.
            headers.append(("Preference-Applied", f"odata.maxpagesize={applied}"))
        if ann:
            headers.append(("Preference-Applied", f'odata.include-annotations="{ann.spec}"'))
        if more:
            guid_cols = [
                (c, (table.by_column(c) or table.attributes[0]).edm == "Edm.Guid") for c, _ in order
            ]
            first = list(rows[0][key_start:key_end])
            last = list(rows[-1][key_start:key_end])
            cookie = make_cookie(
                page_no,
                guid_cols,
                first,
                last,
                tracking=tracking,
                extra=f' deltaversion="{delta_version}"' if tracking else "",
            )
            query = "&".join(
                f"{k}={quote(v, safe=_SAFE)}" for k, v in params.items() if k != "$skiptoken"
            )
            link = f"{call.root}{path or table.entity_set}?{query}"
            body["@odata.nextLink"] = (
                link + ("&" if query else "") + f"$skiptoken={skiptoken_param(cookie)}"
            )
        elif tracking:
            headers.append(("Preference-Applied", "odata.track-changes"))
            body["@odata.deltaLink"] = self._delta_link(call, table, delta_version)
        if tracking and more:
            headers.append(("Preference-Applied", "odata.track-changes"))
        headers.append((ROWS_HEADER, str(len(values))))
        return Reply.json(200, body, headers)

    def _cookie_value(self, table: Table, col: str, value: str | None) -> Any:
        attr = table.by_column(col)
        if value is None or attr is None:
            return value
        if attr.edm == "Edm.Guid":
            return value.strip("{}").lower()
        if attr.sql_type == "INTEGER":
            return int(value)
        if attr.sql_type == "REAL":
            return float(value)
        return value

    def count(self, table: Table, where: list[tuple[str, list[Any]]]) -> int:
        """Rows matching `where`, counted up to one past the 5,000 cap."""
        cond = " AND ".join(w for w, _ in where) or "1"
        args = [p for _, ps in where for p in ps]
        rows = self.store.query(
            f'SELECT COUNT(*) FROM (SELECT 1 FROM "{table.entity_set}" t WHERE {cond} '
            f"LIMIT {COUNT_CAP + 1})",
            args,
        )
        return int(rows[0][0])

    def count_text(self, call: Call, table: Table) -> Reply:
        """GET `{entity set}/$count`: a plain number (with a UTF-8 BOM, as the service sends).

        With `$deltatoken` it counts the changes since the token (rows and deletions).
        """
        if "$deltatoken" in call.params:
            delta = self.delta(call, table, whole=True)
            total = int(dict(delta.headers)[ROWS_HEADER])
        else:
            q = self.parse(table, call.params)
            total = min(self.count(table, q.where), COUNT_CAP)
        return Reply(200, [("Content-Type", "text/plain")], "\ufeff".encode() + str(total).encode())

    # -- single rows
    def entity(
        self, call: Call, table: Table, key_sql: tuple[str, list[Any]], key_text: str, path: str
    ) -> Reply:
        """GET `{entity set}({key})`."""
        q = self.parse(table, call.params)
        ann = Annotations(call.prefer.get("odata.include-annotations", "").strip('"') or None)
        plan = RowPlan(table, q.select, ann)
        rows = self.store.query(
            f'SELECT {", ".join(plan.columns)} FROM "{table.entity_set}" t WHERE {key_sql[0]}',
            key_sql[1],
        )
        if not rows:
            raise not_found(table.logical, key_text)
        value = plan.emit(rows[0])
        if q.expand:
            self.expand(call, table, q.expand, rows, [value], plan, ann)
            expand_nested(self.store, call, q.expand, [value], ann)
        etag = value["@odata.etag"]
        inm = call.headers.get("if-none-match")
        if inm and inm != "null" and inm == etag and not q.expand and not ann:
            return Reply(304, [("ETag", etag)])
        body = {
            "@odata.context": metadata_context(
                call.root, table.entity_set + _select_text(q.select, q.expand) + "/$entity"
            )
        }
        body.update(value)
        return Reply.json(200, body, [("ETag", etag)])

    def row_json(
        self,
        call: Call,
        table: Table,
        row_id: str,
        select: list[Attribute] | None,
        expand: list[Expand] | None = None,
    ) -> dict[str, Any]:
        """A row read back after a write (`return=representation`)."""
        ann = Annotations(call.prefer.get("odata.include-annotations", "").strip('"') or None)
        plan = RowPlan(table, select, ann)
        rows = self.store.query(
            f'SELECT {", ".join(plan.columns)} FROM "{table.entity_set}" t '
            f'WHERE t."{table.primary_id}" = ?',
            [row_id],
        )
        if not rows:
            raise not_found(table.logical, row_id)
        value = plan.emit(rows[0])
        body = {
            "@odata.context": metadata_context(
                call.root, table.entity_set + _select_text(select, expand or []) + "/$entity"
            )
        }
        body.update(value)
        return body

    # -- $expand
    def expand(
        self,
        call: Call,
        table: Table,
        expands: list[Expand],
        rows: list[tuple[Any, ...]],
        values: list[dict[str, Any]],
        plan: RowPlan,
        ann: Annotations,
    ) -> None:
        pk_idx = plan.columns.index(f't."{table.primary_id}"')
        ids = [r[pk_idx] for r in rows]
        for exp in expands:
            rel = exp.nav.relationship
            target = table_by_logical(exp.nav.target)
            assert target is not None
            sub = RowPlan(target, exp.select, ann)
            if not exp.nav.collection:
                attr = table.attribute(rel.attribute)
                assert attr is not None
                fk_rows = (
                    self.store.query(
                        f'SELECT t."{table.primary_id}", t."{attr.column}"'
                        + (f', t."{attr.type_column}"' if attr.polymorphic else "")
                        + f' FROM "{table.entity_set}" t WHERE t."{table.primary_id}" IN '
                        f"({','.join('?' * len(ids))})",
                        ids,
                    )
                    if ids
                    else []
                )
                fks = {
                    r[0]: r[1]
                    for r in fk_rows
                    if r[1] is not None and (not attr.polymorphic or r[2] == target.logical)
                }
                found = self._fetch(
                    target, sub, f't."{target.primary_id}"', sorted(set(fks.values())), exp
                )
                for row_id, value in zip(ids, values, strict=True):
                    fk = fks.get(row_id)
                    hits = found.get(fk, []) if fk else []
                    value[exp.nav.name] = hits[0] if hits else None
            else:
                attr = target.attribute(rel.attribute)
                assert attr is not None
                extra = (
                    f"t.\"{attr.type_column}\" = '{table.logical}'" if attr.polymorphic else None
                )
                found = self._fetch(target, sub, f't."{attr.column}"', ids, exp, extra)
                for row_id, value in zip(ids, values, strict=True):
                    items = found.get(row_id, [])
                    if exp.top is not None:
                        items = items[: exp.top]
                    value[exp.nav.name] = items
                    link = f"{call.root}{table.entity_set}({row_id})/{exp.nav.name}"
                    # The child link keeps the nested options that shape its rows.
                    options = [
                        f"{name}={quote(text, safe=_SAFE)}"
                        for name, text in (
                            ("$select", exp.select_text),
                            ("$filter", exp.filter_text),
                            ("$orderby", exp.orderby_text),
                        )
                        if text
                    ]
                    if options:
                        link += "?" + "&".join(options)
                    value[f"{exp.nav.name}@odata.nextLink"] = link

    def _fetch(
        self,
        target: Table,
        plan: RowPlan,
        key_col: str,
        keys: list[Any],
        exp: Expand,
        extra: str | None = None,
    ) -> dict[Any, list[dict[str, Any]]]:
        out: dict[Any, list[dict[str, Any]]] = {}
        order = ", ".join(f't."{a.column}"{" DESC" if d else ""}' for a, d in exp.orderby)
        order = (order + ", " if order else "") + f't."{target.primary_id}"'
        for chunk in _chunks(keys):
            where = [f"{key_col} IN ({','.join('?' * len(chunk))})"]
            args: list[Any] = list(chunk)
            if extra:
                where.append(extra)
            if exp.filter is not None:
                where.append(exp.filter[0])
                args.extend(exp.filter[1])
            rows = self.store.query(
                f'SELECT {", ".join(plan.columns)}, {key_col} FROM "{target.entity_set}" t '
                f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT 50000",
                args,
            )
            for r in rows:
                out.setdefault(r[-1], []).append(plan.emit(r))
        return out

    # -- change tracking
    def _delta_link(self, call: Call, table: Table, version: int) -> str:
        stamp = datetime.now(timezone.utc).strftime("%m/%d/%Y %H:%M:%S")
        token = quote(f"{version}!{stamp}", safe="")
        select = call.params.get("$select")
        query = f"$select={quote(select, safe=_SAFE)}&" if select else ""
        return f"{call.root}{table.entity_set}?{query}$deltatoken={token}"

    def delta(self, call: Call, table: Table, *, whole: bool = False) -> Reply:
        """GET with `$deltatoken`: rows changed since the token, then deletions, paged.

        A delta with more changes than a page (`odata.maxpagesize`, at most the sandbox's
        page size) comes in pages: each but the last has an `@odata.nextLink` (the delta
        link plus a `$skiptoken` whose tracking cookie holds the snapshot version and the
        last row served), and only the last carries the fresh `@odata.deltaLink`.  Rows
        come in version order, then the deletions, so a page boundary may fall anywhere.
        `whole=True` (for `$count`) serves every change in one page.
        """
        # [UNVERIFIED] how Dataverse pages a large delta is not documented (the reference
        # guesses a nextLink with an `istracking="True"` cookie, the deltaLink on the last
        # page); an empty delta is an empty `value` with a fresh deltaLink.
        params = call.params
        token = params["$deltatoken"]
        version, _, stamp = token.partition("!")
        try:
            since = int(version)
        except ValueError:
            raise ApiError(400, "0x80060888", f"Invalid delta token '{token}'.") from None
        require_tracking(table)
        check_token_age(token, stamp, days=self.change_tracking_days)
        q = self.parse(table, {k: v for k, v in params.items() if k == "$select"})
        ann = Annotations(call.prefer.get("odata.include-annotations", "").strip('"') or None)
        plan = RowPlan(table, q.select, ann)
        size, applied = self.page_size(call)
        if whole:  # `$count` counts every change at once
            size, applied = 2**62, None
        now, phase, page_no, after = self.store.version, "rows", 1, None
        if "$skiptoken" in params:
            page_no, lasts, outer = cookie_values(params["$skiptoken"])
            try:
                now, phase = int(outer["deltaversion"]), outer["deltaphase"]
            except (KeyError, ValueError):
                raise syntax_error("The $skiptoken value is not a valid paging cookie.") from None
            after = [v for _, v in lasts]
        values: list[dict[str, Any]] = []
        last: list[Any] | None = None
        order = [("versionnumber", False), (table.primary_id, False)]
        if phase == "rows":
            where, args = 't."versionnumber" > ? AND t."versionnumber" <= ?', [since, now]
            if after:
                pk = self._cookie_value(table, table.primary_id, after[1])
                kw, kp = keyset_where(order, [int(after[0] or 0), pk])
                where, args = f"{where} AND {kw}", [*args, *kp]
            rows = self.store.query(
                f'SELECT {", ".join(plan.columns)}, t."versionnumber", t."{table.primary_id}" '
                f'FROM "{table.entity_set}" t WHERE {where} '
                f'ORDER BY t."versionnumber", t."{table.primary_id}" LIMIT {size + 1}',
                args,
            )
            values = [plan.emit(r) for r in rows[:size]]
            if len(rows) > size:
                last = list(rows[size - 1][-2:])
            else:
                phase, after = "deleted", None
        if phase == "deleted" and last is None:
            room = size - len(values)
            after_version = int(after[0] or 0) if after else since
            deleted = self.store.query(
                "SELECT version, id FROM _deleted WHERE entity = ? AND version > ? "
                f"AND version <= ? ORDER BY version LIMIT {room + 1}",
                [table.logical, max(since, after_version), now],
            )
            context = metadata_context(call.root, f"{table.entity_set}/$deletedEntity")
            for _, row_id in deleted[:room]:
                values.append({"@odata.context": context, "id": row_id, "reason": "deleted"})
            if len(deleted) > room:
                order = [("version", False)]
                last = [deleted[room - 1][0]] if room else [after_version]
        body: dict[str, Any] = {
            "@odata.context": metadata_context(
                call.root, table.entity_set + _select_text(q.select, []) + "/$delta"
            ),
            "value": values,
        }
        if last is not None:
            cookie = make_cookie(
                page_no,
                [(c, c == table.primary_id) for c, _ in order],
                last,
                last,
                tracking=True,
                extra=f' deltaversion="{now}" deltaphase="{phase}"',
            )
            query = "&".join(
                f"{k}={quote(v, safe=_SAFE)}" for k, v in params.items() if k != "$skiptoken"
            )
            link = f"{call.root}{table.entity_set}?{query}&$skiptoken={skiptoken_param(cookie)}"
            body["@odata.nextLink"] = link
        else:
            body["@odata.deltaLink"] = self._delta_link(call, table, now)
        headers = [(ROWS_HEADER, str(len(values)))]
        if applied is not None:
            headers.append(("Preference-Applied", f"odata.maxpagesize={applied}"))
        return Reply.json(200, body, headers)
