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
- a tensor name that is not storable text (requests name it, the registry stores it);
- an input whose first dimension is fixed: batches of any size must fit, so the batch
  dimension has to be free (export with a dynamic axis); an input with another free dimension
  (a warm-up could not know what to send: declare fixed sizes), or with more values per row
  than `MAX_ELEMENTS_PER_ROW`; an output without a free batch dimension;
- a declared signature that does not match the graph;
- a graph ONNX Runtime cannot make a session of (an operator set it does not implement), or
  that fails on a blank batch, or answers another number of rows than it was given.

All of this parses and runs the uploader's bytes: it runs in a child process under a memory
ceiling (`upload_vetting`), never in the API. Importing this module imports neither onnx nor
onnxruntime.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from aiaas.core.runtimes import SignatureMismatchError, UploadedModel
from aiaas.core.signatures import STRING_DTYPES, ModelSignature, TensorSpec
from aiaas.core.storable_text import text_problem
from aiaas_trees.bundle import FORMAT, Manifest, encode_bundle
from aiaas_trees.serving import blank_rows, check_model_contents, new_session

MAX_UPLOAD_BYTES = 1 << 30
"""The largest ONNX file taken (ONNX's own limit is 2 GiB): vetting it takes several times its
size in memory, under the vetting process's ceiling."""
MAX_ELEMENTS_PER_ROW = 1 << 24
"""The most values one row of an input may hold (a 2,048-pixel square RGB image is 12.6 M): a
warm-up allocates a batch of each input, so a declared size bounds what that costs."""
MAX_NAME_CHARS = 200
PROBE_ROWS = 2
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
    """The `onnx` bundle of an uploaded ONNX file, with the signature it is served with.
    Parses and runs hostile bytes: `upload_child` calls it in a child process under a ceiling
    on its memory, never the API process."""
    import onnx

    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadRefusedError(f"the file is {len(data)} bytes, above {MAX_UPLOAD_BYTES}")
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
    _check_servable(signature)
    # What is kept, and later run, is the model as parsed, written again: bytes the parser
    # skipped (unknown fields) cannot ride along, and no other reader of the same bytes (ONNX
    # Runtime's own ORT format, told by a tag at bytes 4 to 8) can see another model in them.
    model.DiscardUnknownFields()
    graph = model.SerializeToString()
    try:
        session = new_session(graph)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise UploadRefusedError(f"ONNX Runtime cannot run this graph: {_first_line(exc)}") from exc
    _probe(session, signature)
    manifest = Manifest(
        trainer=UPLOAD_TRAINER,
        task=GRAPH_TASK,
        features=tuple(spec.name for spec in signature.inputs),
        classes=(),
        signature=signature,
        hyperparameters={},
        library={
            "name": _storable(model.producer_name) or "unknown",
            "version": _storable(model.producer_version) or "unknown",
        },
    )
    return UploadedModel(bundle=encode_bundle(manifest, graph), signature=signature)


def _check_servable(signature: ModelSignature) -> None:
    """Every input has a fixed size but for its batch dimension, and not too many elements per
    row; every output has a batch dimension: what the batcher and a warm-up need."""
    for spec in signature.inputs:
        free = [index for index, size in enumerate(spec.shape[1:], start=1) if size < 0]
        if free:
            raise UploadRefusedError(
                f"input {spec.name!r} has shape {list(spec.shape)}: only its first (batch) "
                "dimension may be free; declare a signature with fixed sizes for the others"
            )
        elements = math.prod(spec.shape[1:])
        if elements > MAX_ELEMENTS_PER_ROW:
            raise UploadRefusedError(
                f"input {spec.name!r} has {elements} values per row, above {MAX_ELEMENTS_PER_ROW}"
            )
    for spec in signature.outputs:
        if not spec.shape or spec.shape[0] != -1:
            raise UploadRefusedError(
                f"output {spec.name!r} has shape {list(spec.shape)}: its first dimension must be "
                "the free batch dimension, one row per input row"
            )


def _probe(session: Any, signature: ModelSignature) -> None:
    """Run the graph on a blank batch: a graph that fails, or answers a number of rows other
    than it was given, is refused now rather than at its deployment's warm-up."""
    feed = {spec.name: blank_rows(PROBE_ROWS, spec.shape, spec.dtype) for spec in signature.inputs}
    names = [spec.name for spec in signature.outputs]
    try:
        outputs = session.run(names, feed)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise UploadRefusedError(f"the graph fails on a blank batch: {_first_line(exc)}") from exc
    for name, output in zip(names, outputs, strict=True):
        rows = np.shape(output)[0] if np.ndim(output) else None
        if rows != PROBE_ROWS:
            raise UploadRefusedError(
                f"output {name!r} answers {rows} rows for {PROBE_ROWS}: a model answers one row "
                "per input row"
            )


def _storable(text: str) -> str:
    return text[:MAX_NAME_CHARS] if text_problem(text) is None else ""


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
    return TensorSpec(name=_checked_name(value.name, role), dtype=dtype, shape=shape)


def _checked_name(name: str, role: str) -> str:
    """A tensor name the signature may carry: requests name it, and it is stored as text."""
    problem = text_problem(name)
    if problem is not None or not name or len(name) > MAX_NAME_CHARS:
        shown = repr(name[:40])
        raise UploadRefusedError(
            f"{role} {shown} has a name that cannot be used: "
            f"{problem or f'1 to {MAX_NAME_CHARS} characters'}"
        )
    return name


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
