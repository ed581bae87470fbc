"""Cleaning transforms on a table: each step gives a new table and leaves its input alone, and
a step that cannot run is an `InputError` naming the step. The same transforms through the API,
with lineage, are in tests/graphql/test_datasets_api.py."""

from __future__ import annotations

import statistics
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiaas.core.data.tabular.transforms import MAX_STEPS, apply_steps
from aiaas.core.errors import InputError


def people() -> pa.Table:
    return pa.table(
        {
            "id": pa.array([3, 1, 3, 2, 1, 4], pa.int64()),
            "name": ["c", "a", "c", "b", "z", None],
            "age": pa.array([30.0, None, 30.0, 20.0, 10.0, None], pa.float64()),
            "visits": pa.array([1, None, 1, 5, 2, 3], pa.int64()),
            "zip": ["02134", "10001", "02134", None, "x1", "94105"],
        }
    )


def apply(steps: list[dict[str, Any]], table: pa.Table | None = None) -> pa.Table:
    return apply_steps(people() if table is None else table, steps)


def refusal(steps: list[Any], table: pa.Table | None = None) -> InputError:
    with pytest.raises(InputError) as caught:
        apply(steps, table)
    return caught.value


# drop_duplicates ----------------------------------------------------------------------------


def test_drop_duplicates_on_all_columns_keeps_first_occurrences_in_order() -> None:
    result = apply([{"kind": "drop_duplicates"}])

    # Row 2 repeats row 0 exactly; row 4 shares only its id with row 1.
    assert result["id"].to_pylist() == [3, 1, 2, 1, 4]
    assert result["name"].to_pylist() == ["c", "a", "b", "z", None]
    assert result.schema == people().schema


def test_drop_duplicates_on_a_subset_keeps_the_first_row_of_each_key() -> None:
    result = apply([{"kind": "drop_duplicates", "columns": ["id"]}])

    assert result["id"].to_pylist() == [3, 1, 2, 4]
    # The first row with id 1 has name "a", not the later "z".
    assert result["name"].to_pylist() == ["c", "a", "b", None]


def test_drop_duplicates_treats_nulls_as_equal() -> None:
    result = apply([{"kind": "drop_duplicates", "columns": ["age"]}])

    assert result["age"].to_pylist() == [30.0, None, 20.0, 10.0]
    assert result["id"].to_pylist() == [3, 1, 2, 1]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(st.none(), st.integers(0, 3)), st.sampled_from(["x", "y", None])),
        max_size=40,
    ),
    st.sampled_from([None, ["key"], ["label"], ["key", "label"]]),
)
def test_drop_duplicates_matches_a_first_occurrence_reference(
    rows: list[tuple[int | None, str | None]], columns: list[str] | None
) -> None:
    table = pa.table(
        {
            "key": pa.array([key for key, _ in rows], pa.int64()),
            "label": pa.array([label for _, label in rows], pa.string()),
            "position": pa.array(range(len(rows)), pa.int64()),
        }
    )
    keys = columns or ["key", "label", "position"]
    seen: set[tuple[Any, ...]] = set()
    expected = []
    for position, row in enumerate(table.to_pylist()):
        key = tuple(row[name] for name in keys)
        if key not in seen:
            seen.add(key)
            expected.append(position)

    step: dict[str, Any] = {"kind": "drop_duplicates"}
    if columns is not None:
        step["columns"] = columns
    result = apply_steps(table, [step])

    assert result["position"].to_pylist() == expected


# drop_nulls ---------------------------------------------------------------------------------


def test_drop_nulls_on_all_columns_drops_any_row_with_a_null() -> None:
    result = apply([{"kind": "drop_nulls"}])

    assert result["id"].to_pylist() == [3, 3, 1]


def test_drop_nulls_on_a_subset_looks_only_at_those_columns() -> None:
    assert apply([{"kind": "drop_nulls", "columns": ["age"]}])["id"].to_pylist() == [3, 3, 2, 1]
    assert apply([{"kind": "drop_nulls", "columns": ["age", "zip"]}])["id"].to_pylist() == [
        3,
        3,
        1,
    ]


# impute_nulls -------------------------------------------------------------------------------


def test_impute_with_the_mean_fills_only_the_nulls() -> None:
    mean = statistics.fmean([30.0, 30.0, 20.0, 10.0])

    result = apply([{"kind": "impute_nulls", "column": "age", "strategy": "mean"}])

    assert result["age"].to_pylist() == [30.0, mean, 30.0, 20.0, 10.0, mean]
    assert result["id"].to_pylist() == people()["id"].to_pylist()


