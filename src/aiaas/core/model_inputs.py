"""The checks a prediction request passes before it is queued: its columns against the model's
signature.

Both APIs (GraphQL's JSON records and the V2 protocol's tensors) hand their columns to
`check_inputs`, so that they refuse the same requests in the same words. What passes is what a
`LoadedModel` may rely on (`aiaas.core.runtimes`): every input present, of the signature's dtype
and rank, finite where it is a float, all of one length within the batch limit.

Nothing here imports JAX: the API process validates requests without loading a compute stack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aiaas.core.errors import InputError
from aiaas.core.signatures import STRING_DTYPES, ModelSignature, TensorSpec

FLOAT_DTYPES = frozenset({"float16", "float32", "float64"})
"""Signature dtypes that must be finite: a NaN would turn the model's whole output row into NaN."""

MAX_ROWS_LISTED = 5
"""How many offending rows an error names: enough to find them, short enough to read."""


def check_inputs(
    signature: ModelSignature,
    columns: Mapping[str, Sequence[Any] | np.ndarray],
    *,
    max_batch: int,
) -> dict[str, np.ndarray]:
    """The request's columns as arrays of the signature's dtypes, in signature order, or an
    `InputError` whose `field_errors` name every problem: unknown or missing inputs, values of
    the wrong kind, the wrong rank or width, inputs of different lengths, an empty batch or one
    over `max_batch`, and NaN or infinity in a float input (the flax-nnx models need finite
    inputs: a NaN would turn the whole output row into NaN).

    Numbers are coerced to the declared dtype (an integer or a boolean is a fine float);
    strings are never read as numbers, nor numbers as strings: a client that sends one for the
    other has a bug that a silent conversion would hide."""
    return InputChecker(signature).check(columns, max_batch=max_batch)


class InputChecker:
    """`check_inputs` for one signature, with what depends only on the signature worked out once.

    It runs on the event loop for every request, so the common case of a tabular model (one
    float input per feature, each a JSON list of numbers) is converted in one numpy call for all
    inputs, and only a request that fails that fast path is looked at input by input, which
    also names every problem. Converting 16 inputs one by one cost about five times as much: a
    large share of what a batch-1 request spent outside the model."""

    def __init__(self, signature: ModelSignature) -> None:
        self.signature = signature
        floats = [s for s in signature.inputs if s.dtype in FLOAT_DTYPES and len(s.shape) == 1]
        one_dtype = len({spec.dtype for spec in floats}) == 1
        self._float_names = tuple(spec.name for spec in floats) if one_dtype else ()
        self._float_dtype = floats[0].dtype if one_dtype else "float32"
        self._only_floats = len(self._float_names) == len(signature.inputs)

    def check(
        self, columns: Mapping[str, Sequence[Any] | np.ndarray], *, max_batch: int
    ) -> dict[str, np.ndarray]:
        arrays = self._float_lists_at_once(columns, max_batch)
        if arrays and self._only_floats and len(columns) == len(arrays):
            return arrays  # every input present, converted, finite, and of one valid length
        return _check_each_input(self.signature, columns, max_batch, arrays)

    def _float_lists_at_once(
        self, columns: Mapping[str, Any], max_batch: int
    ) -> dict[str, np.ndarray]:
        """The float inputs, when they are all lists of numbers of one valid length and all
        finite; otherwise nothing, and `_check_each_input` converts them and names what is
        wrong."""
        if not self._float_names:
            return {}
        values = [columns.get(name) for name in self._float_names]
        # Lists from the REST API's JSON, 1-D arrays from the V2 protocol's decoding: numpy
        # stacks either into one matrix (anything else, a nested array, is not 2-D).
        if any(type(value) is not list and type(value) is not np.ndarray for value in values):
            return {}
        try:
            matrix = np.asarray(values)
        except ValueError:
            return {}  # lists of different lengths, or nested ones
        if (
            matrix.ndim != 2
            or matrix.dtype.kind not in "biuf"
            or not 0 < matrix.shape[1] <= max_batch
        ):
            return {}
        with np.errstate(over="ignore", invalid="ignore"):
            floats = matrix.astype(self._float_dtype)
        if not np.isfinite(floats).all():
            return {}
        # Rows of the C-ordered matrix: each input is a contiguous view, no copy.
        return dict(zip(self._float_names, floats, strict=True))


