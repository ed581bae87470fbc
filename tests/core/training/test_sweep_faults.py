"""Sweeps through faults, with real workers: a trial that fails leaves the sweep going; one that
an outage stops is not failed but runs again; a worker killed with SIGKILL mid-trial leaves its
trial to another worker, which resumes it, and the trial is counted once; a worker that lost its
trial's job to another leaves the trial's end to that one; a time budget stops the starting of
trials; and the reconciler settles a trial whose job ended without its runner telling."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from arq.constants import result_key_prefix

from aiaas.core.config import Config, build_config
from aiaas.core.data import datasets
from aiaas.core.governance.garbage import collect_garbage
from aiaas.core.identity.access import ProjectRole
from aiaas.core.job_reconciliation import reconcile_jobs
from aiaas.core.jobs import Job, JobState, claim_job
from aiaas.core.platform import Platform
from aiaas.core.plugins import create_plugin_manager
from aiaas.core.training import (
    Sampler,
    SearchDimension,
    SweepState,
    TrialState,
    advance_running_sweeps,
    cancel_sweep,
    cancel_training_job,
    create_sweep,
)
from aiaas.core.training.checkpoint_records import stored_checkpoints
from e2e.test_training_live import start_worker, stream_events, worker_processes
from serving_support import upload_wine
from support import Team, new_team, poll_until
from sweep_support import (
    FAILED_ON_PURPOSE,
    FIXED,
    FlakyTrainerPlugin,
    assert_optuna_agrees,
    finished,
    running_worker,
    sweep_and_trials,
    trial_jobs,
    trials_told,
    wine_sweep,
)

__all__ = ["worker_processes"]  # the fixture, used by the kill test

CHECKPOINT_EVERY_STEPS = 10
HEARTBEAT_S = 0.5
STALE_AFTER_S = 10
"""Claims go stale in seconds rather than half a minute, so that a dead worker's trial is handed
on soon; still twenty heartbeats, so that a busy machine never hands on a live one."""


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    return build_config(
        {
            **config.model_dump(),
            "job_heartbeat_interval_s": HEARTBEAT_S,
            "job_stale_after_s": STALE_AFTER_S,
            "checkpoint_every_steps": CHECKPOINT_EVERY_STEPS,
        }
    )


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "sweep-faults", (ProjectRole.DEVELOPER,))


@pytest.fixture(scope="module")
async def wine(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> datasets.DatasetVersion:
    return await upload_wine(platform, team, tmp_path_factory.mktemp("wine"))


# The reconciler settles what no runner told ------------------------------------------------


async def test_the_reconciler_settles_a_trial_cancelled_while_queued_and_starts_another(
    platform: Platform, team: Team, wine: datasets.DatasetVersion
) -> None:
    # No worker runs in this test: every trial's job stays queued.
    developer = team.members[ProjectRole.DEVELOPER].principal
    sweep = await create_sweep(platform, developer, wine_sweep(wine))
    _, trials = await sweep_and_trials(platform, sweep.id)
    assert [(t.number, t.state) for t in trials] == [
        (0, TrialState.RUNNING),
        (1, TrialState.RUNNING),
    ]
    await cancel_training_job(platform, developer, trials[0].job_id)

    assert await advance_running_sweeps(platform) == []

    sweep, trials = await sweep_and_trials(platform, sweep.id)
    assert sweep.state is SweepState.RUNNING
    assert [(t.number, t.state) for t in trials] == [
        (0, TrialState.FAIL),
        (1, TrialState.RUNNING),
        (2, TrialState.RUNNING),  # in its place: two trials run at once
    ]
    jobs = await trial_jobs(platform, trials)
    assert [jobs[t.job_id].state for t in trials] == [
        JobState.CANCELLED,
        JobState.QUEUED,
        JobState.QUEUED,
    ]
    await assert_optuna_agrees(platform, sweep, trials)
    # Another pass finds nothing more to settle: the cancelled trial is counted once.
    assert await advance_running_sweeps(platform) == []
    assert (await sweep_and_trials(platform, sweep.id))[1] == trials
    assert await trials_told(platform, sweep.id) == [(0, "FAIL")]

    # Cancelled, the sweep ends at once: its trials' jobs were all queued.
    sweep = await cancel_sweep(platform, developer, sweep.id)
    sweep, trials = await sweep_and_trials(platform, sweep.id)
    assert sweep.state is SweepState.CANCELLED
    assert [t.state for t in trials] == [TrialState.FAIL] * 3
    await assert_optuna_agrees(platform, sweep, trials)


# A failing trial ---------------------------------------------------------------------------


@pytest.fixture
async def flaky_platform(config: Config) -> AsyncIterator[Platform]:
    """A platform, and a worker on it, that know the `flaky` trainer (the module's do not)."""
    manager = create_plugin_manager(config)
    manager.register_plugin(FlakyTrainerPlugin(), "FlakyTrainerPlugin")
    plugged = Platform(config, manager)
    await plugged.start()
    try:
        async with running_worker(config, plugged):
            yield plugged
    finally:
        await plugged.stop()


async def test_failing_trials_fail_alone_and_the_sweep_carries_on(
    platform: Platform,
    flaky_platform: Platform,
    team: Team,
    wine: datasets.DatasetVersion,
) -> None:
    developer = team.members[ProjectRole.DEVELOPER].principal
    sweep = await create_sweep(
        flaky_platform,
        developer,
        wine_sweep(
            wine,
            trainer="flaky",
            search_space=[
                SearchDimension(name="mode"),
                SearchDimension(name="level", low=0.0, high=1.0),
            ],
            objective_metric="score",
            hyperparameters={"epochs": 2},
            n_trials=8,
            sampler=Sampler.RANDOM,
        ),
    )
    sweep, trials = await finished(platform, sweep.id)

    assert sweep.state is SweepState.SUCCEEDED, sweep.reason
    assert [t.number for t in trials] == list(range(8))
    modes = {t.params["mode"] for t in trials}
    assert modes == {"ok", "fail"}, "the sampler must draw both modes for this test to tell"
    jobs = await trial_jobs(platform, trials)
    for trial in trials:
        job = jobs[trial.job_id]
        if trial.params["mode"] == "fail":
            assert (trial.state, trial.value) == (TrialState.FAIL, None)
            assert (job.state, job.reason) == (JobState.FAILED, FAILED_ON_PURPOSE)
        else:
            assert trial.state is TrialState.COMPLETE
            assert trial.value == pytest.approx(trial.params["level"])
            assert job.state is JobState.SUCCEEDED
    best = max((t for t in trials if t.state is TrialState.COMPLETE), key=lambda t: t.value or 0.0)
    assert sweep.best_trial_number == best.number
    await assert_optuna_agrees(platform, sweep, trials)


# A trial that an outage stops -------------------------------------------------------------


async def test_a_trial_stopped_by_an_outage_is_not_failed_but_runs_again(
    platform: Platform,
    config: Config,
    flaky_platform: Platform,
    team: Team,
    wine: datasets.DatasetVersion,
) -> None:
    developer = team.members[ProjectRole.DEVELOPER].principal
    sweep = await create_sweep(
        flaky_platform,
        developer,
        wine_sweep(
            wine,
            trainer="flaky",
            search_space=[SearchDimension(name="level", low=0.0, high=1.0)],
            objective_metric="score",
            hyperparameters={"epochs": 1, "outage_first": 1},
            n_trials=1,
            parallelism=1,
            sampler=Sampler.RANDOM,
        ),
    )
    _, (trial,) = await sweep_and_trials(platform, sweep.id)

    # Handed back for the outage, unsettled; the reconciler delivers it again.
    async def handed_on() -> bool:
        return trial.job_id in await reconcile_jobs(platform, config.job_stale_after_s)

    assert await poll_until(handed_on, 60, 0.5) is not None
    sweep, trials = await finished(platform, sweep.id)

    assert sweep.state is SweepState.SUCCEEDED, sweep.reason
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.COMPLETE)]
    job = (await trial_jobs(platform, trials))[trial.job_id]
    assert (job.state, job.attempt) == (JobState.SUCCEEDED, 2), job.reason
    assert await trials_told(platform, sweep.id) == [(0, "COMPLETE")]


