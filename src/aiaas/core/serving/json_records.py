"""Predictions as JSON records, one object of values per row: how GraphQL's `predict` takes its
inputs and gives its outputs (the V2 protocol sends tensors instead: `aiaas.rest`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aiaas.core.errors import InputError

MAX_RECORDS = 4096
"""Most records one GraphQL `predict` takes (each deployment also has its own batch limit)."""


def records_to_columns(records: Sequence[Any]) -> dict[str, list[Any]]:
    """JSON records (one object per row) as columns, or an `InputError` naming the bad rows."""
    if not records:
        raise InputError("send at least one record", field_errors={"inputs": "empty"})
    if len(records) > MAX_RECORDS:
        raise InputError(
            f"at most {MAX_RECORDS} records per request",
            field_errors={"inputs": f"{len(records)} records"},
        )
    problems: dict[str, str] = {}
    names: list[str] | None = None  # the first object's keys; [] when it has none
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            problems[f"inputs.{index}"] = "must be an object of input values"
        elif names is None:
            names = list(record)
        elif record.keys() != set(names):
            problems[f"inputs.{index}"] = "has other fields than the first record"
        if len(problems) >= 5:
            break
    if problems:
        raise InputError("invalid records", field_errors=problems)
    return {name: [record[name] for record in records] for name in names or ()}


def output_records(outputs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Outputs as one JSON object per row. JSON has no NaN or infinity: such values are null."""
    columns = {}
    for name, values in outputs.items():
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            nullable = values.astype(object)
            nullable[~np.isfinite(values)] = None
            columns[name] = nullable.tolist()
        else:
            columns[name] = values.tolist()
    rows = len(next(iter(columns.values()))) if columns else 0
    return [{name: column[row] for name, column in columns.items()} for row in range(rows)]