def _check_each_input(
    signature: ModelSignature,
    columns: Mapping[str, Any],
    max_batch: int,
    arrays: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """`check_inputs` input by input, after `arrays` (already converted and finite)."""
    already_checked = set(arrays)
    field_errors: dict[str, str] = {}
    present = len(arrays)
    # One errstate for the whole request, not one per input: entering it costs about as much as
    # converting a small input. A cast that overflows to infinity is expected, and refused below.
    with np.errstate(over="ignore", invalid="ignore"):
        for spec in signature.inputs:
            if spec.name in already_checked:
                continue
            values = columns.get(spec.name, _MISSING)
            if values is _MISSING:
                field_errors[spec.name] = "missing input"
                continue
            present += 1
            try:
                arrays[spec.name] = _as_array(spec, values, max_batch)
            except _Refused as refusal:
                field_errors[spec.name] = str(refusal)
    if len(columns) != present:
        expected = ", ".join(spec.name for spec in signature.inputs)
        known = {spec.name for spec in signature.inputs}
        for name in columns:
            if name not in known:
                field_errors[str(name)] = f"unknown input; the model takes {expected}"
    field_errors.update(_non_finite_problems(arrays, already_checked))
    field_errors.update(_batch_problems(arrays))
    if field_errors:
        summary = "; ".join(f"{name}: {problem}" for name, problem in field_errors.items())
        raise InputError(
            f"the inputs do not match the model's signature: {summary}",
            field_errors=field_errors,
        )
    # In signature order, whichever path converted each input.
    return {spec.name: arrays[spec.name] for spec in signature.inputs}


_MISSING: Any = object()


class _Refused(Exception):  # noqa: N818 - internal: carries one input's problem to check_inputs
    pass


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _non_finite_problems(arrays: dict[str, np.ndarray], finite: set[str]) -> dict[str, str]:
    """NaN and infinity in float inputs not yet known to be `finite`; those inputs are taken
    out of `arrays`."""
    floats = [
        name for name, array in arrays.items() if array.dtype.kind == "f" and name not in finite
    ]
    if not floats:
        return {}
    # One check over all float inputs at once: almost every request passes it, and a ufunc call
    # per input would cost more than the conversions themselves. Only a failure looks closer.
    together = (
        arrays[floats[0]]
        if len(floats) == 1
        else np.concatenate([arrays[name].reshape(-1) for name in floats])
    )
    if np.isfinite(together).all():
        return {}
    problems = {}
    for name in floats:
        not_finite = ~np.isfinite(arrays[name])
        if not_finite.any():
            problems[name] = f"must be finite: NaN or infinity at {_rows(not_finite)}"
            del arrays[name]
    return problems


def _batch_problems(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Problems of the batch as a whole, told on each input they concern."""
    lengths = {name: array.shape[0] for name, array in arrays.items()}
    counts = list(lengths.values())
    if not counts or (counts[0] > 0 and counts.count(counts[0]) == len(counts)):
        return {}
    # The most common length is taken as the intended one (the first input's on a tie), so
    # that the error points at the odd input out rather than at every input.
    usual = max(counts, key=lambda count: (counts.count(count), -counts.index(count)))
    if any(count != usual for count in counts):
        return {
            name: f"has {_plural(count, 'row')} where the other inputs have {usual}"
            for name, count in lengths.items()
            if count != usual
        }
    return dict.fromkeys(lengths, "the batch is empty: send at least 1 row")


def _as_array(spec: TensorSpec, values: Any, max_batch: int) -> np.ndarray:
    """`values` as an array of `spec`'s dtype and rank; `_Refused` says what is wrong."""
    if isinstance(values, np.ndarray):
        _refuse_a_scalar(values, values)
    elif not isinstance(values, list) and (
        isinstance(values, str | bytes | Mapping) or not hasattr(values, "__len__")
    ):
        raise _Refused(f"must be a list of values, not a {type(values).__name__}")
    if len(values) > max_batch:
        # Refused before any value is read, so that an oversized request costs nothing.
        raise _Refused(f"{len(values)} rows exceed the limit of {max_batch}")
    array = _strings(values) if spec.dtype in STRING_DTYPES else _numbers(values, spec.dtype)
    if array.ndim != len(spec.shape):
        raise _Refused(
            f"must have rank {len(spec.shape)} (shape {list(spec.shape)}), not {array.ndim}"
        )
    for axis in range(1, array.ndim):
        if spec.shape[axis] not in (-1, array.shape[axis]):
            raise _Refused(
                f"axis {axis} must have {spec.shape[axis]} values, not {array.shape[axis]}"
            )
    return array


def _refuse_a_scalar(array: np.ndarray, values: Any) -> None:
    if array.ndim == 0:
        raise _Refused(f"must be a list of values, not a {type(values).__name__}")


def _rows(mask: np.ndarray) -> str:
    """The first few rows where `mask` holds, for an error message."""
    flagged = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    listed = ", ".join(str(row) for row in flagged[:MAX_ROWS_LISTED])
    more = "" if flagged.size <= MAX_ROWS_LISTED else f" and {flagged.size - MAX_ROWS_LISTED} more"
    return f"row{'s' if flagged.size > 1 else ''} {listed}{more}"


def _numbers(values: Any, dtype_name: str) -> np.ndarray:
    dtype = np.dtype(dtype_name)
    try:
        # numpy reads a list of numbers in C; only a mixed or odd list needs a look at each value.
        raw = values if isinstance(values, np.ndarray) else np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        raise _Refused("is ragged: nested lists of different lengths") from None
    _refuse_a_scalar(raw, values)
    if raw.dtype.kind in "US":
        raise _Refused("must hold numbers, not strings")
    if raw.dtype.kind == "O":
        raw = _objects_as_numbers(raw)
    if raw.dtype.kind not in "biuf":
        raise _Refused(f"must hold numbers, not {raw.dtype.name} values")
    if dtype.kind == "f":
        # Values beyond float32's range become infinity here, on purpose: `check_inputs`
        # refuses them with the NaNs instead of letting them reach the model.
        return raw.astype(dtype, copy=False)
    if dtype.kind in "iu":
        return _integers(raw, dtype)
    if dtype.kind == "b" and raw.dtype.kind == "b":
        return raw
    if dtype.kind == "b":
        raise _Refused("must hold booleans")
    raise ValueError(f"the signature's input dtype {dtype.name!r} is not supported")


def _objects_as_numbers(raw: np.ndarray) -> np.ndarray:
    """A mixed list (None, strings, Python ints beyond 64 bits...) read value by value."""
    flat = raw.reshape(-1)
    kinds = np.array([_number_kind(value) for value in flat], dtype=object).reshape(raw.shape)
    for kind, problem in (("null", "null"), ("string", "a string"), ("other", "not a number")):
        wrong = kinds == kind
        if wrong.any():
            raise _Refused(f"must hold numbers: {problem} at {_rows(wrong)}")
    if (kinds == "list").any():
        raise _Refused("is ragged: nested lists of different lengths")
    # Every value is a bool, int or float now; ints too large for float64 become infinity,
    # which the finiteness check then refuses.
    return np.array([_to_float(value) for value in flat], dtype=np.float64).reshape(raw.shape)


def _number_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str | bytes):
        return "string"
    if isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating):
        return "number"
    if isinstance(value, list | tuple | np.ndarray):
        return "list"
    return "other"


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