# A time budget -----------------------------------------------------------------------------


async def test_a_sweep_past_its_time_budget_starts_no_more_trials(
    platform: Platform, config: Config, team: Team, wine: datasets.DatasetVersion
) -> None:
    developer = team.members[ProjectRole.DEVELOPER].principal
    sweep = await create_sweep(
        platform,
        developer,
        wine_sweep(wine, n_trials=50, parallelism=2, time_budget_s=3),
    )
    assert len((await sweep_and_trials(platform, sweep.id))[1]) == 2

    # No worker runs until the budget is spent: the trials it started then are all it runs.
    async def budget_spent() -> bool:
        async with platform.metadata.acquire() as connection:
            return bool(
                await connection.fetchval(
                    "SELECT clock_timestamp() > deadline_at FROM sweeps WHERE id = $1", sweep.id
                )
            )

    assert await poll_until(budget_spent, 30, 0.1) is not None
    async with running_worker(config):
        sweep, trials = await finished(platform, sweep.id)

    assert sweep.state is SweepState.SUCCEEDED, sweep.reason
    assert [(t.number, t.state) for t in trials] == [
        (0, TrialState.COMPLETE),
        (1, TrialState.COMPLETE),
    ]
    assert sweep.deadline_at is not None and sweep.finished_at is not None
    assert sweep.finished_at > sweep.deadline_at
    await assert_optuna_agrees(platform, sweep, trials)


