"""The V2 codec's fast paths (issue 18) read and write what the plain ones did:

- flat numeric JSON inputs, converted together, give the arrays and the refusals (the same
  words, the first input in order) that reading each input on its own gives;
- orjson reads requests as the standard library did: an integer beyond 64 bits, a number beyond
  a double, a lone surrogate, NaN and invalid UTF-8 are refused or taken as before;
- answers are the same JSON, all ASCII as before: names and ids beyond ASCII are escaped, a lone
  surrogate too, non-finite outputs are null.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiaas.core.errors import InputError
from aiaas.core.signatures import ModelSignature, TensorSpec
from aiaas.rest.inference_protocol import (
    InferenceRequest,
    encode_infer_response,
    parse_infer_request,
)

NUMERIC = ["BOOL", "UINT8", "UINT64", "INT8", "INT32", "INT64", "FP16", "FP32", "FP64"]
VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.sampled_from(["a", None, [1.0], {"x": 1}]),
)


def parsed(document: dict[str, Any]) -> InferenceRequest | str:
    """The request, or the refusal's message and field errors."""
    try:
        return parse_infer_request(
            json.dumps(document).encode(), inference_header_content_length=None
        )
    except InputError as refusal:
        return f"{refusal.message} {refusal.field_errors}"


def one_by_one(document: dict[str, Any]) -> dict[str, Any]:
    """The same request with a parameter on every input that nothing reads, which keeps each
    input off the flat path: read and judged on its own, as every input was before."""
    return {
        **document,
        "inputs": [{**raw, "parameters": {"unread": True}} for raw in document["inputs"]],
    }


@st.composite
def flat_requests(draw: st.DrawFn) -> dict[str, Any]:
    inputs = []
    for index in range(draw(st.integers(min_value=1, max_value=6))):
        data = draw(st.lists(VALUES, max_size=4))
        declared = draw(st.sampled_from([len(data), len(data), len(data) + 1]))
        name = draw(st.sampled_from([f"x{index}", f"x{index}", "x0"]))  # sometimes twice
        inputs.append(
            {"name": name, "datatype": draw(st.sampled_from(NUMERIC)), "shape": [declared]}
            | {"data": data}
        )
    return {"inputs": inputs}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flat_requests())
def test_flat_inputs_read_together_as_each_on_its_own(document: dict[str, Any]) -> None:
    fast, plain = parsed(document), parsed(one_by_one(document))
    if isinstance(plain, str):
        assert fast == plain
        return
    assert isinstance(fast, InferenceRequest)
    assert list(fast.columns) == list(plain.columns)
    for name, array in plain.columns.items():
        assert fast.columns[name].dtype == array.dtype
        np.testing.assert_array_equal(fast.columns[name], array)


def test_the_first_problem_in_input_order_is_told() -> None:
    document = {
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [1], "data": [1.0]},
            {"name": "b", "datatype": "INT8", "shape": [1], "data": [300]},  # flat, out of range
            {"name": "c", "datatype": "FP32", "shape": "one", "data": [1.0]},  # malformed
        ]
    }
    with pytest.raises(InputError) as refused:
        parse_infer_request(json.dumps(document).encode(), inference_header_content_length=None)
    assert refused.value.field_errors == {"b": "has a value out of range for INT8"}


def request_with(datatype: str, raw_value: str) -> bytes:
    """A request of one value written as `raw_value`, verbatim, in the JSON."""
    tensor = f'{{"name":"v","datatype":"{datatype}","shape":[1],"data":[{raw_value}]}}'
    return f'{{"inputs":[{tensor}]}}'.encode()


@pytest.mark.parametrize(
    ("datatype", "raw_value", "told"),
    [
        # orjson reads these integers as floats: the standard library's reading is told.
        ("INT64", str(2**70), "has a value out of range for INT64"),
        ("INT64", str(-(2**63) - 1), "has a value out of range for INT64"),
        ("BYTES", str(2**70), "BYTES data must be strings, not integers"),
        ("FP64", "1e400", "has a value out of range for FP64"),  # orjson refuses it outright
        ("BYTES", '"\\ud800"', "has a string that is not valid Unicode"),
    ],
)
def test_json_that_orjson_reads_otherwise_is_told_as_before(
    datatype: str, raw_value: str, told: str
) -> None:
    with pytest.raises(InputError) as refused:
        parse_infer_request(request_with(datatype, raw_value), inference_header_content_length=None)
    assert refused.value.field_errors == {"v": told}


def test_integers_at_the_edges_of_64_bits_are_exact() -> None:
    for datatype, value in [("UINT64", 2**64 - 1), ("INT64", -(2**63)), ("INT64", 2**63 - 1)]:
        request = parse_infer_request(
            request_with(datatype, str(value)), inference_header_content_length=None
        )
        assert int(request.columns["v"][0]) == value


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (request_with("FP32", "NaN"), "is not valid JSON: NaN is not JSON"),
        (request_with("FP32", "-Infinity"), "is not valid JSON: -Infinity is not JSON"),
        (b'{"inputs": [\xff]}', "is not valid JSON: 'utf-8' codec can't decode byte 0xff"),
    ],
)
def test_json_refused_by_both_is_told_in_the_standard_library_s_words(
    body: bytes, problem: str
) -> None:
    with pytest.raises(InputError) as refused:
        parse_infer_request(body, inference_header_content_length=None)
    assert refused.value.field_errors["body"].startswith(problem)


SIGNATURE = ModelSignature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=(-1,)),),
    outputs=(TensorSpec(name="score", dtype="float32", shape=(-1,)),),
)


def answer(model_name: str, request_id: str | None, scores: list[float]) -> bytes:
    request = InferenceRequest(
        id=request_id,
        columns={},
        outputs=None,
        binary_outputs_by_default=False,
        parameters={},
    )
    content, _ = encode_infer_response(
        model_name=model_name,
        model_version="1",
        request=request,
        outputs={"score": np.array(scores, dtype=np.float32)},
        signature=SIGNATURE,
    )
    return content


def standard_library_answer(model_name: str, request_id: str | None, data: list[Any]) -> bytes:
    document: dict[str, Any] = {"model_name": model_name, "model_version": "1"}
    if request_id is not None:
        document["id"] = request_id
    document["outputs"] = [
        {"name": "score", "datatype": "FP32", "shape": [len(data)], "data": data}
    ]
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


@pytest.mark.parametrize(
    ("model_name", "request_id"),
    [("proj.zürich", "plain"), ("proj.model", "東京-1"), ("proj.model", "\ud800 lone")],
)
def test_answers_beyond_ascii_are_escaped_as_before(model_name: str, request_id: str) -> None:
    content = answer(model_name, request_id, [0.5, 0.25])
    assert content.isascii()
    assert content == standard_library_answer(model_name, request_id, [0.5, 0.25])


def test_non_finite_outputs_are_null_and_floats_read_back_the_same() -> None:
    scores = [float("nan"), float("inf"), 1e-7, 3.4e38, 0.1, -0.0]
    content = answer("proj.model", None, scores)
    assert content.isascii()
    data = json.loads(content)["outputs"][0]["data"]
    expected = [None, None, *np.array(scores[2:], dtype=np.float32).tolist()]
    assert data == expected
    assert json.loads(content) == json.loads(standard_library_answer("proj.model", None, expected))
