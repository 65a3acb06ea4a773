"""Conversion between Web API JSON and pandas: pages -> DataFrame, DataFrame -> payloads.

Reading converts page by page (`FrameBuilder.add_page()`), column by column, into typed
chunks; the page's dicts can be freed as soon as it is added, so memory stays close to the
size of the final frame.  Like pandas-gbq, it runs in two phases: every column first gets
a dtype that holds nulls without loss (`Int32`, `boolean`, `string`, UTC datetimes,
labelled categoricals...), then `finish()` applies the user's per-column `dtypes=`
overrides, which may be lossy and always win.

How the columns look (`parentaccountid` is a lookup, `industrycode` a choice):

| wire property | DataFrame column(s) |
|---|---|
| `industrycode: 1` | `industrycode` (Categorical of labels, option-set order) |
| `_parentaccountid_value` + annotations | `parentaccountid` (id), `..._name`, `..._table` |
| `revenue` + formatted value, with `formatted=True` | `revenue`, `revenue_label` |
| `@odata.etag` | `_etag` (last column; used for optimistic concurrency on push) |

Writing (`build_payloads()`, `payloads_from_frame()`) reverses every mapping and checks the
whole frame before anything is sent, collecting every problem with its column, rows and fix.
"""

from __future__ import annotations

import decimal
import importlib
import json
import re
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._exceptions import ColumnTypeWarning, ConfigError, InvalidFrameError, Problem
from ._metadata import Attribute, Table, suggest

__all__ = [
    "ATTRIBUTE_DTYPES",
    "ColumnTypeWarning",
    "EDM_DTYPES",
    "ETAG_COLUMN",
    "FORMATTED_VALUE",
    "FrameBuilder",
    "InvalidFrameError",
    "LOOKUP_LOGICAL_NAME",
    "Payloads",
    "Problem",
    "WriteMode",
    "attribute_dtype",
    "build_payloads",
    "choice_labels",
    "choice_values",
    "concat_frames",
    "encode_json",
    "frame_from_pages",
    "payloads_from_frame",
    "wire_select",
]

# -- type maps ----------------------------------------------------------------------------
# If you change these maps, update the "Column types" table in README.md as well.

#: AttributeType (with "DateOnly" for DateTime columns whose DateTimeBehavior is DateOnly,
#: and "MultiSelectPicklist" for AttributeTypeName MultiSelectPicklistType) -> dtype.
ATTRIBUTE_DTYPES: dict[str, str] = {
    "BigInt": "Int64",
    "Boolean": "boolean",
    "Customer": "string",  # + <col>_name (string), <col>_table (category)
    "DateOnly": "datetime64[us]",  # naive, midnight
    "DateTime": "datetime64[us, UTC]",  # UserLocal and TimeZoneIndependent
    "Decimal": "float64",  # decimal.Decimal objects with decimal=True
    "Double": "float64",
    "EntityName": "string",
    "Integer": "Int32",
    "Lookup": "string",  # + <col>_name (string), <col>_table (category)
    "Memo": "string",
    "Money": "float64",  # decimal.Decimal objects with decimal=True
    "MultiSelectPicklist": "object",  # lists of labels
    "Owner": "string",  # + <col>_name (string), <col>_table (category)
    "Picklist": "category",  # labels as categories, in option-set order
    "State": "category",
    "Status": "category",
    "String": "string",
    "Uniqueidentifier": "string",
}

#: Edm type -> dtype, the fallback for columns that the metadata does not describe (their
#: Edm type is guessed from the JSON values).
EDM_DTYPES: dict[str, str] = {
    "Edm.Binary": "object",
    "Edm.Boolean": "boolean",
    "Edm.Date": "datetime64[us]",
    "Edm.DateTimeOffset": "datetime64[us, UTC]",
    "Edm.Decimal": "float64",
    "Edm.Double": "float64",
    "Edm.Guid": "string",
    "Edm.Int16": "Int16",
    "Edm.Int32": "Int32",
    "Edm.Int64": "Int64",
    "Edm.String": "string",
}

#: Column holding each row's `@odata.etag` (`W/"72201545"`).
ETAG_COLUMN = "_etag"
FORMATTED_VALUE = "@OData.Community.Display.V1.FormattedValue"
LOOKUP_LOGICAL_NAME = "@Microsoft.Dynamics.CRM.lookuplogicalname"
_NAME, _TABLE, _LABEL = "_name", "_table", "_label"

# The kind of converter each attribute type gets (the dtype map above says what comes out).
_KINDS: dict[str, str] = {
    "BigInt": "int64",
    "Boolean": "bool",
    "Customer": "lookup",
    "DateOnly": "date",
    "DateTime": "datetime",
    "Decimal": "money",
    "Double": "float",
    "EntityName": "string",
    "Integer": "int32",
    "Lookup": "lookup",
    "Memo": "string",
    "Money": "money",
    "MultiSelectPicklist": "multichoice",
    "Owner": "lookup",
    "Picklist": "choice",
    "State": "choice",
    "Status": "choice",
    "String": "string",
    "Uniqueidentifier": "guid",
}
_FORMATTED_KINDS = frozenset(
    {"int32", "int64", "float", "money", "decimal", "bool", "datetime", "date"}
)
_UNREADABLE_TYPES = frozenset({"CalendarRules", "ManagedProperty", "PartyList", "Virtual"})
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_MULTI_WIRE = re.compile(r"^-?\d+(,-?\d+)*$")


