"""Cleaning transforms: each takes a table and gives a new one, never changing its input.

A transformation is a list of steps, stored as JSON with the version it makes, so that the
version's lineage says exactly how it was made from its parent:

    {"kind": "drop_duplicates", "columns": ["id"]}          # or every column if omitted
    {"kind": "drop_nulls", "columns": ["age"]}              # or any column if omitted
    {"kind": "impute_nulls", "column": "age", "strategy": "mean" | "median" | "constant",
     "value": 0}                                           # value only for "constant"
    {"kind": "filter_rows", "expression": "age >= 18"}     # keep the rows where it is true
    {"kind": "cast", "column": "zip", "dtype": "string"}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.data.tabular.expressions import compile_expression, evaluate_mask
from aiaas.core.data.tabular.types import arrow_type, is_numeric, logical_type
from aiaas.core.errors import InputError

MAX_STEPS = 50
_ROW = "__aiaas_row__"


def _problem(step: int, message: str) -> InputError:
    return InputError(f"step {step + 1}: {message}", field_errors={f"steps.{step}": message})


def _columns(table: pa.Table, step: int, names: Any, *, required: bool) -> list[str]:
    if names is None and not required:
        return list(table.column_names)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _problem(step, "columns must be a non-empty list of column names")
    unknown = [name for name in names if name not in table.column_names]
    if unknown:
        raise _problem(step, f"unknown columns: {', '.join(unknown)}")
    return names


def _column(table: pa.Table, step: int, name: Any) -> str:
    return _columns(table, step, [name] if isinstance(name, str) else name, required=True)[0]


def drop_duplicates(table: pa.Table, step: int, spec: dict[str, Any]) -> pa.Table:
    keys = _columns(table, step, spec.get("columns"), required=False)
    numbered = table.append_column(_ROW, pa.array(range(table.num_rows), pa.int64()))
    # The first row of each group of equal keys is kept, and the rows keep their order.
    firsts = numbered.group_by(keys, use_threads=False).aggregate([(_ROW, "min")])
    keep = pc.sort_indices(firsts[f"{_ROW}_min"])
    return table.take(pc.take(firsts[f"{_ROW}_min"], keep))


def drop_nulls(table: pa.Table, step: int, spec: dict[str, Any]) -> pa.Table:
    names = _columns(table, step, spec.get("columns"), required=False)
    return (
        table.drop_null()
        if len(names) == table.num_columns
        else table.filter(_all_valid(table, names))
    )


def _all_valid(table: pa.Table, names: list[str]) -> Any:
    mask = pc.is_valid(table[names[0]])
    for name in names[1:]:
        mask = pc.and_(mask, pc.is_valid(table[name]))
    return mask


# The JSON values a constant fill may give for each column type: timestamps and dates as ISO
# text, parsed by Arrow's cast.
_JSON_TYPES_OF: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "float": (int, float),
    "boolean": (bool,),
    "string": (str,),
    "timestamp": (str,),
    "date": (str,),
}


def impute_nulls(table: pa.Table, step: int, spec: dict[str, Any]) -> pa.Table:
    name = _column(table, step, spec.get("column"))
    column = table[name]
    strategy = spec.get("strategy")
    if strategy in {"mean", "median"}:
        if not is_numeric(column.type):
            raise _problem(step, f"{strategy} needs a numeric column; {name} is not")
        column = pc.cast(column, pa.float64())
        fill = (
            pc.mean(column)
            if strategy == "mean"
            else pc.quantile(column, q=0.5, interpolation="linear")[0]
        )
        if not fill.is_valid:
            raise _problem(step, f"{name} has no value to take the {strategy} of")
    elif strategy == "constant":
        if "value" not in spec:
            raise _problem(step, "a constant fill needs a value")
        value = spec["value"]
        try:
            if not isinstance(value, _JSON_TYPES_OF[logical_type(column.type)]) or (
                isinstance(value, bool) and not pa.types.is_boolean(column.type)
            ):
                raise TypeError  # Arrow would turn true into 1, or "7" into 7
            fill = pa.scalar(value).cast(column.type)
        except (TypeError, OverflowError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise _problem(step, f"{value!r} does not fit column {name}") from None
    else:
        raise _problem(step, "strategy must be mean, median or constant")
    index = table.column_names.index(name)
    return table.set_column(index, name, pc.fill_null(column, fill))


def filter_rows(table: pa.Table, step: int, spec: dict[str, Any]) -> pa.Table:
    text = spec.get("expression")
    if not isinstance(text, str) or not text.strip():
        raise _problem(step, "an expression is required")
    try:
        mask = evaluate_mask(table, compile_expression(text, table.column_names))
    except InputError as exc:
        raise _problem(step, exc.message) from None
    # Rows where the expression is unknown (null) are dropped, as SQL's WHERE does.
    return table.filter(pc.fill_null(mask, False))


def cast(table: pa.Table, step: int, spec: dict[str, Any]) -> pa.Table:
    name = _column(table, step, spec.get("column"))
    try:
        target = arrow_type(str(spec.get("dtype")))
    except InputError as exc:
        raise _problem(step, exc.message) from None
    try:
        converted = pc.cast(table[name], target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _problem(step, f"cannot cast {name} to {spec.get('dtype')}: {exc}") from None
    return table.set_column(table.column_names.index(name), name, converted)


STEPS: dict[str, Callable[[pa.Table, int, dict[str, Any]], pa.Table]] = {
    "drop_duplicates": drop_duplicates,
    "drop_nulls": drop_nulls,
    "impute_nulls": impute_nulls,
    "filter_rows": filter_rows,
    "cast": cast,
}


def apply_steps(table: pa.Table, steps: list[dict[str, Any]]) -> pa.Table:
    """Run every step in order; `InputError` naming the first step that cannot run."""
    if not steps:
        raise InputError(
            "a transformation needs at least one step", field_errors={"steps": "empty"}
        )
    if len(steps) > MAX_STEPS:
        raise InputError(f"at most {MAX_STEPS} steps", field_errors={"steps": "too many"})
    for index, spec in enumerate(steps):
        if not isinstance(spec, dict) or spec.get("kind") not in STEPS:
            raise _problem(index, f"kind must be one of {', '.join(STEPS)}")
        table = STEPS[spec["kind"]](table, index, spec)
    return table
