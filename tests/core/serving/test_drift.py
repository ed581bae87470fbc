"""Drift statistics: baselines from training columns, PSI against serving samples, and baselines
stored as JSON and read back as untrusted input. Pure functions, no services."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiaas.core.serving.drift import (
    PROPORTION_FLOOR,
    CategoricalBaseline,
    FeatureBaseline,
    FeatureDrift,
    NumericBaseline,
    baselines_from_json,
    baselines_to_json,
    feature_drift,
    psi,
    training_baselines,
)
from aiaas.core.signatures import TensorSpec

LARGEST_FLOAT = 1.7976931348623157e308


def spec(name: str, dtype: str) -> TensorSpec:
    return TensorSpec(name=name, dtype=dtype, shape=(-1,))


def baseline_of(values: Sequence[Any] | pa.Array, dtype: str, **options: int) -> FeatureBaseline:
    return training_baselines(pa.table({"x": values}), [spec("x", dtype)], **options)["x"]


def psi_by_hand(expected: Sequence[float], actual: Sequence[float]) -> float:
    """PSI written out term by term, the floor applied as the module documents it."""
    total = 0.0
    for expected_share, actual_share in zip(expected, actual, strict=True):
        e, a = max(expected_share, PROPORTION_FLOOR), max(actual_share, PROPORTION_FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def test_a_tiny_example_matches_the_formula_exactly() -> None:
    baseline = NumericBaseline(edges=(0.0,), proportions=(0.5, 0.5), rows=4)

    # A quarter below 0, three quarters at or above: (0.25-0.5)ln(0.5) + (0.75-0.5)ln(1.5).
    assert psi(baseline, [-1.0, 1.0, 2.0, 3.0]) == pytest.approx(0.25 * math.log(3), rel=1e-12)
    assert psi(baseline, [-1.0, 1.0]) == 0.0


def test_an_empty_bin_costs_the_floor_not_infinity() -> None:
    baseline = CategoricalBaseline(categories=("a",), proportions=(1.0, 0.0), rows=10)

    expected = (0.5 - 1.0) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi(baseline, ["a", "b"]) == pytest.approx(expected, rel=1e-12)


def test_the_same_distribution_is_stable_and_a_shifted_one_drifts() -> None:
    rng = np.random.default_rng(7)
    baseline = baseline_of(rng.normal(10.0, 2.0, 20_000), "float32")

    assert isinstance(baseline, NumericBaseline)
    assert len(baseline.proportions) == 10
    assert psi(baseline, rng.normal(10.0, 2.0, 3_000)) < 0.1
    assert psi(baseline, rng.normal(12.0, 2.0, 3_000)) > 0.25
    assert psi(baseline, rng.normal(8.0, 2.0, 3_000)) > 0.25


def test_out_of_range_values_land_in_the_outer_bins() -> None:
    baseline = baseline_of(np.arange(100, dtype=np.float64), "float64")
    assert isinstance(baseline, NumericBaseline)
    first_only = [1.0] + [0.0] * len(baseline.edges)

    assert psi(baseline, [-1e300, -math.inf, -0.5]) == pytest.approx(
        psi_by_hand(baseline.proportions, first_only)
    )
    assert psi(baseline, [1e300, math.inf, 100.0]) == pytest.approx(
        psi_by_hand(baseline.proportions, first_only[::-1])
    )


def test_bins_are_closed_on_the_right() -> None:
    baseline = NumericBaseline(edges=(0.0, 1.0), proportions=(0.25, 0.5, 0.25), rows=4)

    assert psi(baseline, [0.0, 0.0]) == pytest.approx(psi_by_hand((0.25, 0.5, 0.25), (1, 0, 0)))
    assert psi(baseline, [1.0]) == pytest.approx(psi_by_hand((0.25, 0.5, 0.25), (0, 1, 0)))


def test_the_most_frequent_categories_are_kept_and_the_rest_is_other() -> None:
    baseline = baseline_of(["a", "a", "c", "b", None, "a"], "str", max_categories=2)

    # b and c tie: the name decides, so the same data always gives the same baseline.
    assert baseline == CategoricalBaseline(
        categories=("a", "b"), proportions=(0.6, 0.2, 0.2), rows=5
    )
    all_other = psi_by_hand(baseline.proportions, (0, 0, 1))
    assert psi(baseline, ["c", "never seen", "c"]) == pytest.approx(all_other)
    assert psi(baseline, ["a", "a", "a", "b", "c"]) == pytest.approx(
        psi_by_hand(baseline.proportions, (0.6, 0.2, 0.2))
    )


def test_a_constant_column_sees_shifts_both_ways() -> None:
    baseline = baseline_of([5] * 50, "int32")

    assert isinstance(baseline, NumericBaseline)
    assert baseline.proportions == (0.0, 1.0, 0.0)
    assert psi(baseline, np.full(100, 5)) == 0.0
    assert psi(baseline, np.full(100, 6)) > 0.25
    assert psi(baseline, np.full(100, 4)) > 0.25


@pytest.mark.parametrize("dtype", ["int64", "uint8", "float32"])
def test_few_distinct_values_get_one_bin_each(dtype: str) -> None:
    # 2 is rare: quantile bins would merge it with a neighbour and miss it becoming common.
    values = [0] * 45 + [1] * 45 + [2] * 2 + [3] * 8
    baseline = baseline_of(pa.array(values, pa.from_numpy_dtype(np.dtype(dtype))), dtype)

    assert isinstance(baseline, NumericBaseline)
    assert baseline.edges[1:] == (0.0, 1.0, 2.0, 3.0)
    assert baseline.proportions == (0.0, 0.45, 0.45, 0.02, 0.08, 0.0)
    assert psi(baseline, [2] * 30 + [0] * 35 + [1] * 35) > 0.25


def test_boolean_columns_are_binned_as_zero_and_one() -> None:
    rng = np.random.default_rng(3)
    baseline = baseline_of(rng.random(10_000) < 0.05, "bool")

    assert psi(baseline, rng.random(2_000) < 0.05) < 0.1
    assert psi(baseline, rng.random(2_000) < 0.5) > 0.25
    assert psi(baseline, [True, False, None]) == psi(baseline, np.array([1, 0]))


@pytest.mark.parametrize(
    "values",
    [
        [-0.0, 0.0, 1.0],
        [-LARGEST_FLOAT],
        [LARGEST_FLOAT, -LARGEST_FLOAT],
        [math.inf, -math.inf, 1.0],
        [math.inf, None],
    ],
)
def test_awkward_floats_still_give_valid_baselines(values: list[float | None]) -> None:
    # The baseline validates itself: negative zero must not repeat an edge, nor may the edge
    # below the smallest value fall off the float range; infinities are counted, never edges.
    baseline = baseline_of(pa.array(values, pa.float64()), "float64")

    assert baseline.rows == sum(value is not None for value in values)
    assert baselines_from_json(json.loads(json.dumps(baselines_to_json({"x": baseline})))) == {
        "x": baseline
    }


def test_more_distinct_values_than_bins_get_quantile_bins() -> None:
    baseline = baseline_of(list(range(12)) * 3, "int64", bins=4)

    assert isinstance(baseline, NumericBaseline)
    # Each cut point is a quantile, and its bin takes it: (-inf, 2], (2, 5], (5, 8], (8, inf).
    assert baseline.edges == (2.0, 5.0, 8.0)
    assert baseline.proportions == (0.25, 0.25, 0.25, 0.25)


@pytest.mark.parametrize(
    ("values", "arrow_type", "dtype"),
    [
        ([None, None], pa.float64(), "float64"),
        ([math.nan, None], pa.float64(), "float32"),
        ([None, None], pa.string(), "str"),
        ([], pa.int64(), "int64"),
    ],
)
def test_a_column_without_values_gives_a_baseline_that_measures_nothing(
    values: list[Any], arrow_type: pa.DataType, dtype: str
) -> None:
    baseline = baseline_of(pa.array(values, arrow_type), dtype)

    assert baseline.rows == 0
    assert baseline.proportions == (1.0,)
    with pytest.raises(ValueError, match="at least one training value"):
        psi(baseline, ["a"] if dtype == "str" else [1.0])
    assert feature_drift({"x": baseline}, {"x": ["a"] if dtype == "str" else [1.0]}) == {
        "x": FeatureDrift(psi=None, sample_count=1)
    }


def test_nulls_and_nan_in_samples_are_skipped() -> None:
    numeric = NumericBaseline(edges=(0.0,), proportions=(0.5, 0.5), rows=2)
    categorical = CategoricalBaseline(categories=("a",), proportions=(0.5, 0.5), rows=2)
    samples = {"n": [None, math.nan, -1.0, 1.0], "c": ["a", None, math.nan, np.float32("nan")]}

    report = feature_drift({"n": numeric, "c": categorical}, samples)

    assert report["n"] == FeatureDrift(psi=0.0, sample_count=2)
    assert report["c"].sample_count == 1
    with pytest.raises(ValueError, match="one sample"):
        psi(numeric, [None, math.nan])


def test_features_without_samples_are_reported_with_no_psi() -> None:
    baselines = {
        "sampled": NumericBaseline(edges=(), proportions=(1.0,), rows=3),
        "silent": NumericBaseline(edges=(), proportions=(1.0,), rows=3),
        "empty": CategoricalBaseline(categories=(), proportions=(1.0,), rows=3),
    }
    samples = {"sampled": np.array([1.0, 2.0]), "empty": [], "no baseline": [1.0]}

    assert feature_drift(baselines, samples) == {
        "sampled": FeatureDrift(psi=0.0, sample_count=2),
        "silent": FeatureDrift(psi=None, sample_count=0),
        "empty": FeatureDrift(psi=None, sample_count=0),
    }


@pytest.mark.parametrize(
    "samples", [np.array(["a"]), [None, "a"], [None, [1.0, 2.0]], [{"a": 1}, 1.0], [[1], [2, 3]]]
)
def test_samples_that_are_not_numbers_are_refused_for_a_numeric_feature(samples: Any) -> None:
    with pytest.raises(ValueError, match="must be numbers or nulls"):
        psi(NumericBaseline(edges=(), proportions=(1.0,), rows=1), samples)


@pytest.mark.parametrize(
    ("table", "features", "options", "message"),
    [
        (pa.table({"x": [1]}), [spec("y", "int64")], {}, "no column for feature 'y'"),
        (pa.table({"x": [1]}), [spec("x", "complex64")], {}, "cannot be binned"),
        (pa.table({"x": ["a"]}), [spec("x", "float32")], {}, "feature 'x' of type string"),
        (pa.table({"x": [[1]]}), [spec("x", "int64")], {}, "feature 'x' of type list"),
        (pa.table({"x": [1]}), [spec("x", "int64")], {"bins": 1}, "bins >= 2"),
        (pa.table({"x": [1]}), [spec("x", "int64")], {"max_categories": 0}, "max_categories"),
    ],
)
def test_baselines_that_cannot_be_computed_are_refused(
    table: pa.Table, features: list[TensorSpec], options: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        training_baselines(table, features, **options)


present_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
any_floats = st.one_of(st.none(), st.floats(width=64))
texts = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "", "é"]), st.text(max_size=3))


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(any_floats, texts), max_size=40),
    bins=st.integers(2, 12),
    max_categories=st.integers(1, 5),
)
def test_baselines_round_trip_through_strict_json(
    rows: list[tuple[float | None, str | None]], bins: int, max_categories: int
) -> None:
    numbers = pa.array([number for number, _ in rows], pa.float64())
    table = pa.table({"n": numbers, "t": pa.array([text for _, text in rows], pa.string())})
    features = [spec("n", "float64"), spec("t", "str")]
    baselines = training_baselines(table, features, bins=bins, max_categories=max_categories)

    stored = json.dumps(baselines_to_json(baselines), allow_nan=False)

    assert baselines_from_json(json.loads(stored)) == baselines


@settings(max_examples=200, deadline=None)
@given(training=st.lists(any_floats, max_size=50), samples=st.lists(any_floats, max_size=50))
def test_numeric_psi_is_finite_and_never_negative(
    training: list[float | None], samples: list[float | None]
) -> None:
    baseline = baseline_of(pa.array(training, pa.float64()), "float64", bins=5)

    drift = feature_drift({"x": baseline}, {"x": samples})["x"].psi

    assert drift is None or (math.isfinite(drift) and drift >= 0.0)


@settings(max_examples=200, deadline=None)
@given(
    training=st.lists(texts, max_size=50),
    samples=st.lists(texts, max_size=50),
    max_categories=st.integers(1, 4),
)
def test_categorical_psi_is_finite_and_never_negative(
    training: list[str | None], samples: list[str | None], max_categories: int
) -> None:
    baseline = baseline_of(pa.array(training, pa.string()), "str", max_categories=max_categories)

    drift = feature_drift({"x": baseline}, {"x": samples})["x"].psi

    assert drift is None or (math.isfinite(drift) and drift >= 0.0)


VALID_DOCUMENT: dict[str, Any] = {
    "version": 1,
    "features": {
        "age": {"kind": "numeric", "edges": [0, 1.5], "proportions": [0.25, 0.5, 0.25], "rows": 8},
        "country": {
            "kind": "categorical",
            "categories": ["FR", "DE"],
            "proportions": [0.5, 0.25, 0.25],
            "rows": 4,
        },
    },
}


def test_the_valid_document_is_read() -> None:
    assert baselines_from_json(VALID_DOCUMENT) == {
        "age": NumericBaseline(edges=(0.0, 1.5), proportions=(0.25, 0.5, 0.25), rows=8),
        "country": CategoricalBaseline(
            categories=("FR", "DE"), proportions=(0.5, 0.25, 0.25), rows=4
        ),
    }


def corrupted(path: Sequence[str], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(VALID_DOCUMENT)
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


AGE = ("features", "age")
COUNTRY = ("features", "country")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected a JSON object, got list"),
        ({"features": {}}, "expected the fields"),
        (corrupted(("version",), 2), "unsupported format version 2"),
        (corrupted(("version",), True), "unsupported format version True"),
        (corrupted(("features",), []), "features: expected a JSON object"),
        (corrupted(AGE, "numeric"), "kind is numeric or categorical"),
        (corrupted((*AGE, "kind"), "ordinal"), "kind is numeric or categorical"),
        (corrupted((*AGE, "extra"), 1), "expected the fields"),
        (corrupted((*AGE, "edges"), [1.5, 0]), "'age': edges must be strictly increasing"),
        (corrupted((*AGE, "edges"), [0, 0]), "'age': edges must be strictly increasing"),
        (corrupted((*AGE, "edges"), [0, math.nan]), "'age': edges must be finite"),
        (corrupted((*AGE, "edges"), [0, math.inf]), "'age': edges must be finite"),
        (corrupted((*AGE, "edges"), [0, "1.5"]), "'age': edges: expected a list of numbers"),
        (corrupted((*AGE, "edges"), [0, True]), "'age': edges: expected a list of numbers"),
        (corrupted((*AGE, "edges"), [0, 10**400]), "'age': edges: number out of range"),
        (corrupted((*AGE, "edges"), [0]), "'age': expected 2 proportions, got 3"),
        (corrupted((*AGE, "proportions"), [0.5, 0.5, 0.5]), "'age': proportions sum to 1.5"),
        (corrupted((*AGE, "proportions"), [1.5, -0.5, 0]), "between 0 and 1"),
        (corrupted((*AGE, "proportions"), [math.nan, 0.5, 0.5]), "between 0 and 1"),
        (corrupted((*AGE, "proportions"), {"0": 1}), "expected a list of numbers"),
        (corrupted((*AGE, "rows"), 8.0), "'age': rows must be an integer"),
        (corrupted((*AGE, "rows"), -1), "'age': rows must not be negative"),
        (corrupted((*COUNTRY, "categories"), ["FR", 1]), "categories must be a list of strings"),
        (corrupted((*COUNTRY, "categories"), ["FR", "FR"]), "categories must be unique"),
        (corrupted((*COUNTRY, "categories"), ["FR"]), "'country': expected 2 proportions"),
        (corrupted((*COUNTRY, "kind"), "numeric"), "'country': expected the fields"),
    ],
)
def test_malformed_documents_are_refused_with_the_offending_field(
    document: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        baselines_from_json(document)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
document_paths = st.sampled_from(
    [("version",), ("features",), AGE, COUNTRY]
    + [(*AGE, key) for key in ("kind", "edges", "proportions", "rows")]
    + [(*COUNTRY, key) for key in ("kind", "categories", "proportions", "rows")]
)


@settings(max_examples=300, deadline=None)
@given(path=document_paths, value=json_values)
def test_any_corruption_is_refused_with_a_value_error_or_read_as_valid(
    path: tuple[str, ...], value: Any
) -> None:
    try:
        baselines = baselines_from_json(corrupted(path, value))
    except ValueError:
        return
    # Whatever is accepted is a consistent document: it writes back as it was read.
    assert baselines_from_json(baselines_to_json(baselines)) == baselines
