"""An OData `$filter`, read back: its tree, a long `In` list split, and FetchXML.

d365nb writes filters as text (`where()`, `F()`, raw strings).  Two jobs need them parsed:
a filter too long even for a GET inside `$batch` is read in parts, its largest top-level
`Microsoft.Dynamics.CRM.In(...)` list cut into chunks (`split_in()`); and an aggregate
grouped by date parts runs as FetchXML, whose `<filter>` is the same condition written as
XML (`fetch_filter()`).  Pure code, no I/O; the grammar is the service's (`eq ne gt ge lt
le`, `and or not`, parentheses, `contains`/`startswith`/`endswith`, query functions).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from xml.sax.saxutils import quoteattr

from ._exceptions import ConfigError
from ._literals import GUID_RE

__all__ = ["Node", "fetch_filter", "lambda_filter", "parse_filter", "split_in", "to_text"]

_CRM = "Microsoft.Dynamics.CRM."
_TOKEN = re.compile(
    r"""\s+|(?P<s>'(?:[^']|'')*')|(?P<j>"(?:[^"\\]|\\.)*")|(?P<p>[()\[\],=])"""
    r"""|(?P<w>[A-Za-z_]\w*:\s*[^\s()\[\],='"]*|[^\s()\[\],='"]+)"""  # `o: o/x`: one word
)
_COMPARE = ("eq", "ne", "gt", "ge", "lt", "le")
_INVERSE = {"eq": "ne", "ne": "eq", "gt": "le", "le": "gt", "ge": "lt", "lt": "ge"}
_SWAPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}
_LIKE = {"contains": ("like", "%", "%"), "startswith": ("begins-with", "", ""),
         "endswith": ("ends-with", "", "")}  # fmt: skip
_NOT = {
    "like": "not-like",
    "begins-with": "not-begin-with",
    "ends-with": "not-end-with",
    "in": "not-in",
    "between": "not-between",
    "null": "not-null",
    "under": "not-under",
}
_NOT.update({v: k for k, v in _NOT.items()})
# Query functions whose FetchXML operator is not the name in kebab case [MS]
# PA/fetchxml/reference/operators.
_OPERATORS = {
    "Last7Days": "last-seven-days",
    "Next7Days": "next-seven-days",
    "EqualUserId": "eq-userid",
    "NotEqualUserId": "ne-userid",
    "EqualBusinessId": "eq-businessid",
    "NotEqualBusinessId": "ne-businessid",
    "EqualUserTeams": "eq-userteams",
    "EqualUserOrUserTeams": "eq-useroruserteams",
    "EqualUserOrUserHierarchy": "eq-useroruserhierarchy",
    "EqualUserOrUserHierarchyAndTeams": "eq-useroruserhierarchyandteams",
    "EqualUserLanguage": "eq-userlanguage",
    "DoesNotContainValues": "not-contain-values",
    "UnderOrEqual": "eq-or-under",
    "AboveOrEqual": "eq-or-above",
}


@dataclass(frozen=True)
class Node:
    """One piece of a filter.

    `kind` is `and`/`or` (`items` the operands), `not` (`items[0]`), `cmp` (`name` the
    operator, `items` the two operands), `call` (`name` the function, `items` its
    arguments: values, or `("=", key, value)` tuples), `word` (a property, number, GUID,
    date, `null`, `true`...; `name` its text), `str` (`name` the unquoted text) or `array`
    (`items` the JSON values).
    """

    kind: str
    name: str = ""
    items: tuple[Any, ...] = ()


def _bad(filter: str, why: str) -> ConfigError:  # noqa: A002
    return ConfigError(
        f"The filter cannot be read: {why}.",
        field="filter",
        hint="Build it with d365nb.where(...) or d365nb.F(...).",
    )


