"""Driving a sweep: settling the trials that ended, starting the next ones, finishing it.

`advance_sweep` is the only place a sweep moves. It runs under the sweep's row lock, so that a
trial's worker, the API and the reconciler calling it at once still start each trial once,
count each trial's end once and finish the sweep once. There is no process that owns a sweep:
- a trial's runner calls it with the trial's outcome as the trial ends (`sweep_trials`);
- `createSweep` and `cancelSweep` call it;
- every worker's reconciler calls it for each running sweep (`advance_running_sweeps`), which
  settles the trials whose jobs ended without telling (cancelled while queued, abandoned by a
  dead worker) and carries on a sweep whose last caller died midway.

A trial is an ordinary training job, so its worker may die and another resume it from its
checkpoint; the trial's end is told to Optuna only once, when its job ends.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiaas.core.auth import Principal
from aiaas.core.errors import AiaasError, ConflictError
from aiaas.core.jobs import TERMINAL_STATES, Job, JobState, hold_jobs, jobs_by_ids
from aiaas.core.storage import Connection
from aiaas.core.training.registry import (
    model_versions_by_jobs,
    set_model_alias,
)
from aiaas.core.training.submission import TrainingRequest, submit_training_job
from aiaas.core.training.sweep_records import (
    SWEEP_COLUMNS,
    Sweep,
    SweepState,
    SweepTrial,
    SweepTrialLink,
    TrialState,
    best_of,
    lock_sweep,
    publish_sweep_events,
    to_sweep,
    trials_of,
)
from aiaas.core.training.sweep_studies import STUDY_STORE, ask, fail_unfinished, tell

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

PRUNED_NOTE = "pruned by its sweep"
"""How a pruned trial's job reason starts: the job ends CANCELLED, and this says why."""


@dataclass(frozen=True)
class TrialOutcome:
    state: TrialState
    value: float | None = None
    pruned_at_epoch: int | None = None


def _now() -> datetime:
    return datetime.now(UTC)


async def _outcome_of_job(connection: Connection, sweep: Sweep, job: Job) -> TrialOutcome:
    """The outcome of a trial whose job ended without its runner telling (it died, or the job
    never ran)."""
    if job.state is JobState.SUCCEEDED:
        version = (await model_versions_by_jobs(connection, [job.id])).get(job.id)
        return objective_outcome(sweep, version.metrics if version is not None else {})
    if job.state is JobState.CANCELLED and PRUNED_NOTE in (job.reason or ""):
        return TrialOutcome(TrialState.PRUNED)
    return TrialOutcome(TrialState.FAIL)


