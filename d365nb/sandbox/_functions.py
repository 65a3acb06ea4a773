"""Dataverse query functions on dates and hierarchies, as SQL: `LastXDays`, `ThisYear`, `Under`...

[MS] `WA/reference/queryfunctions`: `Microsoft.Dynamics.CRM.<Name>(PropertyName='col'[,
PropertyValue=x])`.  Date functions compare in UTC against the machine's clock
([UNVERIFIED] the service uses the caller's time zone, weeks start on Sunday as in en-US,
"last X days" runs from midnight X days ago to now and "next X days" from now to the end
of the X-th day).  Fiscal periods and the user/team functions are not emulated (400).
Hierarchy functions (`Under`, `UnderOrEqual`, `NotUnder`, `Above`, `AboveOrEqual`) walk
the table's self-referencing lookup (`parentaccountid` for accounts).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from ._errors import ApiError, syntax_error
from ._schema import Attribute, Table

__all__ = ["DATE_FUNCTIONS", "HIERARCHY_FUNCTIONS", "date_function", "hierarchy_function"]

_UNITS = ("Minutes", "Hours", "Days", "Weeks", "Months", "Years")
_FIXED = (
    "Today",
    "Yesterday",
    "Tomorrow",
    "Last7Days",
    "Next7Days",
    *(f"{w}{p}" for w in ("This", "Last", "Next") for p in ("Week", "Month", "Year")),
)
_SINGLE_DAY = ("On", "OnOrAfter", "OnOrBefore", "NotOn")
DATE_FUNCTIONS = frozenset(
    [*_FIXED, *_SINGLE_DAY]
    + [f"{w}X{u}" for w in ("Last", "Next") for u in _UNITS if u != "Minutes"]
    + [f"OlderThanX{u}" for u in _UNITS]
)
HIERARCHY_FUNCTIONS = frozenset({"Under", "UnderOrEqual", "NotUnder", "Above", "AboveOrEqual"})
_X = re.compile(r"^(Last|Next|OlderThan)X(\w+)$")


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _months(day: dt.datetime, n: int) -> dt.datetime:
    month = day.month - 1 + n
    year = day.year + month // 12
    month = month % 12 + 1
    last = [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31]
    last += [30, 31, 31, 30, 31, 30, 31]
    return day.replace(year=year, month=month, day=min(day.day, last[month - 1]))


def _shift(moment: dt.datetime, unit: str, n: int) -> dt.datetime:
    if unit == "Months":
        return _months(moment, n)
    if unit == "Years":
        return _months(moment, 12 * n)
    key = unit.lower()
    return moment + dt.timedelta(**{key: n})


def _period(name: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of Today, ThisWeek, LastMonth, NextYear..."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    day = dt.timedelta(days=1)
    if name in ("Today", "Yesterday", "Tomorrow"):
        start = today + day * {"Today": 0, "Yesterday": -1, "Tomorrow": 1}[name]
        return start, start + day
    if name == "Last7Days":
        return today - 7 * day, now
    if name == "Next7Days":
        return now, today + 8 * day
    which, unit = name[:4], name[4:]
    step = {"This": 0, "Last": -1, "Next": 1}[which]
    if unit == "Week":
        start = today - day * ((today.weekday() + 1) % 7)  # Sunday
        start += 7 * day * step
        return start, start + 7 * day
    if unit == "Month":
        start = _months(today.replace(day=1), step)
        return start, _months(start, 1)
    start = today.replace(month=1, day=1)
    start = start.replace(year=start.year + step)
    return start, start.replace(year=start.year + 1)


def date_function(
    name: str, attr: Attribute, col: str, args: dict[str, Any], now: dt.datetime
) -> tuple[str, list[Any]]:
    """SQL and parameters for a date query function on the ISO text column `col`."""
    if attr.kind != "DateTime":
        raise syntax_error(f"Microsoft.Dynamics.CRM.{name} needs a date and time column.")
    if name in _FIXED:
        low, high = _period(name, now)
        op = "<=" if name == "Last7Days" else "<"
        return f"({col} >= ? AND {col} {op} ?)", [_iso(low), _iso(high)]
    value = str(args.get("PropertyValue", "")).strip("'")
    if name in _SINGLE_DAY:
        if not re.match(r"^\d{4}-\d{2}-\d{2}", value):
            raise syntax_error(f"Microsoft.Dynamics.CRM.{name} needs a date PropertyValue.")
        ops = {"On": "=", "OnOrAfter": ">=", "OnOrBefore": "<=", "NotOn": "<>"}
        return f"(substr({col}, 1, 10) {ops[name]} ?)", [value[:10]]
    m = _X.match(name)
    assert m is not None
    try:
        x = int(value)
    except ValueError:
        raise syntax_error(
            f"Microsoft.Dynamics.CRM.{name} needs a whole-number PropertyValue."
        ) from None
    which, unit = m.groups()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    daily = unit not in ("Hours", "Minutes")
    if which == "OlderThan":
        return f"({col} < ?)", [_iso(_shift(now, unit, -x))]
    if which == "Last":
        start = _shift(today if daily else now, unit, -x)
        return f"({col} >= ? AND {col} <= ?)", [_iso(start), _iso(now)]
    end = _shift(today + dt.timedelta(days=1) if daily else now, unit, x)
    return f"({col} >= ? AND {col} < ?)", [_iso(now), _iso(end)]


def hierarchy_function(
    name: str, table: Table, args: dict[str, Any], alias: str
) -> tuple[str, list[Any]]:
    """SQL for Under/UnderOrEqual/NotUnder/Above/AboveOrEqual on `table`'s hierarchy."""
    parents = [a for a in table.attributes if a.is_lookup and a.targets == (table.logical,)]
    if not parents or args.get("PropertyName") != table.primary_id:
        raise ApiError(
            400,
            "0x80060888",
            f"Microsoft.Dynamics.CRM.{name} needs a hierarchical table and its primary key.",
        )
    parent = parents[0].column
    key = table.primary_id
    value = str(args.get("PropertyValue", "")).strip("'{}").lower()
    src = f'"{table.entity_set}"'
    if name in ("Above", "AboveOrEqual"):
        walk = (
            f'WITH RECURSIVE up(id) AS (SELECT "{parent}" FROM {src} WHERE "{key}" = ? '
            f'UNION SELECT h."{parent}" FROM {src} h JOIN up ON h."{key}" = up.id) '
            "SELECT id FROM up WHERE id IS NOT NULL"
        )
    else:
        walk = (
            f'WITH RECURSIVE down(id) AS (SELECT "{key}" FROM {src} WHERE "{parent}" = ? '
            f'UNION SELECT h."{key}" FROM {src} h JOIN down ON h."{parent}" = down.id) '
            "SELECT id FROM down"
        )
    col = f'{alias}."{key}"'
    sql = f"({col} {'NOT ' if name == 'NotUnder' else ''}IN ({walk}))"
    if name.endswith("OrEqual"):
        return f"({sql} OR {col} = ?)", [value, value]
    return sql, [value]
