"""The `onnx` model bundle: an ONNX graph and a JSON manifest, in one ZIP archive.

    model.onnx      the graph: one float32 input `inputs` [rows, features], in the manifest's
                    feature order; a classifier's outputs end with the class probabilities
                    [rows, classes], a regressor's first output is the value [rows] or [rows, 1]
    manifest.json   {"format": "onnx", "format_version": 1, "trainer": ..., "task": ...,
                     "features": [...], "classes": [...] (a classifier's), "signature": {...},
                     "hyperparameters": {...}, "library": {"name": ..., "version": ...}}

Nothing in it is executable by the reader: ZIP and JSON are read with the standard library,
the graph by ONNX Runtime, which only ever runs the operators it implements. No pickle, at
either end. Importing this module imports neither onnx nor onnxruntime.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiaas.core.signatures import ModelSignature

FORMAT = "onnx"
FORMAT_VERSION = 1
GRAPH_MEMBER = "model.onnx"
MANIFEST_MEMBER = "manifest.json"
INPUT_NAME = "inputs"
"""The one input of every graph a trainer of this package writes."""
MAX_MANIFEST_BYTES = 1 << 20
MAX_GRAPH_BYTES = 2 << 30
"""ONNX's own limit: a protobuf message of more than 2 GiB cannot be parsed."""


TASKS = frozenset({"classification", "regression", "graph"})
"""What a bundle's graph does: a trainer's classifier or regressor, fed one `inputs` matrix, or
an uploaded graph (`uploads`), fed and answering by the names of its own inputs and outputs."""


class BundleError(ValueError):
    """The bytes are not an `onnx` bundle this version can read."""


@dataclass(frozen=True, kw_only=True)
class Manifest:
    trainer: str
    task: str
    features: tuple[str, ...]
    classes: tuple[Any, ...]
    signature: ModelSignature
    hyperparameters: Mapping[str, Any]
    library: Mapping[str, str]

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "trainer": self.trainer,
            "task": self.task,
            "features": list(self.features),
            "classes": list(self.classes),
            "signature": self.signature.as_json(),
            "hyperparameters": dict(self.hyperparameters),
            "library": dict(self.library),
        }

    @classmethod
    def from_json(cls, encoded: Mapping[str, Any]) -> Manifest:
        if encoded.get("format") != FORMAT or encoded.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"not an {FORMAT} bundle of version {FORMAT_VERSION}: "
                f"{encoded.get('format')!r} version {encoded.get('format_version')!r}"
            )
        try:
            manifest = cls(
                trainer=str(encoded["trainer"]),
                task=str(encoded["task"]),
                features=tuple(str(name) for name in encoded["features"]),
                classes=tuple(encoded["classes"]),
                signature=ModelSignature.from_json(encoded["signature"]),
                hyperparameters=dict(encoded["hyperparameters"]),
                library={str(k): str(v) for k, v in encoded["library"].items()},
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise BundleError(f"the manifest is incomplete: {exc!r}") from exc
        inputs = tuple(spec.name for spec in manifest.signature.inputs)
        if inputs != manifest.features:
            raise BundleError(f"the signature's inputs {inputs} are not the features")
        if manifest.task not in TASKS:
            raise BundleError(f"unknown task {manifest.task!r}")
        if manifest.task == "classification" and len(manifest.classes) < 2:
            raise BundleError("a classifier's manifest names at least two classes")
        return manifest


def encode_bundle(manifest: Manifest, graph: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST_MEMBER, json.dumps(manifest.as_json(), sort_keys=True))
        archive.writestr(GRAPH_MEMBER, graph)
    return buffer.getvalue()


def decode_bundle(bundle: bytes) -> tuple[Manifest, bytes]:
    """The manifest and the graph's bytes. Raises `BundleError` for anything else: another
    archive, a member too large, a manifest that does not parse."""
    try:
        with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
            members = {info.filename: info for info in archive.infolist()}
            if set(members) != {MANIFEST_MEMBER, GRAPH_MEMBER}:
                raise BundleError(
                    f"an {FORMAT} bundle holds {MANIFEST_MEMBER} and {GRAPH_MEMBER} only, "
                    f"not {sorted(members)}"
                )
            # Sizes are checked before anything is inflated: a small archive cannot expand
            # into more memory than a real model takes.
            _check_size(members[MANIFEST_MEMBER], MAX_MANIFEST_BYTES)
            _check_size(members[GRAPH_MEMBER], MAX_GRAPH_BYTES)
            manifest_text = archive.read(MANIFEST_MEMBER)
            graph = archive.read(GRAPH_MEMBER)
    except zipfile.BadZipFile as exc:
        raise BundleError(f"not an {FORMAT} bundle: {exc}") from exc
    try:
        encoded = json.loads(manifest_text)
    except ValueError as exc:
        raise BundleError(f"the manifest is not JSON: {exc}") from exc
    if not isinstance(encoded, dict):
        raise BundleError("the manifest is not a JSON object")
    return Manifest.from_json(encoded), graph


def _check_size(info: zipfile.ZipInfo, limit: int) -> None:
    if info.file_size > limit:
        raise BundleError(f"{info.filename} is {info.file_size} bytes, above {limit}")