def _integers(raw: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    if raw.dtype == dtype:
        # Every value fits already: a uint8 image tensor (millions of values) is not compared.
        return raw
    if raw.dtype.kind == "f":
        fractional = ~np.isfinite(raw) | (raw != np.round(raw))
        if fractional.any():
            raise _Refused(f"must hold integers: not one at {_rows(fractional)}")
    limits = np.iinfo(dtype)
    wide = raw.astype(np.float64) if raw.dtype.kind == "f" else raw
    outside = (wide < limits.min) | (wide > limits.max)
    if outside.any():
        raise _Refused(f"must fit in {dtype.name}: out of range at {_rows(outside)}")
    return raw.astype(dtype)


def _strings(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind == "U":
        return values.astype(object)
    if isinstance(values, np.ndarray) and values.dtype.kind != "O":
        raise _Refused(f"must hold strings, not {values.dtype.name} values")
    try:
        # Every value is looked at: numpy would happily read [1, "a"] as two strings.
        array = values if isinstance(values, np.ndarray) else np.array(values, dtype=object)
    except (ValueError, TypeError):
        raise _Refused("is ragged: nested lists of different lengths") from None
    _refuse_a_scalar(array, values)
    # A null string is a missing category, which the bundle encodes as "none of the known ones",
    # as it did for the nulls of the training data.
    wrong = np.array(
        [not (value is None or isinstance(value, str)) for value in array.reshape(-1)], dtype=bool
    ).reshape(array.shape)
    if wrong.any():
        raise _Refused(f"must hold strings: not one at {_rows(wrong)}")
    return array
