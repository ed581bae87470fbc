"""Schema: each column named holds the declared type (scored as consistency)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from aiaas.core.arguments import Argument, ArgumentType, KindShape
from aiaas.core.data import LOGICAL_TYPES, logical_type
from aiaas.core.validation import CheckResult, Expectation, Validator
from aiaas.plugins.quality_validators.results import argument_problems, result

SHAPES = (
    KindShape(
        "column_type",
        "Each value of the column is of the declared type.",
        (
            Argument("column", ArgumentType.COLUMN, "The column to check.", required=True),
            Argument(
                "dtype",
                ArgumentType.TEXT,
                "The logical type its values must have.",
                required=True,
                choices=tuple(LOGICAL_TYPES),
            ),
        ),
        {"kind": "column_type", "column": "age", "dtype": "integer"},
    ),
)


class SchemaValidator(Validator):
    def expectation_kinds(self) -> frozenset[str]:
        return frozenset(shape.kind for shape in SHAPES)

    def kind_shapes(self) -> Sequence[KindShape]:
        return SHAPES

    def problems(self, expectation: Expectation, columns: Mapping[str, str]) -> list[str]:
        return argument_problems(self, expectation, columns)

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
