"""Cleaning transforms: each takes a table and gives a new one, never changing its input.

A transformation is a list of steps, stored as JSON with the version it makes, so that the
version's lineage says exactly how it was made from its parent:

    {"kind": "drop_duplicates", "columns": ["id"]}          # or every column if omitted
    {"kind": "drop_nulls", "columns": ["age"]}              # or every column if omitted
    {"kind": "impute_nulls", "column": "age", "strategy": "mean" | "median" | "constant",
     "value": 0}                                           # value only for "constant"
    {"kind": "filter_rows", "expression": "age >= 18"}     # keep the rows where it is true
    {"kind": "cast", "column": "zip", "dtype": "string"}

`STEP_SHAPES` declares each kind's arguments (`aiaas.core.arguments`): every step is vetted
against its shape before any runs, and `docs/reference.md` is generated from them. A problem is
named by its path, `steps.0.column`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.arguments import (
    Argument,
    ArgumentProblem,
    ArgumentType,
    KindShape,
    add_problem,
    path_of,
    refusal,
    shape_problems,
    unknown_key_problems,
)
from aiaas.core.data.tabular.expressions import compile_expression, evaluate_mask
from aiaas.core.data.tabular.types import LOGICAL_TYPES, arrow_type, is_numeric, logical_type
from aiaas.core.errors import InputError

MAX_STEPS = 50
_ROW = "__aiaas_row__"
_STRATEGIES = ("mean", "median", "constant")

STEP_SHAPES: tuple[KindShape, ...] = (
    KindShape(
        "drop_duplicates",
        "Keep the first of each group of rows that are equal in the columns; rows keep their "
        "order.",
        (
            Argument(
                "columns",
                ArgumentType.COLUMNS,
                "The columns in which two rows must be equal to be duplicates.",
                default="every column",
            ),
        ),
        {"kind": "drop_duplicates", "columns": ["customer_id"]},
    ),
    KindShape(
        "drop_nulls",
        "Drop the rows that have no value in one of the columns.",
        (
            Argument(
                "columns",
                ArgumentType.COLUMNS,
                "The columns that must have a value.",
                default="every column",
            ),
        ),
        {"kind": "drop_nulls", "columns": ["age"]},
    ),
    KindShape(
        "impute_nulls",
        "Fill the missing values of one column.",
        (
            Argument("column", ArgumentType.COLUMN, "The column to fill.", required=True),
            Argument(
                "strategy",
                ArgumentType.TEXT,
                "What to fill with: the mean or the median of the column's values (a numeric "
                "column), or a constant, the `value`.",
                required=True,
                choices=_STRATEGIES,
            ),
            Argument(
                "value",
                ArgumentType.ANY,
                "The fill when the strategy is constant, of the column's type (a date or a "
                "timestamp as ISO text); no other strategy takes it.",
                default="none: the constant strategy requires it",
            ),
        ),
        {"kind": "impute_nulls", "column": "age", "strategy": "median"},
    ),
    KindShape(
        "filter_rows",
        "Keep the rows where a condition is true; a row where it is unknown (null) is dropped, "
        "as SQL's WHERE does.",
        (
            Argument(
                "expression",
                ArgumentType.TEXT,
                "The condition, in the expression language below.",
                required=True,
            ),
        ),
        {"kind": "filter_rows", "expression": "age >= 18 and country in ('FR', 'DE')"},
    ),
    KindShape(
        "cast",
        "Convert one column to another type; a value that does not convert refuses the step.",
        (
            Argument("column", ArgumentType.COLUMN, "The column to convert.", required=True),
            Argument(
                "dtype",
                ArgumentType.TEXT,
                "The type to convert it to.",
                required=True,
                choices=tuple(LOGICAL_TYPES),
            ),
        ),
        {"kind": "cast", "column": "visits", "dtype": "float"},
    ),
)


def _problem(step: int, message: str) -> InputError:
    """The refusal of step `step` (from 0) for `message`, an `ArgumentProblem` when it concerns
    one argument."""
    return refusal("the transformation cannot run", {path_of(f"steps.{step}", message): message})


def _columns(table: pa.Table, names: Any) -> list[str]:
    """The columns a step names in `columns` (vetted), or every column when it names none."""
    return list(table.column_names) if names is None else list(names)


def drop_duplicates(table: pa.Table, step: int, spec: dict[str, Any]) -> pa.Table:
    keys = _columns(table, spec.get("columns"))
    numbered = table.append_column(_ROW, pa.array(range(table.num_rows), pa.int64()))
    # The first row of each group of equal keys is kept, and the rows keep their order.
    firsts = numbered.group_by(keys, use_threads=False).aggregate([(_ROW, "min")])
    keep = pc.sort_indices(firsts[f"{_ROW}_min"])
    return table.take(pc.take(firsts[f"{_ROW}_min"], keep))


def drop_nulls(table: pa.Table, step: int, spec: dict[str, Any]) -> pa.Table:
    names = _columns(table, spec.get("columns"))
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
    name = spec["column"]
    column = table[name]
    strategy = spec["strategy"]
    if strategy in {"mean", "median"}:
        if not is_numeric(column.type):
            raise _problem(
                step, ArgumentProblem("column", f"{strategy} needs a numeric column; {name} is not")
            )
        column = pc.cast(column, pa.float64())
        fill = (
            pc.mean(column)
            if strategy == "mean"
            else pc.quantile(column, q=0.5, interpolation="linear")[0]
        )
        if not fill.is_valid:
            raise _problem(
                step, ArgumentProblem("column", f"{name} has no value to take the {strategy} of")
            )
    else:
        value = spec["value"]
        try:
            if not isinstance(value, _JSON_TYPES_OF[logical_type(column.type)]) or (
                isinstance(value, bool) and not pa.types.is_boolean(column.type)
            ):
                raise TypeError  # Arrow would turn true into 1, or "7" into 7
            fill = pa.scalar(value).cast(column.type)
        except (TypeError, OverflowError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise _problem(
                step, ArgumentProblem("value", f"{value!r} does not fit column {name}")
            ) from None
    index = table.column_names.index(name)
    return table.set_column(index, name, pc.fill_null(column, fill))


def filter_rows(table: pa.Table, step: int, spec: dict[str, Any]) -> pa.Table:
    try:
        mask = evaluate_mask(table, compile_expression(spec["expression"], table.column_names))
    except InputError as exc:
        raise _problem(step, ArgumentProblem("expression", exc.message)) from None
    # Rows where the expression is unknown (null) are dropped, as SQL's WHERE does.
    return table.filter(pc.fill_null(mask, False))


def cast(table: pa.Table, step: int, spec: dict[str, Any]) -> pa.Table:
    name, dtype = spec["column"], spec["dtype"]
    try:
        converted = pc.cast(table[name], arrow_type(dtype))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _problem(
            step, ArgumentProblem("dtype", f"cannot cast {name} to {dtype}: {exc}")
        ) from None
    return table.set_column(table.column_names.index(name), name, converted)


STEPS: dict[str, Callable[[pa.Table, int, dict[str, Any]], pa.Table]] = {
    "drop_duplicates": drop_duplicates,
    "drop_nulls": drop_nulls,
    "impute_nulls": impute_nulls,
    "filter_rows": filter_rows,
    "cast": cast,
}
_SHAPES = {shape.kind: shape for shape in STEP_SHAPES}


def step_problems(steps: Any, columns: Collection[str]) -> dict[str, str]:
    """The problems of every step, by path, that can be seen before any runs: a step that is
    not an object of a known kind, a key its kind does not take, an argument missing or of the
    wrong type, a column that `columns` (the table's) lacks."""
    if not isinstance(steps, list) or not steps:
        return {"steps": "a transformation needs at least one step"}
    if len(steps) > MAX_STEPS:
        return {"steps": f"at most {MAX_STEPS} steps"}
    problems: dict[str, str] = {}
    for index, spec in enumerate(steps):
        where = f"steps.{index}"
        if not isinstance(spec, dict):
            problems[where] = "must be an object"
            continue
        kind = spec.get("kind")
        shape = _SHAPES.get(kind) if isinstance(kind, str) else None
        if shape is None:
            said = "required" if kind is None else f"unknown kind {kind!r}"
            problems[f"{where}.kind"] = f"{said}; known kinds: {', '.join(STEPS)}"
            continue
        known = ["kind", *(argument.name for argument in shape.arguments)]
        found: list[ArgumentProblem] = [
            *unknown_key_problems(shape.kind, spec, known),
            *shape_problems(shape, spec, columns=columns),
        ]
        if kind == "impute_nulls" and not found:
            if spec["strategy"] == "constant" and "value" not in spec:
                found.append(ArgumentProblem("value", "required by strategy constant"))
            elif spec["strategy"] != "constant" and "value" in spec:
                found.append(ArgumentProblem("value", "only strategy constant takes a value"))
        for problem in found:
            add_problem(problems, path_of(where, problem), problem)
    return problems


def apply_steps(table: pa.Table, steps: list[dict[str, Any]]) -> pa.Table:
    """Run every step in order, once all are vetted; `InputError` naming every problem that
    vetting finds, or else the first step that cannot run on the table's values."""
    problems = step_problems(steps, table.column_names)
    if problems:
        raise refusal("invalid transformation steps", problems)
    for index, spec in enumerate(steps):
        table = STEPS[spec["kind"]](table, index, spec)
    return table
