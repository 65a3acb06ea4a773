"""OData literals and names: how a Python value or a name is written into a query.

Every value that reaches a `$filter`, a key segment or a query function goes through
`literal()`; every table, column or navigation name through `check_name()`.  Pure code
with no imports from d365nb but the error tree, so that both `_odata` (filters, `Query`)
and `_functions` (the `Microsoft.Dynamics.CRM.*` query functions) sit above it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from ._exceptions import ConfigError

__all__ = ["GUID_RE", "IDENTIFIER", "check_name", "json_array", "literal"]

#: A GUID in its 8-4-4-4-12 hex form, either case; use with `fullmatch` (so text with a
#: trailing newline, which `^...$` with `match` would let through, is not a GUID).
GUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

#: An OData identifier (letters, digits, underscore; not starting with a digit).
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_name(name: str, *, what: str = "column name", path: bool = False) -> str:
    """Return `name` if it is an OData identifier, else raise `ConfigError` naming it.

    **Parameters:**

    * **name** - a table, column or navigation-property name (letters, digits, underscore).
    * **what** - how the error message calls the name (`"column name"`, `"entity set"`).
    * **path** - allow a `/`-separated path of identifiers (`primarycontactid/fullname`).
    """
    parts = name.split("/") if path and isinstance(name, str) else [name]
    if not isinstance(name, str) or not all(IDENTIFIER.match(part) for part in parts):
        raise ConfigError(
            f"{name!r} is not a valid {what}.",
            field=what.replace(" ", "_"),
            hint="Use the logical name: letters, digits and underscores only "
            "(for example 'name' or '_parentcustomerid_value').",
        )
    return name


def literal(value: Any) -> str:
    """Quote a Python value as an OData 4.0 literal for a Dataverse `$filter`.

    | value | literal |
    | --- | --- |
    | `"O'Brien"` | `'O''Brien'` |
    | `True` | `true` |
    | `42`, `1.5`, `Decimal("2.50")` | `42`, `1.5`, `2.50` |
    | `UUID(...)` | `00000000-0000-0000-0000-000000000001` (bare, as Dataverse expects) |
    | `datetime(2024, 1, 1, tzinfo=UTC)` | `2024-01-01T00:00:00Z` |
    | `date(2024, 1, 1)` | `2024-01-01` |
    | `None` | `null` |
    | `["a", 1]` | `["a","1"]` (a JSON array for `Microsoft.Dynamics.CRM.In`) |

    **Parameters:**

    * **value** - the value to quote.  NaN and infinities, naive datetimes and other types
      raise `ConfigError` with the fix.
    """
    if type(value).__name__ in ("NAType", "NaTType"):
        raise ConfigError(
            f"{value!r} (a missing value) cannot be compared in a filter.",
            field="filter",
            hint="Test for missing values with column__isnull=True (or 'eq null').",
        )
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()  # numpy scalars (from pandas) become their Python twins
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(
                f"{value!r} cannot be used in a filter.",
                field="filter",
                hint="OData has no NaN or infinity; filter on 'eq null' or a finite bound.",
            )
        # repr() is the shortest round-tripping form; drop the "+" of a positive exponent so
        # the literal survives form-style decoding ("+" would read as a space).
        return repr(value).replace("e+", "e")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ConfigError(
                f"{value!r} cannot be used in a filter.",
                field="filter",
                hint="OData has no NaN or infinity; filter on 'eq null' or a finite bound.",
            )
        return format(value, "f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ConfigError(
                f"The datetime {value.isoformat()} has no time zone.",
                field="filter",
                hint="Dataverse compares instants: pass an aware datetime, e.g. "
                "datetime(2024, 1, 1, tzinfo=timezone.utc) or pd.Timestamp(..., tz='UTC').",
            )
        utc = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds") + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (list, tuple, set, frozenset)):
        return json_array(value)
    raise ConfigError(
        f"A value of type {type(value).__name__} cannot be used in a filter.",
        field="filter",
        hint="Pass a str, bool, int, float, Decimal, UUID, datetime, date, None or a list.",
    )


def json_array(values: Iterable[Any]) -> str:
    """`["a","1"]`: Dataverse query functions take every value as a JSON string."""
    items = list(values)
    if not items:
        raise ConfigError(
            "An empty list cannot be used in a filter.",
            field="filter",
            hint="Give at least one value, or leave the condition out.",
        )
    out = []
    for item in items:
        if item is None or isinstance(item, (list, tuple, set, frozenset)):
            raise ConfigError(
                f"{item!r} cannot be a member of a list in a filter.",
                field="filter",
                hint="Test for null with name__isnull=True instead.",
            )
        text = item if isinstance(item, str) else literal(item)
        out.append(json.dumps(text, ensure_ascii=False))
    return "[" + ",".join(out) + "]"
