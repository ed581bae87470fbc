"""ONNX graphs as another tool would export them, for the tests of uploaded model versions."""

from __future__ import annotations

import json

import numpy as np
from onnx import TensorProto, helper, numpy_helper

WEIGHTS = np.array([[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]], dtype=np.float32)
BIAS = np.array([0.1, -0.2], dtype=np.float32)


def linear_graph(*, batch: int | str = "N", domain: str = "", external: bool = False) -> bytes:
    """y = relu(x @ W + b), x float32 [batch, 3]: a graph as another tool would export it."""
    weights = numpy_helper.from_array(WEIGHTS, "W")
    if external:
        weights.ClearField("raw_data")
        weights.data_location = TensorProto.EXTERNAL
        weights.external_data.add(key="location", value="weights.bin")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["z"]),
        helper.make_node("Relu", ["z"], ["y"], domain=domain),
    ]
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2])],
        initializer=[weights, numpy_helper.from_array(BIAS, "b")],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="a-test-exporter")
    return model.SerializeToString()


def adder_graph(first: str, second: str) -> bytes:
    """sum = first + second, two one-value float32 inputs: columns a reference table can hold."""
    graph = helper.make_graph(
        [helper.make_node("Add", [first, second], ["sum"])],
        "adder",
        [
            helper.make_tensor_value_info(first, TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info(second, TensorProto.FLOAT, ["N"]),
        ],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N"])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def signature(x_dtype: str = "float32", x_name: str = "x") -> str:
    return json.dumps(
        {
            "inputs": [{"name": x_name, "dtype": x_dtype, "shape": [-1, 3]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 2]}],
        }
    )


def relu_graph(input_name: str = "x", *, output_shape: list[int | str] | None = None) -> bytes:
    """y = relu(x), x float32 [N, 1]; `output_shape` declares y's shape otherwise."""
    graph = helper.make_graph(
        [helper.make_node("Relu", [input_name], ["y"])],
        "relu",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape or ["N", 1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def ort_tagged_graph() -> bytes:
    """A valid ONNX protobuf whose bytes 4 to 8 are ONNX Runtime's own format tag, `ORTM`: a
    reader that trusts the tag would read the bytes as another model than the one checked."""
    # Field 16 (a varint, 0), then field 1 (ir_version) = ord("O"), then field 10 (bytes) of
    # ord("T") = 84 bytes: "M" and 83 zeros; the real model's fields follow and take over.
    head = bytes([0x80, 0x01, 0x00, 0x08]) + b"ORTM" + bytes(83)
    return head + relu_graph()


def expanding_graph() -> bytes:
    """y = x + sum(ones(60000, 60000)): 200 bytes of graph asking 14 GB on its first run."""
    nodes = [
        helper.make_node("Expand", ["one", "shape"], ["big"]),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        helper.make_node("Add", ["x", "total"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "expanding",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        initializer=[
            numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"),
            numpy_helper.from_array(np.array([60000, 60000], dtype=np.int64), "shape"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def free_image_graph() -> bytes:
    """A convolution over x float32 [N, 1, H, W] with H and W free."""
    weights = numpy_helper.from_array(np.ones((1, 1, 3, 3), dtype=np.float32), "kernel")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "kernel"], ["y"])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, "h", "w"])],
        initializer=[weights],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
