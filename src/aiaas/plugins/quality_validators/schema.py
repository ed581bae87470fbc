"""Schema: each column named holds the declared type (scored as consistency)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from aiaas.core.data import LOGICAL_TYPES, logical_type
from aiaas.core.validation import CheckResult, Expectation, Validator
from aiaas.plugins.quality_validators.results import column_problems, result


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
