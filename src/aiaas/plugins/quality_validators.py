"""The built-in data quality validators: schema, completeness, consistency and accuracy.

    schema        {"kind": "column_type", "column": "age", "dtype": "integer"}
    completeness  {"kind": "not_null", "column": "age"}
                  {"kind": "row_count", "min": 100, "max": 1000000}
                  and always: the rows with an empty cell (never blocking)
    consistency   {"kind": "unique", "columns": ["customer_id"]}
                  {"kind": "no_duplicate_rows"}
                  {"kind": "rule", "expression": "start <= end"}
                  and always: the share of repeated rows (never blocking)
    accuracy      {"kind": "range", "column": "age", "min": 0, "max": 130}
                  {"kind": "allowed_values", "column": "country", "values": ["FR", "DE"]}
                  {"kind": "regex", "column": "email", "pattern": "[^@]+@[^@]+"}

Every expectation may say `"blocking": false`; it is blocking otherwise. Schema checks count in
the consistency score.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.config import Config
from aiaas.core.data.tabular.expressions import compile_expression, evaluate_mask
from aiaas.core.data.tabular.profile import json_value
from aiaas.core.data.tabular.types import LOGICAL_TYPES, is_numeric, logical_type
from aiaas.core.errors import InputError
from aiaas.core.hookspecs import hookimpl
from aiaas.core.specs import ValidatorSpec
from aiaas.core.validation import MAX_EXAMPLES, CheckResult, Dimension, Expectation, Validator


def blocking(expectation: Expectation) -> bool:
    return bool(expectation.get("blocking", True))


def column_problems(
    expectation: Expectation, columns: Mapping[str, str], key: str = "column"
) -> list[str]:
    name = expectation.get(key)
    if not isinstance(name, str) or not name:
        return [f"{key} must name a column"]
    if columns and name not in columns:
        return [f"column {name!r} does not exist (columns: {', '.join(sorted(columns))})"]
    return []


def examples_of(values: pa.Array | pa.ChunkedArray) -> list[Any]:
    return [json_value(value) for value in values.slice(0, MAX_EXAMPLES).to_pylist()]


def result(
    expectation: Expectation,
    name: str,
    dimension: Dimension,
    failing: int,
    message: str,
    examples: list[Any] | None = None,
) -> CheckResult:
    return CheckResult(
        name=name,
        kind=str(expectation.get("kind")),
        dimension=dimension,
        passed=failing == 0,
        failing_rows=failing,
        blocking=blocking(expectation),
        message=message if failing else "passed",
        examples=examples or [],
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


class SchemaValidator(Validator):
    def expectation_kinds(self) -> frozenset[str]:
        return frozenset({"column_type"})

    def problems(self, expectation: Expectation, columns: Mapping[str, str]) -> list[str]:
        problems = column_problems(expectation, columns)
        dtype = expectation.get("dtype")
        if not isinstance(dtype, str) or dtype not in LOGICAL_TYPES:
            problems.append(f"dtype must be one of {', '.join(LOGICAL_TYPES)}")
        return problems

    def validate(self, table: pa.Table, expectations: Sequence[Expectation]) -> list[CheckResult]:
        results = []
        for expectation in expectations:
            name, wanted = expectation["column"], expectation["dtype"]
            if name not in table.column_names:
                results.append(
                    result(
                        expectation,
                        f"column_type({name})",
                        "consistency",
                        table.num_rows,
                        f"column {name} is missing",
                    )
                )
                continue
            actual = logical_type(table[name].type)
            failing = 0 if actual == wanted else table.num_rows - table[name].null_count
            results.append(
                result(
                    expectation,
                    f"column_type({name})",
                    "consistency",
                    failing,
                    f"{name} is {actual}, expected {wanted}",
                )
            )
        return results


class CompletenessValidator(Validator):
    def expectation_kinds(self) -> frozenset[str]:
        return frozenset({"not_null", "row_count"})

    def problems(self, expectation: Expectation, columns: Mapping[str, str]) -> list[str]:
        if expectation.get("kind") == "not_null":
            return column_problems(expectation, columns)
        bounds = [expectation.get(key) for key in ("min", "max")]
        if all(bound is None for bound in bounds):
            return ["row_count needs min, max or both"]
        if any(bound is not None and (not isinstance(bound, int) or bound < 0) for bound in bounds):
            return ["min and max must be whole numbers, zero or more"]
        low, high = bounds
        if low is not None and high is not None and low > high:
            return ["min is more than max"]
        return []

    def validate(self, table: pa.Table, expectations: Sequence[Expectation]) -> list[CheckResult]:
        results = []
        for expectation in expectations:
            if expectation["kind"] == "not_null":
                name = expectation["column"]
                nulls = table[name].null_count if name in table.column_names else table.num_rows
                results.append(
                    result(
                        expectation,
                        f"not_null({name})",
                        "completeness",
                        nulls,
                        f"{nulls} rows have no {name}",
                    )
                )
                continue
            low, high = expectation.get("min"), expectation.get("max")
            rows = table.num_rows
            within = (low is None or rows >= low) and (high is None or rows <= high)
            results.append(
                result(
                    expectation,
                    "row_count",
                    "completeness",
                    0 if within else max(rows, 1),
                    f"{rows} rows, expected between {low} and {high}",
                )
            )
        return results

    def baseline_checks(self, table: pa.Table) -> list[CheckResult]:
        cells = table.num_rows * table.num_columns
        empty = sum(column.null_count for column in table.columns)
        # Scored in rows, like every check: the rows with at least one empty cell.
        failing = 0
        if empty:
            incomplete = pc.is_null(table.columns[0])
            for column in table.columns[1:]:
                incomplete = pc.or_(incomplete, pc.is_null(column))
            failing = pc.sum(incomplete).as_py() or 0
        return [
            result(
                {"kind": "empty_cells", "blocking": False},
                "empty_cells",
                "completeness",
                failing,
                f"{empty} of {cells} cells are empty",
            )
        ]


def _duplicate_rows(table: pa.Table, keys: list[str]) -> tuple[int, list[Any]]:
    """Rows repeating the keys of an earlier row, and a few of the repeated keys."""
    counts = table.group_by(keys, use_threads=False).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts["count_all"], 1))
    extra = pc.sum(pc.subtract(repeated["count_all"], 1)).as_py() or 0
    examples = repeated.select(keys).slice(0, MAX_EXAMPLES).to_pylist()
    return extra, [{k: json_value(v) for k, v in row.items()} for row in examples]


class ConsistencyValidator(Validator):
    def expectation_kinds(self) -> frozenset[str]:
        return frozenset({"unique", "no_duplicate_rows", "rule"})

    def problems(self, expectation: Expectation, columns: Mapping[str, str]) -> list[str]:
        kind = expectation.get("kind")
        if kind == "unique":
            names = expectation.get("columns")
            if not isinstance(names, list) or not names:
                return ["columns must be a non-empty list"]
            return [p for name in names for p in column_problems({"column": name}, columns)]
        if kind == "rule":
            text = expectation.get("expression")
            if not isinstance(text, str):
                return ["expression must be text"]
            try:
                compile_expression(text, list(columns) if columns else [])
            except InputError as exc:
                return [exc.message]
        return []

    def validate(self, table: pa.Table, expectations: Sequence[Expectation]) -> list[CheckResult]:
        results = []
        for expectation in expectations:
            kind = expectation["kind"]
            if kind == "rule":
                compiled = compile_expression(expectation["expression"], table.column_names)
                holds = pc.fill_null(evaluate_mask(table, compiled), True)
                broken = table.filter(pc.invert(holds))
                rows = broken.select(sorted(compiled.columns)).slice(0, MAX_EXAMPLES).to_pylist()
                results.append(
                    result(
                        expectation,
                        f"rule({expectation['expression']})",
                        "consistency",
                        broken.num_rows,
                        f"{broken.num_rows} rows break the rule",
                        [{k: json_value(v) for k, v in r.items()} for r in rows],
                    )
                )
                continue
            keys = expectation["columns"] if kind == "unique" else list(table.column_names)
            missing = [key for key in keys if key not in table.column_names]
            if missing:
                results.append(
                    result(
                        expectation,
                        f"{kind}({', '.join(keys)})",
                        "consistency",
                        table.num_rows,
                        f"missing columns {', '.join(missing)}",
                    )
                )
                continue
            extra, examples = _duplicate_rows(table, keys)
            label = f"unique({', '.join(keys)})" if kind == "unique" else "no_duplicate_rows"
            results.append(
                result(
                    expectation,
                    label,
                    "consistency",
                    extra,
                    f"{extra} rows repeat an earlier row's key",
                    examples,
                )
            )
        return results

    def baseline_checks(self, table: pa.Table) -> list[CheckResult]:
        extra, examples = _duplicate_rows(table, list(table.column_names))
        return [
            result(
                {"kind": "duplicate_rows", "blocking": False},
                "duplicate_rows",
                "consistency",
                extra,
                f"{extra} rows repeat an earlier row",
                examples,
            )
        ]


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


BUILT_IN: tuple[tuple[str, type[Validator], str], ...] = (
    ("schema", SchemaValidator, "Column types."),
    ("completeness", CompletenessValidator, "Missing values and row counts."),
    ("consistency", ConsistencyValidator, "Duplicates, unique keys and cross-column rules."),
    ("accuracy", AccuracyValidator, "Ranges, allowed values and patterns."),
)


def _factory(validator: type[Validator]) -> Any:
    def build(config: Config) -> Validator:
        del config  # nothing to configure
        return validator()

    return build


@hookimpl
def aiaas_validators() -> Iterable[ValidatorSpec]:
    return [
        ValidatorSpec(name=name, factory=_factory(validator), description=description)
        for name, validator, description in BUILT_IN
    ]
