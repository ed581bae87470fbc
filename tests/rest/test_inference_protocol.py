"""The Open Inference Protocol codec against tritonclient, a client not written here, and every
way a request can be malformed."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aiaas.core.errors import InputError
from aiaas.core.signatures import ModelSignature, TensorSpec
from aiaas.rest.inference_protocol import (
    MAX_RANK,
    InferenceRequest,
    RequestedOutput,
    check_requested_outputs,
    encode_infer_response,
    model_config,
    model_metadata,
    parse_infer_request,
    server_metadata,
    v2_datatype,
)

SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 7, 255], [1, 2, 3]], dtype=np.uint8),
    "UINT16": np.array([[0, 7, 65535], [1, 2, 3]], dtype=np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1], [1, 2, 3]], dtype=np.uint32),
    "UINT64": np.array([[0, 7, 2**64 - 1], [1, 2, 3]], dtype=np.uint64),
    "INT8": np.array([[-128, 0, 127], [1, -2, 3]], dtype=np.int8),
    "INT16": np.array([[-32768, 0, 32767], [1, -2, 3]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1], [1, -2, 3]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1], [1, -2, 3]], dtype=np.int64),
    "FP16": np.array([[-1.5, 0, 65504], [0.099976, 2, 3]], dtype=np.float16),
    "FP32": np.array([[-1.5, 0, 3.4e38], [0.1, 1e-40, 3]], dtype=np.float32),
    "FP64": np.array([[-1.5, 0, 1.7e308], [0.1, 5e-324, 3]], dtype=np.float64),
    "BYTES": np.array([["paris", "", "zürich"], ["東京", "a\x00b", "lima"]], dtype=object),
}
SIGNATURE = ModelSignature(
    inputs=(
        TensorSpec(name="amount", dtype="float32", shape=(-1,)),
        TensorSpec(name="city", dtype="str", shape=(-1,)),
    ),
    outputs=(
        TensorSpec(name="label", dtype="str", shape=(-1,)),
        TensorSpec(name="probabilities", dtype="float32", shape=(-1, 2)),
    ),
)
OUTPUTS = {
    "label": np.array(["yes", "no"], dtype=object),
    "probabilities": np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32),
}


def triton_body(
    arrays: dict[str, np.ndarray],
    *,
    binary: bool,
    outputs: list[triton.InferRequestedOutput] | None = None,
    request_id: str = "",
) -> tuple[bytes, str | None]:
    """The body and Inference-Header-Content-Length that tritonclient would send."""
    inputs = []
    for name, array in arrays.items():
        infer_input = triton.InferInput(name, list(array.shape), v2_datatype(array.dtype))
        inputs.append(infer_input.set_data_from_numpy(array, binary_data=binary))
    body, json_size = triton.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, request_id=request_id
    )
    return body, None if json_size is None else str(json_size)


def parse(arrays: dict[str, np.ndarray], **options: Any) -> InferenceRequest:
    body, header_length = triton_body(arrays, **options)
    return parse_infer_request(body, inference_header_content_length=header_length)


def as_text(array: np.ndarray) -> np.ndarray:
    """tritonclient reads binary BYTES back as `bytes`; this codec sends and takes `str`."""
    if array.dtype != object:
        return array
    flat = [e.decode() if isinstance(e, bytes) else e for e in array.ravel().tolist()]
    return np.array(flat, dtype=object).reshape(array.shape)


def triton_result(body: bytes, headers: dict[str, str]) -> Any:
    header_length = headers.get("inference-header-content-length")
    return triton.InferenceServerClient.parse_response_body(
        body, header_length=None if header_length is None else int(header_length)
    )


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_every_datatype_reads_as_tritonclient_sends_it(datatype: str, binary: bool) -> None:
    request = parse({"x": SAMPLES[datatype], "y": SAMPLES["FP32"]}, binary=binary)
    assert_same(request.columns["x"], SAMPLES[datatype])
    assert_same(request.columns["y"], SAMPLES["FP32"])
    assert request.columns["x"].flags.writeable


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_every_datatype_is_read_back_by_tritonclient(datatype: str, binary: bool) -> None:
    signature = ModelSignature(
        inputs=(), outputs=(TensorSpec(name="out", dtype="float32", shape=(-1,)),)
    )
    request = InferenceRequest(
        id=None,
        columns={},
        outputs=(RequestedOutput("out", binary),),
        binary_outputs_by_default=False,
        parameters={},
    )
    body, headers = encode_infer_response(
        model_name="m",
        model_version="3",
        request=request,
        outputs={"out": SAMPLES[datatype]},
        signature=signature,
    )
    assert ("inference-header-content-length" in headers) == binary
    result = triton_result(body, headers)
    assert_same(as_text(result.as_numpy("out")), SAMPLES[datatype])
    assert result.get_response()["model_version"] == "3"


def test_tritonclient_defaults_get_binary_outputs_in_signature_order() -> None:
    amounts = np.array([1.5, 2.5], dtype=np.float32)
    cities = np.array(["paris", "lima"], dtype=object)
    request = parse({"amount": amounts, "city": cities}, binary=True, request_id="r-7")
    assert request.id == "r-7"
    assert request.outputs is None and request.binary_outputs_by_default
    body, headers = encode_infer_response(
        model_name="churn",
        model_version=None,
        request=request,
        outputs=OUTPUTS,
        signature=SIGNATURE,
    )
    assert headers["content-type"] == "application/octet-stream"
    result = triton_result(body, headers)
    response = result.get_response()
    assert response["id"] == "r-7" and "model_version" not in response
    assert [output["name"] for output in response["outputs"]] == ["label", "probabilities"]
    assert all("data" not in output for output in response["outputs"])
    assert list(as_text(result.as_numpy("label"))) == ["yes", "no"]
    assert_same(result.as_numpy("probabilities"), OUTPUTS["probabilities"])


def test_each_requested_output_says_whether_it_is_binary() -> None:
    requested = [
        triton.InferRequestedOutput("probabilities", binary_data=False),
        triton.InferRequestedOutput("label", binary_data=True),
    ]
    request = parse({"amount": np.ones(2, dtype=np.float32)}, binary=False, outputs=requested)
    assert request.outputs == (
        RequestedOutput("probabilities", binary=False),
        RequestedOutput("label", binary=True),
    )
    body, headers = encode_infer_response(
        model_name="m", model_version=None, request=request, outputs=OUTPUTS, signature=SIGNATURE
    )
    result = triton_result(body, headers)
    probabilities, label = result.get_response()["outputs"]
    assert probabilities["data"] == [0.25, 0.75, 0.5, 0.5]
    assert label["parameters"] == {"binary_data_size": 4 + 3 + 4 + 2}
    assert list(as_text(result.as_numpy("label"))) == ["yes", "no"]


def test_an_output_without_binary_data_follows_the_request_default() -> None:
    document = {
        "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
        "outputs": [{"name": "label"}, {"name": "value", "parameters": {"binary_data": False}}],
        "parameters": {"binary_data_output": True},
    }
    request = parse_infer_request(
        json.dumps(document).encode(), inference_header_content_length=None
    )
    assert request.outputs == (RequestedOutput("label", True), RequestedOutput("value", False))


def test_a_json_only_response_is_plain_json_and_has_no_header_length() -> None:
    request = InferenceRequest(
        id=None, columns={}, outputs=None, binary_outputs_by_default=False, parameters={}
    )
    body, headers = encode_infer_response(
        model_name="m", model_version="1", request=request, outputs=OUTPUTS, signature=SIGNATURE
    )
    assert headers == {"content-type": "application/json"}
    assert json.loads(body)["outputs"][0] == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [2],
        "data": ["yes", "no"],
    }


def test_non_finite_outputs_are_null_in_json_and_exact_in_binary() -> None:
    signature = ModelSignature(
        inputs=(), outputs=(TensorSpec(name="value", dtype="float32", shape=(-1,)),)
    )
    values = np.array([1.0, math.nan, math.inf, -math.inf], dtype=np.float32)
    for binary in (False, True):
        request = InferenceRequest(
            id=None, columns={}, outputs=None, binary_outputs_by_default=binary, parameters={}
        )
        body, headers = encode_infer_response(
            model_name="m",
            model_version=None,
            request=request,
            outputs={"value": values},
            signature=signature,
        )
        read_back = triton_result(body, headers).as_numpy("value")
        if binary:
            np.testing.assert_array_equal(read_back, values)
        else:
            assert json.loads(body)["outputs"][0]["data"] == [1.0, None, None, None]
            np.testing.assert_array_equal(read_back, [1.0, math.nan, math.nan, math.nan])


def test_unknown_requested_outputs_are_refused() -> None:
    request = parse(
        {"amount": np.ones(1, dtype=np.float32)},
        binary=False,
        outputs=[triton.InferRequestedOutput("labels")],
    )
    with pytest.raises(InputError) as caught:
        check_requested_outputs(request, SIGNATURE)
    assert "'labels'" in caught.value.field_errors["outputs"]
    with pytest.raises(InputError):
        encode_infer_response(
            model_name="m",
            model_version=None,
            request=request,
            outputs=OUTPUTS,
            signature=SIGNATURE,
        )


def test_nested_and_flat_data_read_the_same() -> None:
    nested = {
        "name": "x",
        "shape": [2, 2, 2],
        "datatype": "INT32",
        "data": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]],
    }
    flat = {**nested, "data": [1, 2, 3, 4, 5, 6, 7, 8]}
    for tensor in (nested, flat):
        body = json.dumps({"inputs": [tensor]}).encode()
        array = parse_infer_request(body, inference_header_content_length=None).columns["x"]
        assert_same(array, np.arange(1, 9, dtype=np.int32).reshape(2, 2, 2))


def test_empty_tensors_read_in_json_and_binary() -> None:
    for datatype in ("FP32", "BYTES"):
        empty = np.empty((0, 3), dtype=SAMPLES[datatype].dtype)
        for binary in (False, True):
            assert_same(parse({"x": empty}, binary=binary).columns["x"], empty)


def test_request_parameters_are_kept() -> None:
    document = {
        "id": "abc",
        "parameters": {"priority": 2},
        "inputs": [{"name": "x", "shape": [1], "datatype": "BOOL", "data": [True]}],
    }
    request = parse_infer_request(
        json.dumps(document).encode(), inference_header_content_length=None
    )
    assert request.parameters == {"priority": 2}
    assert request.id == "abc" and not request.binary_outputs_by_default


def tensor(**fields: Any) -> dict[str, Any]:
    return {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0], **fields}


def body_of(*tensors: dict[str, Any], **fields: Any) -> bytes:
    return json.dumps({"inputs": list(tensors), **fields}).encode()


def binary_body(tensors: list[dict[str, Any]], binary: bytes) -> tuple[bytes, str]:
    header = body_of(*tensors)
    return header + binary, str(len(header))


BOOLEAN_BYTES = {
    "name": "x",
    "shape": [2],
    "datatype": "BOOL",
    "parameters": {"binary_data_size": 2},
}


def text_body(binary: bytes) -> tuple[bytes, str]:
    """Two BYTES elements sent as `binary`, whose binary_data_size is right."""
    text = {**BOOLEAN_BYTES, "datatype": "BYTES", "parameters": {"binary_data_size": len(binary)}}
    return binary_body([text], binary)


MALFORMED: list[tuple[str, bytes, str | None, str, str]] = [
    # (case, body, Inference-Header-Content-Length, field, words in the problem)
    ("not json", b"{inputs", None, "body", "not valid JSON"),
    ("not utf-8", b'{"inputs": "\xff"}', None, "body", "not valid JSON"),
    ("nan token", b'{"inputs": [{"data": [NaN]}]}', None, "body", "NaN is not JSON"),
    ("too deep", b"[" * 100_000, None, "body", "not valid JSON"),
    ("not an object", b"[1]", None, "body", "JSON object"),
    ("no inputs", b"{}", None, "inputs", "non-empty list"),
    ("empty inputs", body_of(), None, "inputs", "non-empty list"),
    ("id not a string", body_of(tensor(), id=5), None, "id", "string"),
    ("parameters not an object", body_of(tensor(), parameters=[]), None, "parameters", "object"),
    ("no name", body_of({"shape": [1]}), None, "inputs[0]", "name"),
    ("duplicate name", body_of(tensor(), tensor()), None, "x", "twice"),
    ("unknown datatype", body_of(tensor(datatype="FLOAT")), None, "x", "datatype must be"),
    ("bf16", body_of(tensor(datatype="BF16")), None, "x", "BF16 is not supported"),
    ("negative shape", body_of(tensor(shape=[-1])), None, "x", "non-negative"),
    ("shape not a list", body_of(tensor(shape=2)), None, "x", "non-negative"),
    ("boolean in shape", body_of(tensor(shape=[True, 2])), None, "x", "non-negative"),
    (
        "rank too high",
        body_of(tensor(shape=[1] * (MAX_RANK + 1), data=[1])),
        None,
        "x",
        "dimensions",
    ),
    ("count mismatch", body_of(tensor(shape=[3])), None, "x", "needs 3 values, data has 2"),
    ("no data", body_of({"name": "x", "shape": [1], "datatype": "FP32"}), None, "x", "neither"),
    ("data not a list", body_of(tensor(data=1.0)), None, "x", "must be a list"),
    ("string for a number", body_of(tensor(data=[1.0, "2"])), None, "x", "numbers, not strings"),
    ("boolean for a number", body_of(tensor(data=[1.0, True])), None, "x", "not booleans"),
    ("null for a number", body_of(tensor(data=[1.0, None])), None, "x", "not null"),
    (
        "float for an integer",
        body_of(tensor(datatype="INT64", data=[1, 2.5])),
        None,
        "x",
        "integers",
    ),
    ("number for a boolean", body_of(tensor(datatype="BOOL", data=[1, 0])), None, "x", "booleans"),
    ("number for text", body_of(tensor(datatype="BYTES", data=["a", 1])), None, "x", "strings"),
    (
        "lone surrogate",
        body_of(tensor(datatype="BYTES", data=["a", "\ud800"])),
        None,
        "x",
        "Unicode",
    ),
    ("integer out of range", body_of(tensor(datatype="UINT8", data=[1, 256])), None, "x", "range"),
    ("negative unsigned", body_of(tensor(datatype="UINT64", data=[1, -1])), None, "x", "range"),
    ("float out of range", body_of(tensor(datatype="FP16", data=[1, 70000])), None, "x", "range"),
    ("ragged", body_of(tensor(shape=[2, 2], data=[[1, 2, 3], [4]])), None, "x", "does not match"),
    ("wrong outer length", body_of(tensor(shape=[2, 1], data=[[1]])), None, "x", "does not match"),
    ("mixed nesting", body_of(tensor(shape=[2, 1], data=[[1], 2])), None, "x", "mixes"),
    ("nested too deep", body_of(tensor(shape=[2], data=[[1], [2]])), None, "x", "deeper"),
    ("bad header length", b"{}", "2 ", "Inference-Header-Content-Length", "byte count"),
    ("header past body", b"{}", "3", "Inference-Header-Content-Length", "body has 2 bytes"),
    (
        "data and binary",
        body_of(tensor(parameters={"binary_data_size": 0})),
        None,
        "x",
        "both data and",
    ),
    ("binary missing", *binary_body([BOOLEAN_BYTES], b"\x01"), "x", "only 1 are left"),
    ("binary left over", *binary_body([BOOLEAN_BYTES], b"\x01\x00\x00"), "inputs", "1 bytes"),
    ("binary without header", body_of(BOOLEAN_BYTES), None, "x", "only 0 are left"),
    (
        "binary wrong size",
        *binary_body(
            [{**BOOLEAN_BYTES, "shape": [3], "parameters": {"binary_data_size": 2}}], b"\x01\x00"
        ),
        "x",
        "needs 3 bytes",
    ),
    ("binary bool not 0/1", *binary_body([BOOLEAN_BYTES], b"\x01\x02"), "x", "0 or 1"),
    (
        "binary size negative",
        body_of({**BOOLEAN_BYTES, "parameters": {"binary_data_size": -1}}),
        None,
        "x",
        "non-negative",
    ),
    (
        "bytes invalid utf-8",
        *text_body(b"\x01\x00\x00\x00\xff\x01\x00\x00\x00a"),
        "x",
        "element 0 is not valid UTF-8",
    ),
    (
        "bytes element overruns",
        *text_body(b"\x01\x00\x00\x00a\x09\x00\x00\x00"),
        "x",
        "ends after 1 of 2",
    ),
    (
        "bytes too few",
        *text_body(b"\x01\x00\x00\x00a"),
        "x",
        "ends after 1 of 2",
    ),
    (
        "bytes left over",
        *text_body(b"\x01\x00\x00\x00a\x01\x00\x00\x00bc"),
        "x",
        "1 bytes are left",
    ),
    (
        "shared memory",
        body_of(tensor(parameters={"shared_memory_region": "r"})),
        None,
        "x",
        "shared memory",
    ),
    ("outputs not a list", body_of(tensor(), outputs={}), None, "outputs", "list"),
    ("output without name", body_of(tensor(), outputs=[{}]), None, "outputs", "entry 0"),
    (
        "duplicate output",
        body_of(tensor(), outputs=[{"name": "a"}, {"name": "a"}]),
        None,
        "outputs",
        "twice",
    ),
    (
        "classification",
        body_of(tensor(), outputs=[{"name": "a", "parameters": {"classification": 2}}]),
        None,
        "outputs",
        "classification",
    ),
    (
        "binary_data not a bool",
        body_of(tensor(), outputs=[{"name": "a", "parameters": {"binary_data": 1}}]),
        None,
        "outputs",
        "true or false",
    ),
    (
        "zero-size shape whose other dimensions overflow, JSON",
        body_of(tensor(shape=[2**31 - 1, 2**31 - 1, 0], data=[])),
        None,
        "x",
        "more than",
    ),
    (
        "zero-size shape whose other dimensions overflow, binary",
        *binary_body(
            [
                {
                    "name": "x",
                    "shape": [2**31 - 1, 2**31 - 1, 0],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 0},
                }
            ],
            b"",
        ),
        "x",
        "more than",
    ),
    (
        "binary_data_output not a bool",
        body_of(tensor(), parameters={"binary_data_output": "yes"}),
        None,
        "parameters",
        "true or false",
    ),
]


@pytest.mark.parametrize(
    ("body", "header_length", "field", "words"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_requests_are_refused_naming_the_problem(
    body: bytes, header_length: str | None, field: str, words: str
) -> None:
    with pytest.raises(InputError) as caught:
        parse_infer_request(body, inference_header_content_length=header_length)
    assert list(caught.value.field_errors) == [field]
    assert words in caught.value.field_errors[field]


def test_the_well_formed_versions_of_the_malformed_cases_are_accepted() -> None:
    """Guards the table above: each refusal must come from what the case changed."""
    ok_binary = binary_body([BOOLEAN_BYTES], b"\x01\x00")
    assert parse_infer_request(ok_binary[0], inference_header_content_length=ok_binary[1])
    text = text_body(b"\x01\x00\x00\x00a\x01\x00\x00\x00b")
    request = parse_infer_request(text[0], inference_header_content_length=text[1])
    assert request.columns["x"].tolist() == ["a", "b"]
    for good in (
        tensor(),
        tensor(shape=[1] * MAX_RANK, data=[1]),
        tensor(shape=[2, 1], data=[[1], [2]]),
    ):
        assert parse_infer_request(body_of(good), inference_header_content_length=None)


FINITE_ARRAYS = st.one_of(
    [
        hnp.arrays(
            dtype,
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
            elements=elements,
        )
        for dtype, elements in [
            (np.float32, st.floats(width=32, allow_nan=False, allow_infinity=False)),
            (np.float64, st.floats(allow_nan=False, allow_infinity=False)),
            (np.int64, None),
            (np.uint8, None),
            (np.bool_, None),
            (object, st.text()),
        ]
    ]
)


@given(array=FINITE_ARRAYS, binary=st.booleans())
def test_any_tensor_goes_there_and_back_through_tritonclient(
    array: np.ndarray, binary: bool
) -> None:
    assert_same(parse({"x": array}, binary=binary).columns["x"], array)
    signature = ModelSignature(
        inputs=(), outputs=(TensorSpec(name="y", dtype="float32", shape=(-1,)),)
    )
    request = InferenceRequest(
        id=None, columns={}, outputs=None, binary_outputs_by_default=binary, parameters={}
    )
    body, headers = encode_infer_response(
        model_name="m",
        model_version=None,
        request=request,
        outputs={"y": array},
        signature=signature,
    )
    assert_same(as_text(triton_result(body, headers).as_numpy("y")), array)


def test_metadata_describes_the_model_in_v2_terms() -> None:
    assert model_metadata("churn", ["1", "2"], "flax-nnx", SIGNATURE, max_batch_size=32) == {
        "name": "churn",
        "versions": ["1", "2"],
        "platform": "flax-nnx",
        "inputs": [
            {"name": "amount", "datatype": "FP32", "shape": [-1]},
            {"name": "city", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
        ],
        "max_batch_size": 32,
    }
    assert server_metadata("1.2.0") == {
        "name": "aiaas",
        "version": "1.2.0",
        "extensions": ["binary_tensor_data"],
    }


def test_config_states_the_batch_size_and_per_row_dims_as_triton_does() -> None:
    """Triton's model configuration leaves the batch dimension out of `dims` when
    `max_batch_size` is set: metadata shape [-1, 2] is dims [2], and [-1] is dims []."""
    config = model_config(
        "churn", "flax-nnx", SIGNATURE, max_batch_size=32, max_wait_ms=2.5, max_request_rows=512
    )
    assert config == {
        "name": "churn",
        "platform": "flax-nnx",
        "max_batch_size": 32,
        "input": [
            {"name": "amount", "data_type": "TYPE_FP32", "dims": []},
            {"name": "city", "data_type": "TYPE_STRING", "dims": []},
        ],
        "output": [
            {"name": "label", "data_type": "TYPE_STRING", "dims": []},
            {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [2]},
        ],
        "dynamic_batching": {"max_queue_delay_microseconds": 2500},
        "parameters": {"max_request_rows": {"string_value": "512"}},
    }


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("str", "BYTES"),
        ("float32", "FP32"),
        ("int64", "INT64"),
        ("bool", "BOOL"),
        (np.dtype("<U3"), "BYTES"),
        (np.dtype(">f8"), "FP64"),
        (object, "BYTES"),
    ],
)
def test_v2_datatype_names(dtype: Any, expected: str) -> None:
    assert v2_datatype(dtype) == expected


def test_v2_datatype_refuses_what_v2_cannot_carry() -> None:
    with pytest.raises(ValueError, match="complex64"):
        v2_datatype("complex64")
