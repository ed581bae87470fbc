"""Completeness: columns without missing values, a number of rows within bounds, and the rows
with an empty cell (a baseline check, never blocking)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.validation import CheckResult, Expectation, Validator
from aiaas.plugins.quality_validators.results import column_problems, result


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
