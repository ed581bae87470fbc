"""One place where GraphQL input is checked, before validation and before any resolver runs.

`InputChecks`, a schema extension, walks every value a request carries: each argument literal in
the document (and each variable's default), and the variables of the operation that runs. Each is
walked along the type it is declared with, iteratively, so that no nesting reaches Python's
recursion limit. It refuses, as one `BAD_USER_INPUT` error whose `fieldErrors` name each bad value
by its path, dotted as the resolvers' own `fieldErrors` are (`input.name`, `gates.0.metric`): from
the argument for a literal, from the variable for a variable (`i.name` for `$i`):

- a string, or a key of an object, that is not text PostgreSQL can store: one with a NUL
  (U+0000) or a lone UTF-16 surrogate (U+D800..U+DFFF), or longer than `MAX_TEXT_BYTES` in
  UTF-8. No field of the schema needs a longer one; a field that ever does must say so here;
- a `DateTime` whose instant is not in the years 1 to 9999 in UTC (`scalars.py`);
- a number that no column or JSON document holds: an integer outside 64 bits, a float that is
  not finite (`1e999` and `NaN` decode to Python floats);
- nesting deeper than `MAX_DEPTH` levels, counted inside each `JSON` value and, elsewhere, from
  the argument;
- a `JSON` value larger than about `MAX_JSON_BYTES` once serialized.

The checks are about what any field can store, not about what one field accepts: the resolvers
still check their own rules (a slug's shape, a page size) and answer their own errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from graphql.language.visitor import SKIP
from strawberry.extensions import SchemaExtension

from aiaas.core.errors import InputError
from aiaas.core.storable_text import text_problem
from aiaas.graphql.scalars import datetime_problem
from graphql import (
    DocumentNode,
    FloatValueNode,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLSchema,
    IntValueNode,
    ListValueNode,
    Node,
    ObjectValueNode,
    StringValueNode,
    TypeInfo,
    TypeInfoVisitor,
    TypeNode,
    Visitor,
    get_operation_ast,
    is_input_type,
    type_from_ast,
    visit,
)

MAX_DEPTH = 32
"""The most lists and objects nested in one another in a value."""
MAX_JSON_BYTES = 1024 * 1024
"""The largest `JSON` value, serialized (counted approximately, without escapes)."""
MAX_REPORTED = 10
"""At most this many problems are named in one answer; the walk stops there."""

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INT64_DIGITS = 19
_SCALARS = frozenset({str, int, float, bool, type(None)})


def int_problem(value: int) -> str | None:
    if not INT64_MIN <= value <= INT64_MAX:
        return "is outside the 64-bit integer range"
    return None


def float_problem(value: float) -> str | None:
    if not math.isfinite(value):
        return "is not a finite number"
    return None


@dataclass
class Problems:
    """Each bad value's path and what is wrong with it, the first of each path kept."""

    found: dict[str, str] = field(default_factory=dict)

    def add(self, path: str, problem: str) -> None:
        if len(self.found) < MAX_REPORTED:
            self.found.setdefault(path, problem)

    @property
    def full(self) -> bool:
        return len(self.found) >= MAX_REPORTED

    def as_error(self) -> InputError:
        named = "; ".join(f"{path} {problem}" for path, problem in self.found.items())
        return InputError(f"invalid input: {named}", field_errors=self.found)


@dataclass
class _JsonValue:
    """The `JSON` value a walk is inside: where it starts, and what is left of its size."""

    path: str
    bytes_left: int = MAX_JSON_BYTES
    over: bool = False

    def spend(self, size: int) -> bool:
        """False once the value is over its size."""
        self.bytes_left -= size
        self.over = self.bytes_left < 0
        return not self.over


@dataclass
class _Step:
    value: Any
    type: GraphQLInputType | None
    path: str
    depth: int
    json: _JsonValue | None = None


# What a value is, for the walk, whether it came from a variable (Python) or a literal (AST).
_Leaf = tuple[str, Any]


_KINDS: dict[type, str] = {
    str: "text",
    int: "int",
    float: "float",
    dict: "object",
    list: "list",
    tuple: "list",
    bool: "other",
    type(None): "other",
}