# -- helpers shared by both directions ----------------------------------------------------


def _type_key(attribute: Attribute) -> str:
    if attribute.is_multi_choice:
        return "MultiSelectPicklist"
    if attribute.is_date_only:
        return "DateOnly"
    return attribute.attribute_type


def _kind(attribute: Attribute) -> str:
    return _KINDS.get(_type_key(attribute), "object")


def attribute_dtype(attribute: Attribute) -> str:
    """The dtype a column is read as (`ATTRIBUTE_DTYPES`, with DateOnly and multi-select).

    Lookups also give `<col>_name` (`string`) and `<col>_table` (`category`).
    """
    return ATTRIBUTE_DTYPES.get(_type_key(attribute), "object")


def choice_labels(attribute: Attribute) -> dict[int, str]:
    """Choice value -> category label, in option-set order; repeated labels get `(value)`.

    Categories must be unique, and the mapping must reverse exactly on push, so a label
    used by two options becomes `"Label (1)"`, `"Label (2)"`.
    """
    counts: dict[str, int] = {}
    for label in attribute.options.values():
        counts[label] = counts.get(label, 0) + 1
    return {
        value: (f"{label} ({value})" if counts[label] > 1 else label)
        for value, label in attribute.options.items()
    }


def wire_select(table: Table, select: Sequence[str]) -> list[str]:
    """Web API property names for `$select`: `parentaccountid` -> `_parentaccountid_value`.

    Raises `ConfigError` (`field="column"`) with suggestions for an unknown column.
    """
    out: list[str] = []
    for name in select:
        prop = table.resolve_column(name).property_name
        if prop not in out:
            out.append(prop)
    return out


# -- reading ------------------------------------------------------------------------------


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


def _as_series(data: Any, dtype: Any = None) -> pd.Series:
    series: pd.Series = pd.Series(data, dtype=dtype, copy=False)
    return series


def _is_none(array: np.ndarray) -> np.ndarray:
    return np.asarray(pd.isna(array), dtype=bool)


def _masked_ints(raw: Sequence[Any], kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == "int64":
        array = np.array(raw, dtype=object)
        mask = _is_none(array)
        return np.where(mask, 0, array).astype(np.int64), mask
    floats = np.array(raw, dtype=np.float64)  # exact for 32-bit values; None -> nan
    mask = np.isnan(floats)
    values = np.where(mask, 0.0, floats)
    if not np.array_equal(values, np.trunc(values)):
        raise ValueError("not integers")
    if len(values) and (values.min() < -(2**31) or values.max() > 2**31 - 1):
        raise OverflowError("outside the 32-bit range")
    return values.astype(np.int32), mask


def _convert_chunk(kind: str, raw: Sequence[Any], attribute: Attribute | None) -> Any:
    """Phase 1 for one page of one column: raw JSON values -> a typed chunk."""
    if kind in ("int32", "int64", "choice"):
        return _masked_ints(raw, "int32" if kind == "choice" else kind)
    if kind in ("float", "money"):
        return np.array(raw, dtype=np.float64)
    if kind == "decimal":
        places = attribute.precision if attribute is not None else None
        return np.array([_to_decimal(v, places) for v in raw], dtype=object)
    if kind == "bool":
        array = np.array(raw, dtype=object)
        mask = _is_none(array)
        if not np.isin(array[~mask], (True, False)).all():
            raise ValueError("not booleans")
        return np.equal(array, True), mask
    if kind == "datetime":
        index = pd.to_datetime(raw, format="ISO8601", utc=True)
        return index.tz_convert(None).as_unit("us").to_numpy()
    if kind == "date":
        index = pd.to_datetime(raw, format="%Y-%m-%d")
        return index.as_unit("us").to_numpy()
    if kind in ("string", "guid"):
        return _strings(raw)
    return np.array(raw, dtype=object)  # multichoice, object, decimal, expanded


def _strings(raw: Sequence[Any]) -> Any:
    """One page of a text column as a `string` array.

    Converted page by page: with pyarrow the text is copied into Arrow buffers at once, so
    the page's Python `str` objects (about 50 bytes of overhead each) can be freed with the
    page; `_concat_strings()` later joins the pages without copying.  The buffers come from
    the system allocator, like numpy's: Arrow's default pool (mimalloc) kept ~100 MiB more
    resident after a 1M-row read, freed page buffers it did not give back.
    """
    values = np.array(raw, dtype=object)
    if pd.StringDtype().storage == "pyarrow":
        pa: Any = importlib.import_module("pyarrow")  # installed: pandas stores text in it
        try:
            array = pa.array(
                values,
                type=pa.large_string(),
                from_pandas=True,
                memory_pool=pa.system_memory_pool(),
            )
        except (pa.ArrowException, TypeError, ValueError):
            pass  # not all str/None: pandas converts (or rejects) them
        else:
            return pd.arrays.ArrowStringArray(array)
    return pd.array(values, dtype="string")


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


def _to_decimal(value: Any, places: int | None) -> decimal.Decimal | None:
    if value is None:
        return None
    if isinstance(value, decimal.Decimal):
        return value
    number = decimal.Decimal(repr(value)) if isinstance(value, float) else decimal.Decimal(value)
    if places is not None and number.is_finite():
        try:
            number = number.quantize(decimal.Decimal(1).scaleb(-places))
        except decimal.InvalidOperation:  # more digits than the context holds: keep as is
            pass
    return number


def _series_from_chunks(column: _Column, chunks: list[Any]) -> pd.Series:
    """Phase 1 result for one column: concatenate typed chunks into a nullable Series."""
    kind = column.kind
    if kind in ("string", "guid"):
        return _as_series(_concat_strings(chunks))
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
        return _as_series(array)
    if kind == "choice":
        values = np.concatenate([np.empty(0, dtype=np.int32)] + [c[0] for c in chunks])
        mask = np.concatenate([np.empty(0, dtype=bool)] + [c[1] for c in chunks])
        return _categorical(values, mask, column.attribute)
    if kind in ("float", "money"):
        return _as_series(np.concatenate([np.empty(0)] + chunks))
    if kind == "datetime" or kind == "date":
        values = np.concatenate([np.empty(0, dtype="datetime64[us]")] + chunks)
        series = _as_series(values)
        return _as_series(series.dt.tz_localize("UTC")) if kind == "datetime" else series
    values = np.concatenate([np.empty(0, dtype=object)] + chunks)
    if kind == "multichoice":
        return _multichoice(values, column.attribute)
    if kind in ("decimal", "expanded"):
        return _as_series(values, object)
    return _infer(values)


def _categorical(values: np.ndarray, mask: np.ndarray, attribute: Attribute | None) -> pd.Series:
    labels = choice_labels(attribute) if attribute is not None else {}
    known = np.array(list(labels), dtype=np.int64)
    seen = np.unique(values[~mask]).astype(np.int64)
    unknown = np.setdiff1d(seen, known)
    categories = list(labels.values()) + [str(v) for v in unknown]
    all_values = np.concatenate([known, unknown])
    if len(all_values):
        order = np.argsort(all_values, kind="stable")
        positions = np.searchsorted(all_values[order], values.astype(np.int64))
        codes = order[np.minimum(positions, len(order) - 1)]
    else:
        codes = np.zeros(len(values), dtype=np.int64)
    codes = np.where(mask, -1, codes)
    return _as_series(pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(categories)))


