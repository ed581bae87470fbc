"""V2 response bodies: a prediction's outputs (JSON, or JSON followed by binary tensors), and
the server and model metadata."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from aiaas.core.signatures import ModelSignature, TensorSpec
from aiaas.rest.inference_protocol.decoding import (
    INFERENCE_HEADER_CONTENT_LENGTH,
    InferenceRequest,
    RequestedOutput,
)
from aiaas.rest.inference_protocol.json_tensors import NUMPY_DTYPES, invalid_request

_V2_BY_NUMPY_NAME = {dtype.name: name for name, dtype in NUMPY_DTYPES.items() if name != "BYTES"}


def check_requested_outputs(request: InferenceRequest, signature: ModelSignature) -> None:
    """An `InputError` if the request asks for an output the model does not have; worth calling
    before running the model, since `encode_infer_response` would refuse only afterwards."""
    known = [spec.name for spec in signature.outputs]
    unknown = [output.name for output in request.outputs or () if output.name not in known]
    if unknown:
        raise invalid_request(
            "outputs",
            f"the model has no output {', '.join(map(repr, unknown))}; "
            f"its outputs are {', '.join(map(repr, known))}",
        )


def encode_infer_response(
    *,
    model_name: str,
    model_version: str | None,
    request: InferenceRequest,
    outputs: Mapping[str, np.ndarray],
    signature: ModelSignature,
) -> tuple[bytes, dict[str, str]]:
    """The response body for `outputs` (every output the request asks for, by name), and the
    headers to send with it: its content type and, when some output is binary, the length of
    the JSON header."""
    check_requested_outputs(request, signature)
    wanted = request.outputs
    if wanted is None:
        wanted = tuple(
            RequestedOutput(spec.name, request.binary_outputs_by_default)
            for spec in signature.outputs
        )
    tensors: list[dict[str, Any]] = []
    binary_sections: list[bytes] = []
    for requested in wanted:
        array = np.asarray(outputs[requested.name])
        tensor: dict[str, Any] = {
            "name": requested.name,
            "datatype": v2_datatype(array.dtype),
            "shape": list(array.shape),
        }
        if requested.binary:
            section = _binary_of(array)
            tensor["parameters"] = {"binary_data_size": len(section)}
            binary_sections.append(section)
        else:
            tensor["data"] = _json_values_of(array)
        tensors.append(tensor)

    document: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        document["model_version"] = model_version
    if request.id is not None:
        document["id"] = request.id
    document["outputs"] = tensors
    header = _json_header(document)
    if not binary_sections:
        return header, {"content-type": "application/json"}
    return header + b"".join(binary_sections), {
        "content-type": "application/octet-stream",
        INFERENCE_HEADER_CONTENT_LENGTH.lower(): str(len(header)),
    }


def _json_header(document: dict[str, Any]) -> bytes:
    """The document as compact, all-ASCII JSON, as the standard library writes it with
    `ensure_ascii`: orjson's bytes when they are ASCII, which they are unless a name or the
    request's id holds other characters; then, or when orjson refuses (a lone surrogate, an
    integer beyond 64 bits), the standard library's, with its `\\u` escapes. orjson writes
    an exponent without padding (`1e-7` where the standard library writes `1e-07`), which
    reads back the same. Non-finite floats never reach either: `_json_values_of` sends them
    as null."""
    try:
        header = orjson.dumps(document)
    except TypeError:
        header = b""
    if header and header.isascii():
        return header
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def model_metadata(
    name: str,
    versions: Sequence[str],
    platform: str,
    signature: ModelSignature,
    *,
    max_batch_size: int,
) -> dict[str, Any]:
    """The V2 model metadata response. Shapes are the signature's, whose first dimension is
    the rows (-1: any number); `max_batch_size` is an addition of ours, the rows of one batch
    (a request may have more: they are split into batches)."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [_tensor_metadata(spec) for spec in signature.inputs],
        "outputs": [_tensor_metadata(spec) for spec in signature.outputs],
        "max_batch_size": max_batch_size,
    }


def model_config(
    name: str,
    platform: str,
    signature: ModelSignature,
    *,
    max_batch_size: int,
    max_wait_ms: float,
    max_request_rows: int,
) -> dict[str, Any]:
    """The model as Triton's model configuration (`GET .../config`, tritonclient's
    `get_model_config`): the fields a client reads, in Triton's JSON form. As Triton's, a
    batching model's `dims` leave out the first dimension, the rows: an input of shape [-1] has
    dims [], one of [-1, 3] has [3]. `parameters.max_request_rows` is ours: the most rows one
    request may have (Triton refuses more than `max_batch_size`; here they are split)."""
    return {
        "name": name,
        "platform": platform,
        "max_batch_size": max_batch_size,
        "input": [_tensor_config(spec) for spec in signature.inputs],
        "output": [_tensor_config(spec) for spec in signature.outputs],
        "dynamic_batching": {"max_queue_delay_microseconds": round(max_wait_ms * 1000)},
        "parameters": {"max_request_rows": {"string_value": str(max_request_rows)}},
    }


def server_metadata(version: str) -> dict[str, Any]:
    """The V2 server metadata response."""
    return {"name": "aiaas", "version": version, "extensions": ["binary_tensor_data"]}


def v2_datatype(dtype: npt.DTypeLike) -> str:
    """The V2 datatype of a numpy dtype or of a signature dtype (where `str` means text)."""
    if isinstance(dtype, str) and dtype == "str":
        return "BYTES"
    numpy_dtype = np.dtype(dtype)
    if numpy_dtype.kind in "OUS":
        return "BYTES"
    try:
        return _V2_BY_NUMPY_NAME[numpy_dtype.name]
    except KeyError:
        raise ValueError(f"no V2 datatype for numpy dtype {numpy_dtype}") from None


def _json_values_of(array: np.ndarray) -> list[Any]:
    flat = array.ravel()
    values: list[Any] = flat.tolist()  # in C, far faster than converting element by element
    if flat.dtype.kind == "f":
        for index in np.flatnonzero(~np.isfinite(flat)).tolist():
            values[index] = None
    return values


def _binary_of(array: np.ndarray) -> bytes:
    if array.dtype.kind in "OUS":
        encoded = [
            element.encode() if isinstance(element, str) else bytes(element)
            for element in array.ravel().tolist()
        ]
        return b"".join(chain.from_iterable((struct.pack("<I", len(e)), e) for e in encoded))
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": v2_datatype(spec.dtype), "shape": list(spec.shape)}


def _tensor_config(spec: TensorSpec) -> dict[str, Any]:
    datatype = v2_datatype(spec.dtype)
    # Triton's configuration names V2's BYTES "STRING"; every other type as V2 does.
    return {
        "name": spec.name,
        "data_type": f"TYPE_{'STRING' if datatype == 'BYTES' else datatype}",
        "dims": list(spec.shape[1:]),
    }
