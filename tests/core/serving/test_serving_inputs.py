"""Every way a prediction request can disagree with its model's signature, and the buckets."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aiaas.core.errors import InputError
from aiaas.core.model_inputs import check_inputs
from aiaas.core.runtimes import bucket_sizes_for, pad_to_bucket
from aiaas.core.signatures import ModelSignature, TensorSpec

SIGNATURE = ModelSignature(
    inputs=(
        TensorSpec(name="amount", dtype="float32", shape=(-1,)),
        TensorSpec(name="city", dtype="str", shape=(-1,)),
        TensorSpec(name="pixels", dtype="float32", shape=(-1, 3)),
    ),
    outputs=(TensorSpec(name="value", dtype="float32", shape=(-1,)),),
)
GOOD: dict[str, Any] = {
    "amount": [1.5, 2, True],
    "city": ["paris", None, "lima"],
    "pixels": [[0, 1, 2], [3, 4, 5], [6, 7, 8.5]],
}


def refusal(columns: dict[str, Any], max_batch: int = 8) -> dict[str, str]:
    with pytest.raises(InputError) as caught:
        check_inputs(SIGNATURE, columns, max_batch=max_batch)
    assert caught.value.http_status == 400
    assert caught.value.extensions["fieldErrors"] == caught.value.field_errors
    return caught.value.field_errors


def test_good_inputs_come_back_as_arrays_of_the_signature_dtypes() -> None:
    checked = check_inputs(SIGNATURE, {**GOOD, "pixels": np.arange(9).reshape(3, 3)}, max_batch=3)

    assert list(checked) == ["amount", "city", "pixels"]  # signature order
    assert checked["amount"].dtype == np.float32
    assert checked["amount"].tolist() == [1.5, 2.0, 1.0]  # ints and booleans are numbers
    assert checked["city"].dtype == object
    assert checked["city"].tolist() == ["paris", None, "lima"]  # a null category is allowed
    assert checked["pixels"].dtype == np.float32
    assert checked["pixels"].shape == (3, 3)


def test_numpy_string_arrays_are_strings() -> None:
    columns = {**GOOD, "city": np.array(["a", "b", "c"])}
    assert check_inputs(SIGNATURE, columns, max_batch=8)["city"].tolist() == ["a", "b", "c"]


def test_unknown_and_missing_inputs_are_named() -> None:
    errors = refusal({"amount": [1.0], "colour": ["red"]})

    assert errors["colour"].startswith("unknown input; the model takes amount, city, pixels")
    assert errors["city"] == "missing input"
    assert errors["pixels"] == "missing input"
    assert "amount" not in errors


def test_strings_where_numbers_are_expected_and_numbers_where_strings_are() -> None:
    errors = refusal(
        {"amount": ["1.5", "2", "3"], "city": [1, "lima", 2.5], "pixels": GOOD["pixels"]}
    )
    assert errors == {
        "amount": "must hold numbers, not strings",
        "city": "must hold strings: not one at rows 0, 2",
    }
    errors = refusal({**GOOD, "amount": [1.0, "x", None], "city": np.array([1, 2, 3])})
    assert errors["amount"] == "must hold numbers: null at row 2"
    assert errors["city"] == "must hold strings, not int64 values"
    assert refusal({**GOOD, "amount": [1.0, 2.0, {}]})["amount"].startswith("must hold numbers")
    assert refusal({**GOOD, "amount": [1 + 2j, 0, 0]})["amount"] == (
        "must hold numbers, not complex128 values"
    )


def test_non_finite_floats_are_refused_with_their_rows() -> None:
    errors = refusal({**GOOD, "amount": [math.nan, 1.0, math.inf]})
    assert errors == {"amount": "must be finite: NaN or infinity at rows 0, 2"}
    # Finite in float64, infinite in the signature's float32: refused, not silently infinite.
    assert refusal({**GOOD, "amount": [1e39, 0, 0]}) == {
        "amount": "must be finite: NaN or infinity at row 0"
    }
    assert "pixels" in refusal({**GOOD, "pixels": [[0, 1, 2], [3, -math.inf, 5], [6, 7, 8]]})
    assert "amount" in refusal({**GOOD, "amount": [2**2000, 0, 0]})  # beyond float64


def test_wrong_shapes_are_refused() -> None:
    assert refusal({**GOOD, "amount": 5}) == {"amount": "must be a list of values, not a int"}
    assert refusal({**GOOD, "city": "paris"}) == {"city": "must be a list of values, not a str"}
    assert refusal({**GOOD, "amount": [[1.0], [2.0], [3.0]]}) == {
        "amount": "must have rank 1 (shape [-1]), not 2"
    }
    assert refusal({**GOOD, "pixels": [1.0, 2.0, 3.0]}) == {
        "pixels": "must have rank 2 (shape [-1, 3]), not 1"
    }
    assert refusal({**GOOD, "pixels": [[1, 2], [3, 4], [5, 6]]}) == {
        "pixels": "axis 1 must have 3 values, not 2"
    }
    assert refusal({**GOOD, "pixels": [[1, 2, 3], [4, 5], [6, 7, 8]]}) == {
        "pixels": "is ragged: nested lists of different lengths"
    }


def test_inputs_of_different_lengths_name_the_odd_one_out() -> None:
    errors = refusal({**GOOD, "city": ["paris"]})
    assert errors == {"city": "has 1 row where the other inputs have 3"}


def test_an_empty_batch_and_one_over_the_limit_are_refused() -> None:
    errors = refusal({"amount": [], "city": [], "pixels": np.zeros((0, 3))})
    assert set(errors) == {"amount", "city", "pixels"}
    assert errors["amount"] == "the batch is empty: send at least 1 row"
    errors = refusal({name: values * 3 for name, values in GOOD.items()}, max_batch=8)
    assert errors["amount"] == "9 rows exceed the limit of 8"
    assert set(errors) == {"amount", "city", "pixels"}


def test_every_problem_is_reported_at_once() -> None:
    errors = refusal({"amount": [math.nan], "city": [3], "pixels": [[1]], "extra": [1]})
    assert set(errors) == {"amount", "city", "pixels", "extra"}


def test_integer_and_boolean_inputs() -> None:
    signature = ModelSignature(
        inputs=(
            TensorSpec(name="count", dtype="int32", shape=(-1,)),
            TensorSpec(name="flag", dtype="bool", shape=(-1,)),
        ),
        outputs=(),
    )
    checked = check_inputs(signature, {"count": [1, 2.0], "flag": [True, False]}, max_batch=4)
    assert checked["count"].dtype == np.int32
    assert checked["count"].tolist() == [1, 2]
    with pytest.raises(InputError) as caught:
        check_inputs(signature, {"count": [1.5, 2**40], "flag": [1, 0]}, max_batch=4)
    assert caught.value.field_errors == {
        "count": "must hold integers: not one at row 0",
        "flag": "must hold booleans",
    }
    with pytest.raises(InputError) as caught:
        check_inputs(signature, {"count": [1, 2**40], "flag": [True, True]}, max_batch=4)
    assert caught.value.field_errors == {"count": "must fit in int32: out of range at row 1"}


def test_buckets_are_powers_of_two_capped_at_the_limit() -> None:
    assert bucket_sizes_for(1) == (1,)
    assert bucket_sizes_for(64) == (1, 2, 4, 8, 16, 32, 64)
    assert bucket_sizes_for(100) == (1, 2, 4, 8, 16, 32, 64, 100)
    buckets = bucket_sizes_for(100)
    assert [pad_to_bucket(rows, buckets) for rows in (1, 2, 3, 5, 64, 65, 100)] == [
        1,
        2,
        4,
        8,
        64,
        100,
        100,
    ]
    with pytest.raises(ValueError, match="exceed the largest bucket"):
        pad_to_bucket(101, buckets)
    with pytest.raises(ValueError, match="at least 1 row"):
        pad_to_bucket(0, buckets)
    with pytest.raises(ValueError, match="at least 1"):
        bucket_sizes_for(0)


# Fuzzing ---------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.complex_numbers(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner),
    max_leaves=12,
)
arrays = hnp.arrays(
    dtype=st.one_of(
        hnp.floating_dtypes(),
        hnp.integer_dtypes(),
        hnp.boolean_dtypes(),
        hnp.unicode_string_dtypes(),
        hnp.complex_number_dtypes(),
    ),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
)
anything = st.dictionaries(
    st.sampled_from(["amount", "city", "pixels", "other"]) | st.text(max_size=3),
    values | arrays,
    max_size=4,
)
# Mostly well-formed requests with a few bad values, so that many of them pass the check and
# what comes out is examined too.
numbers = st.one_of(st.floats(width=64), st.integers(-(2**70), 2**70), st.booleans())
almost_right = st.integers(1, 4).flatmap(
    lambda rows: st.fixed_dictionaries(
        {
            "amount": st.lists(numbers, min_size=rows, max_size=rows)
            | hnp.arrays(hnp.floating_dtypes(), rows),
            "city": st.lists(st.none() | st.text(max_size=3), min_size=rows, max_size=rows),
            "pixels": st.lists(
                st.lists(numbers, min_size=3, max_size=3), min_size=rows, max_size=rows
            )
            | hnp.arrays(hnp.integer_dtypes() | hnp.floating_dtypes(), (rows, 3)),
        }
    )
)


@given(columns=anything | almost_right, max_batch=st.integers(1, 6))
def test_fuzz_only_input_errors_and_only_finite_floats(
    columns: dict[str, Any], max_batch: int
) -> None:
    try:
        checked = check_inputs(SIGNATURE, columns, max_batch=max_batch)
    except InputError as error:
        refused: InputError | None = error
    else:
        refused = None
    if refused is not None:
        assert refused.field_errors  # names what is wrong, always
        event("refused")
        return
    event("accepted")
    assert list(checked) == ["amount", "city", "pixels"]
    rows = {len(array) for array in checked.values()}
    assert len(rows) == 1 and 1 <= rows.pop() <= max_batch
    for name in ("amount", "pixels"):
        assert checked[name].dtype == np.float32
        assert np.isfinite(checked[name]).all()
    assert all(value is None or isinstance(value, str) for value in checked["city"])


FEATURES = ModelSignature(
    inputs=tuple(TensorSpec(name=f"x{index}", dtype="float32", shape=(-1,)) for index in range(4)),
    outputs=(),
)
good_numbers = st.one_of(
    st.floats(-1e6, 1e6), st.integers(-1000, 1000), st.booleans(), st.integers(-(2**70), 2**70)
)
bad_values = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e39, 2**2000]),
    st.none(),
    st.text(max_size=2),
    st.lists(st.floats(), max_size=2),
)


@st.composite
def feature_requests(draw: st.DrawFn) -> dict[str, list[Any]]:
    """A valid request, then maybe one thing wrong with it."""
    rows = draw(st.integers(1, 3))
    columns = {
        f"x{index}": draw(st.lists(good_numbers, min_size=rows, max_size=rows))
        for index in range(4)
    }
    name = draw(st.sampled_from(sorted(columns)))
    change = draw(st.sampled_from(["none", "value", "length", "missing", "unknown"]))
    if change == "value":
        columns[name][draw(st.integers(0, rows - 1))] = draw(bad_values)
    elif change == "length":
        columns[name] = columns[name][1:] if draw(st.booleans()) else [*columns[name], 1.0]
    elif change == "missing":
        del columns[name]
    elif change == "unknown":
        columns["y"] = [1.0] * rows
    return columns


@given(columns=feature_requests(), max_batch=st.integers(1, 3))
def test_fuzz_the_all_at_once_path_agrees_with_the_input_by_input_one(
    columns: dict[str, list[Any]], max_batch: int
) -> None:
    """Lists of numbers for every float input take a path that converts them all in one numpy
    call; tuples are not lists, so they take the input-by-input one. Both must agree."""

    def outcome(request: dict[str, Any]) -> Any:
        try:
            checked = check_inputs(FEATURES, request, max_batch=max_batch)
        except InputError as error:
            event("refused")
            return error.field_errors
        event("accepted")
        assert all(
            array.dtype == np.float32 and np.isfinite(array).all() for array in checked.values()
        )
        return {name: array.tolist() for name, array in checked.items()}

    as_tuples = {name: tuple(values) for name, values in columns.items()}
    assert outcome(columns) == outcome(as_tuples)
