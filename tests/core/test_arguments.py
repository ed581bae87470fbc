"""One shape per concept (issue 20): every expectation kind, cleaning step and promotion gate
takes `column` for one column and `columns` for several, is refused with the keys it takes when
given another, and has each problem named by its path as the API spells it, counted from 0.

Checked for every built-in kind of the three families, through the functions that vet them for
the API (`vet_expectations`, `apply_steps`, `vet_promotion_gates`), on the dataset that
docs/reference.md shows. No database is needed: a `Platform` is built offline.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from aiaas.cli.reference_page import EXAMPLE_CSV, EXPECTATIONS, GATES, STEPS, builtin_shapes
from aiaas.core.arguments import ArgumentType, KindShape
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import build_config
from aiaas.core.data import logical_type
from aiaas.core.data.expectations import EXPECTATION_ARGUMENTS, vet_expectations
from aiaas.core.data.tabular.transforms import apply_steps
from aiaas.core.errors import InputError
from aiaas.core.training import GATE_ARGUMENTS, vet_promotion_gates

PLATFORM = create_platform(build_config({"disable_plugin_autoload": True}))
TABLE: pa.Table = pa_csv.read_csv(io.BytesIO(EXAMPLE_CSV.encode()))
COLUMNS = {field.name: logical_type(field.type) for field in TABLE.schema}
SHAPES = builtin_shapes()

FAMILIES: dict[str, tuple[str, Callable[[list[Any]], object], tuple[str, ...]]] = {
    EXPECTATIONS: (
        "expectations",
        lambda given: vet_expectations(PLATFORM, given, COLUMNS),
        tuple(argument.name for argument in EXPECTATION_ARGUMENTS),
    ),
    STEPS: ("steps", lambda given: apply_steps(TABLE, given), ()),
    GATES: (
        "gates",
        lambda given: vet_promotion_gates(PLATFORM, given),
        tuple(argument.name for argument in GATE_ARGUMENTS),
    ),
}
"""Each family: the name of its list in the API, the function that vets it, and the arguments
every kind of it takes."""


def every_kind(
    where: Callable[[KindShape], bool] = lambda shape: True,
) -> list[Any]:
    return [
        pytest.param(family, shape, id=f"{FAMILIES[family][0]}-{shape.kind}")
        for family, shapes in SHAPES.items()
        for shape in shapes
        if where(shape)
    ]


def refusal(family: str, given: list[Any]) -> InputError:
    with pytest.raises(InputError) as raised:
        FAMILIES[family][1](given)
    return raised.value


def takes(name: str) -> Callable[[KindShape], bool]:
    return lambda shape: shape.argument(name) is not None


@pytest.mark.parametrize(("family", "shape"), every_kind())
def test_column_is_one_column_and_columns_several(family: str, shape: KindShape) -> None:
    types = {argument.name: argument.type for argument in shape.arguments}

    assert not ("column" in types and "columns" in types), "a kind takes one or the other"
    assert types.get("column", ArgumentType.COLUMN) is ArgumentType.COLUMN
    assert types.get("columns", ArgumentType.COLUMNS) is ArgumentType.COLUMNS
    named_columns = {
        name for name, kind in types.items() if kind in {ArgumentType.COLUMN, ArgumentType.COLUMNS}
    }
    assert named_columns <= {"column", "columns"}


@pytest.mark.parametrize(("family", "shape"), every_kind())
def test_each_example_is_accepted(family: str, shape: KindShape) -> None:
    FAMILIES[family][1]([dict(shape.example)])


@pytest.mark.parametrize(("family", "shape"), every_kind(takes("column")))
def test_columns_for_a_kind_of_one_column_names_the_field_it_takes(
    family: str, shape: KindShape
) -> None:
    given = {key: value for key, value in shape.example.items() if key != "column"}
    given["columns"] = [shape.example["column"]]

    problems = refusal(family, [given]).field_errors

    name = FAMILIES[family][0]
    assert f"{shape.kind} works on one column: name it in 'column'" in problems[f"{name}.0.columns"]
    assert problems[f"{name}.0.column"] == "required: one column name (text)"


@pytest.mark.parametrize(("family", "shape"), every_kind(takes("column")))
def test_a_list_for_one_column_is_refused_as_a_list(family: str, shape: KindShape) -> None:
    given = {**shape.example, "column": [shape.example["column"], "age"]}

    problems = refusal(family, [given]).field_errors

    name = FAMILIES[family][0]
    assert problems == {
        f"{name}.0.column": f"must be one column name (text), not a list: {shape.kind} works "
        "on one column"
    }


@pytest.mark.parametrize(("family", "shape"), every_kind(takes("columns")))
def test_column_for_a_kind_of_several_columns_names_the_field_it_takes(
    family: str, shape: KindShape
) -> None:
    columns = shape.example.get("columns", ["age"])
    given = {key: value for key, value in shape.example.items() if key != "columns"}
    given["column"] = columns[0]

    problems = refusal(family, [given]).field_errors

    name = FAMILIES[family][0]
    assert (
        f"{shape.kind} works on a set of columns: give them as 'columns', a list"
        in problems[f"{name}.0.column"]
    )


@pytest.mark.parametrize(("family", "shape"), every_kind(takes("columns")))
def test_one_name_for_several_columns_shows_the_list_it_should_be(
    family: str, shape: KindShape
) -> None:
    given = {**shape.example, "columns": "age"}

    problems = refusal(family, [given]).field_errors

    name = FAMILIES[family][0]
    assert problems == {f"{name}.0.columns": 'must be a list of column names: ["age"], not "age"'}


@pytest.mark.parametrize(("family", "shape"), every_kind())
def test_an_unknown_key_is_refused_listing_the_known_ones(family: str, shape: KindShape) -> None:
    name, _, common = FAMILIES[family]
    known = ", ".join(["kind", *(argument.name for argument in shape.arguments), *common])

    error = refusal(family, [{**shape.example, "hue": "red"}])

    assert error.field_errors == {f"{name}.0.hue": f"unknown field 'hue'; known fields: {known}"}
    assert f"{name}.0.hue: unknown field 'hue'" in error.message


def needs_something(shape: KindShape) -> bool:
    return shape.at_least_one_of != () or any(argument.required for argument in shape.arguments)


@pytest.mark.parametrize(("family", "shape"), every_kind(needs_something))
def test_a_required_argument_or_rule_missing_is_named_by_its_path(
    family: str, shape: KindShape
) -> None:
    name = FAMILIES[family][0]
    required = [argument.name for argument in shape.arguments if argument.required]

    problems = refusal(family, [{"kind": shape.example["kind"]}]).field_errors

    expected = {f"{name}.0.{argument}" for argument in required}
    if shape.at_least_one_of:
        expected.add(f"{name}.0")
    assert set(problems) == expected


@pytest.mark.parametrize("family", list(FAMILIES))
def test_paths_count_from_zero_like_the_list(family: str) -> None:
    name = FAMILIES[family][0]
    good = dict(SHAPES[family][0].example)

    error = refusal(family, [good, good, {**good, "kind": "sparkle"}])

    assert list(error.field_errors) == [f"{name}.2.kind"]
    assert f"{name}.2.kind: unknown kind 'sparkle'; known kinds: " in error.message
    assert "step 3" not in error.message