# A worker that lost its trial's job --------------------------------------------------------


async def last_checkpoint(platform: Platform, job_id: uuid.UUID) -> int:
    """The newest checkpoint recorded in the store: the one a resume starts from (a checkpoint
    reported but not yet stored is not, even in a scratch directory the heir shares)."""
    async with platform.metadata.acquire() as connection:
        return max((row.step for row in await stored_checkpoints(connection, job_id)), default=0)


async def test_a_worker_that_lost_its_trials_job_leaves_the_trials_end_to_the_next(
    platform: Platform, config: Config, team: Team, wine: datasets.DatasetVersion
) -> None:
    developer = team.members[ProjectRole.DEVELOPER].principal
    async with running_worker(config):
        sweep = await create_sweep(
            platform,
            developer,
            wine_sweep(wine, hyperparameters={**FIXED, "epochs": 100}, n_trials=1, parallelism=1),
        )
        _, (trial,) = await sweep_and_trials(platform, sweep.id)

        async def trained_a_while() -> bool:
            return await last_checkpoint(platform, trial.job_id) >= 2 * CHECKPOINT_EVERY_STEPS

        assert await poll_until(trained_a_while, 120) is not None
        # Another worker takes the job over, as it would once this one's heartbeat went stale
        # (a stalled event loop, a network partition): this one is no longer the trial's runner.
        heir = await claim_job(platform, trial.job_id, "heir:0:took-over", stale_after_s=0)
        assert heir is not None and heir.attempt == 2

        async def gave_up() -> bool:
            return bool(await platform.redis.exists(result_key_prefix + str(trial.job_id)))

        assert await poll_until(gave_up, 60) is not None
        # It stopped, and told nobody anything: the trial runs on, elsewhere.
        _, (trial,) = await sweep_and_trials(platform, sweep.id)
        assert trial.state is TrialState.RUNNING
        assert await trials_told(platform, sweep.id) == []
        job = (await trial_jobs(platform, [trial]))[trial.job_id]
        assert (job.state, job.claimed_by) == (JobState.RUNNING, heir.claimed_by)

        # The heir dies in turn; the reconciler hands the job back to this process's worker.
        async def handed_on() -> bool:
            return trial.job_id in await reconcile_jobs(platform, config.job_stale_after_s)

        assert await poll_until(handed_on, 60, 0.5) is not None
        sweep, trials = await finished(platform, sweep.id)

    assert sweep.state is SweepState.SUCCEEDED, sweep.reason
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.COMPLETE)]
    job = (await trial_jobs(platform, trials))[trial.job_id]
    assert (job.state, job.attempt) == (JobState.SUCCEEDED, 3), job.reason
    assert await trials_told(platform, sweep.id) == [(0, "COMPLETE")]
    await assert_optuna_agrees(platform, sweep, trials)


