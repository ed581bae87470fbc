"""Helpers for the sweep tests: an in-process worker, reading a sweep as it stands and as Optuna
has it, and a throwaway trainer that fails on demand."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import optuna
import redis

from aiaas.core.config import Config
from aiaas.core.data import datasets
from aiaas.core.hookspecs import hookimpl
from aiaas.core.jobs import TERMINAL_STATES, Job, jobs_by_ids
from aiaas.core.platform import Platform
from aiaas.core.signatures import ModelSignature, TensorSpec
from aiaas.core.specs import TrainerSpec
from aiaas.core.trainers import (
    Direction,
    HyperParameter,
    Progress,
    TrainedModel,
    Trainer,
    TrainingReporter,
    TrainingRun,
)
from aiaas.core.training import (
    SWEEP_STREAM,
    SearchDimension,
    Sweep,
    SweepRequest,
    SweepState,
    SweepTrial,
    get_sweep,
    trials_of,
)
from aiaas.core.training.sweep_studies import STUDY_STORE
from aiaas.workers.outage_tolerant import OutageTolerantWorker
from aiaas.workers.settings import worker_settings
from support import free_port, poll_until

FIXED = {"batch_size": 32, "patience": 0}
"""Hyperparameters of the sweeps here: small batches, every epoch run."""


def wine_sweep(version: datasets.DatasetVersion, **changes: Any) -> SweepRequest:
    """A small sweep of the tabular classifier on wine (`serving_support.wine_table`)."""
    values: dict[str, Any] = {
        "dataset_version_id": version.id,
        "trainer": "tabular-classifier",
        "target": "cultivar",
        "search_space": [
            SearchDimension(name="learning_rate", low=1e-4, high=3e-2, log=True),
            SearchDimension(name="hidden_size", choices=[8, 32]),
        ],
        "objective_metric": "accuracy",
        "hyperparameters": {**FIXED, "epochs": 3},
        "n_trials": 4,
        "parallelism": 2,
        "model_name": f"wine-{uuid.uuid4().hex[:8]}",
    }
    values.update(changes)
    return SweepRequest(**values)


SWEEP_WAIT_S = 240
"""The longest a sweep may take to end in a test: a failing test must end."""


@contextlib.asynccontextmanager
async def running_worker(config: Config, platform: Platform | None = None) -> AsyncIterator[None]:
    """A real arq worker in this process, on `platform`'s plugins (the config's by default),
    without its cron jobs: the tests say when the reconciler runs."""
    manager = platform.plugins if platform is not None else None
    settings = worker_settings(config, plugin_manager=manager)
    settings["cron_jobs"] = []
    worker = OutageTolerantWorker(**settings, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()


async def sweep_and_trials(
    platform: Platform, sweep_id: uuid.UUID
) -> tuple[Sweep, list[SweepTrial]]:
    async with platform.metadata.acquire() as connection:
        sweep = await get_sweep(connection, sweep_id)
        trials = (await trials_of(connection, [sweep_id]))[sweep_id]
    return sweep, trials


async def trial_jobs(platform: Platform, trials: Sequence[SweepTrial]) -> dict[uuid.UUID, Job]:
    async with platform.metadata.acquire() as connection:
        return await jobs_by_ids(connection, [trial.job_id for trial in trials])


async def finished(platform: Platform, sweep_id: uuid.UUID) -> tuple[Sweep, list[SweepTrial]]:
    """The sweep once it has ended and every trial's job has too (a trial is settled just
    before its job's outcome is recorded)."""

    async def ended() -> bool:
        sweep, trials = await sweep_and_trials(platform, sweep_id)
        jobs = await trial_jobs(platform, trials)
        return sweep.state is not SweepState.RUNNING and all(
            job.state in TERMINAL_STATES for job in jobs.values()
        )

    assert await poll_until(ended, SWEEP_WAIT_S, 0.2) is not None, "the sweep did not end"
    return await sweep_and_trials(platform, sweep_id)


