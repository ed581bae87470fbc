"""V2 tensors given as JSON data (`"data": [...]`), read into numpy arrays.

Most requests send small inputs this way, one tensor per feature, and a numpy call per input
cost more than everything else in reading a request. So `FlatInputs` keeps the usual input (one
dimension, a list of the declared length, a numeric datatype, no parameters) aside while the
request is read, and converts each datatype's inputs in one call, checking their values' types
and finiteness over all of them at once. Any refusal is found again input by input, by the same
`from_json` that reads every other JSON tensor, so that it is told exactly as before, and first
in input order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from math import prod
from typing import Any

import numpy as np

from aiaas.core.errors import InputError

NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    **{f"UINT{bits}": np.dtype(f"uint{bits}") for bits in (8, 16, 32, 64)},
    **{f"INT{bits}": np.dtype(f"int{bits}") for bits in (8, 16, 32, 64)},
    **{f"FP{bits}": np.dtype(f"float{bits}") for bits in (16, 32, 64)},
    "BYTES": np.dtype(object),
}
"""Each supported V2 datatype and the numpy dtype its tensors decode to."""

# The Python types that `json` gives for the JSON values each kind of tensor accepts.
_JSON_TYPES_BY_KIND: dict[str, tuple[frozenset[type], str]] = {
    "b": (frozenset({bool}), "booleans"),
    "i": (frozenset({int}), "integers"),
    "u": (frozenset({int}), "integers"),
    "f": (frozenset({int, float}), "numbers"),
    "O": (frozenset({str}), "strings"),
}
_JSON_TYPE_NAMES: dict[type, str] = {bool: "booleans", int: "integers", float: "numbers"}
_JSON_TYPE_NAMES |= {str: "strings", type(None): "null", dict: "objects"}


def invalid_request(field: str, problem: str) -> InputError:
    return InputError(
        f"invalid inference request: {field}: {problem}", field_errors={field: problem}
    )


@dataclass
class FlatInputs:
    """The flat numeric inputs of one request, converted together by `arrays`."""

    waiting: list[tuple[str, list[Any], str]] = field(default_factory=list)
    """(name, data, datatype) of each, in input order."""

    def take(self, raw: Any) -> str | None:
        """The input's name if it is flat and numeric and otherwise well formed (every check of
        the request's reader that it would pass, in a few dictionary reads): its values wait
        for `arrays`. None for any other input, for the reader to read and judge."""
        if type(raw) is not dict or ("parameters" in raw and raw["parameters"] != {}):
            return None
        name, shape, data, datatype = (
            raw.get("name"),
            raw.get("shape"),
            raw.get("data"),
            raw.get("datatype"),
        )
        if type(name) is not str or not name or type(shape) is not list or len(shape) != 1:
            return None
        if type(data) is not list or type(shape[0]) is not int or len(data) != shape[0]:
            return None
        if type(datatype) is not str or datatype not in _NUMERIC:
            return None
        self.waiting.append((name, data, datatype))
        return name

    def arrays(self) -> dict[str, np.ndarray]:
        """The waiting inputs' arrays, each datatype's in one numpy call; an `InputError` for
        the first one in input order that `from_json` refuses."""
        by_datatype: dict[str, list[tuple[str, list[Any], str]]] = {}
        for waiting in self.waiting:
            by_datatype.setdefault(waiting[2], []).append(waiting)
        columns: dict[str, np.ndarray] = {}
        for datatype, inputs in by_datatype.items():
            together = _numbers_at_once(
                chain.from_iterable(data for _, data, _ in inputs), datatype
            )
            if together is None:  # one of them is refused: which one, as `from_json` says
                return {
                    name: from_json(name, data, (len(data),), dtype)
                    for name, data, dtype in self.waiting
                }
            start = 0
            for name, data, _ in inputs:  # views of the one array, each its own rows
                columns[name] = together[start : start + len(data)]
                start += len(data)
        return columns


_NUMERIC = frozenset(name for name, dtype in NUMPY_DTYPES.items() if dtype.kind != "O")


def _numbers_at_once(values: Any, datatype: str) -> np.ndarray | None:
    """`values` as one array of `datatype`, if `from_json` would take every one of them."""
    values = list(values)
    dtype = NUMPY_DTYPES[datatype]
    if not set(map(type, values)) <= _JSON_TYPES_BY_KIND[dtype.kind][0]:
        return None
    try:
        with np.errstate(over="ignore"):  # overflow to infinity is refused just below
            array = np.asarray(values, dtype=dtype)
    except OverflowError:
        return None
    if dtype.kind == "f" and not np.isfinite(array).all():
        return None
    return array


def from_json(name: str, data: Any, shape: tuple[int, ...], datatype: str) -> np.ndarray:
    if not isinstance(data, list):
        raise invalid_request(name, "data must be a list")
    values = _flatten(name, data, shape)
    count = prod(shape)
    if len(values) != count:
        raise invalid_request(
            name, f"shape {list(shape)} needs {count} values, data has {len(values)}"
        )
    dtype = NUMPY_DTYPES[datatype]
    allowed, description = _JSON_TYPES_BY_KIND[dtype.kind]
    # One pass in C over the values rather than a Python loop: this runs for every request.
    found = set(map(type, values))
    if list in found:
        raise invalid_request(name, f"data is nested deeper than shape {list(shape)}")
    if not found <= allowed:
        found_names = ", ".join(sorted(_JSON_TYPE_NAMES[kind] for kind in found - allowed))
        raise invalid_request(name, f"{datatype} data must be {description}, not {found_names}")
    if dtype.kind == "O":
        try:
            "".join(values).encode("utf-8")
        except UnicodeEncodeError:
            raise invalid_request(name, "has a string that is not valid Unicode") from None
        return np.array(values, dtype=object).reshape(shape)
    try:
        with np.errstate(over="ignore"):  # overflow to infinity is refused just below
            array = np.asarray(values, dtype=dtype)
    except OverflowError:  # an integer out of range: numpy refuses rather than wraps
        raise invalid_request(name, f"has a value out of range for {datatype}") from None
    if dtype.kind == "f" and not np.isfinite(array).all():
        raise invalid_request(name, f"has a value out of range for {datatype}")
    return array.reshape(shape)


def _flatten(name: str, data: list[Any], shape: tuple[int, ...]) -> list[Any]:
    """The values of flat or nested `data` in row-major order; nested data must follow `shape`
    exactly, so that a ragged list is not read as some other shape."""
    if not shape or list not in set(map(type, data)):
        return data
    if len(data) != shape[0]:
        raise invalid_request(name, f"nested data does not match shape {list(shape)}")
    values = data
    for depth, size in enumerate(shape[1:], start=1):
        # Checking every list's length, not only the total, so that [[1, 2, 3], [4]] is not
        # read as shape [2, 2].
        if values and set(map(type, values)) != {list}:
            raise invalid_request(name, f"nested data mixes lists and values at depth {depth}")
        if set(map(len, values)) - {size}:
            raise invalid_request(name, f"nested data does not match shape {list(shape)}")
        values = list(chain.from_iterable(values))
    return values
