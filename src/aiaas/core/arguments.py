"""The arguments of a kind, declared once: what expectations, promotion gates and cleaning steps
take, how the shape of one is vetted, and what `docs/reference.md` is generated from.

Expectations, gates and steps are JSON objects with a `kind` and named arguments, and one
convention holds for all of them:

- `column` names one column (text) and `columns` names several (a non-empty list of text). A kind
  that works on one column takes `column`; a kind that works on a set of columns together (the
  key of `unique`, the columns `drop_nulls` looks at) takes `columns`. No kind takes both, and
  giving the other one is refused with a message that says which the kind takes.
- An error names what is wrong by its path, as the API spells it and zero-based like the list it
  is in: `expectations.2.columns`, `steps.0.column`, `gates.1.aliases`; a problem of the object as
  a whole (no min and no max) is named by the object's path, `expectations.2`.
- A key the kind does not take is refused, and the error lists the keys it does take.

A `KindShape` declares a kind's arguments: their types, whether they are required, what leaving
one out means, and an example. `shape_problems` checks an object against it; the checks that need
more than a shape (a regular expression that compiles, min not above max) stay with the code of
the kind, which reports each as an `ArgumentProblem` naming its argument.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aiaas.core.errors import InputError

MAX_COLUMNS_LISTED = 20
"""An unknown column's message lists this many of the columns that exist, at most."""


class ArgumentType(Enum):
    """The JSON an argument takes; each value is how the reference page names it."""

    COLUMN = "column name"
    COLUMNS = "list of column names"
    TEXT = "text"
    NUMBER = "number"
    COUNT = "whole number, 0 or more"
    BOOLEAN = "true or false"
    VALUES = "list of values"
    NAMES = "list of names"
    ANY = "any JSON value"


_WHAT_IT_TAKES: dict[ArgumentType, str] = {
    ArgumentType.COLUMN: "one column name (text)",
    ArgumentType.COLUMNS: 'a non-empty list of column names, e.g. ["id"]',
    ArgumentType.TEXT: "non-empty text",
    ArgumentType.NUMBER: "a finite number",
    ArgumentType.COUNT: "a whole number, 0 or more",
    ArgumentType.BOOLEAN: "true or false",
    ArgumentType.VALUES: "a non-empty list of values",
    ArgumentType.NAMES: "a non-empty list of names (text)",
    ArgumentType.ANY: "a JSON value",
}