def _classify(value: Any) -> _Leaf:
    """`(kind, payload)`: ("text", str), ("int", int | None when too long), ("float", float),
    ("object", [(key, value)]), ("list", [value]), or ("other", None): null, a boolean, an enum,
    a variable inside a literal, or the uploaded file a multipart request put in a variable."""
    kind = _KINDS.get(type(value))
    if kind is None:
        return _classify_node(value) if isinstance(value, Node) else ("other", None)
    if kind == "object":
        return kind, list(value.items())
    return kind, None if kind == "other" else value


def _classify_node(node: Node) -> _Leaf:
    if isinstance(node, StringValueNode):
        return "text", node.value
    if isinstance(node, IntValueNode):
        # int() refuses more than 4300 digits; no integer this long is in range anyway.
        digits = node.value.lstrip("-")
        return "int", int(node.value) if len(digits) <= _INT64_DIGITS else None
    if isinstance(node, FloatValueNode):
        return "float", float(node.value)
    if isinstance(node, ObjectValueNode):
        return "object", [(item.name.value, item.value) for item in node.fields]
    if isinstance(node, ListValueNode):
        return "list", list(node.values)
    # A variable is checked as a variable; enums, booleans and nulls hold nothing to check.
    return "other", None


def _named(type_: GraphQLInputType | None) -> GraphQLInputType | None:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def _is_scalar(type_: GraphQLInputType | None, name: str) -> bool:
    return isinstance(type_, GraphQLScalarType) and type_.name == name


def check_value(value: Any, type_: GraphQLInputType | None, path: str, problems: Problems) -> None:
    """Add to `problems` what is wrong in `value`, a variable's value or an argument's literal,
    declared as `type_` (None where the type is unknown: an invalid document)."""
    stack = [_Step(value, type_, path, 0)]
    while stack and not problems.full:
        step = stack.pop()
        step_type = _named(step.type)
        if isinstance(step_type, GraphQLList):
            kind, payload = _classify(step.value)
            # A single value where a list is declared is coerced to a list of one.
            items = list(enumerate(payload)) if kind == "list" else [(None, step.value)]
            for index, item in reversed(items):
                item_path = step.path if index is None else f"{step.path}.{index}"
                depth = step.depth if index is None else step.depth + 1
                stack.append(_Step(item, step_type.of_type, item_path, depth, step.json))
            continue
        json = step.json
        depth = step.depth
        if json is None and _is_scalar(step_type, "JSON"):
            json, depth = _JsonValue(step.path), 0
        stack.extend(reversed(list(_check_step(step, step_type, json, depth, problems))))


def _check_step(
    step: _Step,
    step_type: GraphQLInputType | None,
    json: _JsonValue | None,
    depth: int,
    problems: Problems,
) -> Iterator[_Step]:
    """Check one value; yield the values inside it, still to check."""
    if json is not None and json.over:
        return  # reported once; the rest of it is not walked
    kind, payload = _classify(step.value)
    if kind in ("object", "list") and depth >= MAX_DEPTH:
        # Refused before anything inside it is queued: the walk stays as short as the limit.
        problems.add(json.path if json else step.path, f"is nested deeper than {MAX_DEPTH} levels")
        return
    if json is not None and not json.spend(_size(kind, payload)):
        problems.add(json.path, f"is larger than {MAX_JSON_BYTES} bytes as JSON")
        return
    if kind not in ("object", "list"):
        problem = _leaf_problem(kind, payload, step_type if json is None else None)
        if problem is not None:
            problems.add(step.path, problem)
        return
    children = _children(step, step_type, json is not None, kind, payload, problems)
    for segment, item, item_type in children:
        if json is not None and type(item) in _SCALARS:
            # The bulk of a large JSON value (rows of numbers): checked here, not queued.
            if not json.spend(len(item) + 2 if type(item) is str else 8):
                problems.add(json.path, f"is larger than {MAX_JSON_BYTES} bytes as JSON")
                return
            problem = _scalar_problem(item)
            if problem is not None:
                problems.add(f"{step.path}.{segment}", problem)
            continue
        yield _Step(item, item_type, f"{step.path}.{segment}", depth + 1, json)


