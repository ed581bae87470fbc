"""What the built-in validators share: a check's result, and the vetting of arguments by the
shape of their kind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from aiaas.core.arguments import shape_problems
from aiaas.core.data import json_value
from aiaas.core.validation import MAX_EXAMPLES, CheckResult, Dimension, Expectation, Validator


def blocking(expectation: Expectation) -> bool:
    return bool(expectation.get("blocking", True))


def argument_problems(
    validator: Validator, expectation: Expectation, columns: Mapping[str, str]
) -> list[str]:
    """What the shape of the expectation's kind (`kind_shapes`) finds wrong with its arguments:
    a missing or mistyped one, a column the dataset does not have."""
    shape = next(
        (shape for shape in validator.kind_shapes() if shape.kind == expectation.get("kind")),
        None,
    )
    if shape is None:
        return [f"kind must be one of {', '.join(sorted(validator.expectation_kinds()))}"]
    return list(shape_problems(shape, expectation, columns=columns))


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
