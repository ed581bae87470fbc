"""The built-in data quality validators, on small pyarrow tables built here: what each kind counts
and shows, how its arguments are vetted, the baseline checks, and the Q scores worked out by hand.

No database is needed: a `Platform` is built offline (building one does no I/O), so that
`check_table` routes each expectation to its validator exactly as a worker would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pytest

from aiaas.core.bootstrap import create_platform
from aiaas.core.config import build_config
from aiaas.core.data.expectations import check_table
from aiaas.core.platform import Platform
from aiaas.core.validation import (
    MAX_EXAMPLES,
    CheckResult,
    Expectation,
    QualityScores,
    Validator,
    quality_scores,
)
from aiaas.plugins.quality_validators import (
    AccuracyValidator,
    CompletenessValidator,
    ConsistencyValidator,
    SchemaValidator,
)

# Helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline_platform() -> Platform:
    return create_platform(build_config({"disable_plugin_autoload": True}))


def only(validator: Validator, table: pa.Table, expectation: Expectation) -> CheckResult:
    """The one result of checking one expectation."""
    results = validator.validate(table, [expectation])
    assert len(results) == 1, results
    return results[0]


def by_name(results: Sequence[CheckResult]) -> dict[str, CheckResult]:
    named = {result.name: result for result in results}
    assert len(named) == len(results), "two checks share a name"
    return named


PEOPLE = pa.table(
    {
        "id": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
        "age": pa.array([34, None, 150, -1, 40, None], pa.int64()),
        "country": pa.array(["FR", "DE", "XX", None, "FR", "US"], pa.string()),
        "email": pa.array(["a@b.fr", "nope", "x@y@z", "c@d.de", None, "e@f.us"], pa.string()),
    }
)
COLUMNS = {"id": "integer", "age": "integer", "country": "string", "email": "string"}


# Schema -------------------------------------------------------------------------------------


def test_column_type_passes_when_the_column_has_the_declared_type() -> None:
    check = only(
        SchemaValidator(), PEOPLE, {"kind": "column_type", "column": "age", "dtype": "integer"}
    )

    assert check.passed
    assert check.failing_rows == 0
    assert check.name == "column_type(age)"
    assert check.dimension == "consistency"
    assert check.message == "passed"


def test_column_type_of_another_type_fails_every_non_null_row() -> None:
    check = only(
        SchemaValidator(), PEOPLE, {"kind": "column_type", "column": "age", "dtype": "string"}
    )

    assert not check.passed
    # Six rows, two of them empty: the four values that are there have the wrong type.
    assert check.failing_rows == 4
    assert "integer" in check.message
    assert "string" in check.message


def test_column_type_of_a_missing_column_fails_every_row() -> None:
    check = only(
        SchemaValidator(), PEOPLE, {"kind": "column_type", "column": "salary", "dtype": "float"}
    )

    assert check.failing_rows == PEOPLE.num_rows
    assert "missing" in check.message


# Completeness -------------------------------------------------------------------------------


def test_not_null_counts_the_empty_cells_of_its_column() -> None:
    check = only(CompletenessValidator(), PEOPLE, {"kind": "not_null", "column": "age"})

    assert check.failing_rows == 2
    assert not check.passed
    assert check.dimension == "completeness"
    assert check.name == "not_null(age)"


def test_not_null_of_a_full_column_passes() -> None:
    assert only(CompletenessValidator(), PEOPLE, {"kind": "not_null", "column": "id"}).passed


@pytest.mark.parametrize(
    ("bounds", "passes"),
    [
        ({"min": 6}, True),
        ({"max": 6}, True),
        ({"min": 1, "max": 10}, True),
        ({"min": 7}, False),
        ({"max": 5}, False),
        ({"min": 100, "max": 1000}, False),
    ],
)
def test_row_count_compares_the_number_of_rows_with_its_bounds(
    bounds: dict[str, int], passes: bool
) -> None:
    check = only(CompletenessValidator(), PEOPLE, {"kind": "row_count", **bounds})

    assert check.passed is passes
    # A table of the wrong size is wrong as a whole: every row fails, and the check scores 0.
    assert check.failing_rows == (0 if passes else PEOPLE.num_rows)
    assert check.score(PEOPLE.num_rows) == (1.0 if passes else 0.0)


def test_row_count_of_an_empty_table_below_its_minimum_fails() -> None:
    empty = PEOPLE.slice(0, 0)

    check = only(CompletenessValidator(), empty, {"kind": "row_count", "min": 1})

    assert not check.passed
    assert check.score(0) == 0.0


# Consistency --------------------------------------------------------------------------------


def test_unique_counts_the_rows_that_repeat_an_earlier_key_and_shows_the_keys() -> None:
    table = pa.table(
        {"customer": [1, 2, 2, 3, 3, 3, 4], "day": ["a", "b", "c", "d", "e", "f", "g"]}
    )

    check = only(ConsistencyValidator(), table, {"kind": "unique", "columns": ["customer"]})

    # Key 2 appears twice (one extra row), key 3 three times (two extra rows).
    assert check.failing_rows == 3
    assert sorted(example["customer"] for example in check.examples) == [2, 3]
    assert check.name == "unique(customer)"
    assert check.dimension == "consistency"


def test_unique_over_several_columns_counts_repeated_combinations_only() -> None:
    table = pa.table({"a": [1, 1, 1, 2], "b": ["x", "x", "y", "x"]})

    check = only(ConsistencyValidator(), table, {"kind": "unique", "columns": ["a", "b"]})

    assert check.failing_rows == 1
    assert check.examples == [{"a": 1, "b": "x"}]


def test_no_duplicate_rows_counts_whole_rows_repeated() -> None:
    table = pa.table({"a": [1, 1, 1, 2], "b": ["x", "x", "y", "x"]})

    check = only(ConsistencyValidator(), table, {"kind": "no_duplicate_rows"})

    assert check.name == "no_duplicate_rows"
    assert check.failing_rows == 1
    assert check.examples == [{"a": 1, "b": "x"}]


def test_a_rule_counts_the_rows_that_break_it_and_shows_their_columns() -> None:
    table = pa.table(
        {
            "start": [1, 5, 3, None, 9],
            "end": [2, 4, 3, 1, 1],
            "note": ["ok", "broken", "ok", "unknown", "broken"],
        }
    )

    check = only(ConsistencyValidator(), table, {"kind": "rule", "expression": "start <= end"})

    # A row where the rule cannot be decided (a null start) is not counted as breaking it.
    assert check.failing_rows == 2
    assert check.examples == [{"end": 4, "start": 5}, {"end": 1, "start": 9}]
    assert check.name == "rule(start <= end)"
    assert check.dimension == "consistency"


# Accuracy -----------------------------------------------------------------------------------


def test_range_counts_the_values_outside_it_and_ignores_empty_cells() -> None:
    check = only(
        AccuracyValidator(), PEOPLE, {"kind": "range", "column": "age", "min": 0, "max": 130}
    )

    assert check.failing_rows == 2
    assert check.examples == [150, -1]
    assert check.dimension == "accuracy"
    assert check.name == "range(age)"


def test_range_with_one_bound_checks_that_bound_only() -> None:
    above = only(AccuracyValidator(), PEOPLE, {"kind": "range", "column": "age", "min": 35})
    below = only(AccuracyValidator(), PEOPLE, {"kind": "range", "column": "age", "max": 0})

    assert above.examples == [34, -1]
    assert below.examples == [34, 150, 40]


def test_range_does_not_accept_nan() -> None:
    table = pa.table({"score": pa.array([0.5, float("nan"), 0.9], pa.float64())})

    check = only(
        AccuracyValidator(), table, {"kind": "range", "column": "score", "min": 0, "max": 1}
    )

    assert check.failing_rows == 1


def test_allowed_values_counts_the_values_not_listed() -> None:
    check = only(
        AccuracyValidator(),
        PEOPLE,
        {"kind": "allowed_values", "column": "country", "values": ["FR", "DE"]},
    )

    assert check.failing_rows == 2
    assert check.examples == ["XX", "US"]


def test_allowed_values_of_numbers_on_an_integer_column() -> None:
    check = only(
        AccuracyValidator(), PEOPLE, {"kind": "allowed_values", "column": "id", "values": [1, 2]}
    )

    assert check.failing_rows == 4
    assert check.examples == [3, 4, 5, 6]


def test_regex_must_match_the_whole_value() -> None:
    check = only(
        AccuracyValidator(),
        PEOPLE,
        {"kind": "regex", "column": "email", "pattern": "[^@]+@[^@]+"},
    )

    # "x@y@z" contains a match but is not one: the pattern is anchored at both ends.
    assert check.examples == ["nope", "x@y@z"]
    assert check.failing_rows == 2


def test_examples_are_capped() -> None:
    table = pa.table({"n": list(range(20))})

    check = only(AccuracyValidator(), table, {"kind": "range", "column": "n", "max": -1})

    assert check.failing_rows == 20
    assert check.examples == list(range(MAX_EXAMPLES))


def test_an_accuracy_check_on_a_missing_column_fails_every_row() -> None:
    check = only(
        AccuracyValidator(), PEOPLE, {"kind": "allowed_values", "column": "city", "values": ["x"]}
    )

    assert check.failing_rows == PEOPLE.num_rows


# Blocking -----------------------------------------------------------------------------------

FAILING_EXPECTATIONS: list[tuple[Validator, dict[str, Any]]] = [
    (SchemaValidator(), {"kind": "column_type", "column": "age", "dtype": "string"}),
    (CompletenessValidator(), {"kind": "not_null", "column": "age"}),
    (CompletenessValidator(), {"kind": "row_count", "min": 100}),
    (ConsistencyValidator(), {"kind": "unique", "columns": ["country"]}),
    (ConsistencyValidator(), {"kind": "rule", "expression": "age < id"}),
    (AccuracyValidator(), {"kind": "range", "column": "age", "min": 0}),
    (AccuracyValidator(), {"kind": "allowed_values", "column": "country", "values": ["FR"]}),
    (AccuracyValidator(), {"kind": "regex", "column": "email", "pattern": "[a-z]@[a-z.]+"}),
]


@pytest.mark.parametrize(
    ("validator", "expectation"),
    FAILING_EXPECTATIONS,
    ids=[expectation["kind"] for _, expectation in FAILING_EXPECTATIONS],
)
def test_every_kind_is_blocking_unless_it_says_otherwise(
    validator: Validator, expectation: dict[str, Any]
) -> None:
    default = only(validator, PEOPLE, expectation)
    lenient = only(validator, PEOPLE, {**expectation, "blocking": False})
    strict = only(validator, PEOPLE, {**expectation, "blocking": True})

    assert not default.passed
    assert default.blocking
    assert strict.blocking
    assert not lenient.blocking
    # Whether a failure blocks changes nothing about what was found.
    assert lenient.failing_rows == default.failing_rows > 0
    assert lenient.kind == expectation["kind"]


# Baseline checks ----------------------------------------------------------------------------


def test_the_baseline_checks_run_without_any_expectation_and_never_block(
    offline_platform: Platform,
) -> None:
    table = pa.table({"a": [1, 1, None, 4], "b": ["x", "x", None, "y"]})

    checks = by_name(check_table(offline_platform, table, []))

    assert set(checks) == {"empty_cells", "duplicate_rows"}
    empty, duplicates = checks["empty_cells"], checks["duplicate_rows"]
    # 2 of 8 cells are empty: a quarter, applied to the 4 rows.
    assert (empty.dimension, empty.failing_rows, empty.passed) == ("completeness", 1, False)
    assert (duplicates.dimension, duplicates.failing_rows) == ("consistency", 1)
    assert duplicates.examples == [{"a": 1, "b": "x"}]
    assert not empty.blocking
    assert not duplicates.blocking


def test_the_baseline_checks_run_beside_the_declared_expectations(
    offline_platform: Platform,
) -> None:
    checks = by_name(check_table(offline_platform, PEOPLE, [{"kind": "not_null", "column": "age"}]))

    assert set(checks) == {"empty_cells", "duplicate_rows", "not_null(age)"}


def test_the_baseline_checks_pass_on_a_clean_table(offline_platform: Platform) -> None:
    clean = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})

    checks = check_table(offline_platform, clean, [])

    assert all(check.passed and check.failing_rows == 0 for check in checks)


def test_a_single_empty_cell_is_reported_by_the_baseline(offline_platform: Platform) -> None:
    table = pa.table({"a": [1, 2, 3], "b": ["x", None, "z"]})

    empty = by_name(check_table(offline_platform, table, []))["empty_cells"]

    assert not empty.passed
    assert empty.failing_rows > 0


# Every declared kind goes to its validator ---------------------------------------------------


def test_each_kind_is_checked_by_the_validator_that_claims_it(offline_platform: Platform) -> None:
    expectations: list[dict[str, Any]] = [expectation for _, expectation in FAILING_EXPECTATIONS]
    expectations.append({"kind": "no_duplicate_rows"})

    checks = check_table(offline_platform, PEOPLE, expectations)

    kinds = sorted(check.kind for check in checks)
    assert kinds == sorted(
        [str(expectation["kind"]) for expectation in expectations]
        + ["empty_cells", "duplicate_rows"]
    )


# Vetting ------------------------------------------------------------------------------------

PROBLEMS: list[tuple[Validator, dict[str, Any], str, str]] = [
    (
        SchemaValidator(),
        {"kind": "column_type", "column": "salary", "dtype": "integer"},
        "column",
        "salary",
    ),
    (
        SchemaValidator(),
        {"kind": "column_type", "column": "age", "dtype": "int32"},
        "dtype",
        "one of integer",
    ),
    (
        CompletenessValidator(),
        {"kind": "not_null", "column": "salary"},
        "column",
        "no column 'salary'",
    ),
    (CompletenessValidator(), {"kind": "not_null"}, "column", "required: one column name"),
    (CompletenessValidator(), {"kind": "not_null", "column": ["age"]}, "column", "not a list"),
    (CompletenessValidator(), {"kind": "row_count"}, "", "min, max or both"),
    (CompletenessValidator(), {"kind": "row_count", "min": 10, "max": 5}, "min", "more than max"),
    (CompletenessValidator(), {"kind": "row_count", "min": -1}, "min", "whole number, 0 or more"),
    (CompletenessValidator(), {"kind": "row_count", "min": 1.5}, "min", "whole number, 0 or more"),
    (ConsistencyValidator(), {"kind": "unique", "columns": []}, "columns", "non-empty list"),
    (ConsistencyValidator(), {"kind": "unique", "columns": "id"}, "columns", 'names: ["id"]'),
    (ConsistencyValidator(), {"kind": "unique", "columns": ["id", "salary"]}, "columns", "salary"),
    (ConsistencyValidator(), {"kind": "rule", "expression": "age <="}, "expression", "position"),
    (ConsistencyValidator(), {"kind": "rule", "expression": "salary > 0"}, "expression", "salary"),
    (ConsistencyValidator(), {"kind": "rule"}, "expression", "required: non-empty text"),
    (
        AccuracyValidator(),
        {"kind": "range", "column": "age", "min": 10, "max": 1},
        "min",
        "more than max",
    ),
    (AccuracyValidator(), {"kind": "range", "column": "age"}, "", "min, max or both"),
    (AccuracyValidator(), {"kind": "range", "column": "age", "min": "a"}, "min", "finite number"),
    (AccuracyValidator(), {"kind": "range", "column": "age", "max": True}, "max", "finite number"),
    (
        AccuracyValidator(),
        {"kind": "range", "column": "country", "min": 0},
        "column",
        "not numeric",
    ),
    (AccuracyValidator(), {"kind": "range", "column": "salary", "min": 0}, "column", "no column"),
    (
        AccuracyValidator(),
        {"kind": "allowed_values", "column": "country"},
        "values",
        "non-empty list",
    ),
    (
        AccuracyValidator(),
        {"kind": "allowed_values", "column": "country", "values": []},
        "values",
        "list",
    ),
    (
        AccuracyValidator(),
        {"kind": "allowed_values", "column": "country", "values": ["FR", 1]},
        "values",
        "one type",
    ),
    (
        AccuracyValidator(),
        {"kind": "regex", "column": "email", "pattern": 5},
        "pattern",
        "non-empty text",
    ),
]


@pytest.mark.parametrize(
    ("validator", "expectation", "argument", "problem"),
    PROBLEMS,
    ids=[f"{expectation['kind']}-{index}" for index, (_, expectation, _, _) in enumerate(PROBLEMS)],
)
def test_bad_arguments_are_named(
    validator: Validator, expectation: Expectation, argument: str, problem: str
) -> None:
    problems = validator.problems(expectation, COLUMNS)

    assert problems
    # Each problem names the argument it is about (none: the expectation as a whole), so that
    # the error names it by its path, `expectations.0.min`.
    named = [found for found in problems if getattr(found, "argument", "") == argument]
    assert any(problem in found for found in named), problems


@pytest.mark.parametrize("pattern", ["(", "[a-", "a{2,1}", "*a"])
def test_an_invalid_regex_is_named(pattern: str) -> None:
    problems = AccuracyValidator().problems(
        {"kind": "regex", "column": "email", "pattern": pattern}, COLUMNS
    )

    assert problems == ["must be a valid regular expression"]
    assert [problem.argument for problem in problems] == ["pattern"]  # type: ignore[attr-defined]


GOOD: list[tuple[Validator, dict[str, Any]]] = [
    (SchemaValidator(), {"kind": "column_type", "column": "age", "dtype": "integer"}),
    (CompletenessValidator(), {"kind": "not_null", "column": "age"}),
    (CompletenessValidator(), {"kind": "row_count", "min": 0, "max": 0}),
    (ConsistencyValidator(), {"kind": "unique", "columns": ["id", "email"]}),
    (ConsistencyValidator(), {"kind": "no_duplicate_rows"}),
    (ConsistencyValidator(), {"kind": "rule", "expression": "age >= 0 or age is null"}),
    (AccuracyValidator(), {"kind": "range", "column": "age", "min": 0, "max": 130.5}),
    (AccuracyValidator(), {"kind": "allowed_values", "column": "country", "values": ["FR"]}),
    (AccuracyValidator(), {"kind": "regex", "column": "email", "pattern": "[^@]+@[^@]+"}),
]


@pytest.mark.parametrize(
    ("validator", "expectation"), GOOD, ids=[expectation["kind"] for _, expectation in GOOD]
)
def test_good_arguments_have_no_problem(validator: Validator, expectation: Expectation) -> None:
    assert validator.problems(expectation, COLUMNS) == []


def test_allowed_values_that_vetting_accepts_can_be_checked() -> None:
    expectation = {"kind": "allowed_values", "column": "country", "values": ["FR", 1]}

    if AccuracyValidator().problems(expectation, COLUMNS):
        return  # refused when set: a fine fix too, since it then never reaches a worker
    # Accepted when set: checking a version must then give a result, not crash the job.
    check = only(AccuracyValidator(), PEOPLE, expectation)
    assert check.kind == "allowed_values"
    assert check.failing_rows >= 3  # DE, XX and US at least


# Scores -------------------------------------------------------------------------------------


def test_the_scores_of_a_small_table_worked_out_by_hand(offline_platform: Platform) -> None:
    table = pa.table(
        {
            "id": pa.array([1, 2, 2, None], pa.int64()),
            "age": pa.array([10, None, 200, 30], pa.int64()),
            "country": pa.array(["FR", "DE", None, "US"], pa.string()),
        }
    )
    expectations: list[dict[str, Any]] = [
        {"kind": "not_null", "column": "age"},  # 1 of 4 rows fails
        {"kind": "row_count", "min": 10},  # the whole table fails
        {"kind": "unique", "columns": ["id"]},  # the second 2 repeats the first
        {"kind": "range", "column": "age", "min": 0, "max": 130},  # 200
        {"kind": "allowed_values", "column": "country", "values": ["FR"]},  # DE and US
    ]

    results = check_table(offline_platform, table, expectations)
    scores = quality_scores(results, table.num_rows)

    failing = {check.name: check.failing_rows for check in results}
    assert failing == {
        "empty_cells": 3,  # rows 2, 3 and 4 each have an empty cell
        "not_null(age)": 1,
        "row_count": 4,
        "duplicate_rows": 0,
        "unique(id)": 1,
        "range(age)": 1,
        "allowed_values(country)": 2,
    }
    # completeness: empty_cells 1/4, not_null 3/4, row_count 0 → (0.25 + 0.75 + 0) / 3
    # consistency: duplicate_rows 1, unique 3/4 → (1 + 0.75) / 2
    # accuracy: range 3/4, allowed_values 2/4 → (0.75 + 0.5) / 2
    assert scores.completeness == pytest.approx(1 / 3)
    assert scores.consistency == pytest.approx(0.875)
    assert scores.accuracy == pytest.approx(0.625)
    assert scores.q == pytest.approx(1 / 3 + 0.875 + 0.625)


def test_a_dimension_with_no_check_scores_one(offline_platform: Platform) -> None:
    table = pa.table({"a": [1, 2, 2, 2], "b": ["x", "y", "y", "y"]})

    scores = quality_scores(check_table(offline_platform, table, []), table.num_rows)

    # No accuracy check ran at all; the duplicates cost consistency 2 rows of 4.
    assert scores == QualityScores(consistency=0.5, completeness=1.0, accuracy=1.0)
    assert scores.q == pytest.approx(2.5)
    assert quality_scores([], 10) == QualityScores(1.0, 1.0, 1.0)


def test_every_score_stays_between_zero_and_one(offline_platform: Platform) -> None:
    table = pa.table({"a": pa.array([None, None], pa.int64())})
    expectations: list[dict[str, Any]] = [
        {"kind": "not_null", "column": "a"},
        {"kind": "row_count", "min": 5},
        {"kind": "column_type", "column": "missing", "dtype": "string"},
        {"kind": "range", "column": "missing", "min": 0},
    ]

    scores = quality_scores(check_table(offline_platform, table, expectations), table.num_rows)

    for value in (scores.consistency, scores.completeness, scores.accuracy):
        assert 0.0 <= value <= 1.0
    assert scores.q == pytest.approx(scores.consistency + scores.completeness + scores.accuracy)
    assert scores.completeness == 0.0
    assert scores.accuracy == 0.0
