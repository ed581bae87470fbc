"""The train loop: the train step, the evaluation and `train_and_evaluate`.

The step is a functional `jax.jit` over the `nnx.split` state (the graph definition is static,
the parameters and optimizer state are plain pytrees), with the state buffers donated so each
step updates them in place. Plain `nnx.jit` would walk the module graph in Python on every call.
Batches are sharded over the local devices and staged ahead (`staging`), so a step moves
nothing between host and device.

Losses are read late and in blocks: each step writes its loss into a small device array, and a
block of `LOSS_BLOCK` steps is read back once the device has finished it, which the host never
waits for unless the device is `MAX_UNREAD_BLOCKS` behind (`progress_meter`). Before a
checkpoint every loss is read at once, and the state checked, so that a diverged state is never
saved.

Each epoch ends with an evaluation of the validation split: the split is staged on the devices
once, and one jitted call (`validation_split.compiled_evaluation`) maps the model over all of
it, batch by batch. Its outputs are read as late as the losses, with the block that holds the
epoch's last step, whose progress then carries the epoch's metrics: `train_loss`, the mean of
the epoch's step losses, and the evaluation's figures prefixed `val_`
(`evaluation.epoch_metrics`). The last epoch's evaluation is the model's.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax  # type: ignore[import-untyped]
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from aiaas.core.errors import TrainingCancelled, TrainingDiverged
from aiaas.core.trainers import CheckpointSealer, Task, TrainingReporter
from aiaas.formats.flax_nnx_models import build_model
from aiaas.plugins.flax_trainers.checkpoints import CheckpointStore
from aiaas.plugins.flax_trainers.progress_meter import (
    LOSS_BLOCK,
    EpochLoss,
    ProgressMeter,
    Unread,
)
from aiaas.plugins.flax_trainers.staging import (
    BatchStager,
    Schedule,
    data_mesh,
    partition,
    plan_schedule,
)
from aiaas.plugins.flax_trainers.validation_split import ValidationSplit, compiled_evaluation


@dataclass(frozen=True, kw_only=True)
class TrainingArrays:
    train_inputs: np.ndarray
    train_targets: np.ndarray
    """Class indices (int32) for a classifier, the standardized target (float32) otherwise."""
    validation_inputs: np.ndarray
    evaluate: Callable[[np.ndarray], dict[str, Any]]
    """The evaluation of the validation outputs (probabilities [rows, classes] of a classifier,
    standardized predictions [rows] of a regressor): what the model version records and, as
    `epoch_metrics`, what each epoch reports."""
    class_weights: np.ndarray | None = None
    """Per-class loss weights of a classifier; None when weighting is off."""


@dataclass(frozen=True, kw_only=True)
class LoopSettings:
    task: Task
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    checkpoint_dir: Path
    checkpoint_every_steps: int
    checkpoint_sealer: CheckpointSealer | None = None


@dataclass(frozen=True, kw_only=True)
class TrainingResult:
    params: dict[str, Any]
    """Host numpy arrays, as `nnx.to_pure_dict` nests them."""
    metrics: dict[str, Any]
    """`TrainingArrays.evaluate` of the final parameters."""
    steps: int


def initial_state(
    architecture: Mapping[str, Any], seed: int, optimizer: optax.GradientTransformation
) -> tuple[nnx.GraphDef[Any], dict[str, Any], Any]:
    graphdef, state = nnx.split(build_model(architecture, nnx.Rngs(seed)))
    params = nnx.to_pure_dict(state)
    return graphdef, params, optimizer.init(params)


def make_optimizer(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    return optax.adamw(learning_rate, weight_decay=weight_decay)


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
    learning_rate: float,
    weight_decay: float,
    weighted: bool,
    schedule: Schedule,
    mesh: Mesh,
) -> Callable[..., Any]:
    """The jitted train step, kept per model, optimizer and schedule: a second run of the same
    configuration in this process (a retry, a resumed job) compiles nothing.

    `step(params, optimizer_state, step_count, losses, inputs, targets, class_weights)`
    returns the three updated (and donated) states and `losses` with this step's loss written
    at `step_count % LOSS_BLOCK`. The step count lives on the device and says which batch of
    the staged chunk to take, so a step sends nothing."""
    optimizer = make_optimizer(learning_rate, weight_decay)

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

        def loss_fn(trainable: Any) -> jax.Array:
            outputs = nnx.merge(graphdef, trainable)(batch_inputs)
            # Unweighted, the loss skips the per-example weight lookup altogether.
            return loss_of(task, outputs, batch_targets, class_weights if weighted else None)

        loss, gradients = jax.value_and_grad(loss_fn)(params)
        updates, optimizer_state = optimizer.update(gradients, optimizer_state, params)
        losses = losses.at[step_count % LOSS_BLOCK].set(loss)
        return optax.apply_updates(params, updates), optimizer_state, step_count + 1, losses

    replicated = NamedSharding(mesh, partition())
    return jax.jit(train_step, donate_argnums=(0, 1, 2), out_shardings=replicated)


def _host_state(params: Any, optimizer_state: Any) -> list[np.ndarray]:
    leaves = jax.device_get(jax.tree.leaves((params, optimizer_state)))
    return [np.asarray(leaf) for leaf in leaves]


def _all_finite(leaves: list[np.ndarray]) -> bool:
    return all(np.isfinite(leaf).all() for leaf in leaves if leaf.dtype.kind == "f")


def train_and_evaluate(
    architecture: Mapping[str, Any],
    arrays: TrainingArrays,
    settings: LoopSettings,
    reporter: TrainingReporter,
) -> TrainingResult:
    mesh = data_mesh()
    replicated = NamedSharding(mesh, partition())
    optimizer = make_optimizer(settings.learning_rate, settings.weight_decay)
    graphdef, params, optimizer_state = initial_state(architecture, settings.seed, optimizer)
    treedef = jax.tree.structure((params, optimizer_state))
    row_bytes = arrays.train_inputs[:1].nbytes + arrays.train_targets[:1].nbytes

    with CheckpointStore(settings.checkpoint_dir, settings.checkpoint_sealer) as store:
        restored = store.restore_latest(_host_state(params, optimizer_state))
        schedule = plan_schedule(
            arrays.train_inputs.shape[0],
            settings.epochs,
            settings.batch_size,
            mesh.size,
            row_bytes,
            restored.layout.get("batch_size") if restored else None,
        )
        step = 0
        if restored is not None:
            step = min(restored.step, schedule.total_steps)
            params, optimizer_state = jax.tree.unflatten(treedef, restored.leaves)
        params, optimizer_state = jax.device_put((params, optimizer_state), replicated)
        validation = ValidationSplit(
            arrays.validation_inputs, compiled_evaluation(graphdef, settings.task, mesh), mesh
        )
        reporter.resumed(step)
        loop = _Loop(
            train_step=compiled_train_step(
                graphdef,
                settings.task,
                settings.learning_rate,
                settings.weight_decay,
                arrays.class_weights is not None,
                schedule,
                mesh,
            ),
            stager=BatchStager(
                arrays.train_inputs, arrays.train_targets, schedule, settings.seed, mesh
            ),
            arrays=arrays,
            settings=settings,
            schedule=schedule,
            reporter=reporter,
            store=store,
            mesh=mesh,
            validation=validation,
        )
        epoch_loss = EpochLoss.from_layout(restored.layout, schedule) if restored else EpochLoss()
        params, metrics = loop.run(params, optimizer_state, step, epoch_loss)

    if metrics is None:  # resumed at the end: no epoch ended in this run
        metrics = arrays.evaluate(validation.outputs(validation.dispatch(params)))
    return TrainingResult(
        params=jax.device_get(params), metrics=metrics, steps=schedule.total_steps
    )


@dataclass(kw_only=True)
class _Loop:
    train_step: Callable[..., Any]
    stager: BatchStager
    arrays: TrainingArrays
    settings: LoopSettings
    schedule: Schedule
    reporter: TrainingReporter
    store: CheckpointStore
    mesh: Mesh
    validation: ValidationSplit

    def run(
        self, params: Any, optimizer_state: Any, step: int, epoch_loss: EpochLoss
    ) -> tuple[Any, dict[str, Any] | None]:
        """Steps from `step` to the end; returns the final parameters and their evaluation
        (None when no step was left to run)."""
        schedule, reporter = self.schedule, self.reporter
        weights = self.arrays.class_weights
        class_weights, step_count, losses = jax.device_put(
            (
                weights if weights is not None else np.ones(1, np.float32),
                np.int32(step),
                np.zeros(LOSS_BLOCK, np.float32),
            ),
            NamedSharding(self.mesh, partition()),
        )
        meter = ProgressMeter(
            reporter,
            schedule,
            step,
            time.perf_counter(),
            evaluate=self.arrays.evaluate,
            validation=self.validation,
            epoch_loss=epoch_loss,
        )
        unread: Unread = deque()
        block_first = step + 1  # the first step of the block `losses` is collecting
        staged_key: tuple[int, int] | None = None
        staged: tuple[jax.Array, jax.Array] | None = None
        while step < schedule.total_steps:
            if reporter.should_stop():
                if block_first <= step:
                    unread.append((block_first, step, losses))
                meter.report_all(unread)
                raise TrainingCancelled(f"cancelled at step {step}")
            key = self.stager.key(step)
            if staged is None or key != staged_key:
                staged_key, staged = key, self.stager.stage(key)
            inputs, targets = staged
            params, optimizer_state, step_count, losses = self.train_step(
                params, optimizer_state, step_count, losses, inputs, targets, class_weights
            )
            step += 1
            if step % schedule.steps_per_epoch == 0:
                meter.evaluated(step, self.validation.dispatch(params))
            checkpoint = (
                step % self.settings.checkpoint_every_steps == 0 or step == schedule.total_steps
            )
            if step % LOSS_BLOCK == 0 or checkpoint:
                unread.append((block_first, step, losses))
                block_first = step + 1
                meter.report_finished(unread)
            if checkpoint:
                meter.report_all(unread)
                self._checkpoint(step, params, optimizer_state, meter.epoch_loss)
        return params, meter.final_metrics

    def _checkpoint(
        self, step: int, params: Any, optimizer_state: Any, epoch_loss: EpochLoss
    ) -> None:
        """Only a state whose loss (reported just before) and parameters are finite is saved."""
        leaves = _host_state(params, optimizer_state)
        if not _all_finite(leaves):
            raise TrainingDiverged(f"the training state became non-finite at step {step}")
        layout = {
            "batch_size": self.schedule.batch_size,
            "steps_per_epoch": self.schedule.steps_per_epoch,
            "total_steps": self.schedule.total_steps,
            "epoch_loss_total": epoch_loss.total,
            "epoch_loss_steps": epoch_loss.steps,
        }
        self.reporter.checkpointing(step)
        self.store.save(step, leaves, layout)
        self.reporter.checkpointed(step)
