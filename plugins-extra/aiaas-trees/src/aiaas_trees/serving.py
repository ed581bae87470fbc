"""The ONNX Runtime serving runtime: `onnx` bundles, answered through the same batcher, V2
protocol, canaries and drift checks as any runtime's models.

ONNX Runtime compiles a graph once, when its session is made, for every batch size at once:
there is no program per shape to warm, so batches are not padded to buckets, and `compilations`
counts sessions (one per loaded model). `warm_up` still runs a batch of every bucket size, so
the first request finds the session's memory arenas grown and nothing cold.

Before a session is made, the graph is checked: its operators must come from the allowlisted
domains and it must hold all of its data (a tensor stored "externally" would name a file that
ONNX Runtime would open). Importing this module imports neither onnx nor onnxruntime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aiaas.core.config import Config
from aiaas.core.runtimes import LoadedModel, ServingRuntime, UploadedModel
from aiaas.core.signatures import STRING_DTYPES, ModelSignature
from aiaas_trees.bundle import FORMAT, INPUT_NAME, BundleError, Manifest, decode_bundle

ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
"""ONNX's standard operators and its classical machine learning ones (the tree ensembles,
linear classifiers, scalers): nothing of a custom operator library."""
INTRA_OP_THREADS = 1
"""Threads of one batch. The batcher already runs batches of several models side by side, and
the small graphs of trees gain nothing from splitting one batch over cores."""


class OnnxServingRuntime(ServingRuntime):
    """Serves `onnx` bundles with ONNX Runtime on the CPU."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config

    def supported_model_formats(self) -> frozenset[str]:
        return frozenset({FORMAT})

    def load(self, bundle: bytes, *, max_batch_size: int) -> LoadedModel:
        manifest, graph = decode_bundle(bundle)
        return OnnxLoadedModel(manifest, graph, max_batch_size=max_batch_size)

    def onnx_graph(self, bundle: bytes) -> bytes | None:
        return decode_bundle(bundle)[1]

    def uploadable_formats(self) -> frozenset[str]:
        return frozenset({FORMAT})

    def bundle_upload(
        self, model_format: str, source: Path, declared: ModelSignature | None
    ) -> UploadedModel:
        from aiaas_trees.upload_vetting import vet_in_child

        if model_format != FORMAT:
            return super().bundle_upload(model_format, source, declared)
        return vet_in_child(source, declared)


def new_session(graph: bytes) -> Any:
    """An ONNX Runtime session of `graph` (checked by `check_graph` first), on the CPU."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = INTRA_OP_THREADS
    options.inter_op_num_threads = 1
    # Errors only: some converters declare a label output of one row, and every batch
    # would log a warning about its size otherwise.
    options.log_severity_level = 3
    # Only ever the ONNX protobuf that was checked: given bytes with its own tag at bytes 4
    # to 8, ONNX Runtime would read them in its ORT format instead, a model no check saw.
    options.add_session_config_entry("session.load_model_format", "ONNX")
    return onnxruntime.InferenceSession(
        graph, sess_options=options, providers=["CPUExecutionProvider"]
    )


def check_graph(graph: bytes) -> None:
    """Refuse a graph with an operator of another domain, or with external data, anywhere in
    it: the main graph, its functions, and the subgraphs that control-flow operators (If, Loop,
    Scan) carry in their attributes."""
    import onnx

    try:
        model = onnx.load_model_from_string(graph)
    except Exception as exc:  # protobuf raises its own DecodeError, among others
        raise BundleError(f"the graph does not parse: {exc}") from exc
    check_model_contents(model)


def check_model_contents(model: Any) -> None:
    """`check_graph` of a parsed `onnx.ModelProto`."""
    import onnx

    nodes, tensors = _contents(model.graph)
    for function in model.functions:
        # A function's attribute defaults hold tensors too, read wherever the function runs.
        for default in function.attribute_proto:
            more_nodes, more_tensors = _attribute_contents(default)
            nodes.extend(more_nodes)
            tensors.extend(more_tensors)
        for node in function.node:
            nodes.append(node)
            more_nodes, more_tensors = _node_contents(node)
            nodes.extend(more_nodes)
            tensors.extend(more_tensors)
    refused = sorted({node.domain for node in nodes} - ALLOWED_DOMAINS)
    if refused:
        raise BundleError(f"operators of domains that are not allowed: {', '.join(refused)}")
    if any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in tensors):
        raise BundleError("the graph refers to external data; a bundle holds all of its data")


def _contents(graph: Any) -> tuple[list[Any], list[Any]]:
    """Every node and every tensor of `graph` and of the subgraphs within it."""
    nodes: list[Any] = list(graph.node)
    tensors: list[Any] = [*graph.initializer]
    for sparse in graph.sparse_initializer:
        tensors.extend((sparse.values, sparse.indices))
    for node in graph.node:
        more_nodes, more_tensors = _node_contents(node)
        nodes.extend(more_nodes)
        tensors.extend(more_tensors)
    return nodes, tensors


def _node_contents(node: Any) -> tuple[list[Any], list[Any]]:
    """The tensors a node's attributes hold, and the nodes and tensors of its subgraphs."""
    nodes: list[Any] = []
    tensors: list[Any] = []
    for attribute in node.attribute:
        more_nodes, more_tensors = _attribute_contents(attribute)
        nodes.extend(more_nodes)
        tensors.extend(more_tensors)
    return nodes, tensors


