"""Compile audience rules written in a subset of AEP's Profile Query Language (PQL) into SQL predicates.

The subset follows the syntax of Adobe's PQL reference (Experience League, "Profile Query Language
(PQL) overview" and its pages on comparison, boolean, string, array and object functions) for the
rules an audience over one flat profile table needs::

    rule       := or_expr END
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := ("not" | "!") unary | "(" or_expr ")" | condition
    condition  := PATH ("=" | "!=" | "<" | "<=" | ">" | ">=") (literal | PATH)
                | PATH ("in" | "notIn") "[" literal ("," literal)* "]"
                | PATH "." ("startsWith" | "doesNotStartWith" | "endsWith" | "doesNotEndWith"
                            | "contains") "(" STRING ("," BOOLEAN)? ")"
                | PATH "." ("isNull" | "isNotNull") "(" ")"
    literal    := STRING | NUMBER | "true" | "false" | "date" "(" INTEGER "," INTEGER "," INTEGER ")"
    PATH       := NAME ("." NAME)*          NAME := [A-Za-z_][A-Za-z0-9_]*   (e.g. _acme.propensity)
    STRING     := '"' characters '"'        (escapes: \\" and \\\\ only)
    NUMBER     := -?[0-9]+(.[0-9]+)?        (integers within 64 bits, finite decimals)

Keywords are lower case as in AEP (``and``, ``or``, ``not``, ``in``, ``notIn``, ``true``,
``false``); ``not`` binds tighter than ``and``, which binds tighter than ``or``. Dates are written
as AEP documents them, ``date(2020, 3, 14)``. Existence is AEP's ``X.isNotNull()`` / ``X.isNull()``
(the documented object functions; there is no ``exists X`` form for plain fields). The optional
second argument of the string functions is AEP's case-sensitivity flag (default ``true``);
``false`` compares both sides through ``lower()``. ``notIn``, ``doesNotStartWith``,
``doesNotEndWith`` and ``isNotNull`` are read as ``not`` over their positive form. Anything else
(other functions, ``like``, arithmetic, lambdas, relative time, ``xEvent``) is a :class:`PqlError`,
and so is nesting ``not``/``!``/parentheses more than :data:`MAX_NESTING` deep (which keeps parser,
compiler and sqlglot far from Python's recursion limit; chains of ``and``/``or`` are flat and unbounded).

Semantics are SQL's three-valued logic: a comparison, ``in`` or string function over a NULL field is
unknown, and so is its negation, so neither ``X != v`` nor ``not X = v`` nor ``X notIn [...]``
selects profiles where X is NULL (as AEP documents for ``notIn``); ``and``/``or`` are Kleene's;
``isNull``/``isNotNull`` are never unknown. A profile is a member when the rule is true. Strings
compare by the engine's collation (binary in DuckDB; use ``COLLATE "C"`` columns in PostgreSQL to
match).

Safety: a field path reaches SQL only through the caller's ``fields`` mapping, as a double-quoted
column name validated by :func:`~aep_propensity.platform.core.port.check_name`; every literal of the
rule is bound as a ``?`` parameter (dates as :class:`datetime.date`), so no text of the rule ever
appears in the SQL. The SQL uses only functions both DuckDB and PostgreSQL know (``strpos``,
``starts_with``, ``right``, ``length``, ``lower``), written so that ``sqlglot`` transpiles it from
DuckDB to PostgreSQL with the placeholders in the same order. Fields are type-checked (numbers,
strings, booleans, dates); ordering comparisons on booleans are refused. Every error names the
problem and its 0-based character position in the rule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from .port import Field, FieldType
from .sql import identifier

Value = str | int | float | bool | date

_COMPARISONS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_ORDERING = frozenset({"<", "<=", ">", ">="})
_STRING_FUNCTIONS = {
    "startsWith": ("startsWith", False),
    "doesNotStartWith": ("startsWith", True),
    "endsWith": ("endsWith", False),
    "doesNotEndWith": ("endsWith", True),
    "contains": ("contains", False),
}
_NULL_CHECKS = {"isNull": False, "isNotNull": True}
_RESERVED = frozenset({"and", "or", "not", "in", "notIn", "true", "false"})
_INT64 = 2**63
#: How deeply ``not``, ``!`` and parentheses may nest (bounds the recursion of parser and compiler).
MAX_NESTING = 16
_TOKEN = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<number>-?[0-9]+(?:\.[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(?P<string>\")"
    r"|(?P<symbol>!=|<=|>=|[=<>!()\[\],])"
)
_ESCAPES = {'"': '"', "\\": "\\"}


class PqlError(ValueError):
    """A rule outside the supported PQL subset; the message names the problem and its position."""

    def __init__(self, problem: str, position: int) -> None:
        super().__init__(f"{problem} at position {position}")
        self.position = position


@dataclass(frozen=True)
class CompiledRule:
    """A rule as a DuckDB-dialect SQL predicate with ``?`` placeholders, its parameters and paths."""

    predicate: str
    params: tuple
    fields: tuple[str, ...]


# The tree. Positions (0-based offsets into the rule) serve error messages only: trees compare
# equal whatever the spacing of the text they came from.


@dataclass(frozen=True)
class Path:
    """A field path such as ``_acme.propensity``."""

    name: str
    position: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class Constant:
    """A literal: a string, number, boolean or date."""

    value: Value
    position: int = field(default=0, compare=False, repr=False)

    @property
    def type(self) -> FieldType:
        """The PQL type of the value."""
        if isinstance(self.value, bool):
            return "boolean"
        if isinstance(self.value, str):
            return "string"
        if isinstance(self.value, date):
            return "date"
        return "number"


@dataclass(frozen=True)
class Comparison:
    """``path op value`` or ``path op path``."""

    op: Literal["=", "!=", "<", "<=", ">", ">="]
    left: Path
    right: Constant | Path
    position: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class InList:
    """``path in [v1, v2, ...]``."""

    path: Path
    values: tuple[Constant, ...]


@dataclass(frozen=True)
class StringMatch:
    """``path.startsWith(s)``, ``path.endsWith(s)`` or ``path.contains(s)``, optionally case-blind."""

    path: Path
    function: Literal["startsWith", "endsWith", "contains"]
    pattern: str
    case_sensitive: bool = True
    position: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class IsNull:
    """``path.isNull()``."""

    path: Path


@dataclass(frozen=True)
class Not:
    """``not operand``."""

    operand: Node


@dataclass(frozen=True)
class And:
    """``a and b and ...``: two or more operands (a chain of ``and`` is one node)."""

    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """``a or b or ...``: two or more operands (a chain of ``or`` is one node)."""

    operands: tuple[Node, ...]


Node = Comparison | InList | StringMatch | IsNull | Not | And | Or


@dataclass(frozen=True)
class _Token:
    """A lexical token: kind (``number``, ``name``, ``string``, ``symbol``, ``end``), text, value."""

    kind: str
    text: str
    position: int
    value: Value | None = None


def _read_string(rule: str, start: int) -> tuple[str, int]:
    """The string literal opening at ``start`` and the offset just past its closing quote."""
    chars: list[str] = []
    i = start + 1
    while i < len(rule):
        char = rule[i]
        if char == '"':
            return "".join(chars), i + 1
        if char == "\\":
            escaped = rule[i + 1 : i + 2]
            if escaped not in _ESCAPES:
                raise PqlError(f"unsupported escape '\\{escaped}' in string", i)
            chars.append(_ESCAPES[escaped])
            i += 2
        else:
            chars.append(char)
            i += 1
    raise PqlError("unterminated string", start)


def _number(text: str, position: int) -> int | float:
    """The value of a number token, refusing integers beyond 64 bits and non-finite decimals."""
    if "." in text:
        value: int | float = float(text)
        if not math.isfinite(value):
            raise PqlError(f"number {text} is out of range", position)
    else:
        value = int(text)
        if not -_INT64 <= value < _INT64:
            raise PqlError(f"integer {text} is out of range", position)
    return value


def _tokenize(rule: str) -> list[_Token]:
    """Split ``rule`` into tokens, ending with an ``end`` token at ``len(rule)``."""
    tokens: list[_Token] = []
    i = 0
    while i < len(rule):
        match = _TOKEN.match(rule, i)
        if match is None:
            raise PqlError(f"unexpected character {rule[i]!r}", i)
        kind = match.lastgroup
        if kind == "string":
            value, end = _read_string(rule, i)
            tokens.append(_Token("string", rule[i:end], i, value))
            i = end
            continue
        if kind == "number":
            tokens.append(_Token("number", match.group(), i, _number(match.group(), i)))
        elif kind != "space":
            tokens.append(_Token(kind, match.group(), i))
        i = match.end()
    tokens.append(_Token("end", "", len(rule)))
    return tokens


def _describe(token: _Token) -> str:
    """How an error message shows ``token``."""
    return "end of rule" if token.kind == "end" else repr(token.text)


class _Parser:
    """Recursive descent over the tokens of one rule, following the grammar in the module docstring."""

    def __init__(self, rule: str) -> None:
        self.tokens = _tokenize(rule)
        self.index = 0
        self.depth = 0

    def peek(self, offset: int = 0) -> _Token:
        """The token ``offset`` places ahead, without consuming it."""
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def take(self) -> _Token:
        """Consume and return the next token."""
        token = self.peek()
        self.index += 1
        return token

    def accept(self, text: str) -> bool:
        """Consume the next token if it is the symbol or word ``text``."""
        token = self.peek()
        if token.kind in ("symbol", "name") and token.text == text:
            self.index += 1
            return True
        return False

    def expect(self, text: str) -> None:
        """Consume the symbol or word ``text`` or fail naming it."""
        token = self.peek()
        if not self.accept(text):
            raise PqlError(f"expected '{text}', found {_describe(token)}", token.position)

    def rule(self) -> Node:
        """The whole rule, which must be one condition tree and nothing after it."""
        if self.peek().kind == "end":
            raise PqlError("empty rule", 0)
        node = self.or_expr()
        token = self.peek()
        if token.kind != "end":
            raise PqlError(f"expected 'and', 'or' or end of rule, found {_describe(token)}", token.position)
        return node

    def or_expr(self) -> Node:
        """``and_expr ("or" and_expr)*``, flattened into one :class:`Or`."""
        operands = [self.and_expr()]
        while self.accept("or"):
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expr(self) -> Node:
        """``unary ("and" unary)*``, flattened into one :class:`And`."""
        operands = [self.unary()]
        while self.accept("and"):
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self) -> Node:
        """``not``/``!`` over a unary, a parenthesised rule, or a condition."""
        token = self.peek()
        if self.accept("not") or self.accept("!"):
            with self.nested(token):
                return Not(self.unary())
        if self.accept("("):
            with self.nested(token):
                node = self.or_expr()
            self.expect(")")
            return node
        return self.condition()

    @contextmanager
    def nested(self, token: _Token) -> Iterator[None]:
        """One more level of ``not`` or parentheses, refused beyond :data:`MAX_NESTING`."""
        if self.depth == MAX_NESTING:
            raise PqlError(f"rule nested more than {MAX_NESTING} levels deep", token.position)
        self.depth += 1
        yield
        self.depth -= 1

    def condition(self) -> Node:
        """A comparison, ``in``/``notIn`` list or method call on a field path."""
        token = self.take()
        if token.kind != "name" or token.text in _RESERVED:
            raise PqlError(f"expected a field path, found {_describe(token)}", token.position)
        if self.peek().text == "(" and self.peek().kind == "symbol":
            return self.method_call(token)
        path = Path(token.text, token.position)
        operator = self.take()
        if operator.kind == "symbol" and operator.text in _COMPARISONS:
            return Comparison(operator.text, path, self.operand(), operator.position)
        if operator.kind == "name" and operator.text in ("in", "notIn"):
            node = InList(path, self.list_literal())
            return node if operator.text == "in" else Not(node)
        raise PqlError(
            f"expected a comparison, 'in', 'notIn' or a method after '{path.name}', found {_describe(operator)}",
            operator.position,
        )

    def method_call(self, token: _Token) -> Node:
        """``path.method(args)`` for the string functions and null checks."""
        path_name, dot, method = token.text.rpartition(".")
        position = token.position + len(path_name) + len(dot)
        if not dot or (method not in _NULL_CHECKS and method not in _STRING_FUNCTIONS):
            raise PqlError(f"unsupported function '{method}'", position)
        path = Path(path_name, token.position)
        self.expect("(")
        if method in _NULL_CHECKS:
            self.expect(")")
            return Not(IsNull(path)) if _NULL_CHECKS[method] else IsNull(path)
        function, negated = _STRING_FUNCTIONS[method]
        pattern = self.literal_of("string", f"{method}() needs a string")
        case_sensitive = True
        if self.accept(","):
            case_sensitive = self.literal_of("boolean", f"{method}() takes true or false as its case flag")
        self.expect(")")
        node = StringMatch(path, function, pattern, case_sensitive, position)
        return Not(node) if negated else node

    def literal_of(self, kind: FieldType, problem: str) -> Value:
        """A literal of type ``kind`` or a :class:`PqlError` saying ``problem``."""
        token = self.peek()
        constant = self.literal()
        if constant.type != kind:
            raise PqlError(f"{problem}, found {_describe(token)}", token.position)
        return constant.value

    def operand(self) -> Constant | Path:
        """The right side of a comparison: a literal or another field path."""
        token = self.peek()
        is_date = token.text == "date" and self.peek(1).text == "("
        if token.kind == "name" and token.text not in _RESERVED and not is_date:
            self.index += 1
            return Path(token.text, token.position)
        return self.literal()

    def list_literal(self) -> tuple[Constant, ...]:
        """``[literal, ...]`` with at least one element."""
        self.expect("[")
        if self.peek().text == "]":
            raise PqlError("empty list", self.peek().position)
        values = [self.literal()]
        while self.accept(","):
            values.append(self.literal())
        self.expect("]")
        return tuple(values)

    def literal(self) -> Constant:
        """A string, number, ``true``/``false`` or ``date(y, m, d)``."""
        token = self.take()
        if token.kind in ("string", "number"):
            return Constant(token.value, token.position)
        if token.kind == "name" and token.text in ("true", "false"):
            return Constant(token.text == "true", token.position)
        if token.kind == "name" and token.text == "date":
            return self.date_literal(token)
        raise PqlError(f"expected a value, found {_describe(token)}", token.position)

    def date_literal(self, token: _Token) -> Constant:
        """The rest of ``date(year, month, day)`` after the word ``date``."""
        self.expect("(")
        parts = []
        for index, name in enumerate(("year", "month", "day")):
            if index:
                self.expect(",")
            part = self.take()
            if part.kind != "number" or not isinstance(part.value, int):
                raise PqlError(f"expected the {name} as an integer, found {_describe(part)}", part.position)
            parts.append(part.value)
        self.expect(")")
        try:
            return Constant(date(*parts), token.position)
        except ValueError as error:
            raise PqlError(f"invalid date ({error})", token.position) from None


def parse_pql(rule: str) -> Node:
    """Parse ``rule`` into a tree of frozen dataclasses; raise :class:`PqlError` with a position."""
    return _Parser(rule).rule()


class _Compiler:
    """Type-checks a tree against the field mapping and renders it as SQL plus parameters."""

    def __init__(self, fields: Mapping[str, Field]) -> None:
        self.fields = fields
        self.params: list[Value] = []
        self.used: dict[str, None] = {}

    def column(self, path: Path) -> tuple[str, Field]:
        """The quoted column and field for ``path``; unknown paths are errors."""
        spec = self.fields.get(path.name)
        if spec is None:
            raise PqlError(f"unknown field '{path.name}'", path.position)
        self.used[path.name] = None
        return identifier(spec.column), spec

    def bind(self, value: Value) -> str:
        """A placeholder for ``value``, remembered in order."""
        self.params.append(value)
        return "?"

    def sql(self, node: Node) -> str:
        """The SQL predicate for ``node``."""
        if isinstance(node, (And, Or)):
            keyword = " AND " if isinstance(node, And) else " OR "
            return f"({keyword.join(self.sql(operand) for operand in node.operands)})"
        if isinstance(node, Not):
            return f"(NOT {self.sql(node.operand)})"
        if isinstance(node, IsNull):
            return f"({self.column(node.path)[0]} IS NULL)"
        if isinstance(node, Comparison):
            return self.comparison(node)
        if isinstance(node, InList):
            return self.in_list(node)
        return self.string_match(node)

    def comparison(self, node: Comparison) -> str:
        """``"col" op ?`` or ``"col" op "col2"`` for operands of the same type."""
        column, spec = self.column(node.left)
        if node.op in _ORDERING and spec.type == "boolean":
            raise PqlError(f"operator '{node.op}' does not apply to boolean field '{node.left.name}'", node.position)
        if isinstance(node.right, Path):
            other, other_spec = self.column(node.right)
            if other_spec.type != spec.type:
                raise PqlError(
                    f"cannot compare {spec.type} field '{node.left.name}' "
                    f"with {other_spec.type} field '{node.right.name}'",
                    node.right.position,
                )
            return f"({column} {_COMPARISONS[node.op]} {other})"
        self.check_value(node.left, spec, node.right)
        return f"({column} {_COMPARISONS[node.op]} {self.bind(node.right.value)})"

    def in_list(self, node: InList) -> str:
        """``"col" IN (?, ...)``."""
        column, spec = self.column(node.path)
        for constant in node.values:
            self.check_value(node.path, spec, constant)
        placeholders = ", ".join(self.bind(constant.value) for constant in node.values)
        return f"({column} IN ({placeholders}))"

    def string_match(self, node: StringMatch) -> str:
        """``starts_with``, ``right(..) = ..`` or ``strpos(..) > 0``, through ``lower`` when case-blind."""
        column, spec = self.column(node.path)
        if spec.type != "string":
            raise PqlError(f"{node.function}() needs a string field; '{node.path.name}' is {spec.type}", node.position)
        if not node.case_sensitive:
            column = f"lower({column})"

        def value() -> str:
            placeholder = self.bind(node.pattern)
            return placeholder if node.case_sensitive else f"lower({placeholder})"

        if node.function == "startsWith":
            return f"starts_with({column}, {value()})"
        if node.function == "endsWith":
            return f"(right({column}, length({value()})) = {value()})"
        return f"(strpos({column}, {value()}) > 0)"

    @staticmethod
    def check_value(path: Path, spec: Field, constant: Constant) -> None:
        """Refuse a literal whose type differs from the field's."""
        if constant.type != spec.type:
            raise PqlError(
                f"cannot compare {spec.type} field '{path.name}' with {constant.type} value", constant.position
            )


def compile_pql(rule: str, fields: Mapping[str, Field]) -> CompiledRule:
    """Compile ``rule`` into a safe SQL predicate over the columns that ``fields`` maps paths to."""
    compiler = _Compiler(fields)
    predicate = compiler.sql(parse_pql(rule))
    return CompiledRule(predicate, tuple(compiler.params), tuple(compiler.used))
