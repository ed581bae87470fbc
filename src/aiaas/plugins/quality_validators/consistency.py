"""Consistency: unique keys, no repeated rows, and rules across columns written in the expression
language; and the share of repeated rows (a baseline check, never blocking)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.arguments import Argument, ArgumentProblem, ArgumentType, KindShape
from aiaas.core.data import compile_expression, evaluate_mask, json_value
from aiaas.core.errors import InputError
from aiaas.core.validation import MAX_EXAMPLES, CheckResult, Expectation, Validator
from aiaas.plugins.quality_validators.results import argument_problems, result

SHAPES = (
    KindShape(
        "unique",
        "No two rows have the same values in the columns, taken together: a key.",
        (
            Argument(
                "columns",
                ArgumentType.COLUMNS,
                "The columns that form the key; one column is a list of one.",
                required=True,
            ),
        ),
        {"kind": "unique", "columns": ["customer_id"]},
    ),
    KindShape(
        "no_duplicate_rows",
        "No row repeats an earlier row in every column.",
        (),
        {"kind": "no_duplicate_rows"},
    ),
    KindShape(
        "rule",
        "A condition across columns holds on every row (a row where it is unknown passes).",
        (
            Argument(
                "expression",
                ArgumentType.TEXT,
                "The condition, in the expression language of `filter_rows`.",
                required=True,
            ),
        ),
        {"kind": "rule", "expression": "signup_date <= last_order_date"},
    ),
)


def _duplicate_rows(table: pa.Table, keys: list[str]) -> tuple[int, list[Any]]:
    """Rows repeating the keys of an earlier row, and a few of the repeated keys."""
    counts = table.group_by(keys, use_threads=False).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts["count_all"], 1))
    extra = pc.sum(pc.subtract(repeated["count_all"], 1)).as_py() or 0
    examples = repeated.select(keys).slice(0, MAX_EXAMPLES).to_pylist()
    return extra, [{k: json_value(v) for k, v in row.items()} for row in examples]


class ConsistencyValidator(Validator):
    def expectation_kinds(self) -> frozenset[str]:
        return frozenset(shape.kind for shape in SHAPES)

    def kind_shapes(self) -> Sequence[KindShape]:
        return SHAPES

    def problems(self, expectation: Expectation, columns: Mapping[str, str]) -> list[str]:
        found = argument_problems(self, expectation, columns)
        if not found and expectation.get("kind") == "rule":
            try:
                compile_expression(expectation["expression"], list(columns) if columns else [])
            except InputError as exc:
                found.append(ArgumentProblem("expression", exc.message))
        return found

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
