"""Key ranges of an F&O read: non-overlapping `$filter`s that together cover every row.

A large read is split by the entity's own key, in the service's key order: the first page
is asked for with `$orderby=<key fields>` (and `$count=true`), so it holds the first rows
of that order; the cut points after it come from tiny probes, `$orderby=<key fields>`,
`$skip=<n>`, `$top=1`, `$select=<key fields>` (all in F&O's supported set, §3.1; the
reference recommends nothing finer).  Cuts fall on whole pages (`$skip` a multiple of
the server's page size), so every range is whole pages and ends without a short page.

A range is a comparison of key *tuples* (`KeyRange`): rows after the previous cut and
before the next, written with `gt`/`ge`/`lt` per key field
(`(dataAreaId gt 'demf') or (dataAreaId eq 'demf' and CustomerAccount ge 'DE-000120')`),
shared leading fields as `eq`.  Each row's key is in exactly one range whatever the
values, provided the service compares strings as it orders them (SQL Server's collation
does both; [UNVERIFIED] for F&O, which does not document its order without `$orderby`).
A read scoped to one company leaves `dataAreaId` out of the tuple; a cross-company read
keeps it first, so its ranges run through the companies in key order (and split one big
company as well as several small ones).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._dialects.fno import COMPANY, FnoDialect
from ._metadata import Table

__all__ = ["KeyRange", "Literal", "cut_offsets", "range_keys"]

#: Writes one key field's value as a filter literal: `literal("CustomerAccount", "US-1")`.
Literal = Callable[[str, Any], str]

# Key field types a range can compare (`gt`/`lt` on their literals); enums compare with
# eq/ne only (§3.3) and dates would need unquoted literals: such keys are not split.
_COMPARABLE = frozenset({"String", "Integer", "BigInt"})


def range_keys(table: Table, dialect: FnoDialect, *, one_company: bool) -> tuple[str, ...]:
    """The key fields a read's ranges compare, or `()` when they cannot be compared.

    **Parameters:**

    * **table** - the entity.
    * **dialect** - F&O's rules (its key fields).
    * **one_company** - the read sees one company only: `dataAreaId` is left out.
    """
    keys = tuple(dialect.key_fields(table))
    if one_company:
        keys = tuple(k for k in keys if k != COMPANY)
    for name in keys:
        attribute = table.attributes.get(name)
        if attribute is None or attribute.attribute_type not in _COMPARABLE:
            return ()
    return keys


def cut_offsets(total: int, page: int, parts: int) -> list[int]:
    """`$skip` values of the cuts after a first page of `page` rows, out of `total`.

    The rest is cut into at most `parts` ranges of whole pages, as even as they can be.
    """
    if page <= 0 or total <= page or parts < 2:
        return []
    pages = -(-(total - page) // page)
    per_range = -(-pages // parts)
    return list(range(page + per_range * page, total, per_range * page))


@dataclass(frozen=True)
class KeyRange:
    """Rows whose key tuple lies after `low` (or at it, `inclusive`) and before `high`.

    **Parameters:**

    * **keys** - the key fields compared, in key order.
    * **literals** - how a field's value is written in a filter (field, value -> text).
    * **low**, **high** - key tuples (`None`: unbounded).
    * **inclusive** - `low` itself belongs to the range.
    """

    keys: tuple[str, ...]
    low: tuple[Any, ...] | None
    high: tuple[Any, ...] | None
    inclusive: bool = True

    def condition(self, literal: Literal) -> str:
        """The range as a `$filter` condition (`""` when it is unbounded).

        `literal(field, value)` writes one key value as a filter literal.
        """
        shared = 0
        if self.low is not None and self.high is not None:
            while shared < len(self.keys) - 1 and self.low[shared] == self.high[shared]:
                shared += 1
        low, high = self.low or (), self.high or ()
        terms = [f"{k} eq {literal(k, low[i])}" for i, k in enumerate(self.keys[:shared])]
        rest = self.keys[shared:]
        if self.low is not None:
            last = "ge" if self.inclusive else "gt"
            terms.append(_side(rest, low[shared:], literal, "gt", last))
        if self.high is not None:
            terms.append(_side(rest, high[shared:], literal, "lt", "lt"))
        return " and ".join(t if len(terms) == 1 or " or " not in t else f"({t})" for t in terms)


def _side(keys: Sequence[str], values: Sequence[Any], literal: Literal, op: str, last: str) -> str:
    """Tuple `keys` `op` `values` (lexicographic; `last` on the final field)."""
    alternatives = []
    for i, name in enumerate(keys):
        equal = [f"{k} eq {literal(k, values[j])}" for j, k in enumerate(keys[:i])]
        compare = f"{name} {last if i == len(keys) - 1 else op} {literal(name, values[i])}"
        alternatives.append(" and ".join([*equal, compare]))
    if len(alternatives) == 1:
        return alternatives[0]
    return " or ".join(f"({a})" for a in alternatives)
