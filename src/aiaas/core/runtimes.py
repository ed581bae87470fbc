"""The contract of a serving runtime and of the models it loads.

A serving runtime turns a model version's bundle into a `LoadedModel`. The adaptive batcher
(`aiaas.core.serving.batching`) calls it from a thread, one batch at a time, with columns that
`aiaas.core.model_inputs.check_inputs` has already vetted and concatenated: by then every input
is present, of the signature's dtype and rank, finite where it is a float, and the batch fits in
the largest bucket.

Batches are padded to a few fixed sizes, the buckets, because an XLA program is compiled per input
shape: padding a batch of 37 rows to 64 costs a little compute, while a fresh shape would cost a
compile of hundreds of milliseconds in the middle of serving. A model compiles each bucket in
`warm_up`, before its deployment reports ready, and never again.

Nothing here imports JAX: the API process loads this without loading a compute stack.
"""

from __future__ import annotations

import abc
import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aiaas.core.signatures import ModelSignature


def bucket_sizes_for(max_batch_size: int) -> tuple[int, ...]:
    """The padded batch sizes of a model: powers of two below `max_batch_size`, then
    `max_batch_size` itself. The last bucket is the limit rather than the next power of two, so
    a full batch of a limit like 100 pays for no padding rows."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
    sizes = []
    size = 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch_size)
    return tuple(sizes)


def pad_to_bucket(rows: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds `rows`. `buckets` ascend, as `bucket_sizes_for` gives
    them: this runs for every batch, so it searches rather than sorts."""
    if rows < 1:
        raise ValueError(f"a batch has at least 1 row, not {rows}")
    index = bisect.bisect_left(buckets, rows)
    if index == len(buckets):
        raise ValueError(f"{rows} rows exceed the largest bucket, {max(buckets, default=0)}")
    return buckets[index]


class LoadedModel(abc.ABC):
    """A model version ready to predict, as a serving runtime's `load` returns it.

    Subclasses set `signature` and `max_batch_size` (through this `__init__`), compile in
    `warm_up`, and count their compilations so that a test, and `/metrics`, can see that the
    steady state compiles nothing."""

    def __init__(self, signature: ModelSignature, max_batch_size: int) -> None:
        self.signature = signature
        self.max_batch_size = max_batch_size
        self.bucket_sizes: tuple[int, ...] = bucket_sizes_for(max_batch_size)

    @abc.abstractmethod
    def warm_up(self) -> None:
        """Compile and run every bucket once. Blocking: call it from a thread. Afterwards no batch
        of 1..max_batch_size rows compiles anything."""

    @abc.abstractmethod
    def predict_batch(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for a batch that `check_inputs` vetted, each with as many rows as the
        inputs, in the same order. Blocking: the batcher calls it from a thread, never on the
        event loop, and one batch at a time."""

    @property
    @abc.abstractmethod
    def compilations(self) -> int:
        """How many XLA compilations this model has triggered so far."""


class ServingRuntime(abc.ABC):
    """Loads registered model versions of the formats it knows and answers predictions."""

    @abc.abstractmethod
    def supported_model_formats(self) -> frozenset[str]:
        """The model formats (for example `flax-nnx`) this runtime can load."""

    @abc.abstractmethod
    def load(self, bundle: bytes, *, max_batch_size: int) -> LoadedModel:
        """A model ready to warm up, from a model version's bundle. Blocking (it decodes
        weights and may move them to a device): called in a thread."""

    def onnx_graph(self, bundle: bytes) -> bytes | None:
        """The model of `bundle` as a serialized ONNX graph, for export; None where this runtime
        cannot convert its models. Blocking: called in a thread."""
        return None

    def uploadable_formats(self) -> frozenset[str]:
        """The model formats whose files a user may upload as a model version
        (`bundle_upload`): none, unless the runtime can vet a file it did not make."""
        return frozenset()

    def bundle_upload(
        self, model_format: str, source: Path, declared: ModelSignature | None
    ) -> UploadedModel:
        """The uploaded model file at `source`, vetted, as a bundle this runtime loads.
        `declared` is the signature the uploader gave, which must match the model; without one
        it is inferred. The file is hostile until proven otherwise: read it where its cost is
        bounded (a child process under a memory ceiling), not in the calling process.
        Raises `SignatureMismatchError` where `declared` does not match, and `ValueError` saying
        what is wrong with the file otherwise. Blocking: called in a thread."""
        raise ValueError(f"models of format {model_format!r} cannot be uploaded")


class SignatureMismatchError(ValueError):
    """`ServingRuntime.bundle_upload`: the declared signature does not match the model."""


@dataclass(frozen=True, kw_only=True)
class UploadedModel:
    """What `ServingRuntime.bundle_upload` makes of an uploaded file."""

    bundle: bytes
    signature: ModelSignature
