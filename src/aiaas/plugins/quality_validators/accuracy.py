"""Accuracy: values within a numeric range, among the allowed values, or matching a pattern."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.data import is_numeric
from aiaas.core.validation import CheckResult, Expectation, Validator
from aiaas.plugins.quality_validators.results import column_problems, examples_of, result


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
        return frozenset({"range", "allowed_values", "regex"})

    def problems(self, expectation: Expectation, columns: Mapping[str, str]) -> list[str]:
        problems = column_problems(expectation, columns)
        kind = expectation.get("kind")
        if kind == "range":
            low, high = expectation.get("min"), expectation.get("max")
            numbers = [b for b in (low, high) if b is not None]
            if not numbers or not all(
                isinstance(b, int | float) and not isinstance(b, bool) for b in numbers
            ):
                problems.append("range needs a numeric min, max or both")
            elif low is not None and high is not None and low > high:
                problems.append("min is more than max")
            name = expectation.get("column")
            if (
                columns
                and isinstance(name, str)
                and columns.get(name) not in {None, "integer", "float"}
            ):
                problems.append(f"column {name!r} is not numeric")
        elif kind == "allowed_values":
            values = expectation.get("values")
            if not isinstance(values, list) or not values:
                problems.append("values must be a non-empty list")
            else:
                try:
                    pa.array(values)
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                    problems.append("values must all be of one type")
        elif kind == "regex":
            pattern = expectation.get("pattern")
            if not isinstance(pattern, str) or not _compiles(pattern):
                problems.append("pattern must be a valid regular expression")
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
