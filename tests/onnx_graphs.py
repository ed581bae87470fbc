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
