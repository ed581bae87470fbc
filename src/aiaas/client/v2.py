"""The KServe V2 inference protocol with its binary tensor extension, as the SDK speaks it: a
request body is a JSON header (each input's name, datatype, shape and `binary_data_size`)
followed by the raw little-endian bytes of each input in order, its header's length in the
`Inference-Header-Content-Length` header; the answer comes back the same way. BYTES elements
are each a 4-byte little-endian length followed by their UTF-8 bytes. numpy only: tritonclient
speaks the same, but is no dependency of the SDK."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

INFERENCE_HEADER_CONTENT_LENGTH = "Inference-Header-Content-Length"

_DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    **{f"UINT{bits}": np.dtype(f"uint{bits}") for bits in (8, 16, 32, 64)},
    **{f"INT{bits}": np.dtype(f"int{bits}") for bits in (8, 16, 32, 64)},
    **{f"FP{bits}": np.dtype(f"float{bits}") for bits in (16, 32, 64)},
}
_BY_NUMPY_NAME = {dtype.name: name for name, dtype in _DATATYPES.items()}


def datatype_of(dtype: str) -> str:
    """The V2 datatype of a signature dtype (`float32`, `int64`, `str`...)."""
    if dtype in ("str", "string", "object", "bytes"):
        return "BYTES"
    return _BY_NUMPY_NAME[np.dtype(dtype).name]


def numpy_dtype_of(datatype: str) -> np.dtype[Any]:
    """The numpy dtype a V2 datatype's tensors are built with (object for BYTES)."""
    return np.dtype(object) if datatype == "BYTES" else _DATATYPES[datatype]


def tensor_of(values: Any, spec: Mapping[str, Any]) -> tuple[np.ndarray, str]:
    """An input's values as the tensor and V2 datatype to send for its signature `spec`. An
    image input (rank 4) also takes PNG or JPEG files, one per row, sent as BYTES [N]: the
    server decodes them and fits them to the model's size."""
    if len(spec["shape"]) == 4 and _are_files(values):
        return np.array(list(values), dtype=object), "BYTES"
    datatype = datatype_of(spec["dtype"])
    array = np.asarray(values, dtype=numpy_dtype_of(datatype))
    if datatype == "BYTES":
        array = np.array([str(value) for value in array.ravel()], dtype=object)
    return array, datatype


def _are_files(values: Any) -> bool:
    if isinstance(values, np.ndarray) and values.dtype != object:
        return False
    return (
        isinstance(values, list | tuple | np.ndarray)
        and len(values) > 0
        and all(isinstance(value, bytes) for value in values)
    )


def _binary_of(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for element in array.ravel().tolist():
            encoded = element if isinstance(element, bytes) else str(element).encode()
            parts += [struct.pack("<I", len(encoded)), encoded]
        return b"".join(parts)
    dtype = _DATATYPES[datatype].newbyteorder("<")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def encode_request(
    inputs: Mapping[str, tuple[np.ndarray, str]], outputs: Sequence[str]
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an infer request for `inputs` (name -> (array, V2 datatype)),
    asking for `outputs` as binary tensors."""
    tensors, sections = [], []
    for name, (array, datatype) in inputs.items():
        section = _binary_of(array, datatype)
        tensors.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(section)},
            }
        )
        sections.append(section)
    document = {
        "inputs": tensors,
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
    }
    header = json.dumps(document, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        INFERENCE_HEADER_CONTENT_LENGTH: str(len(header)),
    }
    return header + b"".join(sections), headers


def decode_response(body: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    """The output tensors of an infer answer, by name; JSON-only answers are read too."""
    size = len(body) if header_length is None else int(header_length)
    document = json.loads(body[:size])
    raw = memoryview(body)[size:]
    offset = 0
    arrays: dict[str, np.ndarray] = {}
    for tensor in document["outputs"]:
        shape = tuple(tensor["shape"])
        datatype = tensor["datatype"]
        binary_size = (tensor.get("parameters") or {}).get("binary_data_size")
        if binary_size is None:
            data = tensor["data"]
            arrays[tensor["name"]] = np.array(data, dtype=numpy_dtype_of(datatype)).reshape(shape)
            continue
        section = raw[offset : offset + binary_size]
        offset += binary_size
        arrays[tensor["name"]] = _from_binary(section, shape, datatype)
    return arrays


def _from_binary(section: memoryview, shape: tuple[int, ...], datatype: str) -> np.ndarray:
    if datatype != "BYTES":
        dtype = _DATATYPES[datatype]
        return np.frombuffer(section, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    elements: list[str] = []
    offset = 0
    while offset < len(section):
        (length,) = struct.unpack_from("<I", section, offset)
        elements.append(str(section[offset + 4 : offset + 4 + length], "utf-8"))
        offset += 4 + length
    return np.array(elements, dtype=object).reshape(shape)
