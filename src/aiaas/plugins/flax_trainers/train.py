"""The train loop: the train step, the eval step and `train_and_evaluate`.

The step is a functional `jax.jit` over the `nnx.split` state (the graph definition is static,
the parameters and optimizer state are plain pytrees), with the state buffers donated so each
step updates them in place. Plain `nnx.jit` would walk the module graph in Python on every call.
Batches are sharded over the local devices and staged ahead (`staging`), so a step moves
nothing between host and device.

Losses are read late and in blocks: each step writes its loss into a small device array, and a
block of `LOSS_BLOCK` steps is read back once the device has finished it, which the host never
waits for unless the device is `MAX_UNREAD_BLOCKS` behind. Before a checkpoint every loss is
read at once, and the state checked, so that a diverged state is never saved.
"""

from __future__ import annotations

import functools
import math
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
from aiaas.core.trainers import CheckpointSealer, Progress, Task, TrainingReporter
from aiaas.formats.flax_nnx_models import build_model
from aiaas.plugins.flax_trainers.checkpoints import CheckpointStore
from aiaas.plugins.flax_trainers.staging import (
    BatchStager,
    Schedule,
    data_mesh,
    partition,
    plan_schedule,
)

EVAL_BATCH = 1024
LOSS_BLOCK = 8
"""Losses are collected on the device and read back this many steps at a time: reading a
device array costs the host tens of microseconds, too much to pay on every step."""
MAX_UNREAD_BLOCKS = 2
"""Blocks the device may run ahead of the losses read back: enough to keep it busy while the
host reports, few enough that a divergence is caught within a few dozen steps."""
RATE_WINDOW = 16
"""Loss blocks over which examples/s is measured: recent enough to follow changes, long enough
to smooth the jitter."""


@dataclass(frozen=True, kw_only=True)
class TrainingArrays:
    train_inputs: np.ndarray
    train_targets: np.ndarray
    """Class indices (int32) for a classifier, the standardized target (float32) otherwise."""
    validation_inputs: np.ndarray
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
    validation_outputs: np.ndarray
    """Probabilities [rows, classes] of a classifier, standardized predictions [rows] else."""
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


@functools.lru_cache(maxsize=16)
def compiled_eval_step(graphdef: nnx.GraphDef[Any], task: Task, mesh: Mesh) -> Callable[..., Any]:
    """Probabilities of a classifier, the standardized prediction of a regressor."""

    def eval_step(params: Any, inputs: jax.Array) -> jax.Array:
        outputs = nnx.merge(graphdef, params)(inputs)
        return jax.nn.softmax(outputs) if task == "classification" else outputs[:, 0]

    return jax.jit(eval_step, out_shardings=NamedSharding(mesh, partition("data")))


Unread = deque[tuple[int, int, Any]]
"""Blocks of steps (first, last, their `losses` device array) not read yet, oldest first.
`Any`, because `jax.Array` does not declare the `is_ready` that every concrete array has."""


class _ProgressMeter:
    """Turns finished losses into `Progress` reports; raises when a loss is not finite."""

    def __init__(
        self, reporter: TrainingReporter, schedule: Schedule, start_step: int, now: float
    ) -> None:
        self.reporter = reporter
        self.schedule = schedule
        self.window: deque[tuple[float, int]] = deque([(now, start_step)], maxlen=RATE_WINDOW)

    def report_finished(self, unread: Unread) -> None:
        """Reports the blocks the device has finished, oldest first, without waiting for it;
        waits only once it is `MAX_UNREAD_BLOCKS` behind, to bound how late a report (or a
        divergence) can be."""
        while unread and (len(unread) > MAX_UNREAD_BLOCKS or unread[0][2].is_ready()):
            self.report_block(*unread.popleft())

    def report_all(self, unread: Unread) -> None:
        while unread:
            self.report_block(*unread.popleft())

    def report_block(self, first: int, last: int, losses: jax.Array) -> None:
        values = np.asarray(losses).tolist()
        now = time.perf_counter()
        self.window.append((now, last))
        first_time, first_step = self.window[0]
        steps_per_s = (last - first_step) / max(now - first_time, 1e-9)
        for step in range(first, last + 1):
            # Step n (counted from 1) wrote its loss at (n - 1) % LOSS_BLOCK.
            value = values[(step - 1) % LOSS_BLOCK]
            if not math.isfinite(value):
                raise TrainingDiverged(f"loss became {value} at step {step}")
            self.reporter.progress(
                Progress(
                    step=step,
                    total_steps=self.schedule.total_steps,
                    epoch=(step - 1) // self.schedule.steps_per_epoch + 1,
                    metrics={"loss": value},
                    examples_per_s=steps_per_s * self.schedule.batch_size,
                    eta_s=(self.schedule.total_steps - step) / max(steps_per_s, 1e-9),
                )
            )


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
        )
        params = loop.run(params, optimizer_state, step)

    eval_step = compiled_eval_step(graphdef, settings.task, mesh)
    outputs = _evaluate(eval_step, params, arrays.validation_inputs, mesh)
    return TrainingResult(
        params=jax.device_get(params), validation_outputs=outputs, steps=schedule.total_steps
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

    def run(self, params: Any, optimizer_state: Any, step: int) -> Any:
        """Steps from `step` to the end; returns the final parameters."""
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
        meter = _ProgressMeter(reporter, schedule, step, time.perf_counter())
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
            checkpoint = (
                step % self.settings.checkpoint_every_steps == 0 or step == schedule.total_steps
            )
            if step % LOSS_BLOCK == 0 or checkpoint:
                unread.append((block_first, step, losses))
                block_first = step + 1
                meter.report_finished(unread)
            if checkpoint:
                meter.report_all(unread)
                self._checkpoint(step, params, optimizer_state)
        return params

    def _checkpoint(self, step: int, params: Any, optimizer_state: Any) -> None:
        """Only a state whose loss (reported just before) and parameters are finite is saved."""
        leaves = _host_state(params, optimizer_state)
        if not _all_finite(leaves):
            raise TrainingDiverged(f"the training state became non-finite at step {step}")
        layout = {
            "batch_size": self.schedule.batch_size,
            "steps_per_epoch": self.schedule.steps_per_epoch,
            "total_steps": self.schedule.total_steps,
        }
        self.reporter.checkpointing(step)
        self.store.save(step, leaves, layout)
        self.reporter.checkpointed(step)


def _evaluate(
    eval_step: Callable[..., Any], params: Any, inputs: np.ndarray, mesh: Mesh
) -> np.ndarray:
    """Outputs for every validation row, in fixed-size batches (the last one padded) so that
    evaluation compiles once."""
    count = inputs.shape[0]
    if count == 0:
        return np.zeros((0,), dtype=np.float32)
    batch = min(EVAL_BATCH, 1 << max(0, count - 1).bit_length())
    batch = -(-batch // mesh.size) * mesh.size
    sharding = NamedSharding(mesh, partition("data"))
    outputs = []
    for start in range(0, count, batch):
        part = inputs[start : start + batch]
        padded = np.concatenate([part, np.zeros((batch - len(part), *part.shape[1:]), part.dtype)])
        outputs.append(np.asarray(eval_step(params, jax.device_put(padded, sharding)))[: len(part)])
    return np.concatenate(outputs)
