"""Reading a train loop's losses late and in blocks, and turning them, with each epoch's
evaluation, into `Progress` reports (`ProgressMeter`)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from aiaas.core.errors import TrainingDiverged
from aiaas.core.trainers import Progress, TrainingReporter
from aiaas.plugins.flax_trainers.early_stopping import EarlyStopping
from aiaas.plugins.flax_trainers.evaluation import epoch_metrics
from aiaas.plugins.flax_trainers.staging import Schedule
from aiaas.plugins.flax_trainers.validation_split import ValidationSplit

LOSS_BLOCK = 8
"""Losses are collected on the device and read back this many steps at a time: reading a
device array costs the host tens of microseconds, too much to pay on every step. A block is
also the longest segment of steps run in one dispatch (`segments`), so it bounds how many steps
a cancellation may wait for."""
MAX_UNREAD_BLOCKS = 2
"""Blocks the device may run ahead of the losses read back: enough to keep it busy while the
host reports, few enough that a divergence is caught within a few dozen steps."""
RATE_WINDOW = 16
"""Loss blocks over which examples/s is measured: recent enough to follow changes, long enough
to smooth the jitter."""


Unread = deque[tuple[int, int, Any]]
"""Blocks of steps (first, last, their `losses` device array) not read yet, oldest first.
`Any`, because `jax.Array` does not declare the `is_ready` that every concrete array has."""


@dataclass
class EpochLoss:
    """The step losses of the epoch under way, so far: their mean is the epoch's `train_loss`.
    A checkpoint keeps them, so that an epoch resumed midway has the same mean."""

    total: float = 0.0
    steps: int = 0

    @classmethod
    def from_layout(cls, layout: Mapping[str, Any], schedule: Schedule) -> EpochLoss:
        """What a checkpoint's layout kept; nothing when it was written with another epoch
        length, or before checkpoints kept it."""
        total, steps = layout.get("epoch_loss_total"), layout.get("epoch_loss_steps")
        if layout.get("steps_per_epoch") != schedule.steps_per_epoch or not (
            isinstance(total, float) and isinstance(steps, int)
        ):
            return cls()
        return cls(total=total, steps=steps)


class ProgressMeter:
    """Turns finished losses and evaluations into `Progress` reports; raises when a loss is not
    finite."""

    def __init__(
        self,
        reporter: TrainingReporter,
        schedule: Schedule,
        start_step: int,
        now: float,
        *,
        evaluate: Callable[[np.ndarray], dict[str, Any]],
        validation: ValidationSplit,
        epoch_loss: EpochLoss,
        stopping: EarlyStopping | None = None,
    ) -> None:
        self.reporter = reporter
        self.schedule = schedule
        self.window: deque[tuple[float, int]] = deque([(now, start_step)], maxlen=RATE_WINDOW)
        self.evaluate = evaluate
        self.validation = validation
        self.epoch_loss = epoch_loss
        self.evaluations: dict[int, Any] = {}
        """Evaluations dispatched at the end of an epoch, by its last step, not read yet
        (`Any`, as in `Unread`)."""
        self.stopping = stopping

    def evaluated(self, step: int, dispatched: jax.Array | None) -> None:
        self.evaluations[step] = dispatched

    def _finished(self, block: tuple[int, int, Any]) -> bool:
        _, last, losses = block
        return bool(losses.is_ready()) and all(
            dispatched is None or dispatched.is_ready()
            for step, dispatched in self.evaluations.items()
            if step <= last
        )

    def report_finished(self, unread: Unread) -> None:
        """Reports the blocks the device has finished, oldest first, without waiting for it;
        waits only once it is `MAX_UNREAD_BLOCKS` behind, to bound how late a report (or a
        divergence) can be."""
        while unread and (len(unread) > MAX_UNREAD_BLOCKS or self._finished(unread[0])):
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
            if self.stopping is not None and step > (self.stopping.stop_step or step):
                self.evaluations.clear()
                return  # run past the epoch at which early stopping stopped: not counted
            # Step n (counted from 1) wrote its loss at (n - 1) % LOSS_BLOCK.
            value = values[(step - 1) % LOSS_BLOCK]
            if not math.isfinite(value):
                raise TrainingDiverged(f"loss became {value} at step {step}")
            metrics = {"loss": value}
            self.epoch_loss.total += value
            self.epoch_loss.steps += 1
            if step % self.schedule.steps_per_epoch == 0:
                metrics.update(self._epoch_metrics(step))
            # Once early stopping has stopped the run at this step, the run's length is known:
            # its last progress says so, and is the one every follower gets (the reporter
            # always passes on a run's last step), with nothing left to wait for.
            stopped = self.stopping is not None and self.stopping.stop_step == step
            total_steps = step if stopped else self.schedule.total_steps
            self.reporter.progress(
                Progress(
                    step=step,
                    total_steps=total_steps,
                    epoch=(step - 1) // self.schedule.steps_per_epoch + 1,
                    metrics=metrics,
                    examples_per_s=steps_per_s * self.schedule.batch_size,
                    eta_s=(total_steps - step) / max(steps_per_s, 1e-9),
                )
            )

    def _epoch_metrics(self, step: int) -> dict[str, float]:
        """`train_loss` of the epoch that ends at `step`, and its evaluation's figures."""
        metrics = {"train_loss": self.epoch_loss.total / self.epoch_loss.steps}
        self.epoch_loss = EpochLoss()
        if step in self.evaluations:
            evaluation = self.evaluate(self.validation.outputs(self.evaluations.pop(step)))
            if self.stopping is not None:
                self.stopping.judge(step, evaluation)
            metrics.update(epoch_metrics(evaluation))
        return metrics
