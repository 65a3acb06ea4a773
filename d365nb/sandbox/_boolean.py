"""A `$filter`'s `and`/`or`/`not` as a flat tree, built without recursion.

The grammar hands back `a or b or c ...` as a tree as deep as the chain is long, and
`not (not (...))` one level per `not`.  Compiled as it stands, 90 `or`s overflow SQLite's
parser stack, and a few hundred more Python's recursion limit.  `normalize` walks the tree
with explicit stacks, merges chains of one operator into one group (`a or b or c` -> OR of
three) and pushes `not` down to the leaves (De Morgan, which holds in SQL's three-valued
logic too), so the depth left is the number of *alternations* between `and` and `or`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from odata_query import ast

__all__ = ["Group", "Leaf", "TooDeep", "join", "normalize"]

#: Items joined without parentheses; larger groups nest chunks of this size.
CHUNK = 64


@dataclass
class Leaf:
    """A comparison, function call or Boolean column; `negated` when under an odd `not`."""

    node: Any
    negated: bool


@dataclass
class Group:
    """`items` joined by `op` (``AND`` or ``OR``)."""

    op: str
    items: list[Group | Leaf] = field(default_factory=list)


class TooDeep(Exception):
    """The filter alternates `and`/`or` more than `max_depth` levels deep."""

    def __init__(self, depth: int) -> None:
        super().__init__(depth)
        self.depth = depth


def _strip(node: Any, negated: bool) -> tuple[Any, bool]:
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        node, negated = node.operand, not negated
    return node, negated


def _op(node: Any, negated: bool) -> str | None:
    if not isinstance(node, ast.BoolOp):
        return None
    is_and = isinstance(node.op, ast.And)
    return "AND" if is_and != negated else "OR"


def normalize(root: Any, *, max_depth: int) -> Group | Leaf:
    """`root` (an `odata_query` AST) as nested `Group`s of `Leaf`s, in the filter's order.

    **Parameters:**

    * **root** - the parsed `$filter`.
    * **max_depth** - the most nested groups allowed; deeper raises `TooDeep`.
    """
    node, negated = _strip(root, False)
    op = _op(node, negated)
    if op is None:
        return Leaf(node, negated)
    top = Group(op)
    work: list[tuple[Group, Any, bool, int]] = [(top, node, negated, 1)]
    while work:
        group, node, negated, depth = work.pop()
        if depth > max_depth:
            raise TooDeep(depth)
        pending: list[tuple[Any, bool]] = [(node.right, negated), (node.left, negated)]
        while pending:
            child, child_negated = _strip(*pending.pop())
            child_op = _op(child, child_negated)
            if child_op == group.op:
                pending.append((child.right, child_negated))
                pending.append((child.left, child_negated))
            elif child_op is None:
                group.items.append(Leaf(child, child_negated))
            else:
                sub = Group(child_op)
                group.items.append(sub)
                work.append((sub, child, child_negated, depth + 1))
    return top


def join(op: str, parts: list[str]) -> str:
    """`parts` joined by `op` in parentheses, in chunks of `CHUNK` so that neither SQLite's
    parser stack nor its expression-depth limit (1000) is reached by a long list."""
    while len(parts) > CHUNK:
        parts = [
            "(" + f" {op} ".join(parts[i : i + CHUNK]) + ")" for i in range(0, len(parts), CHUNK)
        ]
    return "(" + f" {op} ".join(parts) + ")"
