"""Sweeps as users change them: creating one, cancelling one, promoting its best trial.

`create_sweep` vets the whole request first (the search space and objective against the
trainer, and the training itself as `submit_training_job` would: target, features, the
version's quality gate, the model name) and reports every problem at once; only then does it
create the Optuna study and record the sweep with its audit event, and start the first trials.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.data.datasets import datasets_by_ids, get_version, lock_live_version
from aiaas.core.errors import ConflictError, InputError
from aiaas.core.identity.projects import ChangeInProject, projects_by_ids, refuse_if_archived
from aiaas.core.job_submission import cancel_job
from aiaas.core.jobs import TERMINAL_STATES, jobs_by_ids
from aiaas.core.training.submission import TRAINING_JOB, TrainingRequest, vet_training
from aiaas.core.training.sweep_driver import advance_sweep, promote_trial
from aiaas.core.training.sweep_records import (
    SWEEP_COLUMNS,
    Sweep,
    SweepState,
    TrialState,
    get_sweep,
    lock_sweep,
    publish_sweep_events,
    to_sweep,
    trials_of,
)
from aiaas.core.training.sweep_spec import SweepRequest, representative_values, vet_sweep
from aiaas.core.training.sweep_studies import (
    STUDY_STORE,
    SweepStudy,
    create_study,
    delete_study,
    importances,
    intermediate_values,
)

if TYPE_CHECKING:
    from aiaas.core.platform import Platform


def _training_request(request: SweepRequest, searched: dict[str, Any]) -> TrainingRequest:
    return TrainingRequest(
        dataset_version_id=request.dataset_version_id,
        trainer=request.trainer,
        target=request.target,
        features=request.features,
        hyperparameters={**request.hyperparameters, **searched},
        validation_fraction=request.validation_fraction,
        seed=request.seed,
        model_name=request.model_name,
    )


async def create_sweep(
    platform: Platform, actor: Principal, request: SweepRequest, *, request_id: str | None = None
) -> Sweep:
    async with platform.metadata.acquire() as connection:
        version = await get_version(connection, request.dataset_version_id)
        dataset = (await datasets_by_ids(connection, [version.dataset_id]))[version.dataset_id]
    problems: dict[str, str] = {}
    trainer = None
    if request.trainer in {spec.name for spec in platform.registries.trainers}:
        trainer = platform.trainer(request.trainer)
    store = platform.service(STUDY_STORE)
    study_name = f"sweep-{uuid4()}"
    async with ChangeInProject(
        platform, actor, "sweep.create", request_id, project_id=version.project_id
    ) as change:
        await lock_live_version(change.connection, version.id)
        spec = vet_sweep(trainer, request, problems) if trainer is not None else {}
        searched = representative_values(spec.get("search_space", []))
        vetted = await vet_training(
            platform,
            change.connection,
            version,
            dataset.name,
            _training_request(request, searched),
        )
        problems.update(vetted.problems)
        if problems:
            raise InputError(
                f"the sweep cannot run: {len(problems)} problem(s)", field_errors=problems
            )
        fixed = {k: v for k, v in vetted.hyperparameters.items() if k not in searched}
        spec.update(
            dataset_version_id=str(version.id),
            trainer=request.trainer,
            target=request.target,
            features=vetted.features,
            hyperparameters=fixed,
            validation_fraction=request.validation_fraction,
            seed=request.seed,
            model_name=vetted.model_name,
        )
        study = SweepStudy(study_name, spec, fixed, request.seed, request.parallelism)
        await store.run(create_study, study)
        try:
            row = await change.connection.fetchrow(
                f"""
                INSERT INTO sweeps (project_id, spec, study_name, n_trials, parallelism,
                                    deadline_at, created_by)
                VALUES ($1, $2, $3, $4, $5, clock_timestamp() + $6::interval, $7)
                RETURNING {SWEEP_COLUMNS}
                """,
                version.project_id,
                spec,
                study_name,
                request.n_trials,
                request.parallelism,
                None if request.time_budget_s is None else timedelta(seconds=request.time_budget_s),
                actor.user_id,
            )
            sweep = to_sweep(row)
            await change.record(
                object_type="sweep",
                object_id=str(sweep.id),
                project_id=version.project_id,
                details={"n_trials": request.n_trials, "parallelism": request.parallelism, **spec},
            )
        except BaseException:
            await store.run(delete_study, study_name)
            raise
    await publish_sweep_events(
        platform, sweep.id, [{"type": "state", "state": SweepState.RUNNING.value}]
    )
    return await advance_sweep(platform, sweep.id)


async def cancel_sweep(
    platform: Platform, actor: Principal, sweep_id: UUID, *, request_id: str | None = None
) -> Sweep:
    """Start no more trials and cancel the running ones; the sweep ends CANCELLED once they
    have stopped. `ConflictError` for a sweep that has ended. A stop, so it works in an
    archived project too, as cancelling a job does."""
    async with platform.metadata.acquire() as connection:
        sweep = await get_sweep(connection, sweep_id)
    async with AuditedChange(
        platform, actor, "sweep.cancel", request_id, project_id=sweep.project_id
    ) as change:
        locked = await lock_sweep(change.connection, sweep_id)
        if locked.state is not SweepState.RUNNING:
            raise ConflictError(
                f"the sweep is {locked.state.value} already; there is nothing to cancel"
            )
        await change.connection.execute(
            "UPDATE sweeps SET cancel_requested_at = coalesce(cancel_requested_at, "
            "clock_timestamp()), reason = $2, updated_at = clock_timestamp() WHERE id = $1",
            sweep_id,
            f"cancelled by {actor.username}",
        )
        trials = (await trials_of(change.connection, [sweep_id]))[sweep_id]
        running = [trial.job_id for trial in trials if trial.state is TrialState.RUNNING]
        jobs = await jobs_by_ids(change.connection, running)
        await change.record(
            object_type="sweep",
            object_id=str(sweep_id),
            project_id=sweep.project_id,
            details={"running_trials": len(running)},
        )
    for job in jobs.values():
        if job.state not in TERMINAL_STATES:
            # One that ended meanwhile (ConflictError) is settled by its outcome.
            with contextlib.suppress(ConflictError):
                await cancel_job(
                    platform,
                    actor,
                    job.id,
                    kind=TRAINING_JOB,
                    action="training.cancel",
                    request_id=request_id,
                )
    return await advance_sweep(platform, sweep_id)


async def promote_sweep_trial(
    platform: Platform,
    actor: Principal,
    sweep_id: UUID,
    alias: str,
    *,
    trial_number: int | None = None,
) -> tuple[Sweep, UUID]:
    """Point `alias` of the sweep's model at a trial's version (the best trial's by default),
    through the model's promotion gates; the sweep and the version promoted."""
    async with platform.metadata.acquire() as connection:
        sweep = await get_sweep(connection, sweep_id)
        project = (await projects_by_ids(connection, [sweep.project_id]))[sweep.project_id]
    refuse_if_archived(project)  # before anything about the trials: it is refused whatever
    moved, version_id = await promote_trial(platform, actor, sweep, alias, trial_number)
    async with platform.metadata.transaction() as connection:
        row = await connection.fetchrow(
            f"UPDATE sweeps SET promoted_version_id = $2, updated_at = clock_timestamp() "
            f"WHERE id = $1 RETURNING {SWEEP_COLUMNS}",
            sweep_id,
            version_id,
        )
    await publish_sweep_events(platform, sweep.id, [moved])
    return to_sweep(row), version_id


async def parameter_importances(platform: Platform, sweep: Sweep) -> dict[str, float]:
    """How much each searched hyperparameter mattered to the objective (Optuna's fANOVA)."""
    return await platform.service(STUDY_STORE).run(importances, sweep.study)


async def trial_curves(platform: Platform, sweep: Sweep) -> dict[int, dict[int, float]]:
    """Each trial's objective by epoch, as its pruner judged it."""
    return await platform.service(STUDY_STORE).run(intermediate_values, sweep.study)
