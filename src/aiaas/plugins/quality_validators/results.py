"""What the built-in validators share: a check's result, and the vetting of a column argument."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from aiaas.core.data import json_value
from aiaas.core.validation import MAX_EXAMPLES, CheckResult, Dimension, Expectation


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
