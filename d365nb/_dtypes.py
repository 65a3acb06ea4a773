"""What each Dataverse column type becomes in pandas: the type maps, as data, and the kinds.

Both directions share this vocabulary: `_frames` reads Web API pages into the dtypes named
here, `_payloads` writes them back.  It holds

* the type maps (`ATTRIBUTE_DTYPES`, `EDM_DTYPES`) and the wire names of the annotations
  and derived columns (`FORMATTED_VALUE`, `ETAG_COLUMN`, the `_name`/`_table`/`_label`
  suffixes);
* the converter kind of each attribute (`converter_kind()`) and what one page of one
  column becomes (`typed_chunk()`, `string_array()`; from the Arrow array `_columns`
  reads, `arrow_chunk()`), the first phase of reading; for columns outside the metadata,
  the Edm type guessed from the values (`infer_series()`);
* choices both ways (`choice_labels()`, `choice_values()`; the second phase of reading
  them, `choice_categorical()` and `multichoice_lists()`), with the `Problems` collector
  that names the rows whose labels are not options;
* `wire_select()`: logical names -> the property names of `$select`.
"""

from __future__ import annotations

import decimal
import functools
import importlib
import re
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._collector import paused
from ._exceptions import InvalidFrameError, Problem
from ._literals import GUID_RE
from ._metadata import Attribute, Table, suggest