def test_impute_with_the_median() -> None:
    result = apply([{"kind": "impute_nulls", "column": "age", "strategy": "median"}])

    assert result["age"].to_pylist() == [30.0, 25.0, 30.0, 20.0, 10.0, 25.0]


def test_impute_an_integer_column_with_its_mean() -> None:
    result = apply([{"kind": "impute_nulls", "column": "visits", "strategy": "mean"}])

    assert result["visits"].to_pylist() == [1, 2.4, 1, 5, 2, 3]


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("age", 0, [30.0, 0.0, 30.0, 20.0, 10.0, 0.0]),
        ("visits", 7, [1, 7, 1, 5, 2, 3]),
        ("zip", "unknown", ["02134", "10001", "02134", "unknown", "x1", "94105"]),
    ],
)
def test_impute_with_a_constant(column: str, value: Any, expected: list[Any]) -> None:
    result = apply(
        [{"kind": "impute_nulls", "column": column, "strategy": "constant", "value": value}]
    )

    assert result[column].to_pylist() == expected
    assert result.schema.field(column).type == people().schema.field(column).type


@pytest.mark.parametrize("strategy", ["mean", "median"])
def test_impute_with_a_statistic_needs_a_numeric_column(strategy: str) -> None:
    problem = refusal([{"kind": "impute_nulls", "column": "zip", "strategy": strategy}])

    assert f"{strategy} needs a numeric column; zip is not" in problem.message
    assert problem.field_errors == {
        "steps.0.column": f"{strategy} needs a numeric column; zip is not"
    }


def test_impute_with_the_mean_of_a_column_of_nulls_is_refused() -> None:
    table = pa.table({"x": pa.array([None, None], pa.float64())})

    problem = refusal([{"kind": "impute_nulls", "column": "x", "strategy": "mean"}], table)

    assert "no value to take the mean of" in problem.message


@pytest.mark.parametrize(
    ("column", "value"),
    [("age", "abc"), ("visits", 1.5), ("age", [1]), ("visits", {"a": 1})],
    ids=["text-into-float", "fraction-into-integer", "list", "object"],
)
def test_impute_with_a_constant_of_the_wrong_type_is_refused(column: str, value: Any) -> None:
    problem = refusal(
        [{"kind": "impute_nulls", "column": column, "strategy": "constant", "value": value}]
    )

    assert f"does not fit column {column}" in problem.message
    assert list(problem.field_errors) == ["steps.0.value"]


@pytest.mark.parametrize(
    ("column", "value"),
    [("visits", True), ("age", False), ("visits", "7")],
    ids=["boolean-into-integer", "boolean-into-float", "text-into-integer"],
)
def test_impute_with_a_constant_of_another_json_type_is_refused(column: str, value: Any) -> None:
    refusal([{"kind": "impute_nulls", "column": column, "strategy": "constant", "value": value}])


def test_impute_needs_a_known_strategy_and_a_constant_needs_a_value() -> None:
    unknown = refusal([{"kind": "impute_nulls", "column": "age", "strategy": "mode"}])
    missing = refusal([{"kind": "impute_nulls", "column": "age", "strategy": "constant"}])

    assert unknown.field_errors == {"steps.0.strategy": "must be one of mean, median, constant"}
    assert missing.field_errors == {"steps.0.value": "required by strategy constant"}


# filter_rows --------------------------------------------------------------------------------


def test_filter_rows_keeps_the_rows_where_the_expression_holds() -> None:
    result = apply([{"kind": "filter_rows", "expression": "age >= 20 or zip == 'x1'"}])

    assert result["id"].to_pylist() == [3, 3, 2, 1]


def test_filter_rows_drops_rows_where_the_expression_is_unknown() -> None:
    # age is null on rows 1 and 5, so `age < 100` is neither true nor false there.
    result = apply([{"kind": "filter_rows", "expression": "age < 100"}])

    assert result["id"].to_pylist() == [3, 3, 2, 1]


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("age >", "expected a value, found the end at position 6"),
        ("height > 1", "unknown column 'height'"),
        ("age + 1", "must be true or false"),
        ("", "must be non-empty text"),
    ],
)
def test_filter_rows_with_a_bad_expression_names_the_step(expression: str, complaint: str) -> None:
    problem = refusal(
        [{"kind": "drop_duplicates"}, {"kind": "filter_rows", "expression": expression}]
    )

    # Named by its path, counted from 0 as the list is: the second step is steps.1.
    assert "steps.1.expression: " in problem.message
    assert complaint in problem.message
    assert list(problem.field_errors) == ["steps.1.expression"]


# cast ---------------------------------------------------------------------------------------