def _attribute_contents(attribute: Any) -> tuple[list[Any], list[Any]]:
    """The tensors an attribute holds, and the nodes and tensors of its subgraphs."""
    nodes: list[Any] = []
    tensors: list[Any] = []
    if attribute.HasField("t"):
        tensors.append(attribute.t)
    tensors.extend(attribute.tensors)
    sparse_tensors = [*attribute.sparse_tensors]
    if attribute.HasField("sparse_tensor"):
        sparse_tensors.append(attribute.sparse_tensor)
    for sparse in sparse_tensors:
        tensors.extend((sparse.values, sparse.indices))
    subgraphs = [*attribute.graphs]
    if attribute.HasField("g"):
        subgraphs.append(attribute.g)
    for subgraph in subgraphs:
        more_nodes, more_tensors = _contents(subgraph)
        nodes.extend(more_nodes)
        tensors.extend(more_tensors)
    return nodes, tensors


class OnnxLoadedModel(LoadedModel):
    def __init__(self, manifest: Manifest, graph: bytes, *, max_batch_size: int) -> None:
        super().__init__(manifest.signature, max_batch_size)
        check_graph(graph)
        self.manifest = manifest
        self._session = new_session(graph)
        names = [output.name for output in self._session.get_outputs()]
        # A classifier's probabilities are its last output, a regressor's values its first;
        # only that one is computed and copied out (the label follows from the probabilities).
        self._output = names[-1] if manifest.task == "classification" else names[0]
        self._classes = np.asarray(manifest.classes)
        self._sessions = 1

    @property
    def compilations(self) -> int:
        return self._sessions

    def warm_up(self) -> None:
        for rows in self.bucket_sizes:
            specs = self.signature.inputs
            self.predict_batch(
                {spec.name: blank_rows(rows, spec.shape, spec.dtype) for spec in specs}
            )

    def predict_batch(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.manifest.task == "graph":
            # An uploaded graph: inputs and outputs by its own names, already of its dtypes
            # (the signature was read from the graph, and requests are checked against it).
            names = [spec.name for spec in self.signature.outputs]
            feed = {spec.name: columns[spec.name] for spec in self.signature.inputs}
            return dict(zip(names, self._session.run(names, feed), strict=True))
        inputs = np.column_stack(
            [np.asarray(columns[name], dtype=np.float32) for name in self.manifest.features]
        )
        [output] = self._session.run([self._output], {INPUT_NAME: inputs})
        if self.manifest.task == "classification":
            probabilities = np.asarray(output, dtype=np.float32)
            return {
                "label": self._classes[probabilities.argmax(axis=1)],
                "probabilities": probabilities,
            }
        return {"value": np.asarray(output, dtype=np.float32).reshape(-1)}


def blank_rows(rows: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """A batch of `rows` blank values of a signature input; a free dimension other than the
    batch's is given one element."""
    dimensions = (rows, *(size if size > 0 else 1 for size in shape[1:]))
    if dtype in STRING_DTYPES:
        return np.full(dimensions, "", dtype=object)
    return np.zeros(dimensions, dtype=np.dtype(dtype))
