"""One page of row dicts, read column by column (`PageColumns`).

The Web API sends a page as a list of row dicts (`orjson.loads(body)["value"]`).  Where
pyarrow is installed, the columns that have an Arrow form (`_dtypes.arrow_wire_type()`)
are read in one C pass over the rows: `pa.array(rows, type=pa.struct(fields))` looks every
field up in every dict and fills typed Arrow arrays directly, without a Python object per
value, and text lands in Arrow buffers at once.  The other columns, and a field whose
values do not fit its Arrow type, are read as Python values (`dict.get`, one C-level
`map` per key); a missing key reads as None either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

from ._dtypes import pyarrow_or_none

__all__ = ["PageColumns"]


class PageColumns:
    """The rows of one page, read column by column.

    **Parameters:**

    * **rows** - the page's row dicts.
    * **arrow_fields** - key -> Arrow type of the columns to read with pyarrow (with
      `arrow()`); ignored without pyarrow or if some row is not a `dict`.
    """

    def __init__(self, rows: Sequence[Mapping[str, Any]], arrow_fields: Mapping[str, Any]) -> None:
        self._rows = rows
        self._dicts = set(map(type, rows)) == {dict}
        self._arrays: dict[str, Any] = {}
        if arrow_fields and self._dicts and pyarrow_or_none() is not None:
            self._arrays = _read_arrow(rows, arrow_fields)

    def arrow(self, key: str) -> Any:
        """The Arrow array of `key` (of the type asked for), or None: use `values()`."""
        return self._arrays.get(key)

    def values(self, key: str) -> list[Any]:
        """The value of `key` in every row (None where the key is missing)."""
        if self._dicts:
            return list(map(dict.get, self._rows, repeat(key)))  # type: ignore[arg-type]
        return [row.get(key) for row in self._rows]


def _read_arrow(rows: Sequence[Mapping[str, Any]], fields: Mapping[str, Any]) -> dict[str, Any]:
    """Key -> Arrow array for the `fields` the rows' values fit (all of them, normally).

    One struct array for all fields; if some value does not fit, one field at a time, so
    only the fields that do not fit are left to the Python path.
    """
    pa = pyarrow_or_none()
    pool = pa.system_memory_pool()  # as `_dtypes.string_array()`: freed pages go back
    errors = (pa.ArrowException, TypeError, ValueError, OverflowError)
    data = rows if isinstance(rows, list) else list(rows)
    names = list(fields)
    try:
        struct = pa.array(data, type=pa.struct(list(fields.items())), memory_pool=pool)
    except errors:
        pass
    else:
        return {name: struct.field(i) for i, name in enumerate(names)}
    arrays: dict[str, Any] = {}
    for name in names:
        try:
            single = pa.array(data, type=pa.struct([(name, fields[name])]), memory_pool=pool)
        except errors:
            continue
        arrays[name] = single.field(0)
    return arrays