# Two workers, one killed -------------------------------------------------------------------


def worker_pid(job: Job) -> int:
    """The process that holds `job`'s claim (`hostname:pid:nonce`)."""
    assert job.claimed_by is not None
    return int(job.claimed_by.split(":")[1])


def log_tails(directory: Path) -> str:
    """The end of each worker's log: what a failure message needs to be understood."""
    return "\n".join(
        f"{log.name}: {log.read_text(errors='replace')[-2000:]}"
        for log in sorted(directory.glob("worker-*.log"))
    )


@pytest.mark.slow
async def test_a_trial_whose_worker_is_killed_is_resumed_by_another_and_counted_once(
    platform: Platform,
    config: Config,
    team: Team,
    wine: datasets.DatasetVersion,
    worker_processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    # One job at a time each, so that each worker holds one trial.
    variables = {
        "AIAAS_WORKER_MAX_JOBS": "1",
        "AIAAS_JOB_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
        "AIAAS_JOB_STALE_AFTER_S": str(STALE_AFTER_S),
        "AIAAS_CHECKPOINT_EVERY_STEPS": str(CHECKPOINT_EVERY_STEPS),
    }
    workers = {
        process.pid: process
        for process in (
            start_worker(config, tmp_path / f"worker-{i}.log", worker_processes, **variables)
            for i in range(2)
        )
    }
    developer = team.members[ProjectRole.DEVELOPER].principal
    # Long enough (1,500 steps) that the victim is killed early in its run even on a loaded
    # machine: with 300 steps, a poll that came late could find it past its last step, its
    # trial already told, and the heir had nothing to resume.
    sweep = await create_sweep(
        platform, developer, wine_sweep(wine, hyperparameters={**FIXED, "epochs": 300})
    )
    victim: list[Job] = []

    async def a_trial_past_a_checkpoint() -> bool:
        _, trials = await sweep_and_trials(platform, sweep.id)
        for job in (await trial_jobs(platform, trials)).values():
            if job.state is JobState.RUNNING and await last_checkpoint(platform, job.id) >= 20:
                victim.append(job)
                return True
        return False

    assert await poll_until(a_trial_past_a_checkpoint, 180, 0.1) is not None, log_tails(tmp_path)
    killed = victim[0]
    doomed = workers.pop(worker_pid(killed))
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    (survivor,) = workers.values()

    sweep, trials = await finished(platform, sweep.id)

    assert survivor.poll() is None, log_tails(tmp_path)
    assert sweep.state is SweepState.SUCCEEDED, sweep.reason
    assert [(t.number, t.state) for t in trials] == [(n, TrialState.COMPLETE) for n in range(4)]
    jobs = await trial_jobs(platform, trials)
    resumed = jobs[killed.id]
    # The reconciler handed the stale job on; the survivor resumed it from its checkpoint.
    assert (resumed.state, resumed.attempt) == (JobState.SUCCEEDED, 2), resumed.reason
    assert worker_pid(resumed) == survivor.pid
    resumes = [
        e["step"] for e in await stream_events(platform, killed.id) if e["type"] == "resumed"
    ]
    assert resumes[0] == 0 and resumes[-1] >= 20, resumes
    assert all(jobs[t.job_id].attempt == 1 for t in trials if t.job_id != killed.id)
    # Each trial told once: to Optuna, and in the sweep's own events.
    await assert_optuna_agrees(platform, sweep, trials)
    told = await trials_told(platform, sweep.id)
    assert sorted(told) == [(n, "COMPLETE") for n in range(4)]
    async with platform.metadata.acquire() as connection:
        versions = await connection.fetchval(
            "SELECT count(*) FROM model_versions WHERE job_id = ANY($1::uuid[])",
            [t.job_id for t in trials],
        )
    assert versions == 4
    # A checkpoint the killed worker was putting into the artifact store as it died (a staged
    # file, or an object not yet recorded) is garbage: the collector removes it.
    await collect_garbage(platform, grace_s=0)