def objective_outcome(sweep: Sweep, metrics: Mapping[str, Any]) -> TrialOutcome:
    """A trial that trained: COMPLETE with its model version's objective, or FAIL when the
    version lacks it (no validation rows, or a diverged figure)."""
    value = metrics.get(sweep.objective_metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return TrialOutcome(TrialState.FAIL)
    return TrialOutcome(TrialState.COMPLETE, float(value))


async def _settle(
    platform: Platform,
    connection: Connection,
    sweep: Sweep,
    trial: SweepTrial,
    outcome: TrialOutcome,
) -> dict[str, Any]:
    await platform.service(STUDY_STORE).run(
        tell, sweep.study, trial.optuna_trial_id, outcome.state.value, outcome.value
    )
    await connection.execute(
        "UPDATE sweep_trials SET state = $3, value = $4, pruned_at_epoch = $5, "
        "finished_at = clock_timestamp() WHERE sweep_id = $1 AND number = $2",
        sweep.id,
        trial.number,
        outcome.state.value,
        outcome.value,
        outcome.pruned_at_epoch,
    )
    return {
        "type": "trial_finished",
        "number": trial.number,
        "job_id": str(trial.job_id),
        "state": outcome.state.value,
        "value": outcome.value,
        "pruned_at_epoch": outcome.pruned_at_epoch,
    }


async def _start_trial(platform: Platform, sweep: Sweep, started: int) -> dict[str, Any]:
    """Ask Optuna for the next point and submit its training job. A trial whose job cannot be
    submitted (its dataset version deleted, its project archived) is told as failed."""
    spec = sweep.spec
    store = platform.service(STUDY_STORE)
    asked = await store.run(ask, sweep.study, started)
    try:
        job = await submit_training_job(
            platform,
            None,
            TrainingRequest(
                dataset_version_id=UUID(spec["dataset_version_id"]),
                trainer=spec["trainer"],
                target=spec["target"],
                features=spec["features"],
                hyperparameters={**spec["hyperparameters"], **asked.params},
                validation_fraction=float(spec["validation_fraction"]),
                seed=int(spec["seed"]),
                model_name=spec["model_name"],
            ),
            created_by=sweep.created_by,
            sweep_trial=SweepTrialLink(sweep.id, asked.number, asked.trial_id, asked.params),
        )
    except BaseException:
        await store.run(tell, sweep.study, asked.trial_id, TrialState.FAIL.value, None)
        raise
    return {
        "type": "trial_started",
        "number": asked.number,
        "job_id": str(job.id),
        "params": asked.params,
    }


def _may_start(sweep: Sweep, started: int) -> bool:
    if sweep.cancel_requested_at is not None or sweep.halted_reason is not None:
        return False
    if started >= sweep.n_trials:
        return False
    return sweep.deadline_at is None or _now() < sweep.deadline_at


def _final_state(sweep: Sweep, best: SweepTrial | None) -> tuple[SweepState, str]:
    if sweep.cancel_requested_at is not None:
        return SweepState.CANCELLED, sweep.reason or "cancelled"
    if best is None:
        return SweepState.FAILED, "no trial completed"
    return (
        SweepState.SUCCEEDED,
        f"best trial {best.number}: {sweep.objective_metric} {best.value:g}",
    )


async def _finish(
    platform: Platform, connection: Connection, sweep: Sweep, trials: list[SweepTrial]
) -> tuple[Sweep, list[dict[str, Any]]]:
    """End the sweep, in the caller's transaction, promoting its best trial first where it
    asks to: once a sweep reads SUCCEEDED, its alias has moved (or the reason says why not)."""
    best = best_of(sweep, trials)
    state, reason = _final_state(sweep, best)
    note = sweep.halted_reason or ""
    events: list[dict[str, Any]] = []
    promoted = None
    alias = sweep.spec.get("promote_to")
    if alias and state is SweepState.SUCCEEDED:
        try:
            moved, promoted = await promote_trial(platform, None, sweep, alias, trials=trials)
            events.append(moved)
        except AiaasError as exc:
            note = f"{note}; " if note else ""
            note += f"not promoted to {alias}: {exc}"
            events.append({"type": "promotion_refused", "alias": alias, "reason": str(exc)})
    if note:
        reason = f"{reason}; {note}"
    row = await connection.fetchrow(
        f"""
        UPDATE sweeps SET state = $2, reason = $3, best_trial_number = $4,
            promoted_version_id = coalesce($5, promoted_version_id),
            finished_at = clock_timestamp(), updated_at = clock_timestamp()
        WHERE id = $1 RETURNING {SWEEP_COLUMNS}
        """,
        sweep.id,
        state.value,
        reason,
        best.number if best is not None else None,
        promoted,
    )
    await platform.service(STUDY_STORE).run(fail_unfinished, sweep.study)
    finished = to_sweep(row)
    events.append(
        {
            "type": "state",
            "state": finished.state.value,
            "reason": finished.reason,
            "best_trial_number": finished.best_trial_number,
        }
    )
    return finished, events


async def advance_sweep(
    platform: Platform,
    sweep_id: UUID,
    settled: Mapping[int, TrialOutcome] | None = None,
    *,
    runner: str | None = None,
) -> Sweep:
    """Settle, start and finish what is due (see the module doc); `settled` holds outcomes a
    trial's runner reports, by trial number, and `runner` its claim (`Job.claimed_by`): an
    outcome counts only while its runner still holds the trial's job. The sweep as it now
    stands."""
    events: list[dict[str, Any]] = []
    async with platform.metadata.transaction() as connection:
        sweep = await lock_sweep(connection, sweep_id)
        if sweep.state is not SweepState.RUNNING:
            return sweep
        trials = (await trials_of(connection, [sweep.id]))[sweep.id]
        outcomes = dict(settled or {})
        running = [trial for trial in trials if trial.state is TrialState.RUNNING]
        if outcomes:
            # Share-locked until the outcome is stored: no worker can take a reported trial's
            # job over between the check of its claim below and the commit.
            await hold_jobs(
                connection, [trial.job_id for trial in running if trial.number in outcomes]
            )
        jobs = await jobs_by_ids(connection, [trial.job_id for trial in running])
        for index, trial in enumerate(trials):
            if trial.state is not TrialState.RUNNING:
                continue
            outcome = outcomes.get(trial.number)
            job = jobs.get(trial.job_id)
            if outcome is not None and (job is None or job.claimed_by != runner):
                # Its runner lost the job to another worker (its heartbeat went stale), which
                # resumes the trial: the trial's end is that worker's to tell, or the job's.
                outcome = None
            if outcome is None and job is not None and job.state in TERMINAL_STATES:
                outcome = await _outcome_of_job(connection, sweep, job)
            if outcome is not None:
                events.append(await _settle(platform, connection, sweep, trial, outcome))
                trials[index] = replace(trial, state=outcome.state, value=outcome.value)
        running_count = sum(trial.state is TrialState.RUNNING for trial in trials)
        started = len(trials)
        while running_count < sweep.parallelism and _may_start(sweep, started):
            try:
                events.append(await _start_trial(platform, sweep, started))
            except AiaasError as exc:
                # Nothing a later trial does differently: the sweep starts no more of them.
                halted = f"trial {started} could not start: {exc}"
                await connection.execute(
                    "UPDATE sweeps SET halted_reason = $2 WHERE id = $1", sweep.id, halted
                )
                sweep = replace(sweep, halted_reason=halted)
                break
            started += 1
            running_count += 1
        if running_count == 0 and not _may_start(sweep, started):
            # Nothing started since the trials were read, and those settled were updated above.
            sweep, ending = await _finish(platform, connection, sweep, trials)
            events += ending
        else:
            await connection.execute(
                "UPDATE sweeps SET updated_at = clock_timestamp() WHERE id = $1", sweep.id
            )
    await publish_sweep_events(platform, sweep.id, events)
    return sweep


async def promote_trial(
    platform: Platform,
    actor: Principal | None,
    sweep: Sweep,
    alias: str,
    number: int | None = None,
    *,
    trials: list[SweepTrial] | None = None,
) -> tuple[dict[str, Any], UUID]:
    """Point `alias` at the model version of trial `number` (the best one by default), through
    the model's promotion gates; its event and the version. The caller records the version as
    the sweep's promoted one."""
    async with platform.metadata.acquire() as connection:
        if trials is None:
            trials = (await trials_of(connection, [sweep.id]))[sweep.id]
        if number is None:
            chosen = best_of(sweep, trials)
            if chosen is None:
                raise ConflictError("the sweep has no completed trial to promote")
        else:
            chosen = next((trial for trial in trials if trial.number == number), None)
            if chosen is None or chosen.state is not TrialState.COMPLETE:
                raise ConflictError(f"trial {number} did not complete: it has no model to promote")
        version = (await model_versions_by_jobs(connection, [chosen.job_id])).get(chosen.job_id)
        if version is None:
            raise ConflictError(f"trial {chosen.number} registered no model version")
    await set_model_alias(platform, actor, version.id, alias, on_behalf_of=sweep.created_by)
    event = {
        "type": "promoted",
        "alias": alias,
        "number": chosen.number,
        "model_version_id": str(version.id),
    }
    return event, version.id


async def advance_running_sweeps(platform: Platform) -> list[UUID]:
    """Advance every running sweep (the reconciler's pass); the ones that finished."""
    async with platform.metadata.acquire() as connection:
        ids = [
            row["id"]
            for row in await connection.fetch(
                "SELECT id FROM sweeps WHERE state = 'RUNNING' ORDER BY created_at"
            )
        ]
    finished = []
    for sweep_id in ids:
        try:
            sweep = await advance_sweep(platform, sweep_id)
        except Exception:  # one sweep's trouble must not hold the others back
            logger.exception("sweep %s: could not advance it", sweep_id)
            continue
        if sweep.state is not SweepState.RUNNING:
            finished.append(sweep_id)
    return finished
