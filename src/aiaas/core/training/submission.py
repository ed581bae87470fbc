"""Submitting a training job, vetted before it exists, and cancelling one (`cancel_job`).

`submit_training_job` vets everything it can before a job exists (the trainer, its typed
hyperparameters, the target and features against the version's schema, the split, the version's
quality gate, the model name) and reports every problem at once; only then does it record the
QUEUED job, with its audit event, and enqueue it.

A model version's metrics come from the validation split alone, so a job without one
(`validationFraction: 0`) registers a version that no promotion gate can pass: such a job is
refused while its model has gates. (Gates set after the job was submitted still refuse the
version when an alias moves, saying it has no such metric.) A worker runs it with
`aiaas.core.training.runner.run_training`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiaas.core.auth import Principal
from aiaas.core.data.datasets import (
    DatasetVersion,
    datasets_by_ids,
    get_version,
    lock_live_version,
)
from aiaas.core.data.quality import require_usable_for_training
from aiaas.core.errors import InputError
from aiaas.core.identity.projects import ChangeInProject
from aiaas.core.job_submission import cancel_job, hand_committed_job_to_queue, record_new_job
from aiaas.core.jobs import Job, publish_state
from aiaas.core.storage import Connection
from aiaas.core.trainers import Trainer, split_sizes, vet_hyperparameters
from aiaas.core.training.registry import check_model_name, model_by_name
from aiaas.core.training.sweep_records import SweepTrialLink
from aiaas.core.training.trainer_extras import unknown_trainer_problem

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

TRAINING_JOB = "training"
"""The kind of job this module submits, and the one a worker hands to `run_training`."""
MAX_FEATURES = 10_000

# The column types trainers are told about, by aiaas's logical column type.
TRAINER_COLUMN_TYPES = {
    "integer": "int64",
    "float": "float64",
    "boolean": "bool",
    "string": "string",
    "timestamp": "timestamp",
    "date": "date",
}


@dataclass(frozen=True, kw_only=True)
class TrainingRequest:
    dataset_version_id: UUID
    trainer: str
    target: str
    features: Sequence[str] | None = None
    """None: every column but the target."""
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    validation_fraction: float = 0.2
    seed: int = 0
    model_name: str | None = None
    """None: the dataset's name."""


def trainer_column_types(columns: Mapping[str, str]) -> dict[str, str]:
    return {name: TRAINER_COLUMN_TYPES.get(kind, kind) for name, kind in columns.items()}


def _vet_trainer(
    platform: Platform, request: TrainingRequest, problems: dict[str, str]
) -> tuple[Trainer | None, dict[str, Any]]:
    """The trainer and its full hyperparameters (defaults filled in), noting what is wrong."""
    names = [spec.name for spec in platform.registries.trainers]
    if request.trainer not in names:
        problems["trainer"] = unknown_trainer_problem(request.trainer, names)
        return None, {}
    trainer = platform.trainer(request.trainer)
    if not isinstance(request.hyperparameters, Mapping):
        problems["hyperparameters"] = "must be an object"
        return trainer, {}
    values, wrong = vet_hyperparameters(trainer.hyperparameters(), request.hyperparameters)
    problems.update({f"hyperparameters.{name}": problem for name, problem in wrong.items()})
    return trainer, values


def _vet_columns(
    trainer: Trainer | None,
    request: TrainingRequest,
    columns: Mapping[str, str],
    values: Mapping[str, Any],
    problems: dict[str, str],
) -> list[str]:
    """The feature columns, noting what is wrong with them and with the target."""
    types = trainer_column_types(columns)
    if request.target not in columns:
        problems["target"] = f"no column {request.target!r} in the dataset version"
    elif trainer is not None:
        problem = trainer.target_problem(types[request.target])
        if problem is not None:
            problems["target"] = problem
    features = (
        [name for name in columns if name != request.target]
        if request.features is None
        else list(request.features)
    )
    unknown = [name for name in features if name not in columns]
    if unknown:
        problems["features"] = f"no such columns: {', '.join(unknown[:20])}"
    elif request.target in features:
        problems["features"] = "the target cannot also be a feature"
    elif not features or len(features) > MAX_FEATURES or len(set(features)) != len(features):
        problems["features"] = f"give 1 to {MAX_FEATURES} distinct feature columns"
    elif trainer is not None and not any(k.startswith("hyperparameters") for k in problems):
        wrong = trainer.feature_problems({name: types[name] for name in features}, values)
        problems.update({f"features.{name}": problem for name, problem in wrong.items()})
    return features


def _vet(
    platform: Platform, request: TrainingRequest, columns: Mapping[str, str], row_count: int
) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """The full hyperparameters, the features, and every problem found."""
    problems: dict[str, str] = {}
    trainer, values = _vet_trainer(platform, request, problems)
    features = _vet_columns(trainer, request, columns, values, problems)
    if not 0 <= request.validation_fraction < 1:
        problems["validationFraction"] = "must be at least 0 and below 1"
    elif split_sizes(row_count, request.validation_fraction).train == 0:
        problems["validationFraction"] = (
            f"the training split would be empty ({row_count} usable rows)"
        )
    if not 0 <= request.seed < 2**31:
        problems["seed"] = "must be between 0 and 2147483647"
    return values, features, problems


