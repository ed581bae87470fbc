"""What a hyperparameter search relies on: early stopping that keeps the best epoch, more epochs
that never cost held-out quality, a learning rate schedule, and dropout that only trains.

Diabetes is split three ways here: a test set the trainer never sees (held out by the test),
and the trainer's own training and validation splits of the rest. Early stopping chooses the
epoch on the validation split, so only the test set measures what more epochs cost.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax  # type: ignore[import-untyped]
import pyarrow as pa
import pytest
from flax import nnx
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from aiaas.core.errors import TrainingCancelled
from aiaas.core.trainers import Progress
from aiaas.formats.flax_nnx import decode_bundle, load_predictor
from aiaas.formats.flax_nnx_models import build_model
from aiaas.plugins.flax_trainers import TabularRegressor
from aiaas.plugins.flax_trainers.input_pipeline import split_rows
from aiaas.plugins.flax_trainers.optimizer import make_optimizer

from .conftest import RecordingReporter, table_of


def _r2(predicted: np.ndarray, actual: np.ndarray) -> float:
    residual = float(np.sum((actual - predicted) ** 2))
    return 1.0 - residual / float(np.sum((actual - actual.mean()) ** 2))


def _predict(bundle: bytes, table: pa.Table) -> np.ndarray:
    columns = {name: table.column(name).to_numpy() for name in table.column_names}
    columns.pop("target")
    return np.asarray(load_predictor(bundle).predict(columns)["value"], dtype=np.float64)


def test_more_epochs_never_cost_held_out_quality_on_diabetes(
    diabetes: tuple[np.ndarray, np.ndarray, pa.Table], make_run: Any, recording_reporter: Any
) -> None:
    features, target, _ = diabetes
    held_out = split_rows(len(target), 0.2, 7)
    pool = table_of(features[held_out.train], target[held_out.train])
    test = table_of(features[held_out.validation], target[held_out.validation])

    scores, models = {}, {}
    for epochs in (20, 100, 500):
        model = TabularRegressor().fit(
            make_run(pool, "target", {"epochs": epochs}), recording_reporter()
        )
        models[epochs] = model
        scores[epochs] = _r2(_predict(model.bundle, test), target[held_out.validation])

    scaler = StandardScaler().fit(features[held_out.train])
    ridge = Ridge().fit(scaler.transform(features[held_out.train]), target[held_out.train])
    ridge_r2 = float(
        ridge.score(scaler.transform(features[held_out.validation]), target[held_out.validation])
    )
    # Early stopping ended the long runs, at the same epoch: the first epochs of a run do not
    # depend on how many there are to be.
    assert models[500].metrics["epochs_run"] < 100
    assert models[100].metrics == models[500].metrics
    for epochs in (100, 500):
        assert scores[epochs] >= scores[20] - 0.02, scores
    assert min(scores.values()) >= ridge_r2 - 0.05, (scores, ridge_r2)


def _noisy_regression(rows: int = 64) -> pa.Table:
    """Few rows and a noisy target: a wide MLP at a high learning rate overfits it within a
    few epochs, and its validation loss then rises."""
    draw = np.random.default_rng(5)
    features = draw.normal(size=(rows, 4))
    target = features[:, 0] + draw.normal(scale=2.0, size=rows)
    return table_of(features, target)


def test_early_stopping_stops_and_keeps_the_best_epoch(
    make_run: Any, recording_reporter: Any
) -> None:
    table = _noisy_regression()
    overfitting = {"epochs": 300, "learning_rate": 0.01, "batch_size": 8, "patience": 3}
    reporter = recording_reporter()
    model = TabularRegressor().fit(make_run(table, "target", overfitting), reporter)

    ends = [report for report in reporter.progress_reports if "val_loss" in report.metrics]
    best_epoch, epochs_run = model.metrics["best_epoch"], model.metrics["epochs_run"]
    assert epochs_run == best_epoch + 3 < 300
    assert len(ends) == epochs_run  # nothing reported past the epoch it stopped at
    assert model.steps == reporter.progress_reports[-1].step
    # The last progress says the run is complete, so followers' bars end full (and the worker
    # passes it on live); the ones before it still count towards the planned 300 epochs.
    last, before = reporter.progress_reports[-1], reporter.progress_reports[-2]
    assert last.total_steps == last.step and last.eta_s == 0
    assert before.total_steps > last.step
    losses = [report.metrics["val_loss"] for report in ends]
    assert min(losses) == losses[best_epoch - 1] < losses[-1]
    best = ends[best_epoch - 1].metrics
    assert model.metrics["loss"] == best["val_loss"]
    assert model.metrics["r2"] == best["val_r2"]

    # The bundle holds the best epoch's weights: its predictions on the validation split score
    # what that epoch scored.
    split = split_rows(table.num_rows, 0.2, 0)
    validation = table.take(split.validation)
    actual = validation.column("target").to_numpy()
    assert _r2(_predict(model.bundle, validation), actual) == pytest.approx(best["val_r2"], 1e-4)

    # Patience 0: every epoch runs, and the last one's weights are kept.
    reporter = recording_reporter()
    model = TabularRegressor().fit(
        make_run(table, "target", {**overfitting, "epochs": 12, "patience": 0}), reporter
    )
    last = reporter.progress_reports[-1]
    assert last.epoch == 12
    assert "best_epoch" not in model.metrics
    assert model.metrics["loss"] == last.metrics["val_loss"]


def _learning_rates(optimizer: optax.GradientTransformation, steps: int) -> list[float]:
    """Adam's first update of a unit gradient is the learning rate itself (no decay here)."""
    params = jnp.zeros(1)
    state = optimizer.init(params)
    rates = []
    for _ in range(steps):
        updates, state = optimizer.update(jnp.ones(1), state, params)
        rates.append(-float(updates[0]))
    return rates


