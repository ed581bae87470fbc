"""Consistency: unique keys, no repeated rows, and rules across columns written in the expression
language; and the share of repeated rows (a baseline check, never blocking)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.data import compile_expression, evaluate_mask, json_value
from aiaas.core.errors import InputError
from aiaas.core.validation import MAX_EXAMPLES, CheckResult, Expectation, Validator
from aiaas.plugins.quality_validators.results import column_problems, result


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