def _multichoice(values: np.ndarray, attribute: Attribute | None) -> pd.Series:
    labels = choice_labels(attribute) if attribute is not None else {}

    def convert(raw: Any) -> list[str]:
        if not isinstance(raw, str):
            return [str(raw)]
        parts = [p for p in raw.split(",") if p.strip()]
        out: list[str] = []
        for part in parts:
            try:
                number = int(part)
            except ValueError:
                out.append(part)
            else:
                out.append(labels.get(number, str(number)))
        return out

    codes, uniques = pd.factorize(values)
    converted = [convert(u) for u in uniques]
    # A fresh list per row: shared lists would let one row's edit change others.
    result = np.empty(len(values), dtype=object)
    result[:] = [None if c < 0 else list(converted[c]) for c in codes.tolist()]
    return _as_series(result, object)


def _infer(values: np.ndarray) -> pd.Series:
    """Phase 1 for a column outside the metadata: guess its Edm type from the values."""
    series = pd.Series(values, dtype=object, copy=False)
    present = series.dropna()
    if len(present) and all(isinstance(v, str) for v in present.iloc[:100]):
        sample = present.iloc[:100]
        if sample.str.fullmatch(_GUID.pattern).all():
            return _as_series(series.astype(EDM_DTYPES["Edm.Guid"]))
        if sample.str.fullmatch(r"\d{4}-\d\d-\d\d").all():
            try:
                return _as_series(pd.to_datetime(values, format="%Y-%m-%d").as_unit("us"))
            except (ValueError, OverflowError):
                pass
        if sample.str.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)").all():
            try:
                stamps = pd.to_datetime(values, format="ISO8601", utc=True)
                return _as_series(stamps.as_unit("us"))
            except (ValueError, OverflowError):
                pass
    inferred = series.infer_objects().convert_dtypes()
    if str(inferred.dtype) == "Float64":  # floats stay numpy floats, as for Double columns
        inferred = inferred.astype("float64")
    return _as_series(inferred)


