"""The validation split of a training run, staged on the devices once, and its evaluation: one
jitted call (`compiled_evaluation`) maps the model over all of it, batch by batch."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from aiaas.core.trainers import Task
from aiaas.plugins.flax_trainers.staging import partition

EVAL_BATCH = 1024
"""Validation rows the model reads at once: the evaluation maps over the split in batches of
this size, so its memory is that of one batch whatever the split's size."""


@functools.lru_cache(maxsize=16)
def compiled_evaluation(graphdef: nnx.GraphDef[Any], task: Task, mesh: Mesh) -> Callable[..., Any]:
    """Probabilities of a classifier, the standardized prediction of a regressor, for every
    row of a staged validation split [batches, batch, ...] in one call: `lax.map` runs the
    batches one after another. Kept per model, like the train step, so that every epoch's
    evaluation and the final one share one compilation."""

    def evaluate(params: Any, inputs: jax.Array) -> jax.Array:
        def batch_outputs(batch: jax.Array) -> jax.Array:
            outputs = nnx.merge(graphdef, params)(batch)
            return jax.nn.softmax(outputs) if task == "classification" else outputs[:, 0]

        outputs: jax.Array = jax.lax.map(batch_outputs, inputs)
        return outputs

    return jax.jit(evaluate, out_shardings=NamedSharding(mesh, partition(None, "data")))


class ValidationSplit:
    """The validation inputs, staged on the devices once as [batches, batch, ...] (the last
    batch padded), and their evaluation: `dispatch` starts it without waiting, `outputs` reads
    it back."""

    def __init__(self, inputs: np.ndarray, evaluation: Callable[..., Any], mesh: Mesh) -> None:
        self.count = inputs.shape[0]
        self.evaluation = evaluation
        self.staged: jax.Array | None = None
        if self.count == 0:
            return
        batch = min(EVAL_BATCH, 1 << max(0, self.count - 1).bit_length())
        batch = -(-batch // mesh.size) * mesh.size
        batches = -(-self.count // batch)
        padded = np.zeros((batches * batch, *inputs.shape[1:]), inputs.dtype)
        padded[: self.count] = inputs
        self.staged = jax.device_put(
            padded.reshape(batches, batch, *inputs.shape[1:]),
            NamedSharding(mesh, partition(None, "data")),
        )

    def dispatch(self, params: Any) -> jax.Array | None:
        """The evaluation of `params`, under way on the devices; None for an empty split."""
        if self.staged is None:
            return None
        outputs: jax.Array = self.evaluation(params, self.staged)
        return outputs

    def outputs(self, dispatched: jax.Array | None) -> np.ndarray:
        if dispatched is None:
            return np.zeros((0,), dtype=np.float32)
        outputs = np.asarray(dispatched)
        return outputs.reshape(-1, *outputs.shape[2:])[: self.count]
