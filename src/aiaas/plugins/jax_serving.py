"""The built-in JAX serving runtime, registered through `aiaas_serving_runtimes` like any plugin's.

It loads `flax-nnx` bundles (see `aiaas.formats.flax_nnx`) into a `LoadedModel`
whose batches run through one `jax.jit` of the bundle's pure `apply(params, batch)`. Every batch
is padded with zero rows to its bucket (`aiaas.core.runtimes.bucket_sizes_for`), so the function
sees only as many shapes as there are buckets: each is compiled once, in `warm_up`, and serving
never compiles again. Zero rows are safe padding: the features are standardized, so zero is an
ordinary input, and the padded rows' outputs are sliced off before anyone sees them.

The persistent compilation cache is JAX's own: it is used when `JAX_COMPILATION_CACHE_DIR` is set
(or the process configured `jax_compilation_cache_dir`, as `aiaas worker` does), and this module
never sets or overrides it. With it, a replica that starts after another one loads the compiled
buckets from disk instead of compiling them.

Importing this module does not import JAX; loading a bundle does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

from aiaas.core.config import Config
from aiaas.core.hookspecs import hookimpl
from aiaas.core.runtimes import LoadedModel, ServingRuntime, pad_to_bucket
from aiaas.core.signatures import STRING_DTYPES, TensorSpec
from aiaas.core.specs import ServingRuntimeSpec
from aiaas.formats import flax_nnx


class JaxServingRuntime(ServingRuntime):
    """Serves `flax-nnx` bundles with jit-compiled, bucket-padded batches."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config

    def supported_model_formats(self) -> frozenset[str]:
        return frozenset({flax_nnx.FORMAT})

    def load(self, bundle: bytes, *, max_batch_size: int) -> LoadedModel:
        """A model ready to warm up. Blocking (it decodes weights and moves them to the
        device): call it from a thread."""
        return JaxLoadedModel(flax_nnx.load_predictor(bundle), max_batch_size=max_batch_size)


class JaxLoadedModel(LoadedModel):
    """A `Predictor` behind one jitted function, padded to buckets.

    `compilations` counts traces of that function. JAX traces a jitted function's Python body
    only when a call brings an argument signature (shapes, dtypes) it has not compiled yet, and
    each trace is followed by one compilation (or its retrieval from the persistent cache), so
    the count is exactly the number of executables this model has needed. Counting traces
    rather than asking the jitted function's private `_cache_size()` keeps to public behaviour
    of JAX; a test can still watch it grow by calling with a shape outside the buckets."""

    def __init__(self, predictor: flax_nnx.Predictor, *, max_batch_size: int) -> None:
        import jax

        super().__init__(predictor.signature, max_batch_size)
        self.predictor = predictor
        self.task: str = predictor.task
        self._classes = np.asarray(predictor.classes)
        self._traces = 0
        self._trace_lock = threading.Lock()

        def apply_traced(params: Any, inputs: Any) -> dict[str, Any]:
            # Runs only while JAX traces, i.e. once per compilation: see the class docstring.
            with self._trace_lock:
                self._traces += 1
            return dict(predictor.apply(params, {"inputs": inputs}))

        self._apply = jax.jit(apply_traced)

    @property
    def compilations(self) -> int:
        return self._traces

    def warm_up(self) -> None:
        """Run a batch of every bucket size through the whole path (preprocessing included), so
        each bucket is compiled, and the first real request finds nothing cold."""
        row = {spec.name: _placeholder(spec) for spec in self.signature.inputs}
        for bucket in self.bucket_sizes:
            columns = {name: np.repeat(value, bucket, axis=0) for name, value in row.items()}
            self.predict_batch(columns)

    def predict_batch(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = self.predictor.preprocess(columns)["inputs"]
        rows = inputs.shape[0]
        bucket = pad_to_bucket(rows, self.bucket_sizes)
        if bucket != rows:
            padded = np.zeros((bucket, *inputs.shape[1:]), dtype=inputs.dtype)
            padded[:rows] = inputs
            inputs = padded
        # np.asarray waits for the device and copies to the host: the batch is done after it.
        outputs = {
            name: np.asarray(value)[:rows]
            for name, value in self._apply(self.predictor.params, inputs).items()
        }
        if self.task == "classification":
            probabilities = outputs["probabilities"].astype(np.float32, copy=False)
            return {
                "label": self._classes[probabilities.argmax(axis=1)],
                "probabilities": probabilities,
            }
        return {"value": outputs["value"].astype(np.float32, copy=False)}


def _placeholder(spec: TensorSpec) -> np.ndarray:
    """One row of an input, for warm-up: its value does not matter, only its type and shape."""
    shape = (1, *(1 if size == -1 else size for size in spec.shape[1:]))
    if spec.dtype in STRING_DTYPES:
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=np.dtype(spec.dtype))


@hookimpl
def aiaas_serving_runtimes() -> Iterable[ServingRuntimeSpec]:
    return [
        ServingRuntimeSpec(
            name="jax",
            factory=JaxServingRuntime,
            description="Serves flax-nnx models with jit-compiled, adaptively batched calls.",
        )
    ]
