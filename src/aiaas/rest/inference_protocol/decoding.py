"""A V2 inference request body, JSON or JSON with binary tensors, read into numpy arrays.

Every problem is an `InputError` naming the field at fault (see the package doc for what is
refused, and why).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from math import prod
from typing import Any, NoReturn

import numpy as np
import orjson

from aiaas.core.errors import InputError
from aiaas.core.images import image_format
from aiaas.rest.inference_protocol.json_tensors import (
    NUMPY_DTYPES,
    FlatInputs,
    from_json,
    invalid_request,
)

INFERENCE_HEADER_CONTENT_LENGTH = "Inference-Header-Content-Length"
"""Set on a request or response whose body is a JSON header followed by binary tensor data."""

MAX_BYTE_COUNT_DIGITS = 20
"""Digits of the largest byte count a header may state (2**64 has 20)."""
MAX_RANK = 8
"""More dimensions than any model here takes; the bound keeps shape checks cheap."""
MAX_DIMENSION = 2**31 - 1
"""numpy cannot shape even an empty array with a dimension far beyond this."""
MAX_ELEMENTS = 2**31 - 1
"""The most elements a tensor's dimensions may span, zero-sized dimensions left out: a bound on
what a shape may ask numpy to index, checked before anything is allocated. The body's size limit
bounds the real data far below it."""


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool
    """Send the data after the JSON header rather than in it."""


@dataclass(frozen=True)
class InferenceRequest:
    id: str | None
    columns: dict[str, np.ndarray]
    """Each input by name, of its V2 datatype and shaped as declared; not yet checked against
    the model's signature."""
    outputs: tuple[RequestedOutput, ...] | None
    """The outputs asked for, in order; None for every output of the model."""
    binary_outputs_by_default: bool
    """How to send the outputs when `outputs` is None."""
    parameters: dict[str, Any]
    """The request-level parameters, as sent."""


def parse_infer_request(
    body: bytes, *, inference_header_content_length: str | None
) -> InferenceRequest:
    """The request in `body`, or an `InputError` naming the first thing that is malformed.

    `inference_header_content_length` is the value of that HTTP header, if the request had it:
    then only that many leading bytes are JSON, and the rest is binary tensor data.

    The JSON is read by orjson, and read again by the standard library when orjson refuses it
    (a lone surrogate, a number beyond a double, invalid UTF-8) or the request is refused: the
    two differ only in how they read an integer beyond 64 bits (orjson makes it a float), and
    every refusal is told as it always was."""
    header, binary = _split_body(body, inference_header_content_length)
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError:
        return _read_request(_load_json(header), binary)
    try:
        return _read_request(document, binary)
    except InputError:
        return _read_request(_load_json(header), binary)


def _read_request(document: Any, binary: memoryview) -> InferenceRequest:
    if not isinstance(document, dict):
        raise invalid_request("body", "must be a JSON object")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise invalid_request("id", "must be a string")
    parameters = _parameters_of(document, "parameters")
    binary_by_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_by_default, bool):
        raise invalid_request("parameters", "binary_data_output must be true or false")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise invalid_request("inputs", "must be a non-empty list of input tensors")

    columns: dict[str, np.ndarray | None] = {}
    offset = 0  # binary sections are taken in input order
    flat = FlatInputs()  # the usual inputs, converted together once all are read
    try:
        for index, raw_input in enumerate(raw_inputs):
            name = flat.take(raw_input)
            array = None
            if name is None:
                name, array, offset = _parse_input(index, raw_input, binary, offset)
            if name in columns:
                raise invalid_request(name, "is given twice")
            columns[name] = array
    except InputError:
        flat.arrays()  # the first problem in input order is told: maybe an earlier input's
        raise
    converted = flat.arrays()
    if offset != len(binary):
        raise invalid_request(
            "inputs", f"{len(binary) - offset} bytes of binary data are not claimed by any input"
        )
    return InferenceRequest(
        id=request_id,
        # In input order, whichever way each was read.
        columns={
            name: converted[name] if array is None else array for name, array in columns.items()
        },
        outputs=_parse_requested_outputs(document.get("outputs"), binary_by_default),
        binary_outputs_by_default=binary_by_default,
        parameters=parameters,
    )


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    # int() alone would also take " 12", "+12" and "1_2", and refuse (with a ValueError, not
    # an InputError) more than 4,300 digits.
    if not (header_length.isascii() and header_length.isdigit()) or (
        len(header_length) > MAX_BYTE_COUNT_DIGITS
    ):
        raise invalid_request(INFERENCE_HEADER_CONTENT_LENGTH, "must be a byte count")
    length = int(header_length)
    if length > len(body):
        raise invalid_request(
            INFERENCE_HEADER_CONTENT_LENGTH, f"is {length}, but the body has {len(body)} bytes"
        )
    return body[:length], memoryview(body)[length:]


