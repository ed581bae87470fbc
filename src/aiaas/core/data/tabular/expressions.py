"""A small, safe expression language over a table's columns, compiled to Arrow expressions.

Used by row filters and cross-column rules, e.g. `age >= 18 and country in ('FR', 'DE')` or
`start <= end`. It is parsed by hand, never given to `eval`: the only things an expression can do
are the operations listed below, on columns that exist.

    expression := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := sum ( ("==" | "!=" | "<" | "<=" | ">" | ">=") sum
                      | "is" ["not"] "null"
                      | ["not"] "in" "(" literal ("," literal)* ")" )?
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | atom
    atom       := number | 'string' | true | false | null | column | `quoted column` | "(" or ")"
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from aiaas.core.errors import InputError

MAX_LENGTH = 2000
MAX_DEPTH = 40
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<quoted>`[^`]+`)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<operator>==|!=|<=|>=|<|>|\+|-|\*|/|\(|\)|,)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "is", "in", "null", "true", "false"}
_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "==": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}
_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": pc.add_checked,
    "-": pc.subtract_checked,
    "*": pc.multiply_checked,
    "/": pc.divide,
}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    position: int


def syntax_error(message: str, position: int) -> InputError:
    return InputError(
        f"{message} at position {position + 1}",
        field_errors={"expression": f"{message} at position {position + 1}"},
    )


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise syntax_error(f"the expression is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise syntax_error(f"unexpected character {text[position]!r}", position)
        kind = match.lastgroup
        assert kind is not None
        value = match.group()
        if kind == "name" and value.lower() in _KEYWORDS:
            kind, value = "keyword", value.lower()
        if kind != "space":
            tokens.append(Token(kind, value, position))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str, columns: frozenset[str]) -> None:
        self.tokens = tokenize(text)
        self.index = 0
        self.columns = columns
        self.depth = 0
        self.referenced: set[str] = set()

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.current
        self.index += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        token = self.current
        if token.kind == kind and (text is None or token.text == text):
            return self.advance()
        return None

    def expect(self, kind: str, text: str) -> Token:
        token = self.accept(kind, text)
        if token is None:
            raise syntax_error(
                f"expected {text!r}, found {_shown(self.current)}", self.current.position
            )
        return token

    def parse(self) -> pc.Expression:
        expression = self.or_()
        if self.current.kind != "end":
            raise syntax_error(f"unexpected {self.current.text!r}", self.current.position)
        return expression

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise syntax_error("the expression is nested too deeply", self.current.position)

    def or_(self) -> Any:
        self.nested()
        left = self.and_()
        while self.accept("keyword", "or"):
            left = pc.or_kleene(left, self.and_())
        self.depth -= 1
        return left

    def and_(self) -> Any:
        left = self.not_()
        while self.accept("keyword", "and"):
            left = pc.and_kleene(left, self.not_())
        return left

    def not_(self) -> Any:
        if self.accept("keyword", "not"):
            self.nested()
            operand = self.not_()
            self.depth -= 1
            return pc.invert(operand)
        return self.comparison()

    def comparison(self) -> Any:
        left = self.sum()
        token = self.current
        if token.kind == "operator" and token.text in _COMPARISONS:
            self.advance()
            return _COMPARISONS[token.text](left, self.sum())
        if self.accept("keyword", "is"):
            negated = self.accept("keyword", "not") is not None
            self.expect("keyword", "null")
            test = pc.is_null(left)
            return pc.invert(test) if negated else test
        negated = False
        if token.kind == "keyword" and token.text == "not":
            self.advance()
            negated = True
            if self.current.text != "in":
                raise syntax_error("expected 'in' after 'not'", self.current.position)
        if self.accept("keyword", "in"):
            test = pc.is_in(left, value_set=self.literal_list())
            return pc.invert(test) if negated else test
        return left

    def literal_list(self) -> pa.Array:
        self.expect("operator", "(")
        values = [self.literal()]
        while self.accept("operator", ","):
            values.append(self.literal())
        self.expect("operator", ")")
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            raise syntax_error(
                "the values of a list must share a type", self.current.position
            ) from None

    def literal(self) -> Any:
        negative = self.accept("operator", "-") is not None
        token = self.advance()
        if token.kind == "number":
            value = float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
            value = -value if negative else value
            if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
                raise syntax_error(
                    f"the number {token.text} is too large for a 64-bit integer",
                    token.position,
                )
            return value
        if negative:
            raise syntax_error("expected a number after '-'", token.position)
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "keyword" and token.text in {"true", "false", "null"}:
            return {"true": True, "false": False, "null": None}[token.text]
        raise syntax_error(f"expected a value, found {_shown(token)}", token.position)

    def sum(self) -> Any:
        left = self.product()
        while self.current.kind == "operator" and self.current.text in "+-":
            operator = self.advance().text
            left = _ARITHMETIC[operator](left, self.product())
        return left

    def product(self) -> Any:
        left = self.unary()
        while self.current.kind == "operator" and self.current.text in "*/":
            operator = self.advance().text
            left = _ARITHMETIC[operator](left, self.unary())
        return left

    def unary(self) -> Any:
        if self.accept("operator", "-"):
            self.nested()
            operand = self.unary()
            self.depth -= 1
            return pc.negate_checked(operand)
        return self.atom()

    def atom(self) -> Any:
        token = self.current
        if token.kind == "operator" and token.text == "(":
            self.advance()
            inner = self.or_()
            self.expect("operator", ")")
            return inner
        if token.kind in {"name", "quoted"}:
            self.advance()
            return self.column(token)
        if token.kind in {"number", "string"} or token.text in {"true", "false", "null"}:
            return pc.scalar(self.literal())
        raise syntax_error(f"expected a value, found {_shown(token)}", token.position)

    def column(self, token: Token) -> pc.Expression:
        name = token.text.strip("`") if token.kind == "quoted" else token.text
        if name not in self.columns:
            known = ", ".join(sorted(self.columns)) or "none"
            raise InputError(
                f"unknown column {name!r} at position {token.position + 1} (columns: {known})",
                field_errors={"expression": f"unknown column {name!r}"},
            )
        self.referenced.add(name)
        return pc.field(name)


def _shown(token: Token) -> str:
    return repr(token.text) if token.text else "the end"


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


@dataclass(frozen=True)
class CompiledExpression:
    text: str
    expression: pc.Expression
    columns: frozenset[str]
    """The columns it reads."""


def compile_expression(text: str, columns: list[str] | frozenset[str]) -> CompiledExpression:
    """Parse `text` against a table's columns, or raise `InputError` saying what and where."""
    parser = _Parser(text, frozenset(columns))
    expression = parser.parse()
    return CompiledExpression(
        text=text, expression=expression, columns=frozenset(parser.referenced)
    )


def evaluate_mask(table: pa.Table, compiled: CompiledExpression) -> pa.ChunkedArray:
    """The expression's value on every row, as booleans (null where it is unknown)."""
    try:
        values = ds.dataset(table).to_table(columns={"mask": compiled.expression})["mask"]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise InputError(
            f"the expression cannot be evaluated on this data: {exc}",
            field_errors={"expression": str(exc)},
        ) from None
    if not pa.types.is_boolean(values.type):
        raise InputError(
            "the expression must be true or false for each row, not a value",
            field_errors={"expression": f"evaluates to {values.type}, not booleans"},
        )
    return values