def _no_fetch(node: Node) -> ConfigError:
    return ConfigError(
        f"FetchXML has no equivalent of {to_text(node)!r} in this filter.",
        field="filter",
        hint="Use comparisons, and/or/not, contains/startswith/endswith and query functions "
        "on the table's own columns (no lookup paths or lambdas).",
    )


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        for m in _TOKEN.finditer(text):
            if m.lastgroup:
                self.tokens.append((m.lastgroup, m.group()))
        if sum(len(m.group()) for m in _TOKEN.finditer(text)) != len(text):
            raise _bad(text, "it holds an unterminated string")
        self.at = 0

    def peek(self, value: str | None = None) -> bool:
        if self.at >= len(self.tokens):
            return False
        kind, text = self.tokens[self.at]
        return value is None or (text == value if kind == "p" else text.lower() == value)

    def take(self, value: str | None = None) -> tuple[str, str]:
        if not self.peek(value):
            raise _bad(self.text, f"expected {value or 'more'} at token {self.at + 1}")
        token = self.tokens[self.at]
        self.at += 1
        return token

    def expression(self) -> Node:
        items = [self.conjunction()]
        while self.peek("or"):
            self.take()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Node("or", items=tuple(items))

    def conjunction(self) -> Node:
        items = [self.unary()]
        while self.peek("and"):
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else Node("and", items=tuple(items))

    def unary(self) -> Node:
        if self.peek("not"):
            self.take()
            return Node("not", items=(self.unary(),))
        if self.peek("("):
            self.take()
            inner = self.expression()
            self.take(")")
            left = inner
        else:
            left = self.value()
        if self.at < len(self.tokens) and self.tokens[self.at][1].lower() in _COMPARE:
            op = self.take()[1].lower()
            return Node("cmp", op, (left, self.value()))
        return left

    def value(self) -> Node:
        kind, text = self.take()
        if kind == "s":
            return Node("str", text[1:-1].replace("''", "'"))
        if kind == "p" and text == "[":
            values: list[Any] = []
            while not self.peek("]"):
                k, t = self.take()
                values.append(json.loads(t) if k == "j" else _json_word(t))
                if self.peek(","):
                    self.take()
            self.take("]")
            return Node("array", items=tuple(values))
        if kind != "w":
            raise _bad(self.text, f"unexpected {text!r}")
        if not self.peek("("):
            return Node("word", text)
        self.take("(")
        args: list[Any] = []
        while not self.peek(")"):
            if self.at + 1 < len(self.tokens) and self.tokens[self.at + 1][1] == "=":
                key = self.take()[1]
                self.take("=")
                args.append(("=", key, self.value()))
            else:
                args.append(self.expression())
            if not self.peek(","):
                break
            self.take()
        self.take(")")
        return Node("call", text, tuple(args))


