"""Early stopping on the validation loss, for a loop that reads its epoch metrics late.

The train step donates the parameters, and an epoch's `val_loss` is read blocks of steps after
the epoch ended (`progress_meter`). So at each epoch's end `keep` takes a device copy of the
parameters (dispatched like any step: the host does not wait for it), and `judge`, once the
epoch's evaluation is read, keeps that copy if the epoch is the best so far and drops it
otherwise. The copies alive are those of the epochs not read yet, bounded by how far the
device may run ahead of the reads (`MAX_UNREAD_BLOCKS` blocks of `LOSS_BLOCK` steps), plus the
best one.

Once `patience` epochs have passed without a lower `val_loss`, the run stops at that epoch:
epochs that ended after it (run while its loss was not read yet) are ignored, so where a run
stops and which weights it keeps never depend on how late the host read the losses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp


class EarlyStopping:
    def __init__(
        self,
        patience: int,
        steps_per_epoch: int,
        layout: Mapping[str, Any] | None = None,
        best_params: Any = None,
    ) -> None:
        """`layout` and `best_params`: what a checkpoint kept (`checkpoint_layout`)."""
        self.patience = patience
        self.steps_per_epoch = steps_per_epoch
        self.pending: dict[int, Any] = {}
        """Copies of the parameters at the end of each epoch not judged yet, by its last step."""
        layout = layout or {}
        self.best_step, self.best_loss = 0, math.inf
        self.best_params: Any = None
        """A device copy of the best epoch's parameters; None until an epoch was judged."""
        best_step, best_loss = layout.get("best_step"), layout.get("best_loss")
        if isinstance(best_step, int) and best_step > 0 and isinstance(best_loss, float):
            self.best_step, self.best_loss, self.best_params = best_step, best_loss, best_params
        self.stop_step: int | None = None
        """The last step of the epoch at which patience ran out; None while training goes on."""

    def keep(self, step: int, params: Any) -> None:
        if self.stop_step is None:
            self.pending[step] = jax.tree.map(jnp.copy, params)

    def judge(self, step: int, evaluation: Mapping[str, Any]) -> None:
        """The evaluation of the epoch ending at `step` was read: keep its parameters if its
        loss is the lowest yet, stop once `patience` epochs brought none lower."""
        params = self.pending.pop(step, None)
        if self.stop_step is not None or params is None:
            return
        loss = evaluation.get("loss")
        if isinstance(loss, float) and loss < self.best_loss:
            self.best_step, self.best_loss, self.best_params = step, loss, params
        elif (step - self.best_step) // self.steps_per_epoch >= self.patience:
            self.stop_step = step
            self.pending.clear()

    @property
    def best_epoch(self) -> int:
        return self.best_step // self.steps_per_epoch

    def checkpoint_layout(self) -> dict[str, Any]:
        """What a checkpoint keeps, besides the best parameters themselves; taken only once
        every epoch that ended has been judged."""
        return {
            "best_step": self.best_step,
            "best_loss": self.best_loss if self.best_step else None,
        }
