"""Completeness: columns without missing values, a number of rows within bounds, and the rows
with an empty cell (a baseline check, never blocking)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.arguments import Argument, ArgumentProblem, ArgumentType, KindShape
from aiaas.core.validation import CheckResult, Expectation, Validator
from aiaas.plugins.quality_validators.results import argument_problems, result

SHAPES = (
    KindShape(
        "not_null",
        "The column has a value in every row.",
        (Argument("column", ArgumentType.COLUMN, "The column to check.", required=True),),
        {"kind": "not_null", "column": "email"},
    ),
    KindShape(
        "row_count",
        "The version has a number of rows within bounds.",
        (
            Argument("min", ArgumentType.COUNT, "The fewest rows allowed.", default="no minimum"),
            Argument("max", ArgumentType.COUNT, "The most rows allowed.", default="no maximum"),
        ),
        {"kind": "row_count", "min": 3, "max": 1000000},
        at_least_one_of=("min", "max"),
    ),
)


class CompletenessValidator(Validator):
    def expectation_kinds(self) -> frozenset[str]:
        return frozenset(shape.kind for shape in SHAPES)

    def kind_shapes(self) -> Sequence[KindShape]:
        return SHAPES

    def problems(self, expectation: Expectation, columns: Mapping[str, str]) -> list[str]:
        found = argument_problems(self, expectation, columns)
        low, high = expectation.get("min"), expectation.get("max")
        if not found and low is not None and high is not None and low > high:
            found.append(ArgumentProblem("min", f"min ({low}) is more than max ({high})"))
        return found

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
