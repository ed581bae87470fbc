"""The train loop: `train_and_evaluate` runs the jitted step (`train_step`) over the staged
batches, and evaluates each epoch.

Batches are sharded over the local devices and staged ahead (`staging`), so a step moves
nothing between host and device. Steps run in segments (`segments`): one dispatch runs, as a
loop on the device, every step up to the next point where the host has something to do (read a
block of losses, evaluate an epoch, stage a chunk, checkpoint), and cancellation is checked
between segments.

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
(`evaluation.epoch_metrics`).

Early stopping (`early_stopping`) judges each epoch's `val_loss` as it is read, and keeps a
device copy of the best epoch's parameters; those are the model's, and so is their evaluation.
Without it (patience 0, no validation split) the last epoch's are.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax  # type: ignore[import-untyped]
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from aiaas.core.errors import TrainingCancelled, TrainingDiverged
from aiaas.core.trainers import CheckpointSealer, Task, TrainingReporter
from aiaas.formats.flax_nnx_models import build_model
from aiaas.plugins.flax_trainers.augmentation import Augmentation
from aiaas.plugins.flax_trainers.checkpoints import CheckpointStore
from aiaas.plugins.flax_trainers.early_stopping import EarlyStopping
from aiaas.plugins.flax_trainers.optimizer import make_optimizer
from aiaas.plugins.flax_trainers.progress_meter import (
    LOSS_BLOCK,
    EpochLoss,
    ProgressMeter,
    Unread,
)
from aiaas.plugins.flax_trainers.segments import compiled_train_steps, segment_end
from aiaas.plugins.flax_trainers.staging import (
    BatchStager,
    Schedule,
    data_mesh,
    partition,
    plan_schedule,
)
from aiaas.plugins.flax_trainers.train_step import compiled_train_step
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
    patience: int = 0
    """Early stopping's (`early_stopping`); 0 keeps the last epoch's parameters."""
    lr_schedule: str = "constant"
    warmup_fraction: float = 0.0
    checkpoint_dir: Path
    checkpoint_every_steps: int
    checkpoint_sealer: CheckpointSealer | None = None
    epoch_verdicts: bool = False
    """`TrainingRun.epoch_verdicts`."""
    augmentation: Augmentation | None = None
    """For images: what the train step does to each batch (`augmentation`)."""


@dataclass(frozen=True, kw_only=True)
class TrainingResult:
    params: dict[str, Any]
    """Host numpy arrays, as `nnx.to_pure_dict` nests them."""
    metrics: dict[str, Any]
    """`TrainingArrays.evaluate` of the returned parameters, with `best_epoch` and
    `epochs_run` when early stopping ran."""
    steps: int
    """The steps that count: up to the epoch at which early stopping stopped, else all."""


def initial_state(
    architecture: Mapping[str, Any], seed: int, optimizer: optax.GradientTransformation
) -> tuple[nnx.GraphDef[Any], dict[str, Any], Any]:
    graphdef, state = nnx.split(build_model(architecture, nnx.Rngs(seed)))
    params = nnx.to_pure_dict(state)
    return graphdef, params, optimizer.init(params)


def _optimizer_of(settings: LoopSettings, total_steps: int = 1) -> optax.GradientTransformation:
    """The run's optimizer; its state's structure does not depend on `total_steps`, so
    `initial_state` can build it before the schedule is planned."""
    warmup_steps = round(settings.warmup_fraction * total_steps)
    return make_optimizer(
        settings.learning_rate,
        settings.weight_decay,
        settings.lr_schedule,
        total_steps,
        warmup_steps,
    )


def _host_state(*trees: Any) -> list[np.ndarray]:
    leaves = jax.device_get(jax.tree.leaves(trees))
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
    graphdef, params, optimizer_state = initial_state(
        architecture, settings.seed, _optimizer_of(settings)
    )
    treedef = jax.tree.structure((params, optimizer_state))
    state_leaves = len(jax.tree.leaves((params, optimizer_state)))
    # Early stopping keeps the best epoch's parameters, and a checkpoint keeps them too (after
    # the train state), so that a resumed run ends like an uninterrupted one.
    stopping_on = settings.patience > 0 and arrays.validation_inputs.shape[0] > 0
    template = _host_state(params, optimizer_state, *([params] if stopping_on else []))
    row_bytes = arrays.train_inputs[:1].nbytes + arrays.train_targets[:1].nbytes

    with CheckpointStore(settings.checkpoint_dir, settings.checkpoint_sealer) as store:
        restored = store.restore_latest(template)
        schedule = plan_schedule(
            arrays.train_inputs.shape[0],
            settings.epochs,
            settings.batch_size,
            mesh.size,
            row_bytes,
            restored.layout.get("batch_size") if restored else None,
        )
        step = 0
        best_params = None
        if restored is not None:
            step = min(restored.step, schedule.total_steps)
            params, optimizer_state = jax.tree.unflatten(treedef, restored.leaves[:state_leaves])
            if stopping_on:
                best_params = jax.device_put(
                    jax.tree.unflatten(jax.tree.structure(params), restored.leaves[state_leaves:]),
                    replicated,
                )
        params, optimizer_state = jax.device_put((params, optimizer_state), replicated)
        stopping = (
            EarlyStopping(
                settings.patience,
                schedule.steps_per_epoch,
                restored.layout if restored else None,
                best_params,
            )
            if stopping_on
            else None
        )
        validation = ValidationSplit(
            arrays.validation_inputs, compiled_evaluation(graphdef, settings.task, mesh), mesh
        )
        reporter.resumed(step)
        dropout = architecture.get("kind") == "mlp" and architecture.get("dropout", 0.0) > 0
        augmentation = settings.augmentation
        loop = _Loop(
            train_steps=compiled_train_steps(
                compiled_train_step(
                    graphdef,
                    settings.task,
                    (
                        settings.learning_rate,
                        settings.weight_decay,
                        settings.lr_schedule,
                        settings.warmup_fraction,
                    ),
                    arrays.class_weights is not None,
                    settings.seed if dropout else None,
                    schedule,
                    mesh,
                    None if augmentation is None else (augmentation, settings.seed),
                ),
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
            stopping=stopping,
        )
        epoch_loss = EpochLoss.from_layout(restored.layout, schedule) if restored else EpochLoss()
        params = loop.run(params, optimizer_state, step, epoch_loss)

    steps = schedule.total_steps
    if stopping is not None and stopping.best_params is not None:
        params = stopping.best_params
    # The evaluation of the parameters kept: the same compiled call on the same parameters as
    # the best (or last) epoch's, so the same figures.
    metrics = arrays.evaluate(validation.outputs(validation.dispatch(params)))
    if stopping is not None:
        steps = stopping.stop_step or steps
        metrics["best_epoch"] = stopping.best_epoch
        metrics["epochs_run"] = steps // schedule.steps_per_epoch
    return TrainingResult(params=jax.device_get(params), metrics=metrics, steps=steps)


@dataclass(kw_only=True)
class _Loop:
    train_steps: Callable[..., Any]
    stager: BatchStager
    arrays: TrainingArrays
    settings: LoopSettings
    schedule: Schedule
    reporter: TrainingReporter
    store: CheckpointStore
    mesh: Mesh
    validation: ValidationSplit
    stopping: EarlyStopping | None

    def run(self, params: Any, optimizer_state: Any, step: int, epoch_loss: EpochLoss) -> Any:
        """Steps from `step` to the end, or until early stopping stops; returns the last
        parameters."""
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
            stopping=self.stopping,
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
            end = segment_end(step, schedule, self.settings.checkpoint_every_steps)
            params, optimizer_state, step_count, losses = self.train_steps(
                params,
                optimizer_state,
                step_count,
                losses,
                inputs,
                targets,
                class_weights,
                end - step,
            )
            step = end
            epoch_ended = step % schedule.steps_per_epoch == 0
            if epoch_ended:
                meter.evaluated(step, self.validation.dispatch(params))
                if self.stopping is not None:
                    self.stopping.keep(step, params)
            checkpoint = (
                step % self.settings.checkpoint_every_steps == 0 or step == schedule.total_steps
            )
            # An epoch someone is waiting to judge ends its block early and is read at once.
            verdict_due = epoch_ended and self.settings.epoch_verdicts
            if step % LOSS_BLOCK == 0 or checkpoint or verdict_due:
                unread.append((block_first, step, losses))
                block_first = step + 1
                meter.report_finished(unread)
            if checkpoint or verdict_due:
                meter.report_all(unread)
            if self.stopping is not None and self.stopping.stop_step is not None:
                # The steps run past the stopping epoch are dropped, and so is their state:
                # no checkpoint of it.
                if block_first <= step:
                    unread.append((block_first, step, losses))
                meter.report_all(unread)
                return params
            if checkpoint:
                self._checkpoint(step, params, optimizer_state, meter.epoch_loss)
        return params

    def _checkpoint(
        self, step: int, params: Any, optimizer_state: Any, epoch_loss: EpochLoss
    ) -> None:
        """Only a state whose loss (reported just before) and parameters are finite is saved.
        Every epoch that ended has been judged by then, so early stopping's best parameters
        (the current ones while there is none) are saved with it."""
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
        if self.stopping is not None:
            best = self.stopping.best_params
            leaves += _host_state(params if best is None else best)
            layout.update(self.stopping.checkpoint_layout())
        self.reporter.checkpointing(step)
        self.store.save(step, leaves, layout)
        self.reporter.checkpointed(step)
