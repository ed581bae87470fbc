"""Checkpoints: exact resume after a cancellation, crash leftovers ignored, and a diverged run
that keeps its last good checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pyarrow as pa
import pytest

from aiaas.core.errors import TrainingCancelled, TrainingDiverged
from aiaas.core.trainers import CHECKPOINT_PARTIAL_SUFFIX as PARTIAL_SUFFIX
from aiaas.plugins.flax_trainers import TabularClassifier, train
from aiaas.plugins.flax_trainers.checkpoints import CheckpointStore

# Wine has 142 training rows: 4 steps an epoch in batches of 32, 16 steps in all.
HYPERPARAMETERS = {"epochs": 4, "hidden_size": 16}


def _corrupt(directory: Path) -> None:
    """Truncates every file, as a write cut short would leave them."""
    for path in directory.rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[:3])


def test_store_keeps_two_and_skips_leftovers(tmp_path: Path) -> None:
    template = [np.zeros(3, np.float32), np.zeros((), np.int32)]
    with CheckpointStore(tmp_path) as store:
        assert store.restore_latest(template) is None
        for step in (1, 2, 3):
            store.save(step, [np.full(3, step, np.float32), np.array(step, np.int32)], {"b": 8})
        assert store.steps() == [2, 3]
    # A crash mid-write leaves the step's partial directory, renamed to the step only once
    # complete.
    shutil.copytree(tmp_path / "3", tmp_path / f"4{PARTIAL_SUFFIX}")
    _corrupt(tmp_path / f"4{PARTIAL_SUFFIX}")
    with CheckpointStore(tmp_path) as store:
        assert store.steps() == [2, 3]
        restored = store.restore_latest(template)
        assert restored is not None
        assert restored.step == 3
        assert restored.leaves[0].tolist() == [3.0, 3.0, 3.0]
        assert restored.layout == {"b": 8}
        # Writing that step again succeeds over the leftover.
        store.save(4, [np.full(3, 4, np.float32), np.array(4, np.int32)], {"b": 8})
        assert store.steps() == [3, 4]
    # A complete-looking checkpoint that cannot be read: the one before it is used.
    _corrupt(tmp_path / "4")
    with CheckpointStore(tmp_path) as store:
        restored = store.restore_latest(template)
        assert restored is not None
        assert restored.step == 3


def test_cancelled_run_resumes_and_ends_like_an_uninterrupted_one(
    wine: tuple[np.ndarray, np.ndarray, pa.Table],
    make_run: Any,
    recording_reporter: Any,
    tmp_path: Path,
) -> None:
    table = wine[2]
    straight = recording_reporter()
    uninterrupted = TabularClassifier().fit(
        make_run(table, "target", HYPERPARAMETERS, checkpoint_every_steps=5), straight
    )
    assert uninterrupted.steps == 16

    directory = tmp_path / "job"
    run = make_run(
        table, "target", HYPERPARAMETERS, checkpoint_dir=directory, checkpoint_every_steps=5
    )
    cancelled = recording_reporter(stop_after_checkpoint=10)
    with pytest.raises(TrainingCancelled):
        TabularClassifier().fit(run, cancelled)
    assert cancelled.checkpoints == [5, 10]
    assert cancelled.progress_reports[-1].step == 10

    # The worker died while writing the next checkpoint.
    shutil.copytree(directory / "10", directory / f"15{PARTIAL_SUFFIX}")
    _corrupt(directory / f"15{PARTIAL_SUFFIX}")

    resumed = recording_reporter()
    model = TabularClassifier().fit(run, resumed)
    assert resumed.resumed_steps == [10]
    assert [report.step for report in resumed.progress_reports] == list(range(11, 17))
    assert resumed.checkpoints == [15, 16]
    assert model.metrics == uninterrupted.metrics
    assert model.bundle == uninterrupted.bundle

    # The same epoch metrics too: epoch 3 (steps 9 to 12) was resumed midway, and its mean
    # loss still counts steps 9 and 10, which the checkpoint remembers.
    def reported(reports: list[Any]) -> list[tuple[int, dict[str, float]]]:
        return [(report.step, dict(report.metrics)) for report in reports]

    assert reported(resumed.progress_reports) == reported(straight.progress_reports[10:])

    # Resuming a finished run trains nothing and returns the same model.
    again = recording_reporter()
    assert TabularClassifier().fit(run, again).bundle == model.bundle
    assert again.resumed_steps == [16]
    assert again.progress_reports == []


def test_divergence_raises_and_keeps_the_last_good_checkpoint(
    wine: tuple[np.ndarray, np.ndarray, pa.Table],
    make_run: Any,
    recording_reporter: Any,
    tmp_path: Path,
) -> None:
    table = wine[2]
    directory = tmp_path / "job"
    # Decay of learning_rate x weight_decay = 100 per step flips and grows the weights a
    # hundredfold a step: they overflow within a few steps.
    exploding = {"epochs": 4, "learning_rate": 100.0, "weight_decay": 1.0}
    reporter = recording_reporter()
    with pytest.raises(TrainingDiverged, match=r"became .* at step (\d+)") as raised:
        TabularClassifier().fit(
            make_run(
                table, "target", exploding, checkpoint_dir=directory, checkpoint_every_steps=1
            ),
            reporter,
        )
    diverged_at = int(raised.value.args[0].rsplit(" ", 1)[1])
    assert reporter.checkpoints, "at least one good checkpoint before the divergence"
    assert max(reporter.checkpoints) < diverged_at
    assert all(np.isfinite(report.metrics["loss"]) for report in reporter.progress_reports)

    # The last good checkpoint restores, and holds finite parameters and optimizer state, and
    # early stopping's best parameters after them.
    optimizer = train.make_optimizer(100.0, 1.0)
    architecture = {"kind": "mlp", "inputs": 13, "hidden_size": 128, "hidden_layers": 2}
    _, params, optimizer_state = train.initial_state({**architecture, "outputs": 3}, 0, optimizer)
    with CheckpointStore(directory) as store:
        restored = store.restore_latest(jax.tree.leaves((params, optimizer_state, params)))
    assert restored is not None
    assert restored.step == max(reporter.checkpoints)
    assert all(np.isfinite(leaf).all() for leaf in restored.leaves)

    # Without a checkpoint to stop at, reading the losses back is what catches it.
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) at step \d+"):
        TabularClassifier().fit(make_run(table, "target", exploding), recording_reporter())
