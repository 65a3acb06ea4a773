"""Web API pages -> one typed DataFrame (`FrameBuilder`), in two phases.

Reading converts page by page (`FrameBuilder.add_page()`), column by column, into typed
chunks (`_columns` reads the page's row dicts, with pyarrow in one C pass where it can);
the page's dicts can be freed as soon as it is added, so memory stays close to the size
of the final frame.  Like pandas-gbq, it runs in two phases: every column first gets
a dtype that holds nulls without loss (`Int32`, `boolean`, `string`, UTC datetimes,
labelled categoricals...; the maps are in `_dtypes`), then `finish()` applies the user's
per-column `dtypes=` overrides, which may be lossy and always win.

How the columns look (`parentaccountid` is a lookup, `industrycode` a choice):

| wire property | DataFrame column(s) |
|---|---|
| `industrycode: 1` | `industrycode` (Categorical of labels, option-set order) |
| `_parentaccountid_value` + annotations | `parentaccountid` (id), `..._name`, `..._table` |
| `revenue` + formatted value, with `formatted=True` | `revenue`, `revenue_label` |
| `@odata.etag` | `_etag` (last column; used for optimistic concurrency on push) |

Parallel reads merge their builders (`FrameBuilder.merge()`) or their frames
(`concat_frames()`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._columns import PageColumns
from ._dtypes import (
    ETAG_COLUMN,
    FORMATTED_VALUE,
    LABEL_SUFFIX,
    LOOKUP_LOGICAL_NAME,
    NAME_SUFFIX,
    TABLE_SUFFIX,
    arrow_chunk,
    arrow_strings,
    arrow_wire_type,
    as_series,
    choice_categorical,
    choice_values,
    converter_kind,
    infer_series,
    multichoice_lists,
    object_array,
    pyarrow_or_none,
    string_array,
    typed_chunk,
)
from ._exceptions import ColumnTypeWarning, ConfigError
from ._metadata import Attribute, Table, suggest

__all__ = ["FrameBuilder", "concat_frames", "frame_from_pages"]

_FORMATTED_KINDS = frozenset(
    {"int32", "int64", "float", "money", "decimal", "bool", "datetime", "date"}
)
_UNREADABLE_TYPES = frozenset({"CalendarRules", "ManagedProperty", "PartyList", "Virtual"})


class _Column:
    """The typed chunks gathered so far for one wire property (one or more output columns).

    A `_Gap` in the chunk lists stands for rows the column was missing from (pages before
    it first appeared, or another builder's rows after `FrameBuilder.merge()`).
    """

    __slots__ = ("attribute", "chunks", "key", "kind", "labels", "name", "names", "tables")

    def __init__(self, key: str, name: str, kind: str, attribute: Attribute | None):
        self.key = key
        self.name = name
        self.kind = kind
        self.attribute = attribute
        self.chunks: list[Any] = []
        self.names: list[Any] = []  # lookups: FormattedValue (the related primary name)
        self.tables: list[Any] = []  # lookups: codes into the builder's table names
        self.labels: list[Any] | None = None

    def pad(self, rows: int) -> None:
        """Mark `rows` rows as missing (NA) in every chunk list of the column."""
        if rows:
            gap = _Gap(rows)
            self.chunks.append(gap)
            if self.kind == "lookup":
                self.names.append(gap)
                self.tables.append(gap)
            if self.labels is not None:
                self.labels.append(gap)

    def release(self) -> None:
        """Drop every chunk (the column has been built, or moved to another builder)."""
        self.chunks = []
        self.names = []
        self.tables = []
        if self.labels is not None:
            self.labels = []


class _Raw:
    """A chunk kept as raw values because they did not fit the column's dtype."""

    __slots__ = ("values",)

    def __init__(self, values: list[Any]) -> None:
        self.values = values


class _Gap:
    """A run of rows in which a column is missing: NA (None in object columns) once built."""

    __slots__ = ("rows",)

    def __init__(self, rows: int) -> None:
        self.rows = rows


def _concat_strings(chunks: Sequence[Any]) -> Any:
    """Join per-page `string` arrays (and `_Gap`s) into one; Arrow chunks are not copied."""
    arrays = [
        pd.array(np.full(c.rows, None, dtype=object), dtype="string") if isinstance(c, _Gap) else c
        for c in chunks
    ]
    if not arrays:
        return pd.array(np.empty(0, dtype=object), dtype="string")
    first: Any = arrays[0]
    return first if len(arrays) == 1 else type(first)._concat_same_type(arrays)


def _strings(page: PageColumns, key: str) -> Any:
    """One page of a text property as a `string` array."""
    array = page.arrow(key)
    return string_array(page.values(key)) if array is None else arrow_strings(array)


def _gap_chunk(kind: str, rows: int) -> Any:
    """The typed chunk of `rows` missing values for a column of `kind`."""
    if kind in ("int32", "int64", "bool", "choice"):
        dtype = {"int64": np.int64, "bool": np.bool_}.get(kind, np.int32)
        return np.zeros(rows, dtype=dtype), np.ones(rows, dtype=bool)
    if kind in ("float", "money"):
        return np.full(rows, np.nan)
    if kind in ("datetime", "date"):
        return np.full(rows, "NaT", dtype="datetime64[us]")
    if kind in ("string", "guid"):
        return _concat_strings([_Gap(rows)])
    return np.full(rows, None, dtype=object)


def _series_from_chunks(column: _Column, chunks: list[Any]) -> pd.Series:
    """Phase 1 result for one column: concatenate typed chunks into a nullable Series."""
    kind = column.kind
    if kind in ("string", "guid"):
        return as_series(_concat_strings(chunks))
    chunks = [_gap_chunk(kind, c.rows) if isinstance(c, _Gap) else c for c in chunks]
    if kind in ("int32", "int64", "bool"):
        dtype = {"int32": np.int32, "int64": np.int64, "bool": np.bool_}[kind]
        values = np.concatenate([np.empty(0, dtype=dtype)] + [c[0] for c in chunks])
        mask = np.concatenate([np.empty(0, dtype=bool)] + [c[1] for c in chunks])
        array: Any = (
            pd.arrays.BooleanArray(values, mask)
            if kind == "bool"
            else pd.arrays.IntegerArray(values, mask)
        )
        return as_series(array)
    if kind == "choice":
        values = np.concatenate([np.empty(0, dtype=np.int32)] + [c[0] for c in chunks])
        mask = np.concatenate([np.empty(0, dtype=bool)] + [c[1] for c in chunks])
        return as_series(choice_categorical(values, mask, column.attribute))
    if kind in ("float", "money"):
        return as_series(np.concatenate([np.empty(0)] + chunks))
    if kind == "datetime" or kind == "date":
        values = np.concatenate([np.empty(0, dtype="datetime64[us]")] + chunks)
        series = as_series(values)
        return as_series(series.dt.tz_localize("UTC")) if kind == "datetime" else series
    values = np.concatenate([np.empty(0, dtype=object)] + chunks)
    if kind == "multichoice":
        return as_series(multichoice_lists(values, column.attribute), object)
    if kind in ("decimal", "expanded"):
        return as_series(values, object)
    return infer_series(values)


class _Codes:
    """A growing string -> int code table, so repeated strings are stored as small ints."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._index: dict[str, int] = {}

    def code(self, value: str) -> int:
        found = self._index.get(value)
        if found is None:
            found = self._index[value] = len(self.values)
            self.values.append(value)
        return found

    def encode(self, raw: Sequence[Any]) -> np.ndarray:
        codes, uniques = pd.factorize(object_array(raw))
        lut = np.array([self.code(str(u)) for u in uniques] + [-1], dtype=np.int32)
        return lut[codes]  # code -1 (missing) picks the trailing -1

    def encode_arrow(self, array: Any) -> np.ndarray:
        """`encode()` for an Arrow text array (nulls are missing)."""
        encoded = array.dictionary_encode()
        uniques = encoded.dictionary.to_pylist()
        lut = np.array([self.code(u) for u in uniques] + [-1], dtype=np.int32)
        indices = encoded.indices.fill_null(len(uniques)).to_numpy(zero_copy_only=False)
        codes: np.ndarray = lut[indices]
        return codes


class FrameBuilder:
    """Turns Web API pages into one typed DataFrame, page by page.

    Usage:

    ```python
    builder = FrameBuilder(table, select=["name", "revenue", "parentaccountid"])
    async for page in pages:            # page = body["value"], a list of row dicts
        builder.add_page(page)          # converted now; the dicts are not kept
    df = builder.finish()
    ```

    **Parameters:**

    * **table** - the table's metadata (with attributes).
    * **select** - the columns asked for (logical names or `_x_value`); None: whatever
      the pages hold.  The primary id always comes first, as the service always sends it.
    * **formatted** - add `<col>_label` with the service's formatted value (currency,
      user-time-zone dates, Yes/No...) for number, date and yes/no columns.  Choices and
      lookups carry their labels anyway.  Needs the `FormattedValue` annotation.
    * **dtypes** - per output column dtype overrides, applied last.  For a choice column a
      numeric dtype (`"Int32"`, `int`) gives the integer values instead of the labels.
    * **decimal** - Money and Decimal columns as `decimal.Decimal` objects (rounded to the
      column's precision) instead of float64.
    * **etag** - keep each row's `@odata.etag` in an `_etag` column (for concurrency on push).
    * **names** - `(navigation property, lookup property, primary name)` per lookup whose
      name comes by `$expand` (`_readplan.Wire.names`), read in the page's pyarrow pass.
    """

    def __init__(
        self,
        table: Table,
        *,
        select: Sequence[str] | None = None,
        formatted: bool = False,
        dtypes: Mapping[str, Any] | None = None,
        decimal: bool = False,
        etag: bool = True,
        names: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        self.table = table
        self._names = {key: (nav, primary) for nav, key, primary in names}
        self._navs = {nav for nav, _, _ in names}
        self.formatted = formatted
        self.decimal = decimal
        self.etag = etag
        self.dtypes = dict(dtypes or {})
        self._rows = 0
        self._columns: dict[str, _Column] = {}
        self._etags: list[Any] = []
        self._table_codes = _Codes()
        self._fixed = select is not None
        self._finished = False
        if select is not None:
            attributes = [table.resolve_column(name) for name in select]
            primary = table.attributes.get(table.primary_id)
            if primary is not None and primary not in attributes:
                attributes.insert(0, primary)
            for attribute in attributes:
                self._add_column(attribute.property_name, attribute)
        self._check_dtypes()

    # -- planning

    def _add_column(self, key: str, attribute: Attribute | None) -> _Column:
        if attribute is None:
            kind = "lookup" if key.startswith("_") and key.endswith("_value") else "object"
            name = key[1:-6] if kind == "lookup" else key
        else:
            kind = converter_kind(attribute)
            name = attribute.logical_name
            if kind == "money" and self.decimal:
                kind = "decimal"
        column = _Column(key, name, kind, attribute)
        if self.formatted and kind in _FORMATTED_KINDS:
            column.labels = []
        column.pad(self._rows)
        self._columns[key] = column
        return column

    def _plan_from_row(self, row: Mapping[str, Any]) -> None:
        """Columns for keys not seen before: with select=None the page decides.

        Expanded navigation properties (`$expand`: an object or an array, or a lookup's own
        name) are kept as object columns of dicts/lists, with or without select.
        """
        unknown: list[str] = []
        for key, value in row.items():
            if "@" in key or key in self._columns or key in self._navs:
                continue
            attribute = self.table.find_column(key)
            if attribute is not None and attribute.property_name != key:
                self._add_expanded(key)  # `primarycontactid` next to `_primarycontactid_value`
            elif attribute is None and isinstance(value, (dict, list)):
                self._add_expanded(key)
            elif not self._fixed:
                if attribute is None:
                    unknown.append(key)
                self._add_column(key, attribute)
        if unknown:
            warnings.warn(
                f"Column(s) {', '.join(map(repr, unknown))} are not in the metadata of table "
                f"{self.table.logical_name!r}; their dtypes were inferred from the values. "
                "Refresh the metadata if the table has changed.",
                ColumnTypeWarning,
                stacklevel=4,
            )

    def _add_expanded(self, key: str) -> None:
        attribute = self.table.find_column(key)
        name = f"{key}_expanded" if attribute is not None else key
        column = self._columns[key] = _Column(key, name, "expanded", None)
        column.pad(self._rows)

    def _output_names(self, columns: Iterable[_Column]) -> list[str]:
        names: list[str] = []
        for column in columns:
            names.append(column.name)
            if column.kind == "lookup":
                names += [column.name + NAME_SUFFIX, column.name + TABLE_SUFFIX]
            if column.labels is not None or (self.formatted and column.kind in _FORMATTED_KINDS):
                names.append(column.name + LABEL_SUFFIX)
        return names

    def _check_dtypes(self) -> None:
        if not self.dtypes:
            return
        if self._fixed:
            possible = self._output_names(self._columns.values())
        else:
            possible = self._output_names(
                _Column(a.property_name, a.logical_name, converter_kind(a), a)
                for a in self.table.attributes.values()
            )
        if self.etag:
            possible.append(ETAG_COLUMN)
        wrong = [name for name in self.dtypes if name not in possible]
        if wrong:
            hints = [suggest(name, possible) for name in wrong]
            raise ConfigError(
                f"dtypes= names column(s) the result will not have: {', '.join(map(repr, wrong))}.",
                field="dtypes",
                hint=" ".join(h for h in hints if h) or "Use the DataFrame's column names.",
            )

    # -- phase 1

    def add_page(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Convert one page (the `value` list of a response body) and keep typed columns.

        Nothing of `rows` is retained: the dicts can be garbage-collected right after.
        """
        self._check_open()
        n = len(rows)
        if n == 0:
            return
        first = rows[0]
        if any(k not in self._columns and k not in self._navs for k in first if "@" not in k):
            self._plan_from_row(first)
        columns = list(self._columns.values())
        page = PageColumns(rows, self._arrow_fields(columns))
        for column in columns:
            key = column.key
            if column.kind == "lookup":
                column.chunks.append(_strings(page, key))
                column.names.append(self._lookup_names(page, key))
                tables = page.arrow(key + LOOKUP_LOGICAL_NAME)
                column.tables.append(
                    self._table_codes.encode(page.values(key + LOOKUP_LOGICAL_NAME))
                    if tables is None
                    else self._table_codes.encode_arrow(tables)
                )
                continue
            array = page.arrow(key)
            chunk = None if array is None else arrow_chunk(column.kind, array)
            if chunk is None:
                raw = page.values(key)
                try:
                    chunk = typed_chunk(column.kind, raw, column.attribute)
                except (ValueError, TypeError, OverflowError):
                    chunk = _Raw(raw)
            column.chunks.append(chunk)
            if column.labels is not None:
                column.labels.append(_strings(page, key + FORMATTED_VALUE))
        if self.etag:
            self._etags.append(_strings(page, "@odata.etag"))
        self._rows += n

    def _lookup_names(self, page: PageColumns, key: str) -> Any:
        """One page of a lookup's names: expanded objects' primary names, or annotations."""
        if key not in self._names:
            return _strings(page, key + FORMATTED_VALUE)
        nav, primary = self._names[key]
        array = page.arrow(nav)  # flatten(): a null object gives a null name
        if array is not None:
            return arrow_strings(array.flatten()[0])
        related = page.values(nav)
        return string_array([r.get(primary) if isinstance(r, dict) else None for r in related])

    def _arrow_fields(self, columns: Iterable[_Column]) -> dict[str, Any]:
        """Wire key -> Arrow type of what `add_page()` reads with pyarrow (`_columns`)."""
        text = pd.StringDtype().storage == "pyarrow"
        string = arrow_wire_type("string", text=text)
        fields: dict[str, Any] = {}
        for column in columns:
            key = column.key
            if column.kind == "lookup":
                if string is not None:
                    for suffix in ("", FORMATTED_VALUE, LOOKUP_LOGICAL_NAME):
                        fields[key + suffix] = string
                    if key in self._names:  # the name inside the expanded object
                        nav, primary = self._names[key]
                        del fields[key + FORMATTED_VALUE]
                        fields[nav] = pyarrow_or_none().struct([(primary, string)])
                continue
            wire = arrow_wire_type(column.kind, text=text)
            if wire is not None:
                fields[key] = wire
            if column.labels is not None and string is not None:
                fields[key + FORMATTED_VALUE] = string
        if self.etag and string is not None:
            fields["@odata.etag"] = string
        return fields

    @property
    def rows(self) -> int:
        """The number of rows added so far."""
        return self._rows

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("This FrameBuilder is finished (or merged); start a new one.")

    @classmethod
    def merge(cls, builders: Sequence[FrameBuilder], *, consume: bool = False) -> FrameBuilder:
        """One builder holding the rows of `builders`, in their order.

        The parallel ranges of a read each fill a builder; merging them and finishing once
        gives the frame without `concat_frames()`, which would copy every column again.
        The chunks are shared, not copied.  Builders without rows add nothing (if none has
        rows, the first one's columns are kept).

        **Parameters:**

        * **builders** - builders made with the same table and options.
        * **consume** - empty and finish `builders`, so that the merged builder holds the
          only reference to the chunks and `finish()` frees them column by column.

        Raises `ValueError` (before changing anything) if a column was read with different
        types by two builders; concatenate their finished frames instead.
        """
        if not builders:
            raise ValueError("No builders to merge.")
        first = builders[0]
        sources = [b for b in builders if b._rows] or [first]
        seen: dict[str, tuple[str, bool]] = {}
        for builder in sources:
            builder._check_open()
            for key, column in builder._columns.items():
                shape = (column.kind, column.labels is not None)
                if seen.setdefault(key, shape) != shape:
                    raise ValueError(f"Column {key!r} was read with different types.")
        merged = cls(first.table, formatted=first.formatted, decimal=first.decimal, etag=first.etag)
        merged.dtypes = dict(first.dtypes)
        merged._fixed = first._fixed
        columns = merged._columns
        for builder in sources:
            for key, column in builder._columns.items():
                target = columns.get(key)
                if target is None:
                    target = _Column(key, column.name, column.kind, column.attribute)
                    if column.labels is not None:
                        target.labels = []
                    target.pad(merged._rows)
                    columns[key] = target
                target.chunks += column.chunks
                target.names += column.names
                if column.tables:
                    codes = builder._table_codes.values
                    lut = np.array([merged._table_codes.code(v) for v in codes] + [-1], np.int32)
                    target.tables += [c if isinstance(c, _Gap) else lut[c] for c in column.tables]
                if target.labels is not None and column.labels is not None:
                    target.labels += column.labels
            for key, target in columns.items():
                if key not in builder._columns:
                    target.pad(builder._rows)
            merged._etags += builder._etags
            merged._rows += builder._rows
        if consume:
            for builder in builders:
                for column in builder._columns.values():
                    column.release()
                builder._etags = []
                builder._finished = True
        return merged

    # -- phase 2

    def finish(self) -> pd.DataFrame:
        """The DataFrame: phase-1 dtypes, then the `dtypes=` overrides.

        Each column's chunks are dropped as soon as the column is built, so the chunks and
        the frame are never both held in full.  A builder finishes once.
        """
        self._check_open()
        self._finished = True
        if not self._columns and not self._fixed:
            self._plan_empty()
        out: dict[str, pd.Series] = {}
        primary = self.table.primary_id
        ordered = sorted(self._columns.values(), key=lambda c: c.name != primary)
        for column in ordered:
            self._finish_column(column, out)
        if self.etag:
            etags, self._etags = self._etags, []
            out[ETAG_COLUMN] = self._override(ETAG_COLUMN, as_series(_concat_strings(etags)))
            del etags
        frame: pd.DataFrame = pd.DataFrame(out, copy=False)
        frame.index = pd.RangeIndex(self._rows)
        frame.attrs["d365nb"] = {
            "table": self.table.logical_name,
            "entity_set": self.table.entity_set_name,
            "expand": [c.name for c in ordered if c.kind == "expanded"],
        }
        return frame

    def _plan_empty(self) -> None:
        """Columns for a result with no rows and no select: the table's readable columns."""
        for attribute in self.table.attributes.values():
            readable = attribute.is_valid_for_read and attribute.attribute_of is None
            if readable and (
                attribute.attribute_type not in _UNREADABLE_TYPES or attribute.is_multi_choice
            ):
                self._add_column(attribute.property_name, attribute)

    def _finish_column(self, column: _Column, out: dict[str, pd.Series]) -> None:
        name = column.name
        chunks, labels = column.chunks, column.labels
        if column.kind == "lookup":
            names, tables = column.names, column.tables
            column.release()
            self._finish_lookup(column, chunks, names, tables, out)
            return
        column.release()
        if any(isinstance(c, _Raw) for c in chunks):
            series = self._fallback(column, chunks)
        else:
            series = _series_from_chunks(column, chunks)
        del chunks
        out[name] = self._override(name, series, column)
        if labels is not None:
            out[name + LABEL_SUFFIX] = self._override(
                name + LABEL_SUFFIX, as_series(_concat_strings(labels))
            )

    def _finish_lookup(
        self,
        column: _Column,
        chunks: list[Any],
        names: list[Any],
        tables: list[Any],
        out: dict[str, pd.Series],
    ) -> None:
        ids = _concat_strings(chunks)
        codes = np.concatenate(
            [np.empty(0, dtype=np.int32)]
            + [np.full(c.rows, -1, dtype=np.int32) if isinstance(c, _Gap) else c for c in tables]
        )
        attribute = column.attribute
        seen = self._table_codes.values
        if attribute is not None and len(attribute.targets) == 1:
            # Single-target lookups: the table is known even without annotations.
            target = self._table_codes.code(attribute.targets[0])
            seen = self._table_codes.values
            codes = np.where((codes < 0) & ~np.asarray(ids.isna(), dtype=bool), target, codes)
        # Categories: the lookup's targets first, then any other table seen; codes remapped.
        targets = list(attribute.targets) if attribute is not None else []
        used = {seen[c] for c in np.unique(codes[codes >= 0]).tolist()}
        categories = targets + sorted(used.difference(targets))
        position = {name: i for i, name in enumerate(categories)}
        lut = np.array([position.get(name, -1) for name in seen] + [-1], dtype=np.int32)
        name = column.name
        out[name] = self._override(name, as_series(ids))
        out[name + NAME_SUFFIX] = self._override(
            name + NAME_SUFFIX, as_series(_concat_strings(names))
        )
        table = pd.Categorical.from_codes(lut[codes], dtype=pd.CategoricalDtype(categories))
        out[name + TABLE_SUFFIX] = self._override(name + TABLE_SUFFIX, as_series(table))

    def _fallback(self, column: _Column, chunks: list[Any]) -> pd.Series:
        """Some page did not fit the column's dtype: the whole column is kept as objects."""
        parts: list[Any] = []
        for chunk in chunks:
            if isinstance(chunk, _Raw):
                parts.extend(chunk.values)
            elif isinstance(chunk, _Gap):
                parts.extend([None] * chunk.rows)
            else:
                parts.extend(_series_from_chunks(column, [chunk]).astype(object).tolist())
        warnings.warn(
            f"Column {column.name!r} of table {self.table.logical_name!r} has values that do "
            f"not fit its type ({column.attribute.attribute_type if column.attribute else '?'}); "
            "it was kept as Python objects.",
            ColumnTypeWarning,
            stacklevel=4,
        )
        return as_series(object_array(parts), object)

    def _override(self, name: str, series: pd.Series, column: _Column | None = None) -> pd.Series:
        dtype = self.dtypes.get(name)
        if dtype is None:
            return series
        try:
            if column is not None and column.kind == "choice" and _is_numeric(dtype):
                values = choice_values(series, column.attribute)
                return values.astype(dtype)
            return series.astype(dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ConfigError(
                f"Column {name!r} cannot be converted to {dtype!r}: {exc}",
                field="dtypes",
                hint=f"Drop {name!r} from dtypes= or choose a dtype that holds its values.",
            ) from exc


def _is_numeric(dtype: Any) -> bool:
    try:
        return pd.api.types.is_numeric_dtype(pd.api.types.pandas_dtype(dtype))
    except TypeError:
        return False


def frame_from_pages(
    pages: Iterable[Sequence[Mapping[str, Any]]],
    *,
    table: Table,
    select: Sequence[str] | None = None,
    formatted: bool = False,
    dtypes: Mapping[str, Any] | None = None,
    decimal: bool = False,
    etag: bool = True,
) -> pd.DataFrame:
    """One DataFrame from an iterable of pages (each a response body's `value` list).

    A thin loop over `FrameBuilder` (see there for the parameters).
    """
    builder = FrameBuilder(
        table, select=select, formatted=formatted, dtypes=dtypes, decimal=decimal, etag=etag
    )
    for page in pages:
        builder.add_page(page)
    return builder.finish()


def concat_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate frames built by several `FrameBuilder`s (e.g. parallel key ranges).

    Plain `pd.concat` turns categoricals whose categories differ (a choice value outside
    the metadata seen in one part only) into `object`; this unions the categories first, so
    choice and `_table` columns stay categorical.  Empty parts are dropped (their columns
    may come from the metadata rather than from the pages), unless all are empty.
    """
    if not frames:
        raise ConfigError("No frames to concatenate.", field="frames")
    parts = [f for f in frames if len(f)] or [frames[0]]
    if len(parts) == 1:
        return parts[0]
    parts = [f.copy(deep=False) for f in parts]
    for name in parts[0].columns:
        dtypes = [f[name].dtype for f in parts if name in f.columns]
        categoricals = [d for d in dtypes if isinstance(d, pd.CategoricalDtype)]
        if len(categoricals) != len(dtypes):
            continue
        categories: dict[Any, None] = {}
        for dtype in categoricals:
            categories.update(dict.fromkeys(dtype.categories))
        union = pd.CategoricalDtype(list(categories))
        for frame in parts:
            if name in frame.columns:
                frame[name] = frame[name].cat.set_categories(union.categories)
    combined: pd.DataFrame = pd.concat(parts, ignore_index=True)
    combined.attrs = dict(parts[0].attrs)
    return combined