def _scalar_problem(value: str | int | float | bool | None) -> str | None:
    if type(value) is float:
        return float_problem(value)
    if type(value) is int:
        return int_problem(value)
    if type(value) is str:
        return text_problem(value)
    return None


def _children(
    step: _Step,
    step_type: GraphQLInputType | None,
    in_json: bool,
    kind: str,
    payload: Any,
    problems: Problems,
) -> list[tuple[str | int, Any, GraphQLInputType | None]]:
    """The last part of the path, the value and the type of each value inside an object or a
    list."""
    if kind == "list":
        # Only a JSON value or an unknown type gets here: a declared list was unwrapped above.
        item_type = step_type if in_json else None
        return [(index, item, item_type) for index, item in enumerate(payload)]
    fields = step_type.fields if isinstance(step_type, GraphQLInputObjectType) else {}
    children: list[tuple[str | int, Any, GraphQLInputType | None]] = []
    for index, (key, item) in enumerate(payload):
        key_problem = text_problem(key) if isinstance(key, str) else None
        if key_problem is not None:
            problems.add(step.path, f"has a key that {key_problem}")
            continue
        # Inside a JSON value everything is JSON; in an input object, the field's type.
        item_type = step_type if in_json else fields[key].type if key in fields else None
        # A long key would make a long path: name it by its position.
        children.append((key if len(str(key)) <= 100 else f"<key {index}>", item, item_type))
    return children


def _leaf_problem(kind: str, payload: Any, step_type: GraphQLInputType | None) -> str | None:
    if kind == "text":
        problem = text_problem(payload)
        if problem is None and _is_scalar(step_type, "DateTime"):
            return datetime_problem(payload)
        return problem
    if kind == "int":
        return "is outside the 64-bit integer range" if payload is None else int_problem(payload)
    if kind == "float":
        return float_problem(payload)
    return None


def _size(kind: str, payload: Any) -> int:
    """About how many bytes a value adds to its JSON serialization, without its contents."""
    if kind == "text":
        return len(payload) + 2
    if kind == "object":
        return 2 + sum(len(key) + 4 if isinstance(key, str) else 8 for key, _ in payload)
    if kind == "list":
        return 2 + len(payload)
    return 8


def _input_type(schema: GraphQLSchema, node: TypeNode) -> GraphQLInputType | None:
    """The input type a variable is declared as; None if it names none (an invalid document)."""
    declared = type_from_ast(schema, node)
    return declared if is_input_type(declared) else None


class _ArgumentLiterals(Visitor):
    """Checks every argument literal of a document, and every variable's default value."""

    def __init__(self, schema: GraphQLSchema, type_info: TypeInfo, problems: Problems) -> None:
        super().__init__()
        self.schema = schema
        self.type_info = type_info
        self.problems = problems

    def enter_argument(self, node: Any, *_args: Any) -> Any:
        argument = self.type_info.get_argument()
        check_value(node.value, argument.type if argument else None, node.name.value, self.problems)
        return SKIP

    def enter_variable_definition(self, node: Any, *_args: Any) -> Any:
        if node.default_value is not None:
            declared = _input_type(self.schema, node.type)
            check_value(node.default_value, declared, node.variable.name.value, self.problems)
        return SKIP


def check_request(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Any,
    operation_name: str | None,
) -> Problems:
    """What is wrong in a request's argument literals and in its operation's variables."""
    problems = Problems()
    type_info = TypeInfo(schema)
    visit(document, TypeInfoVisitor(type_info, _ArgumentLiterals(schema, type_info, problems)))
    operation = get_operation_ast(document, operation_name)
    if operation is None or not isinstance(variables, dict):
        return problems
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if name in variables:
            check_value(variables[name], _input_type(schema, definition.type), name, problems)
    return problems


class InputChecks(SchemaExtension):
    """Refuses a request carrying a value no field can store (see the module's docstring)."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.pre_execution_errors is None:
            problems = check_request(
                context.schema._schema, document, context.variables, context.operation_name
            )
            if problems.found:
                exc = problems.as_error()
                # Set before validation runs: strawberry then skips it and answers this error,
                # and nothing executes.
                context.pre_execution_errors = [GraphQLError(exc.message, original_error=exc)]
        yield