async def optuna_trials(platform: Platform, sweep: Sweep) -> list[optuna.trial.FrozenTrial]:
    study = await platform.service(STUDY_STORE).run(
        lambda storage: optuna.load_study(study_name=sweep.study_name, storage=storage)
    )
    return list(study.trials)


async def assert_optuna_agrees(
    platform: Platform, sweep: Sweep, trials: Sequence[SweepTrial]
) -> None:
    """Optuna's study holds the same trials, each ended the same way with the same value."""
    stored = await optuna_trials(platform, sweep)
    assert [(t.number, t.state.name, t.value) for t in stored] == [
        (t.number, t.state.value, t.value) for t in trials
    ]


async def sweep_events(platform: Platform, sweep_id: uuid.UUID) -> list[dict[str, Any]]:
    entries = await platform.redis.xrange(SWEEP_STREAM.key(sweep_id))
    return [json.loads(next(iter(fields.values()))) for _, fields in entries]


async def trials_told(platform: Platform, sweep_id: uuid.UUID) -> list[tuple[int, str]]:
    """Each trial's end as the sweep's event stream told it, in order."""
    return [
        (event["number"], event["state"])
        for event in await sweep_events(platform, sweep_id)
        if event["type"] == "trial_finished"
    ]


FAILED_ON_PURPOSE = "this trial fails on purpose"


_OUTAGES_MET: set[float] = set()
"""The `level`s of the trials whose first run met an outage (`outage_first`), in this process."""


class FlakyTrainer(Trainer):
    """Fails at once when its `mode` is "fail"; otherwise scores its `level` at every epoch,
    so that a trial's objective is known from its parameters alone. With `outage_first`, a
    trial's first run meets a real outage (a Redis that refuses its connection)."""

    task = "classification"

    def hyperparameters(self) -> Sequence[HyperParameter]:
        return [
            HyperParameter(name="mode", type="str", default="ok", choices=("ok", "fail")),
            HyperParameter(name="level", type="float", default=0.5, minimum=0.0, maximum=1.0),
            HyperParameter(name="epochs", type="int", default=2, minimum=1, maximum=10),
            HyperParameter(name="outage_first", type="int", default=0, minimum=0, maximum=1),
        ]

    def objective_metrics(self) -> Mapping[str, Direction]:
        return {"score": "maximize"}

    def target_problem(self, column_type: str) -> str | None:
        return None

    def feature_problems(
        self, columns: Mapping[str, str], hyperparameters: Mapping[str, Any]
    ) -> dict[str, str]:
        return {}

    def fit(self, run: TrainingRun, reporter: TrainingReporter) -> TrainedModel:
        if run.hyperparameters["mode"] == "fail":
            raise ValueError(FAILED_ON_PURPOSE)
        level = float(run.hyperparameters["level"])
        if run.hyperparameters.get("outage_first") and level not in _OUTAGES_MET:
            _OUTAGES_MET.add(level)
            redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=2).ping()
        epochs = int(run.hyperparameters["epochs"])
        for epoch in range(1, epochs + 1):
            reporter.progress(
                Progress(
                    step=epoch,
                    total_steps=epochs,
                    epoch=epoch,
                    metrics={"loss": 1 - level, "val_loss": 1 - level, "val_score": level},
                    examples_per_s=1.0,
                    eta_s=0.0,
                )
            )
        return TrainedModel(
            format="constant",
            bundle=b"0",
            signature=ModelSignature(
                inputs=(), outputs=(TensorSpec(name="value", dtype="float32", shape=(-1,)),)
            ),
            metrics={"score": level},
            steps=epochs,
        )


class FlakyTrainerPlugin:
    @hookimpl
    def aiaas_trainers(self) -> Iterable[TrainerSpec]:
        return [
            TrainerSpec(
                name="flaky",
                factory=lambda config: FlakyTrainer(),
                description="Fails when told to; otherwise scores what it is given.",
            )
        ]
