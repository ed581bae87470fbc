"""The flax-nnx bundle: written by trainers, read by runtimes.

A trained model as msgpack bytes, and the predictor that loads it. The built-in trainers
(`aiaas.plugins.flax_trainers`) write it and the built-in `jax` runtime
(`aiaas.plugins.jax_serving`) reads it; the format lives here, beneath both, so that neither
plugin imports the other. What a bundle holds:

    {"format": "flax-nnx", "format_version": 1, "trainer": "tabular-classifier",
     "task": "classification" | "regression",
     "architecture": {"kind": "mlp" | "embedding_bag" | "cnn" | "resnet", ...sizes},
     "hyperparameters": {...},
     "preprocessing": {"kind": "tabular" | "image" | "image_tensor" | "text", ...what
                       input_pipeline fitted},
     "target": {"classes": [...]} | {"mean": m, "std": s},
     "signature": {"inputs": [...], "outputs": [...]},
     "params": {"head/kernel": {"dtype": "float32", "shape": [128, 3], "data": <bytes>}, ...}}

Only msgpack's own types appear (maps, lists, strings, numbers, booleans, bytes): no extension
types, no pickle, nothing that constructs objects while reading. Arrays are raw little-endian
bytes with an allowlisted dtype and their shape, checked against the model the architecture
builds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from aiaas.core.signatures import ModelSignature
from aiaas.formats.flax_nnx_features import encode_features

FORMAT = "flax-nnx"
"""The format's name: a `TrainedModel`'s `format`, and what a runtime that reads it supports."""
FORMAT_VERSION = 1
_ARRAY_DTYPES = {"float32", "int32"}
MAX_BUNDLE_BYTES = 2 * 1024**3


def flatten_params(params: Mapping[Any, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Nested parameters to {"hidden/0/kernel": array}."""
    flat: dict[str, np.ndarray] = {}
    for key, value in params.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{path}/"))
        else:
            flat[path] = np.asarray(value)
    return flat


def _fill_like(template: Mapping[Any, Any], flat: Mapping[str, Any], prefix: str = "") -> Any:
    """The nesting of `template` (an abstract model's parameters) with the arrays of `flat`;
    a missing array or one of another shape or dtype is refused."""
    filled: dict[Any, Any] = {}
    for key, value in template.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            filled[key] = _fill_like(value, flat, f"{path}/")
            continue
        if path not in flat:
            raise ValueError(f"bundle lacks parameter {path!r}")
        array = flat[path]
        if array.shape != tuple(value.shape) or array.dtype != value.dtype:
            raise ValueError(f"bundle parameter {path!r} has shape {array.shape} {array.dtype}")
        filled[key] = array
    return filled


def _encode_array(array: np.ndarray) -> dict[str, Any]:
    dtype = array.dtype.name
    if dtype not in _ARRAY_DTYPES:
        raise ValueError(f"cannot store a {dtype} array")
    return {
        "dtype": dtype,
        "shape": list(array.shape),
        "data": np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes(),
    }


def _decode_array(path: str, encoded: Mapping[str, Any]) -> np.ndarray:
    dtype = encoded["dtype"]
    if dtype not in _ARRAY_DTYPES:
        raise ValueError(f"bundle parameter {path!r} has unsupported dtype {dtype!r}")
    shape = tuple(int(size) for size in encoded["shape"])
    array = np.frombuffer(encoded["data"], dtype=np.dtype(dtype).newbyteorder("<"))
    if array.size != math.prod(shape):
        raise ValueError(f"bundle parameter {path!r} holds {array.size} values, not {shape}")
    return array.astype(dtype).reshape(shape)


def encode_bundle(
    *,
    trainer: str,
    task: str,
    architecture: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
    preprocessing: Mapping[str, Any],
    target: Mapping[str, Any],
    signature: ModelSignature,
    params: Mapping[Any, Any],
) -> bytes:
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "trainer": trainer,
        "task": task,
        "architecture": dict(architecture),
        "hyperparameters": dict(hyperparameters),
        "preprocessing": dict(preprocessing),
        "target": dict(target),
        "signature": signature.as_json(),
        "params": {path: _encode_array(array) for path, array in flatten_params(params).items()},
    }
    return bytes(msgpack.packb(document, use_bin_type=True))


def decode_bundle(bundle: bytes) -> dict[str, Any]:
    document = msgpack.unpackb(
        bundle,
        raw=False,
        strict_map_key=True,
        max_bin_len=MAX_BUNDLE_BYTES,
        ext_hook=_refuse_extension,
    )
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} bundle")
    if document.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported {FORMAT} bundle version {document.get('format_version')}")
    return document


def _refuse_extension(code: int, data: bytes) -> Any:
    raise ValueError(f"unexpected msgpack extension type {code} in bundle")


@dataclass(frozen=True)
class Predictor:
    """A loaded bundle.

    `apply(params, batch)` is pure and jit-able: `batch` is {"inputs": array} as `preprocess`
    makes it, and the result is {"probabilities": [n, classes]} or {"value": [n]}. `predict`
    runs the whole way from columns to outputs, including the class labels."""

    signature: ModelSignature
    task: str
    params: Any
    apply: Callable[[Any, Mapping[str, Any]], dict[str, Any]]
    preprocessing: Mapping[str, Any]
    classes: tuple[Any, ...]
    _jitted_apply: Callable[[Any, Mapping[str, Any]], dict[str, Any]] = field(repr=False)

    def preprocess(self, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
        missing = [spec.name for spec in self.signature.inputs if spec.name not in columns]
        if missing:
            raise ValueError(f"missing input columns: {', '.join(missing)}")
        return {"inputs": encode_features(self.preprocessing, columns)}

    def predict(self, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
        batch = self.preprocess(columns)
        rows = batch["inputs"].shape[0]
        # Power-of-two buckets: a new request size compiles at most log2(n) shapes.
        padded_rows = 1 << max(0, rows - 1).bit_length()
        padding = np.zeros((padded_rows - rows, *batch["inputs"].shape[1:]), batch["inputs"].dtype)
        padded = {"inputs": np.concatenate([batch["inputs"], padding])}
        outputs = {
            name: np.asarray(value)[:rows]
            for name, value in self._jitted_apply(self.params, padded).items()
        }
        if self.task == "classification":
            probabilities = outputs["probabilities"].astype(np.float32)
            labels = np.asarray(self.classes)[probabilities.argmax(axis=1)] if rows else []
            return {"label": np.asarray(labels), "probabilities": probabilities}
        return {"value": outputs["value"].astype(np.float32)}


def load_predictor(bundle: bytes) -> Predictor:
    import jax
    from flax import nnx

    from aiaas.formats.flax_nnx_models import build_model

    document = decode_bundle(bundle)
    architecture = document["architecture"]
    abstract = nnx.eval_shape(lambda: build_model(architecture, nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    flat = {path: _decode_array(path, encoded) for path, encoded in document["params"].items()}
    params = jax.device_put(_fill_like(nnx.to_pure_dict(abstract_state), flat))
    task = document["task"]
    target = document["target"]

    def apply(params: Any, batch: Mapping[str, Any]) -> dict[str, Any]:
        outputs = nnx.merge(graphdef, params)(batch["inputs"])
        if task == "classification":
            return {"probabilities": jax.nn.softmax(outputs)}
        return {"value": outputs[:, 0] * target["std"] + target["mean"]}

    return Predictor(
        signature=ModelSignature.from_json(document["signature"]),
        task=task,
        params=params,
        apply=apply,
        preprocessing=document["preprocessing"],
        classes=tuple(target.get("classes", ())),
        _jitted_apply=jax.jit(apply),
    )