def test_learning_rate_schedules() -> None:
    constant = _learning_rates(make_optimizer(0.1, 0.0), 20)
    assert constant == pytest.approx([0.1] * 20, rel=1e-3)
    warm = _learning_rates(make_optimizer(0.1, 0.0, "constant", 20, 4), 20)
    assert warm[0] == 0.0
    assert warm[2] == pytest.approx(0.05, rel=1e-3)
    assert warm[4:] == pytest.approx([0.1] * 16, rel=1e-3)
    cosine = _learning_rates(make_optimizer(0.1, 0.0, "cosine", 20, 4), 21)
    assert cosine[4] == pytest.approx(0.1, rel=1e-3)
    assert all(a > b for a, b in itertools.pairwise(cosine[4:]))
    assert cosine[20] == pytest.approx(0.001, rel=1e-2)


def test_cosine_schedule_with_warmup_trains(make_run: Any, recording_reporter: Any) -> None:
    table = _noisy_regression(128)
    scheduled = {"epochs": 6, "lr_schedule": "cosine", "warmup_fraction": 0.2, "hidden_size": 8}
    model = TabularRegressor().fit(make_run(table, "target", scheduled), recording_reporter())
    assert np.isfinite(model.metrics["loss"])
    assert decode_bundle(model.bundle)["hyperparameters"]["lr_schedule"] == "cosine"


def test_dropout_trains_only(make_run: Any, recording_reporter: Any) -> None:
    architecture = {"kind": "mlp", "inputs": 3, "hidden_size": 16, "hidden_layers": 2}
    model = build_model({**architecture, "outputs": 1, "dropout": 0.5}, nnx.Rngs(0))
    inputs = jnp.ones((4, 3))
    assert jnp.array_equal(model(inputs), model(inputs))  # no key: every unit, deterministic
    dropped = model(inputs, dropout_key=jax.random.key(1))  # type: ignore[call-arg]
    assert not jnp.allclose(dropped, model(inputs))
    # A bundle saved before dropout existed has no such key, and builds as it did.
    plain = build_model({**architecture, "outputs": 1}, nnx.Rngs(0))
    assert jnp.array_equal(plain(inputs), model(inputs))

    table = _noisy_regression(128)
    trained = TabularRegressor().fit(
        make_run(table, "target", {"epochs": 3, "hidden_size": 8, "dropout": 0.3}),
        recording_reporter(),
    )
    assert decode_bundle(trained.bundle)["architecture"]["dropout"] == 0.3
    once, again = _predict(trained.bundle, table), _predict(trained.bundle, table)
    assert np.array_equal(once, again)
    assert np.isfinite(trained.metrics["loss"])


def test_a_resumed_run_stops_and_keeps_the_best_epoch_like_an_uninterrupted_one(
    make_run: Any, recording_reporter: Any, tmp_path: Path
) -> None:
    table = _noisy_regression()
    overfitting = {"epochs": 300, "learning_rate": 0.01, "batch_size": 8, "patience": 3}
    straight = TabularRegressor().fit(make_run(table, "target", overfitting), recording_reporter())
    per_epoch = 6  # 51 training rows, 8 a batch
    assert straight.steps == straight.metrics["epochs_run"] * per_epoch

    # Cancelled after a checkpoint one epoch past the best: the best weights are only in the
    # checkpoint.
    cancel_at = (straight.metrics["best_epoch"] + 1) * per_epoch
    run = make_run(
        table, "target", overfitting, checkpoint_dir=tmp_path, checkpoint_every_steps=cancel_at
    )
    with pytest.raises(TrainingCancelled):
        TabularRegressor().fit(run, recording_reporter(stop_after_checkpoint=cancel_at))
    resumed = recording_reporter()
    model = TabularRegressor().fit(run, resumed)
    assert resumed.resumed_steps == [cancel_at]
    assert model.metrics == straight.metrics
    assert model.bundle == straight.bundle


class _StopsAtAnEpoch(RecordingReporter):
    """A pruner's view of a run: judges each epoch's figures as they come, and stops the run
    at the end of `epoch`."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch
        self.stopped_at_step: int | None = None

    def progress(self, progress: Progress) -> None:
        super().progress(progress)
        if "val_loss" in progress.metrics and progress.epoch == self.epoch:
            self.stopped_at_step = progress.step

    def should_stop(self) -> bool:
        return self.stopped_at_step is not None


def test_a_judged_run_reports_each_epoch_before_its_next_step(make_run: Any) -> None:
    """A sweep's pruned trial stops at the epoch it was pruned at, not a block of steps later:
    with `epoch_verdicts`, an epoch's figures reach the reporter before the next step runs."""
    table = _noisy_regression()
    run = dataclasses.replace(
        make_run(table, "target", {"epochs": 20, "batch_size": 8}), epoch_verdicts=True
    )
    reporter = _StopsAtAnEpoch(epoch=2)
    with pytest.raises(TrainingCancelled) as cancelled:
        TabularRegressor().fit(run, reporter)
    assert reporter.stopped_at_step is not None
    assert str(cancelled.value) == f"cancelled at step {reporter.stopped_at_step}"
    assert reporter.progress_reports[-1].step == reporter.stopped_at_step
    # Every step up to there was reported once, in order, and the epochs' figures with it.
    assert [p.step for p in reporter.progress_reports] == list(
        range(1, reporter.stopped_at_step + 1)
    )
    assert [p.epoch for p in reporter.progress_reports if "val_loss" in p.metrics] == [1, 2]
