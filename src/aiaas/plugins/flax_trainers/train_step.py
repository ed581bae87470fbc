"""The jitted train step: one optimizer update on one staged batch, with the loss written on
the device.

A functional `jax.jit` over the `nnx.split` state (the graph definition is static, the
parameters and optimizer state are plain pytrees), with the state buffers donated so each step
updates them in place. Plain `nnx.jit` would walk the module graph in Python on every call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax  # type: ignore[import-untyped]
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from aiaas.core.trainers import Task
from aiaas.plugins.flax_trainers.augmentation import Augmentation
from aiaas.plugins.flax_trainers.optimizer import make_optimizer
from aiaas.plugins.flax_trainers.progress_meter import LOSS_BLOCK
from aiaas.plugins.flax_trainers.staging import Schedule, partition

AUGMENTATION_STREAM = 1
"""Augmentation's key is folded from the step's with this, apart from dropout's."""


def loss_of(
    task: Task, outputs: jax.Array, targets: jax.Array, class_weights: jax.Array | None
) -> jax.Array:
    if task == "classification":
        per_example = optax.softmax_cross_entropy_with_integer_labels(outputs, targets)
        if class_weights is not None:
            per_example = per_example * class_weights[targets]
        return jnp.mean(per_example)
    return jnp.mean((outputs[:, 0] - targets) ** 2)


@functools.lru_cache(maxsize=16)
def compiled_train_step(
    graphdef: nnx.GraphDef[Any],
    task: Task,
    optimizer_settings: tuple[float, float, str, float],
    weighted: bool,
    dropout_seed: int | None,
    schedule: Schedule,
    mesh: Mesh,
    augmentation: tuple[Augmentation, int] | None = None,
) -> Callable[..., Any]:
    """The jitted train step, kept per model, optimizer and schedule: a second run of the same
    configuration in this process (a retry, a resumed job) compiles nothing.

    `step(params, optimizer_state, step_count, losses, inputs, targets, class_weights)`
    returns the three updated (and donated) states and `losses` with this step's loss written
    at `step_count % LOSS_BLOCK`. The step count lives on the device and says which batch of
    the staged chunk to take, so a step sends nothing. `optimizer_settings`: learning rate,
    weight decay, schedule and warmup fraction. `dropout_seed`: for a model with dropout (an
    MLP's), whose key each step derives from it and the step count; None for any other.
    `augmentation`: for images, the augmentation and the seed its keys derive from, as
    dropout's do; None for none."""
    learning_rate, weight_decay, lr_schedule, warmup_fraction = optimizer_settings
    total_steps = schedule.total_steps
    optimizer = make_optimizer(
        learning_rate,
        weight_decay,
        lr_schedule,
        total_steps,
        round(warmup_fraction * total_steps),
    )

    def train_step(
        params: Any,
        optimizer_state: Any,
        step_count: jax.Array,
        losses: jax.Array,
        inputs: jax.Array,
        targets: jax.Array,
        class_weights: jax.Array,
    ) -> tuple[Any, Any, jax.Array, jax.Array]:
        # Chunks start afresh with each epoch (see `staging.BatchStager`).
        position = step_count % schedule.steps_per_epoch % schedule.chunk_steps
        batch_inputs, batch_targets = inputs[position], targets[position]
        if augmentation is not None:
            augment, seed = augmentation
            key = jax.random.fold_in(jax.random.key(seed), step_count)
            batch_inputs = augment(batch_inputs, jax.random.fold_in(key, AUGMENTATION_STREAM))

        def loss_fn(trainable: Any) -> jax.Array:
            model = nnx.merge(graphdef, trainable)
            if dropout_seed is None:
                outputs = model(batch_inputs)
            else:
                key = jax.random.fold_in(jax.random.key(dropout_seed), step_count)
                outputs = model(batch_inputs, dropout_key=key)
            # Unweighted, the loss skips the per-example weight lookup altogether.
            return loss_of(task, outputs, batch_targets, class_weights if weighted else None)

        loss, gradients = jax.value_and_grad(loss_fn)(params)
        updates, optimizer_state = optimizer.update(gradients, optimizer_state, params)
        losses = losses.at[step_count % LOSS_BLOCK].set(loss)
        return optax.apply_updates(params, updates), optimizer_state, step_count + 1, losses

    replicated = NamedSharding(mesh, partition())
    return jax.jit(train_step, donate_argnums=(0, 1, 2), out_shardings=replicated)
