"""Orbax checkpoints of a training run, in the directory the platform gives the job.

A checkpoint holds every leaf of the train state (parameters and optimizer state, which counts
its own steps) as host numpy arrays, and a small JSON `layout` (the batch size and schedule it
was trained with), under the step number. Host arrays keep a checkpoint independent of how many
devices wrote it: a job resumed on another machine restores it onto its own mesh.

Orbax writes each checkpoint into `<step>.orbax-checkpoint-tmp` and renames it to `<step>` only
once every file is written, so a crash mid-write leaves a temporary directory that is never
taken for a checkpoint (and is removed when the next manager opens the directory); the previous
checkpoint stays the latest. Saving is synchronous, so `save` returning means the checkpoint is
complete.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orbax.checkpoint as ocp  # type: ignore[import-untyped]

logger = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2


@dataclass(frozen=True)
class RestoredCheckpoint:
    step: int
    leaves: list[np.ndarray]
    layout: dict[str, Any]


def _leaf_key(index: int) -> str:
    return f"leaf_{index:05d}"


class CheckpointStore:
    """The checkpoints of one run. Use as a context manager: Orbax keeps threads open."""

    def __init__(self, directory: Path) -> None:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=KEEP_CHECKPOINTS,
            enable_async_checkpointing=False,
            # The directory belongs to this job alone, so a temporary directory here is the
            # remains of a crashed write, never one in progress.
            cleanup_tmp_directories=True,
        )
        directory.mkdir(parents=True, exist_ok=True)
        self._manager = ocp.CheckpointManager(
            directory, options=options, item_names=("state", "layout")
        )

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._manager.close()

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, leaves: Sequence[np.ndarray], layout: Mapping[str, Any]) -> None:
        state = {_leaf_key(index): np.asarray(leaf) for index, leaf in enumerate(leaves)}
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), layout=ocp.args.JsonSave(dict(layout))
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def restore_latest(self, template: Sequence[np.ndarray]) -> RestoredCheckpoint | None:
        """The newest checkpoint that restores into the shapes and dtypes of `template`; an
        older one when the newest cannot be read, None when there is none."""
        target = {_leaf_key(index): np.asarray(leaf) for index, leaf in enumerate(template)}
        for step in reversed(self.steps()):
            try:
                restored = self._manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(target), layout=ocp.args.JsonRestore()
                    ),
                )
                leaves = [np.asarray(restored["state"][key]) for key in target]
                _check_like(leaves, template)
            except Exception:  # any unreadable checkpoint: fall back to the one before
                logger.warning("checkpoint of step %d cannot be restored", step, exc_info=True)
                continue
            return RestoredCheckpoint(step=step, leaves=leaves, layout=dict(restored["layout"]))
        return None


def _check_like(leaves: Sequence[np.ndarray], template: Sequence[np.ndarray]) -> None:
    for leaf, expected in zip(leaves, template, strict=True):
        expected_array = np.asarray(expected)
        if leaf.shape != expected_array.shape or leaf.dtype != expected_array.dtype:
            raise ValueError(
                f"checkpoint leaf {leaf.shape} {leaf.dtype} does not match "
                f"{expected_array.shape} {expected_array.dtype}"
            )
