"""Sweeps in the training domain, with a real arq worker running their trials: trials as
training jobs, Optuna's study on PostgreSQL, pruning, failing trials, cancelling, promoting, and
every refused request refused whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import optuna
import pytest

from aiaas.core.config import Config
from aiaas.core.data import datasets
from aiaas.core.errors import ConflictError, InputError
from aiaas.core.identity.access import ProjectRole
from aiaas.core.identity.projects import archive_project
from aiaas.core.job_submission import cancel_job
from aiaas.core.jobs import JobState, jobs_by_ids
from aiaas.core.platform import Platform
from aiaas.core.training import (
    TRAINING_JOB,
    Pruner,
    Sampler,
    SearchDimension,
    SweepState,
    TrialState,
    cancel_sweep,
    create_sweep,
    parameter_importances,
    promote_sweep_trial,
    trial_curves,
    trials_of,
)
from aiaas.core.training.sweep_driver import advance_sweep
from aiaas.core.training.sweep_studies import STUDY_STORE
from serving_support import upload_wine
from support import Team, new_team
from sweep_support import FIXED, finished, running_worker, wine_sweep


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "sweeps", (ProjectRole.DEVELOPER,))


@pytest.fixture(scope="module")
async def worker(config: Config) -> AsyncIterator[None]:
    async with running_worker(config):
        yield


@pytest.fixture(scope="module")
async def wine(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> datasets.DatasetVersion:
    return await upload_wine(platform, team, tmp_path_factory.mktemp("wine"))


async def test_a_sweep_runs_its_trials_as_jobs_and_finds_the_best(
    platform: Platform, team: Team, wine: datasets.DatasetVersion, worker: None
) -> None:
    developer = team.members[ProjectRole.DEVELOPER].principal
    sweep = await create_sweep(platform, developer, wine_sweep(wine, promote_to="tuned"))
    assert sweep.state is SweepState.RUNNING
    sweep, trials = await finished(platform, sweep.id)
    assert sweep.state is SweepState.SUCCEEDED, sweep.reason
    assert [trial.number for trial in trials] == [0, 1, 2, 3]
    assert all(trial.state is TrialState.COMPLETE for trial in trials)
    best = max(trials, key=lambda trial: (trial.value, -trial.number))
    assert sweep.best_trial_number == best.number
    assert sweep.promoted_version_id is not None
    async with platform.metadata.acquire() as connection:
        jobs = await jobs_by_ids(connection, [trial.job_id for trial in trials])
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    for trial in trials:
        hyperparameters = jobs[trial.job_id].payload["hyperparameters"]
        assert hyperparameters["learning_rate"] == pytest.approx(trial.params["learning_rate"])
        assert hyperparameters["hidden_size"] == trial.params["hidden_size"]
        assert hyperparameters["epochs"] == 3
    # The study in Optuna's storage agrees, trial for trial.
    study = await platform.service(STUDY_STORE).run(
        lambda storage: optuna.load_study(study_name=sweep.study_name, storage=storage)
    )
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert study.best_trial.number == sweep.best_trial_number
    curves = await trial_curves(platform, sweep)
    assert sorted(curves[0]) == [1, 2, 3]
    importances = await parameter_importances(platform, sweep)
    assert set(importances) <= {"learning_rate", "hidden_size"}


async def test_bad_requests_are_refused_whole(
    platform: Platform, team: Team, wine: datasets.DatasetVersion
) -> None:
    developer = team.members[ProjectRole.DEVELOPER].principal
    cases = {
        "searchSpace.0.name": {"search_space": [SearchDimension(name="nope", low=1, high=2)]},
        "searchSpace.0.high": {
            "search_space": [SearchDimension(name="learning_rate", low=1e-4, high=500.0)]
        },
        "objective.metric": {"objective_metric": "r2"},
        "parallelism": {"parallelism": 5, "n_trials": 4},
        "sampler": {"sampler": Sampler.CMA_ES},
    }
    async with platform.metadata.acquire() as connection:
        before = await connection.fetchval("SELECT count(*) FROM sweeps")
    for field, changes in cases.items():
        with pytest.raises(InputError) as refused:
            await create_sweep(platform, developer, wine_sweep(wine, **changes))
        assert field in refused.value.field_errors, (field, refused.value.field_errors)
    async with platform.metadata.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM sweeps") == before


async def test_cancelling_a_sweep_cancels_its_running_trials(
    platform: Platform, team: Team, wine: datasets.DatasetVersion, worker: None
) -> None:
    developer = team.members[ProjectRole.DEVELOPER].principal
    sweep = await create_sweep(
        platform,
        developer,
        wine_sweep(wine, hyperparameters={**FIXED, "epochs": 500}, n_trials=6),
    )
    sweep = await cancel_sweep(platform, developer, sweep.id)
    sweep, trials = await finished(platform, sweep.id)
    assert sweep.state is SweepState.CANCELLED
    assert len(trials) == 2
    assert all(trial.state is TrialState.FAIL for trial in trials)
    async with platform.metadata.acquire() as connection:
        jobs = await jobs_by_ids(connection, [trial.job_id for trial in trials])
    assert {job.state for job in jobs.values()} == {JobState.CANCELLED}
    with pytest.raises(ConflictError):
        await cancel_sweep(platform, developer, sweep.id)


async def test_hyperband_prunes_trials_that_lag(
    platform: Platform, team: Team, wine: datasets.DatasetVersion, worker: None
) -> None:
    developer = team.members[ProjectRole.DEVELOPER].principal
    sweep = await create_sweep(
        platform,
        developer,
        wine_sweep(
            wine,
            search_space=[SearchDimension(name="learning_rate", low=1e-6, high=3e-2, log=True)],
            hyperparameters={**FIXED, "epochs": 27},
            objective_metric="loss",
            n_trials=10,
            parallelism=1,
            pruner=Pruner.HYPERBAND,
            sampler=Sampler.RANDOM,
        ),
    )
    sweep, trials = await finished(platform, sweep.id)
    assert sweep.state is SweepState.SUCCEEDED
    pruned = [trial for trial in trials if trial.state is TrialState.PRUNED]
    assert pruned, [(t.state, t.value) for t in trials]
    async with platform.metadata.acquire() as connection:
        jobs = await jobs_by_ids(connection, [trial.job_id for trial in pruned])
    for trial in pruned:
        job = jobs[trial.job_id]
        assert job.state is JobState.CANCELLED
        assert "pruned by its sweep" in (job.reason or "")
        assert trial.pruned_at_epoch is not None and trial.pruned_at_epoch < 27
    with pytest.raises(ConflictError):
        await promote_sweep_trial(platform, developer, sweep.id, "x", trial_number=pruned[0].number)


async def test_a_trial_that_cannot_start_halts_the_sweep_which_says_why(
    platform: Platform, tmp_path: Path
) -> None:
    """No worker runs here: the first trial stays queued until it is cancelled by hand, and the
    project is archived meanwhile, so the next trial cannot start."""
    team = await new_team(platform, "sweeps-halting", (ProjectRole.DEVELOPER,))
    developer = team.members[ProjectRole.DEVELOPER].principal
    version = await upload_wine(platform, team, tmp_path)
    sweep = await create_sweep(platform, developer, wine_sweep(version, parallelism=1))
    async with platform.metadata.acquire() as connection:
        [first] = (await trials_of(connection, [sweep.id]))[sweep.id]
    await archive_project(platform, team.members[ProjectRole.OWNER].principal, team.project_id)
    await cancel_job(platform, developer, first.job_id, kind=TRAINING_JOB, action="training.cancel")
    sweep = await advance_sweep(platform, sweep.id)
    assert sweep.state is SweepState.FAILED
    assert sweep.reason is not None
    assert "no trial completed" in sweep.reason and "trial 1 could not start" in sweep.reason
    async with platform.metadata.acquire() as connection:
        trials = (await trials_of(connection, [sweep.id]))[sweep.id]
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.FAIL)]
    # Optuna holds no trial still running: the one asked for and refused was told as failed.
    study = await platform.service(STUDY_STORE).run(
        lambda storage: optuna.load_study(study_name=sweep.study_name, storage=storage)
    )
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.FAIL}