def _extract(rows: Sequence[Mapping[str, Any]], keys: list[str]) -> list[Sequence[Any]]:
    """Values of `keys` in every row, as one sequence per key.

    One C-level pass over the rows (`itemgetter` then `zip`) is faster than one pass per
    key: the dicts are visited once, while they are in the CPU cache.  OData includes null
    properties, so the keys are normally all present; otherwise fall back to `dict.get`.
    """
    if not keys:
        return []
    if len(keys) > 1:
        try:
            return list(zip(*map(itemgetter(*keys), rows), strict=True))
        except (KeyError, TypeError):
            pass
    return [[r.get(key) for r in rows] for key in keys]


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
        codes, uniques = pd.factorize(np.array(raw, dtype=object))
        lut = np.array([self.code(str(u)) for u in uniques] + [-1], dtype=np.int32)
        return lut[codes]  # code -1 (missing) picks the trailing -1


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
    ) -> None:
        self.table = table
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
            kind = _kind(attribute)
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
            if "@" in key or key in self._columns:
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
                names += [column.name + _NAME, column.name + _TABLE]
            if column.labels is not None or (self.formatted and column.kind in _FORMATTED_KINDS):
                names.append(column.name + _LABEL)
        return names

    def _check_dtypes(self) -> None:
        if not self.dtypes:
            return
        if self._fixed:
            possible = self._output_names(self._columns.values())
        else:
            possible = self._output_names(
                _Column(a.property_name, a.logical_name, _kind(a), a)
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
        if any(k not in self._columns for k in first if "@" not in k):
            self._plan_from_row(first)
        columns = list(self._columns.values())
        raws = _extract(rows, [c.key for c in columns])
        for column, raw in zip(columns, raws, strict=True):
            key = column.key
            if column.kind == "lookup":
                column.chunks.append(_strings(raw))
                column.names.append(_strings([r.get(key + FORMATTED_VALUE) for r in rows]))
                tables = [r.get(key + LOOKUP_LOGICAL_NAME) for r in rows]
                column.tables.append(self._table_codes.encode(tables))
                continue
            try:
                chunk = _convert_chunk(column.kind, raw, column.attribute)
            except (ValueError, TypeError, OverflowError):
                chunk = _Raw(list(raw))
            column.chunks.append(chunk)
            if column.labels is not None:
                label_key = key + FORMATTED_VALUE
                column.labels.append(_strings([r.get(label_key) for r in rows]))
        if self.etag:
            self._etags.append(_strings([r.get("@odata.etag") for r in rows]))
        self._rows += n

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
            out[ETAG_COLUMN] = self._override(ETAG_COLUMN, _as_series(_concat_strings(etags)))
            del etags
        frame: pd.DataFrame = pd.DataFrame(out, copy=False)
        frame.index = pd.RangeIndex(self._rows)
        frame.attrs["d365nb"] = {
            "table": self.table.logical_name,
            "entity_set": self.table.entity_set_name,
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
            out[name + _LABEL] = self._override(name + _LABEL, _as_series(_concat_strings(labels)))

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
        out[name] = self._override(name, _as_series(ids))
        out[name + _NAME] = self._override(name + _NAME, _as_series(_concat_strings(names)))
        table = pd.Categorical.from_codes(lut[codes], dtype=pd.CategoricalDtype(categories))
        out[name + _TABLE] = self._override(name + _TABLE, _as_series(table))

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
        return _as_series(np.array(parts, dtype=object), object)

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


def choice_values(series: pd.Series, attribute: Attribute | None) -> pd.Series:
    """The integer choice values (`Int32`) behind a column of choice labels.

    Labels not in the metadata that read as integers (how unknown values are shown) map
    to those integers; any other unknown label raises `InvalidFrameError`.
    """
    converted, problems = _choice_to_ints(series, attribute, str(series.name or "column"))
    if problems:
        raise InvalidFrameError(problems)
    return converted


# -- writing ------------------------------------------------------------------------------

_OMIT = object()
WriteMode = Literal["create", "update", "upsert"]
_MODES = ("create", "update", "upsert")


@dataclass(frozen=True)
class Payloads:
    """The JSON bodies for a frame, or the reasons it cannot be written.

    `rows` pairs each index label with its body.  `columns` lists the frame columns that are
    sent; `skipped` says, for every other column, why it is not (read-only, derived, key).
    """

    rows: list[tuple[Hashable, dict[str, Any]]]
    columns: tuple[str, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()

    def raise_for_problems(self, *, limit: int = 20) -> None:
        """Raise `InvalidFrameError` listing up to `limit` problems, if there are any."""
        if self.problems:
            raise InvalidFrameError(self.problems, limit=limit)


class _Problems:
    def __init__(self, index: pd.Index) -> None:
        self.index = index
        self.items: list[Problem] = []

    def add(self, column: str, message: str, hint: str = "", where: Any = None) -> None:
        rows: tuple[Hashable, ...] = ()
        count = 0
        if where is not None:
            positions = np.flatnonzero(np.asarray(where, dtype=bool))
            count = len(positions)
            if count == 0:
                return
            rows = tuple(self.index[positions[:5]])
        self.items.append(Problem(column, message, hint, rows, count))


def _fix_name(column: str) -> str:
    return f"df[{column!r}]"


def _na_mask(series: pd.Series) -> np.ndarray:
    return np.asarray(series.isna(), dtype=bool)


def _with_nulls(values: list[Any], mask: np.ndarray, null: Any) -> list[Any]:
    if mask.any():
        for i in np.flatnonzero(mask).tolist():
            values[i] = null
    return values


def _numeric(
    s: pd.Series, mask: np.ndarray, column: str, what: str, p: _Problems
) -> tuple[pd.Series, np.ndarray] | None:
    """`s` as numbers, and the cells that are not numbers; booleans are refused."""
    hint = "Use numbers: True/False are not sent as 1/0."
    if pd.api.types.is_bool_dtype(s.dtype):
        p.add(column, f"holds booleans, the column is {what}.", hint)
        return None
    if s.dtype == object:
        bools = np.array([isinstance(v, (bool, np.bool_)) for v in s.tolist()], dtype=bool)
        p.add(column, f"holds booleans, the column is {what}.", hint, bools)
        numbers = pd.to_numeric(s.where(~(mask | bools), np.nan), errors="coerce")
        return numbers, np.asarray(numbers.isna(), dtype=bool) & ~mask & ~bools
    numbers = pd.to_numeric(s, errors="coerce")
    return numbers, np.asarray(numbers.isna(), dtype=bool) & ~mask


def _write_int(s: pd.Series, column: str, attribute: Attribute, p: _Problems) -> list[Any]:
    mask = _na_mask(s)
    converted = _numeric(s, mask, column, "a whole number", p)
    if converted is None:
        return [None] * len(s)
    numbers, bad = converted
    p.add(column, "is not a whole number.", f"Convert {_fix_name(column)} to integers.", bad)
    floats = np.asarray(numbers.astype("float64"), dtype=np.float64)
    finite = np.isfinite(floats)
    p.add(column, "is infinite.", "Replace inf with a number or NA.", ~finite & ~np.isnan(floats))
    fractional = finite & (floats != np.trunc(np.where(finite, floats, 0)))
    p.add(column, "has a fractional part.", f"Round {_fix_name(column)} first.", fractional)
    low, high = (
        (-(2**31), 2**31 - 1) if attribute.attribute_type == "Integer" else (-(2**63), 2**63 - 1)
    )
    out_of_range = finite & ((floats < low) | (floats > high))
    p.add(
        column,
        f"is outside {low}..{high}, the range of this whole-number column.",
        "Use smaller values (or a Decimal/BigInt column in Dataverse).",
        out_of_range,
    )
    if numbers.dtype.kind in "iu" or str(numbers.dtype) in ("Int8", "Int16", "Int32", "Int64"):
        values = numbers.astype("Int64").astype(object).tolist()
    else:
        values = [int(v) if np.isfinite(v) and v == int(v) else None for v in floats.tolist()]
    return _with_nulls(values, mask | bad, None)


def _write_float(s: pd.Series, column: str, attribute: Attribute, p: _Problems) -> list[Any]:
    mask = _na_mask(s)
    if s.dtype == object and attribute.attribute_type in ("Money", "Decimal"):
        if any(isinstance(v, decimal.Decimal) for v in s.tolist()):
            return _write_decimal(s, column, mask, p)
    converted = _numeric(s, mask, column, "a number", p)
    if converted is None:
        return [None] * len(s)
    numbers, bad = converted
    floats = np.asarray(numbers.astype("float64"), dtype=np.float64)
    p.add(column, "is not a number.", f"Convert {_fix_name(column)} with pd.to_numeric().", bad)
    p.add(column, "is infinite.", "Replace inf with a number or NA.", np.isinf(floats))
    return _with_nulls(floats.tolist(), mask | bad, None)


def _write_decimal(s: pd.Series, column: str, mask: np.ndarray, p: _Problems) -> list[Any]:
    values: list[Any] = []
    bad = np.zeros(len(s), dtype=bool)
    for i, v in enumerate(s.tolist()):
        if mask[i]:
            values.append(None)
        elif isinstance(v, decimal.Decimal) and v.is_finite():
            values.append(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            values.append(float(v))
        else:
            values.append(None)
            bad[i] = True
    p.add(column, "is not a finite number.", "Use decimal.Decimal or float values.", bad)
    return values


def _write_bool(s: pd.Series, column: str, p: _Problems) -> list[Any]:
    mask = _na_mask(s)
    if pd.api.types.is_bool_dtype(s.dtype):
        return _with_nulls(s.astype(object).tolist(), mask, None)
    values = s.astype(object).tolist()
    bad = np.array(
        [not m and not isinstance(v, (bool, np.bool_)) for v, m in zip(values, mask, strict=True)],
        dtype=bool,
    )
    p.add(column, "is not True/False.", f"Convert {_fix_name(column)} to booleans.", bad)
    return _with_nulls(
        [bool(v) if not b else None for v, b in zip(values, bad, strict=True)], mask, None
    )


def _write_string(s: pd.Series, column: str, attribute: Attribute, p: _Problems) -> list[Any]:
    mask = _na_mask(s)
    values = s.astype(object).tolist()
    if not (pd.api.types.is_string_dtype(s.dtype) and s.dtype != object):
        bad = np.array(
            [not m and not isinstance(v, str) for v, m in zip(values, mask, strict=True)], bool
        )
        p.add(column, "is not text.", f"Convert with {_fix_name(column)}.astype('string').", bad)
        if bad.any():
            mask = mask | bad
    if attribute.max_length is not None or attribute.attribute_type == "Uniqueidentifier":
        text = pd.Series(
            [None if m else v for v, m in zip(values, mask, strict=True)], dtype="string"
        )
        if attribute.max_length is not None:
            too_long = np.asarray(text.str.len().fillna(0) > attribute.max_length, dtype=bool)
            p.add(
                column,
                f"is longer than the column's maximum of {attribute.max_length} characters.",
                f"Shorten it, e.g. {_fix_name(column)}.str.slice(0, {attribute.max_length}).",
                too_long,
            )
        if attribute.attribute_type == "Uniqueidentifier":
            not_guid = np.asarray(~text.str.fullmatch(_GUID.pattern).fillna(True), dtype=bool)
            p.add(
                column,
                "is not a GUID.",
                "Use ids like '00000000-0000-0000-0000-000000000001'.",
                not_guid,
            )
    return _with_nulls(values, mask, None)


def _write_datetime(s: pd.Series, column: str, date_only: bool, p: _Problems) -> list[Any]:
    mask = _na_mask(s)
    try:
        stamps = (
            s
            if pd.api.types.is_datetime64_any_dtype(s.dtype)
            else pd.to_datetime(s, format="ISO8601")
        )
    except (ValueError, TypeError, OverflowError) as exc:
        p.add(
            column,
            f"does not hold dates/times ({exc}).",
            f"Convert with pd.to_datetime({_fix_name(column)}).",
        )
        return [None] * len(s)
    if not isinstance(stamps.dtype, pd.DatetimeTZDtype) and not pd.api.types.is_datetime64_dtype(
        stamps.dtype
    ):
        p.add(
            column,
            "holds values of mixed time zones.",
            f"Use pd.to_datetime({_fix_name(column)}, utc=True).",
        )
        return [None] * len(s)
    tz_aware = isinstance(stamps.dtype, pd.DatetimeTZDtype)
    early = np.asarray(stamps < pd.Timestamp("1753-01-01", tz="UTC" if tz_aware else None))
    p.add(
        column,
        "is before 1753-01-01, which Dataverse does not support.",
        "Use a later date or NA.",
        early & ~mask,
    )
    if date_only:
        naive = stamps.dt.tz_localize(None) if tz_aware else stamps
        raw = np.asarray(naive.to_numpy(dtype="datetime64[us]"))
        days = raw.astype("datetime64[D]")
        with_time = (raw != days.astype("datetime64[us]")) & ~mask
        p.add(
            column,
            "holds times of day; the column is date-only.",
            f"Keep the date with {_fix_name(column)}.dt.normalize().",
            with_time,
        )
        text = np.datetime_as_string(days, unit="D")
    else:
        if not tz_aware:
            p.add(
                column,
                "holds naive datetimes; Dataverse needs to know their time zone.",
                f"Use {_fix_name(column)}.dt.tz_localize('UTC') (or your zone, e.g. "
                "'Europe/Paris').",
            )
            return [None] * len(s)
        utc = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
        raw = np.asarray(utc.to_numpy(dtype="datetime64[us]")).astype("datetime64[s]")
        text = np.char.add(np.datetime_as_string(raw, unit="s"), "Z")
    return _with_nulls(text.tolist(), mask, None)


def _choice_to_ints(
    s: pd.Series, attribute: Attribute | None, column: str, p: _Problems | None = None
) -> tuple[pd.Series, list[Problem]]:
    """Labels (or integers) -> Int32 choice values; problems for unknown labels."""
    problems = p or _Problems(s.index)
    labels = choice_labels(attribute) if attribute is not None else {}
    empty = pd.Series(pd.NA, index=s.index, dtype="Int32")
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        try:
            return s.astype("Int32"), problems.items
        except (TypeError, ValueError, OverflowError):
            problems.add(
                column, "holds numbers that are not choice values.", "Use labels or whole numbers."
            )
            return empty, problems.items
    by_label = {label: value for value, label in labels.items()}
    mapping: dict[Any, Any] = {}
    unknown: list[Any] = []
    try:
        uniques = (
            s.cat.categories if isinstance(s.dtype, pd.CategoricalDtype) else pd.unique(s.dropna())
        )
    except TypeError:  # unhashable cells (lists...)
        problems.add(column, "holds values that are not labels.", "Use one label per cell.")
        return empty, problems.items
    for value in uniques:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            mapping[value] = int(value)
        elif isinstance(value, str) and value in by_label:
            mapping[value] = by_label[value]
        elif isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            mapping[value] = int(value)
        else:
            unknown.append(value)
    for value in unknown:
        hint = suggest(str(value), labels.values()) or (
            f"Known labels: {', '.join(map(repr, list(labels.values())[:10]))}."
            if labels
            else "Use the choice's integer value."
        )
        problems.add(
            column,
            f"has the label {value!r}, which is not an option.",
            hint,
            np.asarray(s == value, dtype=bool),
        )
    values = s.map(mapping).astype("Int32") if len(s) else pd.Series([], dtype="Int32")
    return values, problems.items


def _write_choice(s: pd.Series, column: str, attribute: Attribute, p: _Problems) -> list[Any]:
    values, _ = _choice_to_ints(s, attribute, column, p)
    out: list[Any] = values.astype(object).where(values.notna(), None).tolist()
    return out


def _write_multichoice(s: pd.Series, column: str, attribute: Attribute, p: _Problems) -> list[Any]:
    by_label = {label: value for value, label in choice_labels(attribute).items()}
    out: list[Any] = []
    bad_labels: dict[str, list[int]] = {}
    bad_shape = np.zeros(len(s), dtype=bool)
    for i, item in enumerate(s.tolist()):
        if item is None or (
            not isinstance(item, (list, tuple, set, np.ndarray, str)) and pd.isna(item)
        ):
            out.append(None)
            continue
        if isinstance(item, str):
            if _MULTI_WIRE.fullmatch(item):
                out.append(item)
                continue
            item = [item]
        if not isinstance(item, (list, tuple, set, np.ndarray)):
            bad_shape[i] = True
            out.append(None)
            continue
        numbers: list[int] = []
        for label in item:
            if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
                numbers.append(int(label))
            elif isinstance(label, str) and label in by_label:
                numbers.append(by_label[label])
            elif isinstance(label, str) and re.fullmatch(r"-?\d+", label.strip()):
                numbers.append(int(label))
            else:
                bad_labels.setdefault(str(label), []).append(i)
        out.append(",".join(map(str, numbers)) if numbers else None)
    p.add(column, "is not a list of labels.", "Use lists such as ['Red', 'Blue'].", bad_shape)
    for label, positions in bad_labels.items():
        where = np.zeros(len(s), dtype=bool)
        where[positions] = True
        hint = (
            suggest(label, by_label)
            or f"Known labels: {', '.join(map(repr, list(by_label)[:10]))}."
        )
        p.add(column, f"has the label {label!r}, which is not an option.", hint, where)
    return out


class _LookupWriter:
    """`<nav>@odata.bind` values for one lookup column (per-row keys for polymorphic ones)."""

    def __init__(self, table: Table, tables: Mapping[str, Table]) -> None:
        self.table = table
        self.sets = {name: t.entity_set_name for name, t in tables.items()}
        self.sets.setdefault(table.logical_name, table.entity_set_name)

    def write(
        self, df: pd.DataFrame, column: str, attribute: Attribute, p: _Problems
    ) -> tuple[list[str], list[Any]]:
        ids = df[column]
        mask = _na_mask(ids)
        text = ids.astype("string")
        not_guid = np.asarray(~text.str.fullmatch(_GUID.pattern).fillna(True), dtype=bool)
        p.add(
            column,
            "is not a record id (GUID).",
            f"Put ids in {_fix_name(column)}; the name goes in {column}{_NAME}.",
            not_guid,
        )
        table_column = attribute.logical_name + _TABLE
        targets = list(attribute.targets)
        if table_column in df.columns:
            chosen = df[table_column].astype(object).where(df[table_column].notna(), None).tolist()
        elif len(targets) == 1:
            chosen = [targets[0]] * len(df)
        else:
            chosen = [None] * len(df)
            if not mask.all():
                p.add(
                    column,
                    f"can point to {', '.join(targets) or 'several tables'}; which one is unknown.",
                    f"Add a column {table_column!r} with the table of each id.",
                )
                return [column] * len(df), [None] * len(df)
        keys: list[str] = []
        values: list[Any] = []
        untabled: list[int] = []
        wrong: dict[str, list[int]] = {}
        unknown_set: dict[str, list[int]] = {}
        default_nav = attribute.navigation_property()
        for i, (identifier, target) in enumerate(zip(text.tolist(), chosen, strict=True)):
            if target is None and len(targets) == 1:
                target = targets[0]
            nav = attribute.navigation_property(target) if target else default_nav
            keys.append(f"{nav}@odata.bind")
            if mask[i] or not_guid[i]:
                values.append(None)
                continue
            if target is None:
                untabled.append(i)
            elif targets and target not in targets:
                wrong.setdefault(str(target), []).append(i)
            elif target not in self.sets:
                unknown_set.setdefault(str(target), []).append(i)
            else:
                values.append(f"/{self.sets[target]}({identifier})")
                continue
            values.append(None)

        def rows(positions: list[int]) -> np.ndarray:
            where = np.zeros(len(df), dtype=bool)
            where[positions] = True
            return where

        if untabled:
            p.add(
                table_column,
                f"is empty, so the table {column!r} points to is unknown.",
                f"Fill it with one of {', '.join(targets)}.",
                rows(untabled),
            )
        for target, positions in wrong.items():
            p.add(
                table_column,
                f"names {target!r}, which {column!r} cannot point to.",
                f"Use one of {', '.join(targets)}.",
                rows(positions),
            )
        for target, positions in unknown_set.items():
            p.add(
                column,
                f"points to table {target!r}, whose entity set is unknown.",
                f"Pass that table's metadata in tables= (e.g. tables={{{target!r}: ...}}).",
                rows(positions),
            )
        return keys, values


def _holds_related_rows(series: pd.Series) -> bool:
    """True for a column of expanded navigation properties (dicts or lists of dicts)."""
    if series.dtype != object:
        return False
    present = series.dropna()
    return bool(len(present)) and isinstance(present.iloc[0], (dict, list))


def build_payloads(
    df: pd.DataFrame,
    *,
    table: Table,
    tables: Mapping[str, Table] | None = None,
    columns: Sequence[str] | None = None,
    mode: WriteMode = "upsert",
    key_columns: Sequence[str] = (),
    na: Literal["null", "omit"] = "null",
) -> Payloads:
    """Check a frame and build one JSON body per row; never raises for bad data.

    **Parameters:**

    * **df** - the rows; its index labels name rows in problems.
    * **table** - the target table's metadata.
    * **tables** - other tables' metadata by logical name, for the entity sets that lookups
      bind to (`/contacts(<id>)`).
    * **columns** - the columns to send; None: every writable column of the frame (read-only
      and derived columns are then skipped and listed in `skipped`).  Naming a read-only or
      unknown column is a problem.
    * **mode** - `"create"`, `"update"` or `"upsert"`: decides which columns are writable
      (`IsValidForCreate`, `IsValidForUpdate`, both).
    * **key_columns** - columns that identify rows in the URL (alternate key); with the
      primary id they are left out of update/upsert bodies.
    * **na** - `"null"` sends NA as JSON null (clears the value); `"omit"` leaves it out.
    """
    if mode not in _MODES:
        raise ConfigError(
            f"mode={mode!r} is not a write mode.",
            field="mode",
            hint=f"Use one of {', '.join(_MODES)}.",
        )
    if na not in ("null", "omit"):
        raise ConfigError(f"na={na!r} is not valid.", field="na", hint="Use 'null' or 'omit'.")
    p = _Problems(df.index)
    lookups = _LookupWriter(table, tables or {})
    skipped: dict[str, str] = {}
    names = list(df.columns)
    for name in names:
        if not isinstance(name, str):
            p.add(
                repr(name),
                "is not a string column name.",
                "Rename the column to the logical name of a Dataverse column.",
            )
    duplicated = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
    for name in duplicated:
        p.add(name, "appears more than once.", "Keep one column of that name.")
    if columns is None:
        wanted = [n for n in names if isinstance(n, str) and n not in duplicated]
        explicit = False
    else:
        wanted = list(columns)
        explicit = True
        for name in wanted:
            if name not in df.columns:
                p.add(
                    name,
                    "is not a column of the frame.",
                    suggest(name, [str(n) for n in names]) or "",
                )
        wanted = [n for n in wanted if n in df.columns and n not in duplicated]

    lookup_names = {a.logical_name for a in table.attributes.values() if a.is_lookup}
    keys_out = {table.primary_id, *key_columns} if mode != "create" else set()
    plan: list[tuple[str, Attribute]] = []
    for name in wanted:
        attribute = table.find_column(name)
        if attribute is None:
            base, _, suffix = name.rpartition("_")
            if name == ETAG_COLUMN:
                skipped[name] = "row version, used for concurrency"
            elif suffix in ("name", "table") and base in lookup_names:
                skipped[name] = f"derived from lookup {base!r} (not written)"
            elif suffix == "label" and base in table.attributes:
                skipped[name] = f"formatted value of {base!r} (not written)"
            elif suffix == "expanded" or _holds_related_rows(df[name]):
                skipped[name] = "related rows from $expand (not written)"
            else:
                hint = (
                    suggest(name, list(table.attributes))
                    or "Drop it, or rename it to a column of the table."
                )
                p.add(name, f"is not a column of table {table.logical_name!r}.", hint)
            continue
        if any(other is attribute for _, other in plan):
            p.add(name, f"is column {attribute.logical_name!r} a second time.", "Keep one of them.")
            continue
        if attribute.logical_name in keys_out or name in keys_out:
            skipped[name] = "identifies the row (sent in the URL)"
            continue
        writable = {
            "create": attribute.is_valid_for_create,
            "update": attribute.is_valid_for_update,
            "upsert": attribute.is_valid_for_create and attribute.is_valid_for_update,
        }[mode]
        if not writable:
            if explicit:
                p.add(
                    name,
                    f"is read-only for {mode} (IsValidFor{mode.title()} is false).",
                    "Leave it out of columns=.",
                )
            else:
                skipped[name] = f"read-only for {mode}"
            continue
        plan.append((name, attribute))

    null = _OMIT if na == "omit" else None
    static: list[tuple[str, list[Any]]] = []
    dynamic: list[tuple[list[str], list[Any]]] = []
    for name, attribute in plan:
        s = df[name]
        kind = _kind(attribute)
        if kind == "lookup":
            dynamic.append(lookups.write(df, name, attribute, p))
            continue
        if kind in ("int32", "int64"):
            values = _write_int(s, name, attribute, p)
        elif kind in ("float", "money"):
            values = _write_float(s, name, attribute, p)
        elif kind == "bool":
            values = _write_bool(s, name, p)
        elif kind in ("datetime", "date"):
            values = _write_datetime(s, name, kind == "date", p)
        elif kind == "choice":
            values = _write_choice(s, name, attribute, p)
        elif kind == "multichoice":
            values = _write_multichoice(s, name, attribute, p)
        else:
            values = _write_string(s, name, attribute, p)
        if attribute.is_primary_id and mode == "create":
            values = [_OMIT if v is None else v for v in values]  # the service makes an id
        elif null is _OMIT:
            values = [_OMIT if v is None else v for v in values]
        static.append((attribute.logical_name, values))

    rows: list[tuple[Hashable, dict[str, Any]]] = []
    if not p.items:
        static_keys = [k for k, _ in static]
        labels = df.index.tolist()
        columns_values = [v for _, v in static]
        for i, vals in enumerate(
            zip(*columns_values, strict=True) if columns_values else ([()] * len(df))
        ):
            body = {k: v for k, v in zip(static_keys, vals, strict=True) if v is not _OMIT}
            for keys, values in dynamic:
                if values[i] is None and null is _OMIT:
                    continue
                body[keys[i]] = values[i]
            rows.append((labels[i], body))
    return Payloads(
        rows=rows,
        columns=tuple(name for name, _ in plan),
        skipped=skipped,
        problems=tuple(p.items),
    )


def payloads_from_frame(
    df: pd.DataFrame,
    *,
    table: Table,
    tables: Mapping[str, Table] | None = None,
    columns: Sequence[str] | None = None,
    mode: WriteMode = "upsert",
    key_columns: Sequence[str] = (),
    na: Literal["null", "omit"] = "null",
    limit: int = 20,
) -> list[tuple[Hashable, dict[str, Any]]]:
    """`(index label, body)` per row; raises `InvalidFrameError` listing every problem.

    See `build_payloads()` for the parameters; `limit` caps the problems in the message.
    """
    payloads = build_payloads(
        df, table=table, tables=tables, columns=columns, mode=mode, key_columns=key_columns, na=na
    )
    payloads.raise_for_problems(limit=limit)
    return payloads.rows


def encode_json(body: Mapping[str, Any]) -> bytes:
    """A payload as JSON bytes; `decimal.Decimal` values become exact JSON numbers."""
    marks: dict[str, str] = {}

    def default(value: Any) -> Any:
        if isinstance(value, decimal.Decimal):
            mark = f"\x00d365nb-decimal-{len(marks)}\x00"
            marks[json.dumps(mark)] = format(value, "f")
            return mark
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    text = json.dumps(body, default=default, ensure_ascii=False, separators=(",", ":"))
    for mark, number in marks.items():
        text = text.replace(mark, number)
    return text.encode()
