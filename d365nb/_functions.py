"""Dataverse query functions for `where()`: `createdon__lastxdays=30`, `accountid__under=id`.

`Microsoft.Dynamics.CRM.<Name>(PropertyName='col',PropertyValue=x)` [MS]
`WA/reference/queryfunctions`.  The `where()` operator is the function's name in lower
case; functions without a value take `True` (`createdon__thisyear=True`), `between` and
`notbetween` take two values, `notin` a list (`in` is `_odata.in_`).  Raw filters and
`F()` templates may call any function directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from ._exceptions import ConfigError
from ._literals import check_name, literal

__all__ = ["QUERY_FUNCTIONS", "query_function"]

_UNITS = ("Hours", "Days", "Weeks", "Months", "Years")
_NO_VALUE = (
    "Today",
    "Yesterday",
    "Tomorrow",
    "Last7Days",
    "Next7Days",
    *(f"{w}{p}" for w in ("This", "Last", "Next") for p in ("Week", "Month", "Year")),
    *(f"{w}Fiscal{p}" for w in ("This", "Last", "Next") for p in ("Period", "Year")),
    "EqualUserId",
    "NotEqualUserId",
    "EqualBusinessId",
    "NotEqualBusinessId",
    "EqualUserTeams",
    "EqualUserOrUserTeams",
    "EqualUserOrUserHierarchy",
    "EqualUserOrUserHierarchyAndTeams",
    "EqualUserLanguage",
)
_ONE_VALUE = (
    *(f"{w}X{u}" for w in ("Last", "Next") for u in _UNITS),
    *(f"OlderThanX{u}" for u in ("Minutes", *_UNITS)),
    *(f"{w}XFiscal{p}" for w in ("Last", "Next") for p in ("Periods", "Years")),
    "On",
    "OnOrAfter",
    "OnOrBefore",
    "InFiscalYear",
    "InFiscalPeriod",
    "Under",
    "UnderOrEqual",
    "NotUnder",
    "Above",
    "AboveOrEqual",
)
_TWO_VALUES = ("Between", "NotBetween", "InFiscalPeriodAndYear")
_LIST = ("NotIn", "ContainValues", "DoesNotContainValues")
QUERY_FUNCTIONS: dict[str, str] = {
    name.lower(): name for name in (*_NO_VALUE, *_ONE_VALUE, *_TWO_VALUES, *_LIST)
}
"""`where()` operator (lower case) → query function name."""


def _text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{value!r} is not a query function value.", field="filter")
    return str(value)


def _single(value: Any) -> str:
    """`PropertyValue`: whole numbers bare, everything else a quoted string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return "'" + _text(value).replace("'", "''") + "'"


def query_function(name: str, column: str, value: Any = True) -> str:
    """`Microsoft.Dynamics.CRM.LastXDays(PropertyName='createdon',PropertyValue=30)`.

    **Parameters:**

    * **name** - the function (`LastXDays`) or its lower-case `where()` operator.
    * **column** - the column's logical name (hierarchy functions: the primary key).
    * **value** - `True` for functions without a value; a number, date, datetime, GUID or
      text for one value; a pair for `Between`; a list for `NotIn`/`ContainValues`.
    """

    function = QUERY_FUNCTIONS.get(name.lower())
    if function is None:
        raise ConfigError(f"Unknown query function {name!r}.", field="filter")
    head = f"Microsoft.Dynamics.CRM.{function}(PropertyName={literal(check_name(column))}"
    if function in _NO_VALUE:
        if value is not True:
            raise ConfigError(
                f"{column}__{name.lower()}= takes True.",
                field="filter",
                hint=f"Write {column}__{name.lower()}=True.",
            )
        return head + ")"
    if function in _ONE_VALUE:
        return f"{head},PropertyValue={_single(value)})"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(f"{function} needs a list of values.", field="filter")
    values = [_text(v) for v in value]
    if function in _TWO_VALUES and len(values) != 2:
        raise ConfigError(f"{function} needs exactly two values.", field="filter")
    return f"{head},PropertyValues={literal(values)})"