def test_cast_changes_a_column_type() -> None:
    result = apply(
        [
            {"kind": "cast", "column": "id", "dtype": "string"},
            {"kind": "cast", "column": "visits", "dtype": "float"},
        ]
    )

    assert result["id"].to_pylist() == ["3", "1", "3", "2", "1", "4"]
    assert result.schema.field("id").type == pa.string()
    assert result["visits"].to_pylist() == [1.0, None, 1.0, 5.0, 2.0, 3.0]


def test_cast_text_to_numbers_timestamps_and_booleans() -> None:
    table = pa.table(
        {
            "n": ["1", "20", None],
            "t": ["2024-01-01", "2024-02-03 10:00:00", None],
            "b": ["true", "false", None],
        }
    )

    result = apply_steps(
        table,
        [
            {"kind": "cast", "column": "n", "dtype": "integer"},
            {"kind": "cast", "column": "t", "dtype": "timestamp"},
            {"kind": "cast", "column": "b", "dtype": "boolean"},
        ],
    )

    assert result["n"].to_pylist() == [1, 20, None]
    assert result.schema.field("t").type == pa.timestamp("us")
    assert result["b"].to_pylist() == [True, False, None]


def test_a_cast_that_fails_on_a_value_is_refused() -> None:
    problem = refusal([{"kind": "cast", "column": "zip", "dtype": "integer"}])

    assert "steps.0.dtype: cannot cast zip to integer" in problem.message
    assert "x1" in problem.message


def test_a_cast_that_would_lose_a_fraction_is_refused() -> None:
    table = pa.table({"x": [1.0, 2.5]})

    problem = refusal([{"kind": "cast", "column": "x", "dtype": "integer"}], table)

    assert "cannot cast x to integer" in problem.message


def test_a_cast_to_an_unknown_type_is_refused() -> None:
    problem = refusal([{"kind": "cast", "column": "id", "dtype": "complex"}])

    assert problem.field_errors == {
        "steps.0.dtype": "must be one of integer, float, boolean, string, timestamp, date"
    }


# Steps --------------------------------------------------------------------------------------


def test_steps_run_in_order() -> None:
    impute_then_filter = apply(
        [
            {"kind": "impute_nulls", "column": "age", "strategy": "constant", "value": 99},
            {"kind": "filter_rows", "expression": "age > 50"},
        ]
    )
    filter_then_impute = apply(
        [
            {"kind": "filter_rows", "expression": "age > 50"},
            {"kind": "impute_nulls", "column": "age", "strategy": "constant", "value": 99},
        ]
    )

    assert impute_then_filter["id"].to_pylist() == [1, 4]
    assert filter_then_impute.num_rows == 0


def test_the_input_table_is_never_changed() -> None:
    table = people()
    before = table.to_pydict()

    apply_steps(
        table,
        [
            {"kind": "impute_nulls", "column": "age", "strategy": "mean"},
            {"kind": "cast", "column": "id", "dtype": "string"},
            {"kind": "drop_duplicates"},
        ],
    )

    assert table.to_pydict() == before


@pytest.mark.parametrize(
    ("steps", "complaint", "field"),
    [
        ([], "at least one step", "steps"),
        ([{"kind": "drop_nulls"}] * (MAX_STEPS + 1), f"at most {MAX_STEPS} steps", "steps"),
        ([{"kind": "explode"}], "unknown kind 'explode'; known kinds:", "steps.0.kind"),
        (["drop_nulls"], "must be an object", "steps.0"),
        ([{"kind": "drop_nulls", "columns": ["nope"]}], "no column 'nope'", "steps.0.columns"),
        (
            [{"kind": "drop_nulls", "columns": []}],
            "non-empty list of column names",
            "steps.0.columns",
        ),
        (
            [{"kind": "drop_nulls", "columns": "age"}],
            'names: ["age"], not "age"',
            "steps.0.columns",
        ),
        ([{"kind": "cast", "dtype": "string"}], "required: one column name", "steps.0.column"),
        (
            [{"kind": "impute_nulls", "column": "nope", "strategy": "mean"}],
            "no column 'nope'",
            "steps.0.column",
        ),
    ],
    ids=[
        "no-steps",
        "too-many-steps",
        "unknown-kind",
        "not-an-object",
        "unknown-column",
        "empty-columns",
        "columns-not-a-list",
        "no-column",
        "impute-unknown-column",
    ],
)
def test_a_step_that_cannot_run_is_refused(steps: list[Any], complaint: str, field: str) -> None:
    problem = refusal(steps)

    assert complaint in problem.message
    assert list(problem.field_errors) == [field]