@dataclass(frozen=True)
class Argument:
    name: str
    type: ArgumentType
    meaning: str
    required: bool = False
    default: str = ""
    """What leaving it out means, as the reference page shows it: "`true`", "every column"."""
    choices: tuple[str, ...] = ()
    """For text that must be one of a few words."""
    example: Any = None
    """A value to show in the reference page's example, for arguments that every kind of a
    family takes (`blocking`, `aliases`); the example of a kind shows its own arguments."""

    def takes(self) -> str:
        """What it takes, in words, for messages: "one of mean, median, constant"."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        return _WHAT_IT_TAKES[self.type]


@dataclass(frozen=True)
class KindShape:
    """A kind's arguments (besides `kind` and those every object of its family takes), an example
    object of the kind, and the rule that binds its optional arguments, if any."""

    kind: str
    summary: str
    arguments: tuple[Argument, ...] = ()
    example: Mapping[str, Any] = field(default_factory=dict)
    at_least_one_of: tuple[str, ...] = ()

    def argument(self, name: str) -> Argument | None:
        return next((argument for argument in self.arguments if argument.name == name), None)


class ArgumentProblem(str):
    """A problem with one argument, reported at the argument's path (`expectations.2.pattern`)
    rather than the object's. It stays a `str`, so that whoever reads `Validator.problems` as
    plain messages still can."""

    argument: str

    def __new__(cls, argument: str, message: str) -> ArgumentProblem:
        problem = super().__new__(cls, message)
        problem.argument = argument
        return problem


def path_of(prefix: str, problem: str) -> str:
    """Where `problem`, a problem of the object at `prefix`, belongs."""
    argument = getattr(problem, "argument", "")
    return f"{prefix}.{argument}" if argument else prefix


def add_problem(problems: dict[str, str], path: str, message: str) -> None:
    """Record `message` at `path`, after any problem already there."""
    problems[path] = f"{problems[path]}; {message}" if path in problems else message


def refusal(summary: str, problems: Mapping[str, str]) -> InputError:
    """The error that refuses a request for `problems` (by path): each in `field_errors`, and
    all in the message, each after its path, for clients that show only the message."""
    listed = "; ".join(f"{path}: {problem}" for path, problem in problems.items())
    return InputError(f"{summary}: {listed}", field_errors=dict(problems))


def unknown_key_problems(
    kind: str, given: Mapping[str, Any], known: Iterable[str]
) -> list[ArgumentProblem]:
    """One problem per key of `given` that is not among `known`, each listing the known keys and
    saying which one was most likely meant."""
    known = list(known)
    problems = []
    for key in given:
        if key in known:
            continue
        hint = _likely_meant(kind, str(key), known)
        problems.append(
            ArgumentProblem(
                str(key),
                f"unknown field {str(key)!r}{hint}; known fields: {', '.join(known)}",
            )
        )
    return problems


def _likely_meant(kind: str, key: str, known: list[str]) -> str:
    if key == "column" and "columns" in known:
        return f" ({kind} works on a set of columns: give them as 'columns', a list)"
    if key == "columns" and "column" in known:
        return f" ({kind} works on one column: name it in 'column', as text)"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def shape_problems(
    shape: KindShape,
    given: Mapping[str, Any],
    *,
    columns: Collection[str] | None = None,
) -> list[ArgumentProblem]:
    """What is wrong with the arguments of `given`, an object of `shape.kind`: each required one
    that is missing, each of the wrong type, each column that is not among `columns` (when they
    are known), and the rule of `at_least_one_of`. Keys it does not know are left to
    `unknown_key_problems`."""
    problems = []
    for argument in shape.arguments:
        if argument.name not in given:
            if argument.required:
                problems.append(ArgumentProblem(argument.name, f"required: {argument.takes()}"))
            continue
        found = _type_problem(shape, argument, given[argument.name])
        if found is None and columns:
            found = _missing_columns(argument, given[argument.name], columns)
        if found is not None:
            problems.append(ArgumentProblem(argument.name, found))
    if shape.at_least_one_of and not any(name in given for name in shape.at_least_one_of):
        problems.append(ArgumentProblem("", f"give {_either(shape.at_least_one_of)}"))
    return problems


def _either(names: tuple[str, ...]) -> str:
    if len(names) == 2:
        return f"{names[0]}, {names[1]} or both"
    return f"at least one of {', '.join(names)}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _text_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, str) and item for item in value)
    )


def _is_column(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_boolean(value: Any) -> bool:
    return isinstance(value, bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value)


def _is_anything(value: Any) -> bool:
    return True


_IS_VALID: dict[ArgumentType, Callable[[Any], bool]] = {
    ArgumentType.COLUMN: _is_column,
    ArgumentType.COLUMNS: _text_list,
    ArgumentType.TEXT: _is_text,
    ArgumentType.NUMBER: _is_number,
    ArgumentType.COUNT: _is_count,
    ArgumentType.BOOLEAN: _is_boolean,
    ArgumentType.VALUES: _is_list,
    ArgumentType.NAMES: _text_list,
    ArgumentType.ANY: _is_anything,
}


def _type_problem(shape: KindShape, argument: Argument, value: Any) -> str | None:
    kind = argument.type
    if kind is ArgumentType.COLUMN and isinstance(value, list):
        if shape.argument("columns") is not None:
            return "must be one column name (text), not a list"
        return f"must be one column name (text), not a list: {shape.kind} works on one column"
    if kind is ArgumentType.COLUMNS and isinstance(value, str):
        return f"must be a list of column names: {json.dumps([value])}, not {json.dumps(value)}"
    valid = _IS_VALID[kind](value)
    if valid and argument.choices and value not in argument.choices:
        valid = False
    return None if valid else f"must be {argument.takes()}"


def _missing_columns(argument: Argument, value: Any, columns: Collection[str]) -> str | None:
    if argument.type is ArgumentType.COLUMN:
        named = [value]
    elif argument.type is ArgumentType.COLUMNS:
        named = list(value)
    else:
        return None
    unknown = [name for name in named if name not in columns]
    if not unknown:
        return None
    listed = sorted(columns)
    shown = ", ".join(listed[:MAX_COLUMNS_LISTED])
    if len(listed) > MAX_COLUMNS_LISTED:
        shown += f", ... ({len(listed)} in all)"
    which = "no column" if len(unknown) == 1 else "no columns"
    return f"{which} {', '.join(repr(name) for name in unknown)}; the columns are: {shown}"
