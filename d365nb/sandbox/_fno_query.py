"""F&O query options → SQLite: `$select`, `$filter`, `$orderby`, `$top`, `$skip`, `$count`.

The rules are reference/finance-operations-protocol.md §3:

* `$filter` knows `eq ne gt ge lt le and or not add sub mul div divby mod` and
  parentheses; **`in` and `has` answer 400**.  It is parsed by `odata-query`'s grammar
  and compiled here to parameterised SQL (the library's own SQL visitor speaks neither
  F&O's wildcard nor its enums).
* "Contains" is a `*` wildcard inside an `eq`/`ne` string literal (`'*retail*'`).
  `contains()`, `startswith()` and `endswith()` are accepted too ([UNVERIFIED], §3.1:
  clients send them; Microsoft documents only the wildcard).
* Enum properties compare only with `eq`/`ne` and only with qualified literals
  (``Microsoft.Dynamics.DataEntities.NoYes'Yes'``); a bare ``'Yes'`` is a type error, as
  in ODL ([UNVERIFIED] best guess).  The grammar cannot read those literals, so they are
  cut out first and put back as placeholders.
* Dates are unquoted ISO-8601 (``2024-01-01T00:00:00Z``; a bare date means midnight UTC).
* Property names are case-sensitive (§1.4); string comparisons are not.
* `cross-company=true` lifts the default-company restriction; without it the filter is
  ANDed with ``dataAreaId = <default company>``, so filtering on another company
  returns nothing (§3.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from odata_query import ast, exceptions as odata_exceptions
from odata_query.grammar import ODataLexer, ODataParser

from ._fno_errors import bad_query, no_property
from ._fno_schema import ENUMS, NAMESPACE, Entity, Nav, Prop
from ._fno_store import to_sql

__all__ = ["FnoQuery", "compile_filter", "key_where", "parse_query", "utc_text"]

# An enum literal, or a string literal (matched whole, so text inside strings is kept).
_LITERALS = re.compile(
    r"(?P<enum>Microsoft\.Dynamics\.DataEntities\.(?P<name>[A-Za-z_]\w*)'(?P<member>(?:[^']|'')*)')"
    r"|'(?:[^']|'')*'"
)
_UNSUPPORTED = ("$apply", "$search", "$compute", "$levels", "$skiptoken", "$deltatoken")
_KNOWN = ("$select", "$filter", "$orderby", "$top", "$skip", "$count", "$expand", "$format")
_OPS = {ast.Eq: "=", ast.NotEq: "<>", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}
_OP_NAMES = {"=": "Equal", "<>": "NotEqual", "<": "LessThan", "<=": "LessThanOrEqual"}
_FUNCTIONS = {"contains": ("%", "%"), "startswith": ("", "%"), "endswith": ("%", "")}


@dataclass
class FnoQuery:
    """A parsed collection query against one entity."""

    entity: Entity
    select: list[Prop] | None = None
    where: list[tuple[str, list[Any]]] = field(default_factory=list)
    orderby: list[tuple[Prop, bool]] = field(default_factory=list)
    expand: list[Nav] = field(default_factory=list)
    top: int | None = None
    skip: int = 0
    count: bool = False
    cross_company: bool = False

    def sql_where(self) -> tuple[str, list[Any]]:
        """The WHERE clause (without the keyword; ``1 = 1`` when empty) and its parameters."""
        if not self.where:
            return "1 = 1", []
        params: list[Any] = []
        for _, values in self.where:
            params.extend(values)
        return " AND ".join(f"({sql})" for sql, _ in self.where), params

    def sql_order(self) -> str:
        """ORDER BY columns: `$orderby`, then the entity key (the default order, §3.4)."""
        terms = [f'"{p.name}" {"DESC" if desc else "ASC"}' for p, desc in self.orderby]
        seen = {p.name for p, _ in self.orderby}
        terms += [f'"{k}" ASC' for k in self.entity.keys if k not in seen]
        return ", ".join(terms)


def utc_text(text: str) -> str:
    """An ISO-8601 date or date-time → ``YYYY-MM-DDTHH:MM:SSZ`` in UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_option(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise bad_query(f"Invalid value '{value}' for {name} query option found.")
    return number


def parse_query(entity: Entity, params: dict[str, str], *, company: str) -> FnoQuery:
    """The query options of a collection GET.

    **Parameters:**

    * **entity** - the entity addressed.
    * **params** - the URL's query parameters (``$``-options and ``cross-company``).
    * **company** - the caller's default company.
    """
    for name in params:
        if name in _UNSUPPORTED:
            raise bad_query(f"The query option '{name}' is not supported.")
        if name.startswith("$") and name not in _KNOWN:
            raise bad_query(f"The query parameter '{name}' is not supported.")
    query = FnoQuery(entity)
    query.cross_company = params.get("cross-company", "").lower() == "true"
    if entity.company and not query.cross_company:
        query.where.append(('"dataAreaId" = ?', [company]))
    if "$select" in params:
        query.select = []
        for name in (n.strip() for n in params["$select"].split(",")):
            if name == "*":
                query.select = None
                break
            prop = entity.prop(name)
            if prop is None:
                raise no_property(name, entity.name)
            query.select.append(prop)
    if params.get("$filter", "").strip():
        query.where.append(compile_filter(entity, params["$filter"]))
    for item in (i.strip() for i in params.get("$orderby", "").split(",")):
        if not item:
            continue
        name, _, direction = item.partition(" ")
        prop = entity.prop(name)
        if prop is None:
            raise no_property(name, entity.name)
        if direction.strip().lower() not in ("", "asc", "desc"):
            raise bad_query(f"Syntax error at position {len(name) + 1} in '{item}'.")
        query.orderby.append((prop, direction.strip().lower() == "desc"))
    for item in (i.strip() for i in params.get("$expand", "").split(",")):
        if not item:
            continue
        if "/" in item or "(" in item:
            # Only first-level expansion, without nested options (§3.5).
            raise bad_query(f"The $expand item '{item}' is not supported; expand one level.")
        nav = next((n for n in entity.navs if n.name == item), None)
        if nav is None:
            raise bad_query(
                f"Could not find a property named '{item}' on type '{NAMESPACE}.{entity.name}'."
            )
        query.expand.append(nav)
    if "$top" in params:
        query.top = _int_option("$top", params["$top"])
    if "$skip" in params:
        query.skip = _int_option("$skip", params["$skip"])
    count = params.get("$count", "false").lower()
    if count not in ("true", "false"):
        raise bad_query(f"'{params['$count']}' is not a valid count option.")
    query.count = count == "true"
    return query


def _outside_strings(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of `text` outside single-quoted literals."""
    spans, pos, start, quoted = [], 0, 0, False
    while pos < len(text):
        if text[pos] == "'":
            if quoted and pos + 1 < len(text) and text[pos + 1] == "'":
                pos += 2
                continue
            if not quoted:
                spans.append((start, pos))
            else:
                start = pos + 1
            quoted = not quoted
        pos += 1
    if not quoted:
        spans.append((start, len(text)))
    return spans


def _prepare(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Cut out enum literals (→ ``__fnoenumN__``) and check the operators."""
    enums: list[tuple[str, str]] = []

    def swap(m: re.Match[str]) -> str:
        if m.group("enum") is None:
            return m.group(0)  # a string literal, left alone
        enums.append((m.group("name"), m.group("member").replace("''", "'")))
        return f"__fnoenum{len(enums) - 1}__"

    text = _LITERALS.sub(swap, text)
    out = []
    last = 0
    for start, end in _outside_strings(text):
        out.append(text[last:start])
        chunk = text[start:end]
        if re.search(r"\bhas\b", chunk):
            raise bad_query("The 'has' operator is not supported.")
        if re.search(r"\bin\s*\(", chunk):
            raise bad_query("The 'in' operator is not supported.")
        out.append(re.sub(r"\bdivby\b", "div", chunk))
        last = end
    out.append(text[last:])
    return "".join(out), enums


def compile_filter(entity: Entity, text: str) -> tuple[str, list[Any]]:
    """`$filter` text → (SQL boolean expression, parameters)."""
    prepared, enums = _prepare(text)
    try:
        tree = ODataParser().parse(ODataLexer().tokenize(prepared))
    except odata_exceptions.ODataException as exc:
        pos = getattr(getattr(exc, "token", None), "index", 0)
        raise bad_query(f"Syntax error at position {pos} in '{text}'.") from None
    params: list[Any] = []
    return _Compiler(entity, enums, params).boolean(tree), params


class _Compiler:
    def __init__(self, entity: Entity, enums: list[tuple[str, str]], params: list[Any]) -> None:
        self.entity = entity
        self.enums = enums
        self.params = params

    def boolean(self, node: Any) -> str:
        if isinstance(node, ast.BoolOp):
            op = "AND" if isinstance(node.op, ast.And) else "OR"
            return f"({self.boolean(node.left)} {op} {self.boolean(node.right)})"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return f"(NOT {self.boolean(node.operand)})"
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise bad_query(f"The expression '{type(node).__name__}' is not a boolean condition.")

    def prop(self, node: Any) -> Prop | None:
        if isinstance(node, ast.Identifier) and not node.namespace:
            if node.name.startswith("__fnoenum"):
                return None
            prop = self.entity.prop(node.name)
            if prop is None:
                raise no_property(node.name, self.entity.name)
            return prop
        return None

    def operand(self, node: Any) -> tuple[str, str]:
        """SQL for a value expression, and its EDM type name."""
        prop = self.prop(node)
        if prop is not None:
            return f'"{prop.name}"', prop.edm
        if isinstance(node, ast.Identifier) and node.name.startswith("__fnoenum"):
            enum, member = self.enums[int(node.name[9:-2])]
            enum_type = ENUMS.get(enum)
            value = enum_type.value(member) if enum_type else None
            if enum_type is None or value is None:
                raise bad_query(
                    f"The string '{NAMESPACE}.{enum}'{member}'' is not a valid enumeration "
                    "type constant."
                )
            self.params.append(value)
            return "?", f"{NAMESPACE}.{enum}"
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            left, ltype = self.operand(node.left)
            right, rtype = self.operand(node.right)
            for edm in (ltype, rtype):
                if edm not in ("Edm.Int32", "Edm.Int64", "Edm.Decimal", "Edm.Double"):
                    raise bad_query(f"Arithmetic is not defined for operand type '{edm}'.")
            return f"({left} {_ARITH[type(node.op)]} {right})", "Edm.Decimal"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            sql, edm = self.operand(node.operand)
            return f"(-{sql})", edm
        if isinstance(node, ast.String):
            self.params.append(node.val)
            return "?", "Edm.String"
        if isinstance(node, ast.Integer):
            self.params.append(int(node.val))
            return "?", "Edm.Int64"
        if isinstance(node, ast.Float):
            self.params.append(float(node.val))
            return "?", "Edm.Double"
        if isinstance(node, ast.DateTime):
            self.params.append(utc_text(node.val))
            return "?", "Edm.DateTimeOffset"
        if isinstance(node, ast.Date):
            # [UNVERIFIED] a bare date against a DateTimeOffset field means midnight UTC.
            self.params.append(f"{node.val}T00:00:00Z")
            return "?", "Edm.DateTimeOffset"
        if isinstance(node, ast.Boolean):
            self.params.append(1 if node.val.lower() == "true" else 0)
            return "?", "Edm.Boolean"
        if isinstance(node, ast.Null):
            return "NULL", "null"
        raise bad_query(f"The expression '{type(node).__name__}' is not supported in $filter.")

    def compare(self, node: ast.Compare) -> str:
        op = _OPS.get(type(node.comparator))
        if op is None:
            raise bad_query("The 'in' operator is not supported.")
        left, right = node.left, node.right
        if self.prop(left) is None and self.prop(right) is not None:
            left, right = right, left
            op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
        prop = self.prop(left)
        # The wildcard: '*' inside a string literal compared with eq/ne (§3.1).
        if (
            prop is not None
            and prop.kind == "String"
            and isinstance(right, ast.String)
            and "*" in right.val
            and op in ("=", "<>")
        ):
            pattern = re.sub(r"([\\%_])", r"\\\1", right.val).replace("*", "%")
            self.params.append(pattern)
            neg = "NOT " if op == "<>" else ""
            return f"(\"{prop.name}\" {neg}LIKE ? ESCAPE '\\')"
        lsql, ltype = self.operand(left)
        rsql, rtype = self.operand(right)
        if "null" in (ltype, rtype):
            if op not in ("=", "<>"):
                raise bad_query("Only 'eq' and 'ne' can compare with null.")
            other = rsql if ltype == "null" else lsql
            return f"({other} IS {'NOT ' if op == '<>' else ''}NULL)"
        self.check_types(ltype, rtype, op)
        return f"({lsql} {op} {rsql})"

    @staticmethod
    def check_types(ltype: str, rtype: str, op: str) -> None:
        numeric = ("Edm.Int32", "Edm.Int64", "Edm.Decimal", "Edm.Double")
        enum = ltype.startswith(NAMESPACE) or rtype.startswith(NAMESPACE)
        same = ltype == rtype or (ltype in numeric and rtype in numeric)
        if not same:
            kind = _OP_NAMES.get(op, "GreaterThan")
            raise bad_query(
                f"A binary operator with incompatible types was detected. Found operand types "
                f"'{ltype}' and '{rtype}' for operator kind '{kind}'."
            )
        if enum and op not in ("=", "<>"):
            raise bad_query(
                f"Enumeration values can only be compared with 'eq' and 'ne', not '{op}'."
            )

    def call(self, node: ast.Call) -> str:
        name = node.func.name
        if node.func.namespace or name not in _FUNCTIONS:
            raise bad_query(f"An unknown function with name '{name}' was found.")
        if len(node.args) != 2 or not isinstance(node.args[1], ast.String):
            raise bad_query(f"The function '{name}' takes a property and a string literal.")
        prop = self.prop(node.args[0])
        if prop is None or prop.kind != "String":
            raise bad_query(f"The function '{name}' needs a string property.")
        before, after = _FUNCTIONS[name]
        escaped = re.sub(r"([\\%_])", r"\\\1", node.args[1].val)
        self.params.append(f"{before}{escaped}{after}")
        return f"(\"{prop.name}\" LIKE ? ESCAPE '\\')"


def key_where(entity: Entity, key: dict[str, str]) -> tuple[str, list[Any]]:
    """WHERE clause matching one row by its full key (values as the URL gave them)."""
    props = [entity.prop(k) for k in entity.keys]
    return " AND ".join(f'"{k}" = ?' for k in entity.keys), [
        to_sql(p, key[p.name]) for p in props if p is not None
    ]