def _json_word(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_filter(text: str) -> Node:
    """The tree of an OData filter (`ConfigError` if it cannot be read)."""
    parser = _Parser(text)
    node = parser.expression()
    if parser.at != len(parser.tokens):
        raise _bad(text, f"unexpected {parser.tokens[parser.at][1]!r}")
    return node


def to_text(node: Node) -> str:
    """The filter text of `node` (the same condition as the text it was parsed from)."""
    kind = node.kind
    if kind in ("and", "or"):
        return f" {kind} ".join(_grouped(n, kind) for n in node.items)
    if kind == "not":
        return "not " + _grouped(node.items[0], "not")
    if kind == "cmp":
        return f"{to_text(node.items[0])} {node.name} {to_text(node.items[1])}"
    if kind == "call":
        parts = [
            f"{a[1]}={to_text(a[2])}" if isinstance(a, tuple) else to_text(a) for a in node.items
        ]
        return f"{node.name}({','.join(parts)})"
    if kind == "str":
        return "'" + node.name.replace("'", "''") + "'"
    if kind == "array":
        return json.dumps(list(node.items), ensure_ascii=False, separators=(",", ":"))
    return node.name


def _grouped(node: Node, parent: str) -> str:
    text = to_text(node)
    if node.kind in ("and", "or", "cmp") and (node.kind != parent or parent == "not"):
        return f"({text})"
    return text


def split_in(text: str, fits: Callable[[str], bool]) -> list[str] | None:
    """`text` as several filters whose rows together are its rows, each one `fits()`.

    The largest `Microsoft.Dynamics.CRM.In` list that is and-ed at the top level is cut
    into chunks (a row has one value, so it matches at most one chunk: no row twice).
    None when the filter has no such list, or a single value does not fit.

    **Parameters:**

    * **text** - the filter.
    * **fits** - whether a filter is short enough (e.g. its request URL's length).
    """
    root = parse_filter(text)
    terms = list(root.items) if root.kind == "and" else [root]
    best = None
    for i, term in enumerate(terms):
        if term.kind == "call" and term.name == _CRM + "In":
            for j, arg in enumerate(term.items):
                if isinstance(arg, tuple) and arg[1] == "PropertyValues" and arg[2].kind == "array":
                    if best is None or len(arg[2].items) > len(best[2]):
                        best = (i, j, arg[2].items)
    if best is None:
        return None
    i, j, values = best

    def with_values(chunk: tuple[Any, ...]) -> str:
        call = terms[i]
        args = list(call.items)
        args[j] = ("=", "PropertyValues", Node("array", items=chunk))
        new = [*terms[:i], replace(call, items=tuple(args)), *terms[i + 1 :]]
        return to_text(Node("and", items=tuple(new)) if len(new) > 1 else new[0])

    out: list[str] = []
    start = 0
    while start < len(values):
        size = 1
        if not fits(with_values(values[start : start + 1])):
            return None
        while start + size < len(values) and fits(with_values(values[start : start + size * 2])):
            size *= 2
        remaining = len(values) - start
        low, high = min(size, remaining), min(size * 2, remaining)  # fits(low)
        while low < high:
            middle = (low + high + 1) // 2
            if fits(with_values(values[start : start + middle])):
                low = middle
            else:
                high = middle - 1
        out.append(with_values(values[start : start + low]))
        start += low
    return out


# -- lambda any/all ----------------------------------------------------------------------


def _scoped_word(node: Node, var: str) -> Node:
    text = node.name
    if (
        node.kind != "word"
        or not re.match(r"[A-Za-z_]", text)
        or ":" in text
        or text in ("null", "true", "false")
        or GUID_RE.fullmatch(text)
        or text.startswith("Microsoft.Dynamics.CRM.")
    ):
        return node
    return Node("word", f"{var}/{text}")


def _scoped(node: Node, var: str) -> Node:
    """`node` with its properties read through the range variable `var`."""
    if node.kind in ("and", "or", "not"):
        return replace(node, items=tuple(_scoped(n, var) for n in node.items))
    if node.kind == "cmp":
        return replace(node, items=tuple(_scoped_word(n, var) for n in node.items))
    if node.kind == "call" and node.name in _LIKE and node.items:
        return replace(node, items=(_scoped_word(node.items[0], var), *node.items[1:]))
    if node.kind == "call" and node.name.endswith(("/any", "/all")):
        return replace(node, name=f"{var}/{node.name}")
    return _scoped_word(node, var)


def lambda_filter(nav: str, op: str, inner: str | None) -> str:
    """`nav/any(o:o/x eq 1)`: a lambda on collection `nav` over the filter `inner`.

    **Parameters:**

    * **nav** - a collection-valued navigation property (`opportunity_parent_account`).
    * **op** - `any` or `all`.
    * **inner** - a filter on the related table's columns (`where(statecode=0)`); None
      with `any`: the collection is not empty.
    """
    if inner is None:
        return f"{nav}/{op}()"
    lambdas = len(re.findall(r"/(?:any|all)\(", inner))
    var = f"o{lambdas}" if lambdas else "o"
    return f"{nav}/{op}({var}:{to_text(_scoped(parse_filter(inner), var))})"


# -- FetchXML ----------------------------------------------------------------------------


def _operator(function: str) -> str:
    if function in _OPERATORS:
        return _OPERATORS[function]
    words = re.findall(r"[A-Z][a-z]*|\d+", function)
    text = "-".join(w.lower() for w in words)
    return text.replace("older-than", "olderthan")


def _property(node: Node, column: Callable[[str], str]) -> str | None:
    if node.kind != "word" or "/" in node.name or not re.match(r"[A-Za-z_]", node.name):
        return None
    if node.name in ("null", "true", "false") or GUID_RE.fullmatch(node.name):
        return None
    name = node.name
    if name.startswith("_") and name.endswith("_value"):
        name = name[1:-6]
    return column(name)


def _value(node: Node) -> str | None:
    if node.kind == "str":
        return node.name
    if node.kind == "word":
        text = node.name
        if text in ("true", "false"):
            return "1" if text == "true" else "0"
        if text == "null" or GUID_RE.fullmatch(text) or re.match(r"[-+.\d]", text):
            return text  # not a column (`revenue eq cost`) nor a parameter alias (`@p1`)
    return None


def _condition(attribute: str, op: str, values: tuple[Any, ...] | str | None = None) -> str:
    head = f"<condition attribute={quoteattr(attribute)} operator={quoteattr(op)}"
    if values is None:
        return head + "/>"
    if isinstance(values, str):
        return head + f" value={quoteattr(values)}/>"
    inner = "".join(f"<value>{_escape(str(v))}</value>" for v in values)
    return head + f">{inner}</condition>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fetch(node: Node, column: Callable[[str], str], negate: bool) -> str:
    kind = node.kind
    if kind == "not":
        return _fetch(node.items[0], column, not negate)
    if kind in ("and", "or"):
        joined = {"and": "or", "or": "and"}[kind] if negate else kind
        inner = "".join(_fetch(n, column, negate) for n in node.items)
        return f"<filter type='{joined}'>{inner}</filter>"
    if kind == "cmp":
        op, (left, right) = node.name, node.items
        name = _property(left, column)
        if name is None:
            left, right, op = right, left, _SWAPPED[op]
            name = _property(left, column)
        value = _value(right)
        if name is None or value is None:
            raise _no_fetch(node)
        if negate:
            op = _INVERSE[op]
        if right.kind == "word" and right.name == "null" and op in ("eq", "ne"):
            return _condition(name, "null" if op == "eq" else "not-null")
        return _condition(name, op, value)
    if kind == "call":
        args = node.items
        if node.name in _LIKE and len(args) == 2:
            op, before, after = _LIKE[node.name]
            name = _property(args[0], column)
            value = _value(args[1])
            if name is not None and value is not None:
                return _condition(name, _NOT[op] if negate else op, f"{before}{value}{after}")
        elif node.name.startswith(_CRM):
            named = {a[1]: a[2] for a in args if isinstance(a, tuple)}
            prop = named.get("PropertyName")
            name = column(prop.name) if prop is not None and prop.kind == "str" else None
            op = _operator(node.name[len(_CRM) :])
            if negate:
                op = _NOT.get(op, "")
            if name is not None and op:
                if "PropertyValues" in named and named["PropertyValues"].kind == "array":
                    return _condition(name, op, tuple(named["PropertyValues"].items))
                if "PropertyValue" in named:
                    return _condition(name, op, _value(named["PropertyValue"]) or "")
                return _condition(name, op)
    raise _no_fetch(node)


def fetch_filter(text: str, column: Callable[[str], str]) -> str:
    """The FetchXML `<filter>` element for OData filter `text`.

    **Parameters:**

    * **text** - the OData filter (comparisons, `and`/`or`/`not`, `contains`,
      `startswith`, `endswith`, `Microsoft.Dynamics.CRM.*` query functions).
    * **column** - a property name (`name`, `parentaccountid`) to its logical name; raises
      for an unknown column.
    """
    xml = _fetch(parse_filter(text), column, False)
    return xml if xml.startswith("<filter") else f"<filter>{xml}</filter>"