__all__ = [
    "ATTRIBUTE_DTYPES",
    "EDM_DTYPES",
    "ETAG_COLUMN",
    "FORMATTED_VALUE",
    "LABEL_SUFFIX",
    "LOOKUP_LOGICAL_NAME",
    "NAME_SUFFIX",
    "Problems",
    "TABLE_SUFFIX",
    "arrow_chunk",
    "arrow_strings",
    "arrow_wire_type",
    "as_series",
    "attribute_dtype",
    "choice_categorical",
    "choice_labels",
    "choice_to_ints",
    "choice_values",
    "converter_kind",
    "infer_series",
    "multichoice_lists",
    "object_array",
    "pyarrow_or_none",
    "string_array",
    "typed_chunk",
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
NAME_SUFFIX, TABLE_SUFFIX, LABEL_SUFFIX = "_name", "_table", "_label"

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


# -- converter kinds ----------------------------------------------------------------------


def _type_key(attribute: Attribute) -> str:
    if attribute.is_multi_choice:
        return "MultiSelectPicklist"
    if attribute.is_date_only:
        return "DateOnly"
    return attribute.attribute_type


def converter_kind(attribute: Attribute) -> str:
    """The converter an attribute gets (`int32`, `choice`, `lookup`...; `object` if unknown)."""
    return _KINDS.get(_type_key(attribute), "object")


def attribute_dtype(attribute: Attribute) -> str:
    """The dtype a column is read as (`ATTRIBUTE_DTYPES`, with DateOnly and multi-select).

    Lookups also give `<col>_name` (`string`) and `<col>_table` (`category`).
    """
    return ATTRIBUTE_DTYPES.get(_type_key(attribute), "object")


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


# -- phase 1 of reading: one page of one column -> a typed chunk --------------------------


def as_series(data: Any, dtype: Any = None) -> pd.Series:
    """`pd.Series(data, dtype=dtype)` without a copy."""
    series: pd.Series = pd.Series(data, dtype=dtype, copy=False)
    return series


def object_array(values: Sequence[Any]) -> np.ndarray:
    """`values` as a 1-D object array, also when they are lists of one length.

    `np.array(values, dtype=object)` would make a 2-D array of those (an expanded
    collection with one related row each, a `[1]` where text was expected).
    """
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _is_none(array: np.ndarray) -> np.ndarray:
    return np.asarray(pd.isna(array), dtype=bool)


def _masked_ints(raw: Sequence[Any], kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == "int64":
        array = object_array(raw)
        mask = _is_none(array)
        return np.where(mask, 0, array).astype(np.int64), mask
    return _ints_from_floats(np.array(raw, dtype=np.float64))  # exact for 32-bit values


def _ints_from_floats(floats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """32-bit integers (and the mask of missing ones) from floats, NaN for missing."""
    mask = np.isnan(floats)
    values = np.where(mask, 0.0, floats)
    if not np.array_equal(values, np.trunc(values)):
        raise ValueError("not integers")
    if len(values) and (values.min() < -(2**31) or values.max() > 2**31 - 1):
        raise OverflowError("outside the 32-bit range")
    return values.astype(np.int32), mask


def typed_chunk(kind: str, raw: Sequence[Any], attribute: Attribute | None) -> Any:
    """Phase 1 for one page of one column: raw JSON values -> a typed chunk."""
    if kind in ("int32", "int64", "choice"):
        return _masked_ints(raw, "int32" if kind == "choice" else kind)
    if kind in ("float", "money"):
        return np.array(raw, dtype=np.float64)
    if kind == "decimal":
        places = attribute.precision if attribute is not None else None
        return np.array([_to_decimal(v, places) for v in raw], dtype=object)
    if kind == "bool":
        array = object_array(raw)
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
        return string_array(raw)
    return object_array(raw)  # multichoice, object, decimal, expanded


def string_array(raw: Sequence[Any]) -> Any:
    """One page of a text column as a `string` array.

    Converted page by page: with pyarrow the text is copied into Arrow buffers at once, so
    the page's Python `str` objects (about 50 bytes of overhead each) can be freed with the
    page; `_frames._concat_strings()` later joins the pages without copying.  The buffers
    come from the system allocator, like numpy's: Arrow's default pool (mimalloc) kept
    ~100 MiB more resident after a 1M-row read, freed page buffers it did not give back.
    """
    values = object_array(raw)
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


#: How `_columns` reads each converter kind from a page's row dicts with pyarrow, in one
#: C pass: numbers that must fit 32 bits as float64 (as `typed_chunk()` reads them, so the
#: same checks apply), dates as text (parsed by `arrow_chunk()`).  The other kinds
#: (decimal, multichoice, expanded, object) are read as Python values.
_ARROW_WIRE: dict[str, str] = {
    "bool": "bool_",
    "choice": "float64",
    "date": "large_string",
    "datetime": "large_string",
    "float": "float64",
    "guid": "large_string",
    "int32": "float64",
    "int64": "int64",
    "money": "float64",
    "string": "large_string",
}
# pandas 2 parses text to nanoseconds and refuses dates outside about 1677-2262.
_NS_ONLY = int(pd.__version__.split(".")[0]) < 3
_NS_MIN = np.datetime64(pd.Timestamp.min.value // 1000 + 1, "us")
_NS_MAX = np.datetime64(pd.Timestamp.max.value // 1000, "us")


@functools.cache
def pyarrow_or_none() -> Any:
    """The pyarrow module, or None if it is not installed (pandas does not require it)."""
    try:
        return importlib.import_module("pyarrow")
    except ImportError:
        return None


def arrow_wire_type(kind: str, *, text: bool) -> Any:
    """The Arrow type a column of `kind` is read as from the row dicts, or None.

    None where the kind is read as Python values, without pyarrow, and for text when
    `text` is false (pandas keeps `string` columns as Python objects then).
    """
    pa = pyarrow_or_none()
    name = _ARROW_WIRE.get(kind)
    if pa is None or name is None or (kind in ("string", "guid") and not text):
        return None
    return getattr(pa, name)()


def arrow_strings(array: Any) -> Any:
    """A `large_string` Arrow array as a `string` array (no copy), like `string_array()`."""
    return pd.arrays.ArrowStringArray(array)


def arrow_chunk(kind: str, array: Any) -> Any:
    """Phase 1 for one page of one column read by pyarrow: the chunk `typed_chunk()` makes.

    `array` has the type `arrow_wire_type(kind)`.  None where the values need the
    Python path to be converted the same way (integers that are not 32-bit, dates in a
    form Arrow does not parse as pandas would): then `typed_chunk()` on the raw values.
    """
    if kind in ("int32", "choice"):
        try:
            return _ints_from_floats(array.to_numpy(zero_copy_only=False))
        except (ValueError, OverflowError):
            return None
    if kind in ("float", "money"):
        return array.to_numpy(zero_copy_only=False)
    if kind in ("int64", "bool"):
        mask = array.is_null().to_numpy(zero_copy_only=False)
        filled = array.fill_null(0 if kind == "int64" else False)
        return filled.to_numpy(zero_copy_only=False), mask
    if kind in ("datetime", "date"):
        return _arrow_datetimes(array, kind)
    if kind in ("string", "guid"):
        return arrow_strings(array)
    raise ValueError(f"No Arrow conversion for {kind!r} columns.")


def _arrow_datetimes(array: Any, kind: str) -> Any:
    """ISO 8601 text -> datetime64[us] (UTC for `datetime`), or None.

    Arrow's ISO 8601 parser is stricter than pandas' (no week dates, compact forms,
    spaces, more than 6 decimals): where it refuses a value, the whole page goes the
    pandas way.  Dates must be exactly `YYYY-MM-DD`, as `format="%Y-%m-%d"` asks.
    """
    pa = pyarrow_or_none()
    pc: Any = importlib.import_module("pyarrow.compute")
    if kind == "date":
        exact = pc.all(pc.equal(pc.utf8_length(array), 10), skip_nulls=True, min_count=0)
        if not exact.as_py():
            return None
    try:
        stamps = pc.cast(array, pa.timestamp("us", "UTC" if kind == "datetime" else None))
    except (pa.ArrowException, ValueError, TypeError):
        return None
    values = stamps.to_numpy(zero_copy_only=False).astype("datetime64[us]", copy=False)
    if _NS_ONLY and stamps.null_count < len(stamps):
        present = values[~np.isnat(values)]
        if present.min() < _NS_MIN or present.max() > _NS_MAX:
            return None
    return values


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


def infer_series(values: np.ndarray) -> pd.Series:
    """Phase 1 for a column outside the metadata: guess its Edm type from the values."""
    series = pd.Series(values, dtype=object, copy=False)
    present = series.dropna()
    if len(present) and all(isinstance(v, str) for v in present.iloc[:100]):
        sample = present.iloc[:100]
        if sample.str.fullmatch(GUID_RE.pattern).all():
            return as_series(series.astype(EDM_DTYPES["Edm.Guid"]))
        if sample.str.fullmatch(r"\d{4}-\d\d-\d\d").all():
            try:
                return as_series(pd.to_datetime(values, format="%Y-%m-%d").as_unit("us"))
            except (ValueError, OverflowError):
                pass
        if sample.str.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)").all():
            try:
                stamps = pd.to_datetime(values, format="ISO8601", utc=True)
                return as_series(stamps.as_unit("us"))
            except (ValueError, OverflowError):
                pass
    inferred = series.infer_objects().convert_dtypes()
    if str(inferred.dtype) == "Float64":  # floats stay numpy floats, as for Double columns
        inferred = inferred.astype("float64")
    return as_series(inferred)


# -- choices: labels <-> values -----------------------------------------------------------


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


def choice_categorical(
    values: np.ndarray, mask: np.ndarray, attribute: Attribute | None
) -> pd.Categorical[Any]:
    """Phase 2 of a choice column: its integer values (and mask of missing) -> labels.

    The categories are the option labels in option-set order (`choice_labels()`), then
    any value outside the metadata as its integer's text (`"100000099"`).
    """
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
    categorical: pd.Categorical[Any] = pd.Categorical.from_codes(
        codes, dtype=pd.CategoricalDtype(categories)
    )
    return categorical


def multichoice_lists(values: np.ndarray, attribute: Attribute | None) -> np.ndarray:
    """Phase 2 of a multi-select choice column: `"1,3"` -> a list of labels per row.

    Each distinct value is converted once; every row gets a fresh list (shared lists
    would let one row's edit change others), None where the value is missing.
    """
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
    table = [convert(u) for u in uniques] + [[]]  # code -1 (missing) picks the last
    result = np.empty(len(values), dtype=object)
    with paused():  # a list per row, no cycles
        result[:] = list(map(list, map(table.__getitem__, codes.tolist())))
    result[codes < 0] = None
    return result


class Problems:
    """The `Problem`s found in a frame; `add()` names up to 5 rows by their index labels."""

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


def choice_to_ints(
    s: pd.Series, attribute: Attribute | None, column: str, p: Problems | None = None
) -> tuple[pd.Series, list[Problem]]:
    """Labels (or integers) -> Int32 choice values; problems for unknown labels."""
    problems = p or Problems(s.index)
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


def choice_values(series: pd.Series, attribute: Attribute | None) -> pd.Series:
    """The integer choice values (`Int32`) behind a column of choice labels.

    Labels not in the metadata that read as integers (how unknown values are shown) map
    to those integers; any other unknown label raises `InvalidFrameError`.
    """
    converted, problems = choice_to_ints(series, attribute, str(series.name or "column"))
    if problems:
        raise InvalidFrameError(problems)
    return converted
