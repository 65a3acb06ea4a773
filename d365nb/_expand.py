"""`read(expand=...)`: expanded rows as typed, flattened columns, nested expands included.

```python
conn.read("accounts", expand="primarycontactid($select=fullname;"
          "$expand=parentcustomerid_account($select=name))")
```

gives `primarycontactid.contactid`, `primarycontactid.fullname`,
`primarycontactid.parentcustomerid_account.accountid`, `...name`: each single-valued
(many-to-one) navigation property is typed by its target table's metadata with the same
`FrameBuilder` as a `read()` of that table (choices as labels, dates in UTC, a lookup as
id, `_name`, `_table`), and named `<nav>.<column>` level by level.  A collection-valued
expand (one-to-many) stays one column of lists of dicts, as does a navigation property
the metadata does not name.  Pure code, no I/O (the tables are fetched by the caller).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ._frames import FrameBuilder
from ._metadata import Table

__all__ = ["ExpandItem", "expand_tables", "expanded_columns", "parse_expand"]


@dataclass(frozen=True)
class ExpandItem:
    """One `$expand` item: its navigation property, `$select` (None: every column) and
    nested items."""

    nav: str
    select: tuple[str, ...] | None = None
    nested: tuple[ExpandItem, ...] = ()


def _split(text: str, sep: str) -> list[str]:
    """`text` split on `sep` outside parentheses and quotes."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == sep:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_expand(text: str) -> tuple[ExpandItem, ...]:
    """The items of a `$expand` value (`nav($select=a,b;$expand=...)`, comma-separated)."""
    items = []
    for part in _split(text, ","):
        nav, _, rest = part.partition("(")
        select: tuple[str, ...] | None = None
        nested: tuple[ExpandItem, ...] = ()
        for option in _split(rest[:-1], ";") if rest.endswith(")") else ():
            key, _, value = option.partition("=")
            if key.strip() == "$select":
                select = tuple(c.strip() for c in value.split(",") if c.strip())
            elif key.strip() == "$expand":
                nested = parse_expand(value)
        items.append(ExpandItem(nav.strip(), select, nested))
    return tuple(items)


def _target(table: Table, nav: str) -> str | None:
    """The table a single-valued navigation property of `table` points to, if known."""
    for attribute in table.attributes.values():
        if not attribute.is_lookup:
            continue
        for target, name in attribute.navigation.items():
            if name == nav:
                return target
        if not attribute.navigation and attribute.logical_name == nav:
            return attribute.targets[0] if len(attribute.targets) == 1 else None
    return None


async def expand_tables(
    table: Table, items: Sequence[ExpandItem], get: Callable[[str], Awaitable[Table]]
) -> dict[str, Table]:
    """The metadata of every table the single-valued items reach (nested too), by name."""
    found: dict[str, Table] = {}

    async def visit(parent: Table, level: Sequence[ExpandItem]) -> None:
        for item in level:
            target = _target(parent, item.nav)
            if target is None:
                continue
            if target not in found:
                found[target] = await get(target)
            await visit(found[target], item.nested)

    await visit(table, items)
    return found


def _untyped(nav: str, values: list[Any]) -> pd.DataFrame:
    """The columns of an item not typed (a collection, or a table not known)."""
    frame: pd.DataFrame = pd.json_normalize([{nav: v} for v in values], sep=".", max_level=1)
    frame = frame[[c for c in frame.columns if "@" not in str(c)]]
    if nav not in frame.columns and not any(str(c).startswith(nav + ".") for c in frame.columns):
        frame[nav] = None
    return frame


def _columns(
    table: Table,
    item: ExpandItem,
    values: list[Any],
    tables: Mapping[str, Table],
    prefix: str,
) -> pd.DataFrame:
    name = _target(table, item.nav)
    if name is None or name not in tables or any(isinstance(v, list) for v in values):
        untyped: pd.DataFrame = _untyped(item.nav, values).add_prefix(prefix)
        return untyped
    target = tables[name]
    rows = [dict(v) if isinstance(v, dict) else {} for v in values]
    inner = [[row.pop(n.nav, None) for row in rows] for n in item.nested]
    if item.select is not None:
        select = list(item.select)
    else:  # every column the rows hold (the service sends them all, nulls too)
        keys = dict.fromkeys(k.partition("@")[0] for row in rows for k in row)
        select = [k for k in keys if k and target.find_column(k) is not None]
    builder = FrameBuilder(target, select=select, etag=False)
    builder.add_page(rows)
    parts = [builder.finish().add_prefix(f"{prefix}{item.nav}.")]
    for nested, nested_values in zip(item.nested, inner, strict=True):
        parts.append(_columns(target, nested, nested_values, tables, f"{prefix}{item.nav}."))
    joined: pd.DataFrame = pd.concat([p.reset_index(drop=True) for p in parts], axis=1)
    return joined


def expanded_columns(
    table: Table,
    items: Sequence[ExpandItem],
    expanded: list[dict[str, Any]],
    tables: Mapping[str, Table],
) -> pd.DataFrame:
    """The expanded columns of every row, in row order.

    **Parameters:**

    * **table** - the table read.
    * **items** - the user's `$expand` items.
    * **expanded** - per row, each item's navigation property → what the service sent
      (an object, a list or None).
    * **tables** - the target tables' metadata (`expand_tables()`); an item whose target
      is not there keeps the untyped columns.
    """
    parts = [
        _columns(table, item, [row.get(item.nav) for row in expanded], tables, "") for item in items
    ]
    if not parts:
        empty: pd.DataFrame = pd.DataFrame(index=pd.RangeIndex(len(expanded)))
        return empty
    joined: pd.DataFrame = pd.concat(parts, axis=1)
    return joined
