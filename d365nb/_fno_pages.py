"""One F&O page of JSON rows -> one typed DataFrame (`convert_page`).

Types (reference/finance-operations-protocol.md §6): strings `string` (`""` stays `""`),
Int32/Int64 nullable, Decimal `float64` (`decimal.Decimal` with `decimal=True`), Boolean
`boolean`, DateTimeOffset `datetime64[us, UTC]` with the empty-date sentinels as `NaT`,
enums ordered categories of their member names in value order.

Where pyarrow is installed the page is read as Dataverse pages are (`_columns.PageColumns`):
one C pass over the row dicts fills typed Arrow arrays for every column, so no Python
object is made per value; text stays in Arrow buffers, dates are parsed by Arrow, enums
become category codes by an Arrow lookup.  A column whose values do not fit its Arrow
type (or without pyarrow) takes the Python path, with the same result.
"""

from __future__ import annotations

import decimal as _decimal
import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._columns import PageColumns
from ._dialects.fno import DATE_SENTINELS, ENUM_TYPE
from ._dtypes import ETAG_COLUMN, arrow_chunk, arrow_wire_type, pyarrow_or_none, string_array
from ._metadata import Attribute, Table

__all__ = ["convert_page"]

_ETAG = "@odata.etag"
# F&O attribute type -> the `_dtypes` converter kind read with pyarrow.
_KINDS = {
    "BigInt": "int64",
    "Boolean": "bool",
    "Decimal": "float",
    "Double": "float",
    "Integer": "int32",
    "String": "string",
    "Uniqueidentifier": "string",
}


def _categories(attribute: Attribute) -> list[str]:
    return list(dict.fromkeys(attribute.options.values()))


def _series(values: list[Any], attribute: Attribute | None, *, decimal: bool) -> Any:
    """The Python path: one column of one page from its JSON values."""
    kind = attribute.attribute_type if attribute is not None else None
    if kind == ENUM_TYPE and attribute is not None:
        categories = _categories(attribute)
        known = set(categories)  # a member the metadata does not list reads as missing
        members = [v if v in known else None for v in values]
        return pd.Categorical(members, categories=categories, ordered=True)
    if kind == "DateTime":
        cleaned = [None if v is None or v in DATE_SENTINELS else v for v in values]
        return pd.to_datetime(pd.Series(cleaned, dtype="object"), utc=True, format="ISO8601")
    if kind == "Integer":
        return pd.array(values, dtype="Int32")
    if kind == "BigInt":
        return pd.array(values, dtype="Int64")
    if kind in ("Decimal", "Double"):
        if decimal and kind == "Decimal":
            return pd.array(
                [None if v is None else _decimal.Decimal(str(v)) for v in values], dtype=object
            )
        return pd.array([float("nan") if v is None else v for v in values], dtype="float64")
    if kind == "Boolean":
        return pd.array(values, dtype="boolean")
    if kind in ("String", "Uniqueidentifier"):
        return string_array(values)  # straight into Arrow buffers (`_dtypes`)
    return pd.array(values, dtype=object)


def _arrow_fields(table: Table, columns: Sequence[str], *, decimal: bool) -> dict[str, Any]:
    """Wire key -> Arrow type for the columns read in the C pass (none without pyarrow)."""
    if pyarrow_or_none() is None:
        return {}
    pa = pyarrow_or_none()
    text = pd.StringDtype().storage == "pyarrow"
    fields: dict[str, Any] = {}
    for name in [*columns, _ETAG]:
        attribute = table.attributes.get(name)
        kind = attribute.attribute_type if attribute is not None else None
        if kind in ("DateTime", ENUM_TYPE):
            fields[name] = pa.large_string()  # text, parsed / looked up by `_from_arrow`
            continue
        if name == _ETAG:
            wire = arrow_wire_type("string", text=text)
        elif kind is None or (decimal and kind == "Decimal"):
            wire = None
        else:
            wire = arrow_wire_type(_KINDS.get(kind, "object"), text=text)
        if wire is not None:
            fields[name] = wire
    return fields


def _from_arrow(array: Any, attribute: Attribute | None) -> Any:
    """One column of one page from its Arrow array, or None: take the Python path."""
    pa = pyarrow_or_none()
    pc: Any = importlib.import_module("pyarrow.compute")
    kind = attribute.attribute_type if attribute is not None else "String"
    if kind == ENUM_TYPE and attribute is not None:
        categories = _categories(attribute)
        found = pc.index_in(array, value_set=pa.array(categories, pa.large_string()))
        codes = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        return pd.Categorical.from_codes(codes, categories=pd.Index(categories), ordered=True)
    if kind == "DateTime":
        sentinels = pa.array(sorted(DATE_SENTINELS), pa.large_string())
        cleaned = pc.if_else(pc.is_in(array, value_set=sentinels), None, array)
        values = arrow_chunk("datetime", cleaned)
        if values is None:
            return None
        return pd.DatetimeIndex(values).tz_localize("UTC").array
    if kind == "Integer":
        chunk = arrow_chunk("int32", array)
        return None if chunk is None else pd.arrays.IntegerArray(*chunk)
    if kind == "BigInt":
        return pd.arrays.IntegerArray(*arrow_chunk("int64", array))
    if kind == "Boolean":
        return pd.arrays.BooleanArray(*arrow_chunk("bool", array))
    if kind in ("Decimal", "Double"):
        return arrow_chunk("float", array)
    if pd.StringDtype().storage != "pyarrow":
        return None
    return arrow_chunk("string", array)


def convert_page(
    rows: Sequence[Mapping[str, Any]],
    table: Table,
    columns: Sequence[str],
    *,
    decimal: bool = False,
) -> pd.DataFrame:
    """One page of JSON rows as a typed DataFrame with `columns` (+ `_etag`)."""
    page = PageColumns(rows, _arrow_fields(table, columns, decimal=decimal))
    data: dict[str, Any] = {}
    for name in [*columns, _ETAG]:
        attribute = table.attributes.get(name)
        array = page.arrow(name)
        series = _from_arrow(array, attribute) if array is not None else None
        if series is None:
            values = page.values(name)
            series = (
                string_array(values)
                if name == _ETAG
                else _series(values, attribute, decimal=decimal)
            )
        data[ETAG_COLUMN if name == _ETAG else name] = series
    frame: pd.DataFrame = pd.DataFrame(data, index=pd.RangeIndex(len(rows)))
    return frame
