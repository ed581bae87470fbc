"""Uploaded ONNX files: vetted, their signature read from the graph or checked against the one
declared, and wrapped into an `onnx` bundle whose manifest says `task: graph`.

A graph made elsewhere is served as it is: each input of the signature feeds the graph input of
the same name, and each output of the signature is the graph output of the same name. Nothing
of a tabular model's conventions (one `inputs` matrix, a label picked from probabilities) is
assumed.

What is refused, each with the reason:
- bytes that are not an ONNX model, or a model that ONNX's checker finds malformed;
- an operator outside the allowlisted domains, or a tensor stored as external data
  (`serving.check_model_contents`): the first could run code of a custom operator library,
  the second would have ONNX Runtime open a file the uploader named;
- an input or output of a type the V2 protocol does not carry (a sequence or a map, bfloat16,
  complex numbers...). Outputs that are not tensors, like the ZipMap that scikit-learn's
  converters add, are left out of an inferred signature rather than refused;
- an input whose first dimension is fixed: batches of any size must fit, so the batch
  dimension has to be free (export with a dynamic axis);
- a declared signature that does not match the graph;
- a graph ONNX Runtime cannot make a session of (an operator set it does not implement).

Importing this module imports neither onnx nor onnxruntime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiaas.core.runtimes import SignatureMismatchError, UploadedModel
from aiaas.core.signatures import STRING_DTYPES, ModelSignature, TensorSpec
from aiaas_trees.bundle import FORMAT, MAX_GRAPH_BYTES, Manifest, encode_bundle
from aiaas_trees.serving import check_model_contents, new_session

GRAPH_TASK = "graph"
UPLOAD_TRAINER = "upload"

_DTYPES_BY_ELEMENT_TYPE = {
    "FLOAT": "float32",
    "DOUBLE": "float64",
    "FLOAT16": "float16",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "BOOL": "bool",
    "STRING": "str",
}
"""The ONNX element types that the V2 protocol carries, as signature dtypes."""


class UploadRefusedError(ValueError):
    """What is wrong with an uploaded model file."""


def bundle_uploaded_graph(data: bytes, declared: ModelSignature | None) -> UploadedModel:
    """The `onnx` bundle of an uploaded ONNX file, with the signature it is served with."""
    import onnx

    if len(data) > MAX_GRAPH_BYTES:
        raise UploadRefusedError(f"the file is {len(data)} bytes, above ONNX's {MAX_GRAPH_BYTES}")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises its own DecodeError, among others
        raise UploadRefusedError(f"not a valid ONNX model: {_first_line(exc)}") from exc
    # What may not be in a graph before ONNX's own checker, so that such a graph is refused
    # for that, whatever else is wrong with it.
    try:
        check_model_contents(model)
    except ValueError as exc:
        raise UploadRefusedError(str(exc)) from exc
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx's ValidationError, among others
        raise UploadRefusedError(f"not a valid ONNX model: {_first_line(exc)}") from exc
    graph_signature = _graph_signature(model.graph)
    signature = graph_signature if declared is None else _matched(declared, graph_signature)
    try:
        new_session(data)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise UploadRefusedError(f"ONNX Runtime cannot run this graph: {_first_line(exc)}") from exc
    manifest = Manifest(
        trainer=UPLOAD_TRAINER,
        task=GRAPH_TASK,
        features=tuple(spec.name for spec in signature.inputs),
        classes=(),
        signature=signature,
        hyperparameters={},
        library={
            "name": model.producer_name or "unknown",
            "version": model.producer_version or "unknown",
        },
    )
    return UploadedModel(bundle=encode_bundle(manifest, data), signature=signature)


def _graph_signature(graph: Any) -> ModelSignature:
    # Older exporters list initializers among the inputs; those are weights, not inputs.
    weights = {tensor.name for tensor in graph.initializer}
    inputs = tuple(
        _tensor_spec(value, "input") for value in graph.input if value.name not in weights
    )
    if not inputs:
        raise UploadRefusedError("the graph takes no inputs")
    for spec in inputs:
        if not spec.shape or spec.shape[0] != -1:
            raise UploadRefusedError(
                f"input {spec.name!r} has shape {list(spec.shape)}: its first dimension must be "
                "a free batch dimension (export the model with a dynamic batch axis)"
            )
    outputs = tuple(_tensor_spec(value, "output") for value in graph.output if _is_tensor(value))
    if not outputs:
        raise UploadRefusedError("the graph has no tensor output to answer with")
    return ModelSignature(inputs=inputs, outputs=outputs)


def _is_tensor(value: Any) -> bool:
    return bool(value.type.HasField("tensor_type"))


def _tensor_spec(value: Any, role: str) -> TensorSpec:
    import onnx

    if not _is_tensor(value):
        raise UploadRefusedError(f"{role} {value.name!r} is not a tensor, which V2 cannot carry")
    tensor_type = value.type.tensor_type
    element = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
    dtype = _DTYPES_BY_ELEMENT_TYPE.get(element)
    if dtype is None:
        raise UploadRefusedError(
            f"{role} {value.name!r} is of type {element}, which V2 cannot carry"
        )
    if not tensor_type.HasField("shape"):
        raise UploadRefusedError(f"{role} {value.name!r} declares no shape")
    shape = tuple(
        dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor_type.shape.dim
    )
    return TensorSpec(name=value.name, dtype=dtype, shape=shape)


def _matched(declared: ModelSignature, graph: ModelSignature) -> ModelSignature:
    """`declared`, once every input of the graph is declared as the graph has it and every
    declared output is one of the graph's: otherwise `SignatureMismatchError` listing each
    mismatch."""
    problems = _mismatches("input", declared.inputs, graph.inputs)
    graph_inputs = {spec.name for spec in graph.inputs}
    declared_inputs = {spec.name for spec in declared.inputs}
    problems += [f"graph input {name!r} is not declared" for name in graph_inputs - declared_inputs]
    problems += _mismatches("output", declared.outputs, graph.outputs)
    if not declared.outputs:
        problems.append("the signature declares no output")
    if problems:
        raise SignatureMismatchError(
            "the signature does not match the graph: " + "; ".join(problems)
        )
    return declared


def _mismatches(
    role: str, declared: Sequence[TensorSpec], graph: Sequence[TensorSpec]
) -> list[str]:
    found = {spec.name: spec for spec in graph}
    problems: list[str] = []
    for spec in declared:
        actual = found.get(spec.name)
        if actual is None:
            problems.append(f"the graph has no {role} {spec.name!r}")
        elif _dtype_name(spec.dtype) != _dtype_name(actual.dtype):
            problems.append(
                f"{role} {spec.name!r} is {actual.dtype} in the graph, not {spec.dtype}"
            )
        elif not _shapes_fit(spec.shape, actual.shape):
            problems.append(
                f"{role} {spec.name!r} has shape {list(actual.shape)} in the graph, which "
                f"{list(spec.shape)} does not fit"
            )
    return problems


def _dtype_name(dtype: str) -> str:
    return "str" if dtype in STRING_DTYPES else dtype


def _shapes_fit(declared: tuple[int, ...], graph: tuple[int, ...]) -> bool:
    """Same rank, the batch dimension free, and every fixed dimension of the graph declared as
    it is (a free one may be declared fixed, which narrows what requests may send)."""
    if len(declared) != len(graph) or not declared or declared[0] != -1:
        return False
    return all(g in (-1, d) for d, g in zip(declared[1:], graph[1:], strict=True))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


__all__ = ["FORMAT", "GRAPH_TASK", "UPLOAD_TRAINER", "UploadRefusedError", "bundle_uploaded_graph"]
