"""OData query building for the Dataverse Web API: literal quoting, filters, `Query`.

Pure code: nothing here does I/O.  A value never changes a query's meaning: every value
that reaches a `$filter` goes through `literal()`, which quotes it for OData 4.0.

Usage:

```python
>>> where(name="Contoso", revenue__gt=1_000_000, statecode=0)
"name eq 'Contoso' and revenue gt 1000000 and statecode eq 0"
>>> F("name eq {} and address1_city eq {city}", "O'Brien & Co", city="Köln")
"name eq 'O''Brien & Co' and address1_city eq 'Köln'"
>>> q = Query("accounts").select("name", "revenue").filter(statecode=0).top(50)
>>> str(q)
"$select=name,revenue&$filter=statecode%20eq%200&$top=50"
```

Two ways to build a `$filter`, both quoting every value with `literal()`:

- `where(**conditions)`: the keyword form, for the common `column <op> value` tests joined
  with `and`.  Operators are suffixes: `__eq` (default), `__ne`, `__gt`, `__ge`, `__lt`,
  `__le`, `__contains`, `__startswith`, `__endswith`, `__in`, `__isnull`.
- `F(template, *values, **named)`: a template in `str.format` syntax for anything else
  (`or`, `not`, lookups such as `primarycontactid/fullname`, lambdas).  Only bare `{}`,
  `{0}` and `{name}` fields are allowed; the template itself is trusted code, the values
  never are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import numbers
import re
import string
import urllib.parse
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from ._exceptions import ConfigError
from ._filters import lambda_filter
from ._functions import QUERY_FUNCTIONS, query_function
from ._literals import GUID_RE, IDENTIFIER, check_name, json_array, literal

__all__ = [
    "F",
    "Query",
    "action_path",
    "and_filter",
    "check_name",
    "check_top",
    "encode_query",
    "entity_path",
    "extreme_query",
    "in_",
    "key_filter_literal",
    "key_lookup_urls",
    "key_segment",
    "key_value",
    "literal",
    "query_options",
    "range_filters",
    "select_path",
    "where",
]

_OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le")
_FUNCTIONS = ("contains", "startswith", "endswith")
_ORDER = re.compile(r"(?P<path>[A-Za-z0-9_/]+)(?:\s+(?P<dir>asc|desc))?\Z")
# Characters kept literal when a query option is percent-encoded.  Spaces become %20 (never
# "+"), single quotes stay (Dataverse's own nextLinks keep them), and so do the separators
# the service keeps literal in its nextLinks: commas, parentheses, "$", "/", ":", ";", "=".
_SAFE = "',()$/:;=@!*"


def in_(name: str, values: Iterable[Any], *, negate: bool = False) -> str:
    """`Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[...])`.

    **Parameters:**

    * **name** - the column's logical name.
    * **values** - one or more values; each is sent as a JSON string.
    * **negate** - use `NotIn` instead of `In`.
    """
    function = "NotIn" if negate else "In"
    check_name(name)
    return (
        f"Microsoft.Dynamics.CRM.{function}(PropertyName={literal(name)},"
        f"PropertyValues={json_array(values)})"
    )


def _condition(key: str, value: Any) -> str:
    name, sep, op = key.rpartition("__")
    if not sep or not name:
        name, op = key, "eq"
    check_name(name, path=True)
    if op in _OPERATORS:
        return f"{name} {op} {literal(value)}"
    if op in _FUNCTIONS:
        if not isinstance(value, str):
            raise ConfigError(
                f"{key}= needs a string, got {type(value).__name__}.",
                field="filter",
                hint=f"Use {name}__eq for other types.",
            )
        return f"{op}({name},{literal(value)})"
    if op == "in":
        if "/" in name:
            check_name(name, what="column name (In takes no path)")
        return in_(name, _as_iterable(key, value))
    if op == "isnull":
        if not isinstance(value, bool):
            raise ConfigError(
                f"{key}= needs True or False.", field="filter", hint=f"Write {key}=True."
            )
        return f"{name} {'eq' if value else 'ne'} null"
    if op in ("any", "all"):  # lambda on a one-to-many navigation property
        if value is True and op == "any":
            return lambda_filter(name, op, None)
        if not isinstance(value, str) or not value:
            raise ConfigError(
                f"{key}= needs a filter on the related rows (or True with __any).",
                field="filter",
                hint=f"Write {key}=d365nb.where(statecode=0).",
            )
        return lambda_filter(name, op, value)
    if op in QUERY_FUNCTIONS:  # Microsoft.Dynamics.CRM.LastXDays, ThisYear, Under...
        return query_function(op, name, value)
    raise ConfigError(
        f"Unknown filter operator {op!r} in {key!r}.",
        field="filter",
        hint="Use one of __eq __ne __gt __ge __lt __le __contains __startswith __endswith "
        "__in __isnull __any __all, a query function (__lastxdays __thisyear __under ...), "
        "or F('...').",
    )


def _as_iterable(key: str, value: Any) -> Iterable[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(
            f"{key}= needs a list of values, got {type(value).__name__}.",
            field="filter",
            hint=f"Write {key}=[...].",
        )
    return value


def where(conditions: Mapping[str, Any] | None = None, /, **keywords: Any) -> str:
    """Build a `$filter` from `column__op=value` conditions joined with `and`.

    `where(name="Contoso", revenue__gt=1_000_000)` gives
    `"name eq 'Contoso' and revenue gt 1000000"`.  A mapping takes keys that are not
    Python identifiers, such as lookup paths: `where({"primarycontactid/fullname": "Ann"})`.

    **Parameters:**

    * **conditions** - optional mapping of `column[__op]` to value, applied first.
    * **keywords** - more `column[__op]=value` conditions.  Operators: `__eq` (default),
      `__ne`, `__gt`, `__ge`, `__lt`, `__le`, `__contains`, `__startswith`, `__endswith`,
      `__in` (a list), `__isnull` (True/False), the query functions (`__lastxdays=30`,
      `__thisyear=True`...), and on a one-to-many navigation property `__any` / `__all`
      with a filter on the related rows (`opportunity_parent_account__any=where(
      statecode=0)` gives `opportunity_parent_account/any(o:o/statecode eq 0)`;
      `__any=True`: at least one related row).
    """
    items = [*(conditions or {}).items(), *keywords.items()]
    if not items:
        raise ConfigError(
            "where() needs at least one condition.",
            field="filter",
            hint="Write where(name='Contoso'), or leave the filter out.",
        )
    return " and ".join(_condition(key, value) for key, value in items)


_FORMATTER = string.Formatter()


def F(template: str, /, *values: Any, **named: Any) -> str:  # short on purpose: F("...")
    """Fill a `$filter` template, quoting every value with `literal()`.

    `F("name eq {} or address1_city eq {city}", "O'Brien", city="Köln")` gives
    `"name eq 'O''Brien' or address1_city eq 'Köln'"`.  Use `{{` and `}}` for literal braces.

    **Parameters:**

    * **template** - the filter text, trusted, with `{}`, `{0}` or `{name}` placeholders.
      Format specs, conversions and attribute/index lookups are refused.
    * **values**, **named** - the values, never trusted.
    """
    out: list[str] = []
    auto = 0
    for text, field, spec, conversion in _FORMATTER.parse(template):
        out.append(text)
        if field is None:
            continue
        if spec or conversion:
            raise ConfigError(
                f"Placeholder {{{field}!{conversion}:{spec}}} in a filter template has a "
                "conversion or format spec.",
                field="filter",
                hint="Write a bare {} or {name}: values are always quoted by d365nb.",
            )
        value: Any
        if field == "":
            if auto >= len(values):
                raise ConfigError(
                    f"The filter template has more {{}} placeholders than the {len(values)} "
                    "values given.",
                    field="filter",
                    hint="Pass one value per placeholder.",
                )
            value, auto = values[auto], auto + 1
        elif field.isdigit():
            if int(field) >= len(values):
                raise ConfigError(
                    f"Placeholder {{{field}}} has no value.",
                    field="filter",
                    hint="Pass one value per placeholder.",
                )
            value = values[int(field)]
        elif IDENTIFIER.match(field):
            if field not in named:
                raise ConfigError(
                    f"Placeholder {{{field}}} has no value.",
                    field="filter",
                    hint=f"Pass {field}=... to F().",
                )
            value = named[field]
        else:
            raise ConfigError(
                f"Placeholder {{{field}}} is not a plain name.",
                field="filter",
                hint="Write {} or {name}; attribute and index lookups are not allowed.",
            )
        out.append(literal(value))
    return "".join(out)


def _names(items: Iterable[str], *, what: str, path: bool = False) -> tuple[str, ...]:
    if isinstance(items, str):
        items = [items]
    return tuple(check_name(item, what=what, path=path) for item in items)


def _order_item(item: str) -> str:
    text = item.strip()
    if text.startswith("-"):
        text = text[1:].strip() + " desc"
    match = _ORDER.match(text)
    if not match:
        raise ConfigError(
            f"{item!r} is not a valid sort order.",
            field="orderby",
            hint="Write a column name, optionally followed by ' asc' or ' desc' "
            "(or prefixed with '-' for descending).",
        )
    check_name(match["path"], path=True)
    return f"{match['path']} {match['dir']}" if match["dir"] else match["path"]


def _expand_item(item: str) -> str:
    name, paren, _options = item.partition("(")
    check_name(name.strip(), what="navigation property")
    if paren and not item.endswith(")"):
        raise ConfigError(
            f"{item!r} is not a valid $expand item.",
            field="expand",
            hint="Write nav or nav($select=a,b;$filter=...).",
        )
    return item.strip()


@dataclasses.dataclass(frozen=True)
class Query:
    """An immutable OData query on one entity set; every method returns a new `Query`.

    ```python
    >>> q = Query("accounts").select("name", "revenue").filter(revenue__gt=1000).top(50)
    >>> q.to_params()
    {'$select': 'name,revenue', '$filter': 'revenue gt 1000', '$top': '50'}
    >>> str(q)
    '$select=name,revenue&$filter=revenue%20gt%201000&$top=50'
    ```

    **Parameters:**

    * **entity_set** - the entity set name (`accounts`, not `account`).
    """

    entity_set: str
    columns: tuple[str, ...] = ()
    filter_expr: str | None = None
    order: tuple[str, ...] = ()
    limit: int | None = None
    expansions: tuple[str, ...] = ()
    with_count: bool = False
    aggregation: str | None = None

    def __post_init__(self) -> None:
        check_name(self.entity_set, what="entity set")

    def select(self, *columns: str | Iterable[str]) -> Query:
        """Return a copy that selects `columns` (names or lists of names; replaces any earlier)."""
        flat = [c for item in columns for c in ([item] if isinstance(item, str) else item)]
        return dataclasses.replace(self, columns=_names(flat, what="column name"))

    def filter(self, expression: str | None = None, /, **conditions: Any) -> Query:
        """Return a copy with `expression` and/or `where(**conditions)` and-ed to the filter.

        **Parameters:**

        * **expression** - a ready `$filter` text (from `F()`, `where()` or trusted code).
        * **conditions** - `column__op=value` conditions, see `where()`.
        """
        parts = [p for p in (self.filter_expr, expression) if p]
        if conditions:
            parts.append(where(**conditions))
        if not parts:
            return self
        text = parts[0] if len(parts) == 1 else " and ".join(f"({p})" for p in parts)
        return dataclasses.replace(self, filter_expr=text)

    def orderby(self, *items: str) -> Query:
        """Return a copy sorted by `items` (`"name"`, `"revenue desc"` or `"-revenue"`)."""
        return dataclasses.replace(self, order=tuple(_order_item(i) for i in items))

    def top(self, n: int | None) -> Query:
        """Return a copy limited to `n` rows (`None` removes the limit)."""
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(
                f"top must be a positive whole number, got {n!r}.",
                field="top",
                hint="Write top(100), or top(None) for every row.",
            )
        return dataclasses.replace(self, limit=n)

    def expand(self, *items: str) -> Query:
        """Return a copy expanding navigation properties (`"primarycontactid($select=x)"`)."""
        return dataclasses.replace(self, expansions=tuple(_expand_item(i) for i in items))

    def count(self, enabled: bool = True) -> Query:
        """Return a copy that asks for `@odata.count` (capped at 5,000 by the service)."""
        return dataclasses.replace(self, with_count=bool(enabled))

    def apply(self, transformation: str | None) -> Query:
        """Return a copy with an `$apply` aggregation (`"groupby((statecode))"`), trusted text."""
        return dataclasses.replace(self, aggregation=transformation or None)

    def to_params(self) -> dict[str, str]:
        """The query options as an ordered, not yet encoded `dict`.

        Prefer `str(query)` (or `url()`) to build the request URL: httpx's `params=` encodes
        spaces as `+`, while Dataverse's own nextLinks use `%20`.
        """
        params: dict[str, str] = {}
        if self.columns:
            params["$select"] = ",".join(self.columns)
        if self.filter_expr:
            params["$filter"] = self.filter_expr
        if self.order:
            params["$orderby"] = ",".join(self.order)
        if self.limit is not None:
            params["$top"] = str(self.limit)
        if self.expansions:
            params["$expand"] = ",".join(self.expansions)
        if self.with_count:
            params["$count"] = "true"
        if self.aggregation:
            params["$apply"] = self.aggregation
        return params

    def __str__(self) -> str:
        return "&".join(
            f"{key}={urllib.parse.quote(value, safe=_SAFE)}"
            for key, value in self.to_params().items()
        )

    def url(self, base: str) -> str:
        """`base` (the Web API root) + entity set + encoded query, e.g. `.../accounts?$top=5`."""
        query = str(self)
        path = base.rstrip("/") + "/" + self.entity_set
        return f"{path}?{query}" if query else path


# -- request URLs: query strings, key segments, look-ups, read ranges -----------------------


def encode_query(params: Mapping[str, str]) -> str:
    """Query options as the request's query string (`%20` for spaces, `$'(),:/@` kept)."""
    # Dataverse wants %20 for spaces, and $ and quotes kept readable.
    return urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="$'(),:/@")


def query_options(
    *,
    select: Iterable[str] | None = None,
    filter: str | None = None,  # noqa: A002 - the OData name
    orderby: str | Iterable[str] | None = None,
    top: int | None = None,
    expand: str | Iterable[str] | None = None,
    count: bool = False,
) -> dict[str, str]:
    """A read's query options (`$select`, `$filter`, ...), in `Query.to_params()` order, as
    given (no name checks: `orderby="name desc, revenue"` and nested `$expand` pass)."""
    joined = {
        "$select": select,
        "$filter": filter,
        "$orderby": orderby,
        "$top": None if top is None else str(top),
        "$expand": expand,
        "$count": "true" if count else None,
    }
    return {k: v if isinstance(v, str) else ",".join(v) for k, v in joined.items() if v}


def and_filter(expression: str | None, condition: str, *, group: bool = True) -> str:
    """`condition` and-ed to `expression`: `(expression) and (condition)`.

    **Parameters:**

    * **expression** - the filter so far (`None` or empty: `condition` alone).
    * **condition** - the condition to add.
    * **group** - put `condition` in parentheses (leave off for a single comparison).
    """
    if not expression:
        return condition
    return f"({expression}) and ({condition})" if group else f"({expression}) and {condition}"


def extreme_query(params: Mapping[str, str], column: str, direction: str) -> dict[str, str]:
    """The query for the first row of `params`' rows by `column` (`asc` or `desc`), nulls out."""
    query = dict(params)
    query["$select"] = column
    query["$orderby"] = f"{column} {direction}"
    query["$top"] = "1"
    query.pop("$count", None)
    query.pop("$expand", None)
    query["$filter"] = and_filter(query.get("$filter"), f"{column} ne null", group=False)
    return query


def _instant(moment: dt.datetime) -> str:
    """A datetime literal to the second (`2024-01-01T00:00:00Z`)."""
    return literal(moment.astimezone(dt.timezone.utc).replace(microsecond=0))


def range_filters(column: str, low: str, high: str, n: int) -> list[str]:
    """`n` half-open filters on `column` covering `low`..`high`, plus one for null.

    Every row falls in exactly one filter, whatever the service's sort order.
    """
    start = dt.datetime.fromisoformat(low.replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(high.replace("Z", "+00:00"))
    span = (end - start).total_seconds()
    cuts: list[str] = []
    for i in range(1, n):
        text = _instant(start + dt.timedelta(seconds=round(span * i / n)))
        if not cuts or text > cuts[-1]:
            cuts.append(text)
    if not cuts:
        return [f"{column} ne null", f"{column} eq null"]
    filters = [f"{column} lt {cuts[0]}"]
    filters += [
        f"{column} ge {a} and {column} lt {b}" for a, b in zip(cuts, cuts[1:], strict=False)
    ]
    filters.append(f"{column} ge {cuts[-1]}")
    filters.append(f"{column} eq null")
    return filters


def key_value(value: Any, *, lookup: bool = False, guid: bool = False) -> str:
    """A key value as it goes in a key segment: `'A-1'`, `42`, a bare GUID; URL-escaped.

    **Parameters:**

    * **value** - the value (as JSON would carry it).
    * **lookup** - the key column is a lookup: the value is a bare GUID, never a number.
    * **guid** - the key column is a `Uniqueidentifier`: the value is a bare GUID.
    """
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)) and not lookup:
        text = str(int(value)) if float(value).is_integer() else repr(float(value))
    elif lookup or guid:
        text = str(value)
    else:
        text = "'" + str(value).replace("'", "''") + "'"
    return urllib.parse.quote(text, safe="'-_.~")


def key_segment(pairs: Iterable[tuple[str, str]]) -> str:
    """The inside of an alternate-key segment: `k1='a',k2=3` (values from `key_value()`)."""
    return ",".join(f"{name}={value}" for name, value in pairs)


def entity_path(entity_set: str, key: str) -> str:
    """One row's path: `accounts(<id>)` or `accounts(accountnumber='A-1')`."""
    return f"{entity_set}({key})"


def action_path(entity_set: str, action: str) -> str:
    """A bound action's path: `accounts/Microsoft.Dynamics.CRM.CreateMultiple`."""
    return f"{entity_set}/Microsoft.Dynamics.CRM.{action}"


def select_path(path: str, columns: Iterable[str]) -> str:
    """`path?$select=a,b`: read back only `columns` of one row."""
    return f"{path}?$select={','.join(columns)}"


# Text that JSON and URL encoding both leave as it is: `"v"` is `%22v%22` in a URL.
_URL_PLAIN = re.compile(r"[A-Za-z0-9\-_.~]*")


def key_filter_literal(value: Any, *, bare_guid: bool = True) -> str:
    """A key value in `$filter`: `'A-1'` (quotes doubled), `42`, `true`, a bare GUID.

    **Parameters:**

    * **value** - the value (as JSON would carry it).
    * **bare_guid** - GUID-shaped text is written bare (id, lookup and unknown columns);
      `False` for text columns, where it stays a quoted string.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value)
    if GUID_RE.fullmatch(text) and bare_guid:
        return text
    return "'" + text.replace("'", "''") + "'"


def key_lookup_urls(
    entity_set: str,
    select: Sequence[str],
    names: Sequence[str],
    keys: Sequence[Mapping[str, Any]],
    *,
    quoted_guids: Collection[str] = (),
    limit: int = 7500,
) -> list[str]:
    """GET URLs (relative to the Web API root, each under `limit` characters) that return
    the rows among `keys`: `$select=<select>` and `$filter=` on the keys.

    One text column or the primary id: `Microsoft.Dynamics.CRM.In(PropertyName='k',
    PropertyValues=["a","b"])`; otherwise (composite keys, numbers, lookups, text holding
    a double quote or a backslash): `(k1 eq 'a' and k2 eq 2) or ...`.  Names in
    `quoted_guids` are text columns: GUID-shaped values there stay quoted.
    """
    quote = urllib.parse.quote
    head = f"{entity_set}?$select={','.join(dict.fromkeys(select))}&$filter="
    plain = (
        len(names) == 1
        and not names[0].startswith("_")
        and all(
            isinstance(k.get(names[0]), str) and not set(k[names[0]]) & {'"', "\\"} for k in keys
        )
    )
    if plain:
        prefix = quote(
            f"Microsoft.Dynamics.CRM.In(PropertyName='{names[0]}',PropertyValues=[", safe="()'"
        )
        suffix = quote("])", safe="()'")
        plain_text = _URL_PLAIN.fullmatch
        terms = [
            f"%22{v}%22"
            if plain_text(v := k[names[0]])
            else quote(json.dumps(v, ensure_ascii=False), safe="")
            for k in keys
        ]
        glue = quote(",")
    else:
        prefix = suffix = ""
        terms = [
            quote(
                "("
                + " and ".join(
                    f"{n} eq {key_filter_literal(k.get(n), bare_guid=n not in quoted_guids)}"
                    for n in names
                )
                + ")",
                safe="()'",
            )
            for k in keys
        ]
        glue = quote(" or ")
    urls: list[str] = []
    batch: list[str] = []
    size = len(head) + len(prefix) + len(suffix)
    for term in terms:
        if batch and size + len(glue) + len(term) > limit:
            urls.append(head + prefix + glue.join(batch) + suffix)
            batch, size = [], len(head) + len(prefix) + len(suffix)
        batch.append(term)
        size += len(glue) + len(term)
    if batch:
        urls.append(head + prefix + glue.join(batch) + suffix)
    return urls


def check_top(top: Any) -> None:
    """`top` is None or a whole number >= 0 (not a bool, text or float)."""
    if top is not None and (
        isinstance(top, bool) or not isinstance(top, numbers.Integral) or int(top) < 0
    ):
        raise ConfigError(
            f"top={top!r} is not a number of rows.",
            field="top",
            hint="Pass a whole number, e.g. top=100, or top=None for every row.",
        )