def _refuse_constant(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


def _load_json(header: bytes) -> Any:
    """The JSON document as the standard library reads it."""
    try:
        return json.loads(header.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise invalid_request("body", f"is not valid JSON: {error}") from None


def _parameters_of(owner: dict[str, Any], field: str) -> dict[str, Any]:
    parameters = owner.get("parameters", {})
    if not isinstance(parameters, dict):
        raise invalid_request(field, "parameters must be an object")
    return parameters


def _parse_input(
    index: int, raw: Any, binary: memoryview, offset: int
) -> tuple[str, np.ndarray, int]:
    """The input's name, its array, and where the next input's binary data starts."""
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise invalid_request(f"inputs[{index}]", "must be an object with a non-empty string name")
    name: str = raw["name"]
    shape = raw.get("shape")
    if not isinstance(shape, list) or any(
        type(size) is not int or not 0 <= size <= MAX_DIMENSION for size in shape
    ):
        raise invalid_request(
            name, f"shape must be a list of non-negative integers, each at most {MAX_DIMENSION}"
        )
    if len(shape) > MAX_RANK:
        raise invalid_request(name, f"shape has {len(shape)} dimensions, more than {MAX_RANK}")
    # The dimensions other than zero too: numpy refuses to shape even an empty array whose
    # dimensions multiply past what it can index, [2**31 - 1, 2**31 - 1, 0] for one.
    if prod(size or 1 for size in shape) > MAX_ELEMENTS:
        raise invalid_request(name, f"shape {shape} spans more than {MAX_ELEMENTS} elements")
    datatype = raw.get("datatype")
    if datatype == "BF16":
        raise invalid_request(name, "datatype BF16 is not supported; send FP32")
    if not isinstance(datatype, str) or datatype not in NUMPY_DTYPES:
        raise invalid_request(name, f"datatype must be one of {', '.join(NUMPY_DTYPES)}")
    parameters = _parameters_of(raw, name)
    if "shared_memory_region" in parameters:
        raise invalid_request(name, "shared memory is not supported; send the data in the body")

    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in raw:
            raise invalid_request(name, "has neither data nor parameters.binary_data_size")
        return name, from_json(name, raw["data"], tuple(shape), datatype), offset
    if "data" in raw:
        raise invalid_request(name, "has both data and parameters.binary_data_size")
    if type(size) is not int or size < 0:
        raise invalid_request(name, "binary_data_size must be a non-negative integer")
    if offset + size > len(binary):
        raise invalid_request(
            name, f"needs {size} bytes of binary data, but only {len(binary) - offset} are left"
        )
    section = binary[offset : offset + size]
    return name, _from_binary(name, section, tuple(shape), datatype), offset + size


def _from_binary(name: str, raw: memoryview, shape: tuple[int, ...], datatype: str) -> np.ndarray:
    count = prod(shape)
    dtype = NUMPY_DTYPES[datatype]
    if dtype.kind == "O":
        return np.array(_text_elements(name, raw, count), dtype=object).reshape(shape)
    if len(raw) != count * dtype.itemsize:
        raise invalid_request(
            name,
            f"shape {list(shape)} of {datatype} needs {count * dtype.itemsize} bytes, "
            f"binary_data_size is {len(raw)}",
        )
    if dtype.kind == "b" and count and np.frombuffer(raw, dtype=np.uint8).max() > 1:
        raise invalid_request(name, "BOOL binary data must be bytes 0 or 1")
    # The copy makes the array writable, native-endian, and independent of the request body.
    array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
    return array.reshape(shape)


def _text_elements(name: str, raw: memoryview, count: int) -> list[str | bytes]:
    """BYTES elements, each a 4-byte little-endian length followed by that many UTF-8 bytes, or
    the bytes of a PNG or JPEG file (which are not UTF-8), kept as bytes."""
    elements: list[str | bytes] = []
    offset = 0
    # Every element takes at least 4 bytes, so a huge `count` cannot make this loop run long.
    while len(elements) < count:
        if offset + 4 > len(raw):
            break
        (length,) = struct.unpack_from("<I", raw, offset)
        start, offset = offset + 4, offset + 4 + length
        if offset > len(raw):
            break
        try:
            elements.append(str(raw[start:offset], "utf-8"))
        except UnicodeDecodeError:
            element = bytes(raw[start:offset])
            if image_format(element) is None:
                raise invalid_request(name, f"element {len(elements)} is not valid UTF-8") from None
            # An encoded image for an image input, which decodes it (`image_requests`); a
            # text input refuses bytes as it refuses any value that is not a string.
            elements.append(element)
    if len(elements) < count:
        raise invalid_request(name, f"binary data ends after {len(elements)} of {count} elements")
    if offset != len(raw):
        raise invalid_request(
            name, f"{len(raw) - offset} bytes are left after its {count} elements"
        )
    return elements


def _parse_requested_outputs(
    raw: Any, binary_by_default: bool
) -> tuple[RequestedOutput, ...] | None:
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise invalid_request("outputs", "must be a list of objects with a name")
    requested: dict[str, RequestedOutput] = {}
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise invalid_request("outputs", f"entry {index} must be an object with a string name")
        name: str = entry["name"]
        if name in requested:
            raise invalid_request("outputs", f"asks for {name!r} twice")
        parameters = _parameters_of(entry, "outputs")
        for unsupported in ("classification", "shared_memory_region"):
            if unsupported in parameters:
                raise invalid_request("outputs", f"{name!r}: {unsupported} is not supported")
        # The output's own setting wins over the request-level default.
        binary = parameters.get("binary_data", binary_by_default)
        if not isinstance(binary, bool):
            raise invalid_request("outputs", f"{name!r}: binary_data must be true or false")
        requested[name] = RequestedOutput(name, binary)
    return tuple(requested.values())
