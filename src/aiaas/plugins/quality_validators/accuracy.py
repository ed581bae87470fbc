"""Accuracy: values within a numeric range, among the allowed values, or matching a pattern."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.arguments import Argument, ArgumentProblem, ArgumentType, KindShape
from aiaas.core.data import is_numeric
from aiaas.core.validation import CheckResult, Expectation, Validator
from aiaas.plugins.quality_validators.results import argument_problems, examples_of, result

_COLUMN = Argument("column", ArgumentType.COLUMN, "The column to check.", required=True)
SHAPES = (
    KindShape(
        "range",
        "Each value of a numeric column lies within bounds (NaN never does).",
        (
            _COLUMN,
            Argument("min", ArgumentType.NUMBER, "The lowest value allowed.", default="no minimum"),
            Argument(
                "max", ArgumentType.NUMBER, "The highest value allowed.", default="no maximum"
            ),
        ),
        {"kind": "range", "column": "age", "min": 0, "max": 130},
        at_least_one_of=("min", "max"),
    ),
    KindShape(
        "allowed_values",
        "Each value of the column is one of a list.",
        (
            _COLUMN,
            Argument(
                "values",
                ArgumentType.VALUES,
                "The values allowed, all of one type (that of the column).",
                required=True,
            ),
        ),
        {"kind": "allowed_values", "column": "country", "values": ["FR", "DE", "US"]},
    ),
    KindShape(
        "regex",
        "Each value of the column, as text, matches a regular expression as a whole.",
        (
            _COLUMN,
            Argument(
                "pattern",
                ArgumentType.TEXT,
                "The regular expression (RE2 syntax), anchored at both ends.",
                required=True,
            ),
        ),
        {"kind": "regex", "column": "email", "pattern": "[^@]+@[^@]+\\.[a-z]+"},
    ),
)


def _compiles(pattern: str) -> bool:
    """Whether Arrow's regex engine accepts the pattern, as written and as the check anchors it.
    Arrow compiles a pattern only when it has a value to match, hence the one empty string."""
    sample = pa.array([""], pa.string())
    try:
        pc.match_substring_regex(sample, pattern)
        pc.match_substring_regex(sample, f"^(?:{pattern})$")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


class AccuracyValidator(Validator):
    def expectation_kinds(self) -> frozenset[str]:
        return frozenset(shape.kind for shape in SHAPES)

    def kind_shapes(self) -> Sequence[KindShape]:
        return SHAPES

    def problems(self, expectation: Expectation, columns: Mapping[str, str]) -> list[str]:
        problems = argument_problems(self, expectation, columns)
        if problems:
            return problems
        kind, name = expectation.get("kind"), expectation["column"]
        if kind == "range":
            low, high = expectation.get("min"), expectation.get("max")
            if low is not None and high is not None and low > high:
                problems.append(ArgumentProblem("min", f"min ({low}) is more than max ({high})"))
            if columns.get(name, "integer") not in {"integer", "float"}:
                problems.append(
                    ArgumentProblem("column", f"column {name!r} is not numeric: {columns[name]}")
                )
        elif kind == "allowed_values":
            try:
                pa.array(expectation["values"])
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                problems.append(ArgumentProblem("values", "must all be of one type"))
        elif kind == "regex" and not _compiles(expectation["pattern"]):
            problems.append(ArgumentProblem("pattern", "must be a valid regular expression"))
        return problems

    def validate(self, table: pa.Table, expectations: Sequence[Expectation]) -> list[CheckResult]:
        results = []
        for expectation in expectations:
            kind, name = expectation["kind"], expectation["column"]
            label = f"{kind}({name})"
            if name not in table.column_names:
                results.append(
                    result(
                        expectation, label, "accuracy", table.num_rows, f"column {name} is missing"
                    )
                )
                continue
            values = pc.drop_null(table[name])
            bad = self._failing_mask(kind, values, expectation)
            wrong = values.filter(bad)
            results.append(
                result(
                    expectation,
                    label,
                    "accuracy",
                    len(wrong),
                    f"{len(wrong)} values of {name} fail {kind}",
                    examples_of(wrong),
                )
            )
        return results

    @staticmethod
    def _failing_mask(kind: str, values: Any, expectation: Expectation) -> Any:
        if kind == "range":
            if not is_numeric(values.type):
                return pc.is_valid(values)
            low, high = expectation.get("min"), expectation.get("max")
            outside = []
            if low is not None:
                outside.append(pc.less(values, low))
            if high is not None:
                outside.append(pc.greater(values, high))
            if pa.types.is_floating(values.type):
                # NaN compares false with both bounds; it is outside every range.
                outside.append(pc.is_nan(values))
            mask = outside[0]
            for more in outside[1:]:
                mask = pc.or_(mask, more)
            return mask
        if kind == "allowed_values":
            try:
                allowed = pa.array(expectation["values"])
                return pc.invert(pc.is_in(values, value_set=allowed.cast(values.type)))
            except (
                pa.ArrowInvalid,
                pa.ArrowNotImplementedError,
                pa.ArrowTypeError,
                OverflowError,
            ):
                # Values of another type than the column's: none of them can match.
                return pc.is_valid(values)
        text = pc.cast(values, pa.string())
        return pc.invert(pc.match_substring_regex(text, f"^(?:{expectation['pattern']})$"))