def _usable_rows(row_count: int, column_stats: Mapping[str, Any], target: str) -> int:
    """Rows with a target: the only ones a trainer can learn from."""
    null_fraction = float(column_stats.get(target, {}).get("null_fraction", 0.0))
    return round(row_count * (1.0 - null_fraction))


async def _gated_without_metrics(
    connection: Connection,
    project_id: UUID,
    model_name: str,
    rows: int,
    request: TrainingRequest,
) -> str | None:
    """Why a job with no validation split cannot serve the model, when the model has promotion
    gates: every gate is checked against the version's metrics, which that job cannot have."""
    if split_sizes(rows, request.validation_fraction).validation > 0:
        return None
    model = await model_by_name(connection, project_id, model_name)
    if model is None or not model.promotion_gates:
        return None
    gated = sorted(
        {gate["metric"] for gate in model.promotion_gates if isinstance(gate.get("metric"), str)}
    )
    checked = f" (on {', '.join(gated)})" if gated else ""
    return (
        f"must be above 0: model {model_name!r} has promotion gates{checked}, which check "
        "metrics of the validation split; a version trained without one would have none and "
        "could never pass them"
    )


@dataclass(frozen=True)
class VettedTraining:
    hyperparameters: dict[str, Any]
    features: list[str]
    model_name: str
    problems: dict[str, str]


async def vet_training(
    platform: Platform,
    connection: Connection,
    version: DatasetVersion,
    dataset_name: str,
    request: TrainingRequest,
) -> VettedTraining:
    """Everything wrong with training `request` on `version`, found at once; the version is
    locked by the caller."""
    rows = _usable_rows(version.row_count, version.column_stats, request.target)
    values, features, problems = _vet(platform, request, version.column_types, rows)
    model_name = request.model_name or dataset_name
    try:
        check_model_name(model_name)
    except InputError as exc:
        problems.update(exc.field_errors)
    try:
        await require_usable_for_training(connection, version.id)
    except InputError as exc:
        problems.update(exc.field_errors)
    if "validationFraction" not in problems:
        problem = await _gated_without_metrics(
            connection, version.project_id, model_name, rows, request
        )
        if problem is not None:
            problems["validationFraction"] = problem
    return VettedTraining(values, features, model_name, problems)


async def submit_training_job(
    platform: Platform,
    actor: Principal | None,
    request: TrainingRequest,
    *,
    request_id: str | None = None,
    created_by: UUID | None = None,
    sweep_trial: SweepTrialLink | None = None,
) -> Job:
    """Vet, record and enqueue a training job. A sweep's trial has no actor (the sweep starts
    it, audited as the platform's) and is created by the sweep's creator; its link to the
    sweep is recorded with it."""
    async with platform.metadata.acquire() as connection:
        version = await get_version(connection, request.dataset_version_id)
        dataset = (await datasets_by_ids(connection, [version.dataset_id]))[version.dataset_id]
    # No new job in an archived project, nor one archived while this one is recorded.
    async with ChangeInProject(
        platform, actor, "training.submit", request_id, project_id=version.project_id
    ) as change:
        # Locked until the job is recorded, so that a deletion of the version either sees the
        # job as its user or happens first and is seen here.
        await lock_live_version(change.connection, version.id)
        vetted = await vet_training(platform, change.connection, version, dataset.name, request)
        if vetted.problems:
            raise InputError(
                f"the training job cannot run: {len(vetted.problems)} problem(s)",
                field_errors=vetted.problems,
            )
        payload: dict[str, Any] = {
            "dataset_version_id": str(version.id),
            "trainer": request.trainer,
            "target": request.target,
            "features": vetted.features,
            "hyperparameters": vetted.hyperparameters,
            "validation_fraction": request.validation_fraction,
            "seed": request.seed,
            "model_name": vetted.model_name,
        }
        if sweep_trial is not None:
            payload["sweep"] = sweep_trial.as_payload()
        job = await record_new_job(
            change,
            project_id=version.project_id,
            kind=TRAINING_JOB,
            payload=payload,
            created_by=actor.user_id if actor is not None else created_by,
        )
        if sweep_trial is not None:
            await sweep_trial.record(change.connection, job.id)
    await publish_state(platform, job)
    await hand_committed_job_to_queue(platform, job)
    return job


async def cancel_training_job(
    platform: Platform, actor: Principal, job_id: UUID, *, request_id: str | None = None
) -> Job:
    """A queued job is cancelled at once; a running one stops where its trainer next checks
    (`TrainingReporter.should_stop`)."""
    return await cancel_job(
        platform, actor, job_id, kind=TRAINING_JOB, action="training.cancel", request_id=request_id
    )
