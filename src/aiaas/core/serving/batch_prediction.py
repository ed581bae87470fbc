"""Batch scoring: a whole dataset version through a model, in a worker, into a new version.

`submit_batch_prediction` vets the request before a job exists: exactly one of a model version
and a deployment (whose stable version and runtime are used), both in the dataset
version's project; every input of the model's signature a column of the dataset version; the
prediction columns free; the output dataset's name valid. Only then does it record the QUEUED
job (`BATCH_PREDICTION_JOB`), with its audit event, holding the project open (`ChangeInProject`).

`cancel_batch_prediction` cancels it (`cancel_job`, as a training job is cancelled), and
`output_of_job` finds the version it made. `batch_prediction_runner` runs the job in a worker;
the module doc there says how.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

from aiaas.core.auth import Principal
from aiaas.core.data.datasets import (
    DatasetVersion,
    check_dataset_name,
    datasets_by_ids,
    get_version,
    lock_live_version,
    version_with_step,
)
from aiaas.core.errors import InputError, NotFoundError
from aiaas.core.identity.projects import ChangeInProject
from aiaas.core.job_submission import cancel_job, hand_committed_job_to_queue, record_new_job
from aiaas.core.jobs import Job, publish_state
from aiaas.core.serving.batch_scoring import (
    output_columns,
    output_problem,
)
from aiaas.core.serving.deployments import (
    DeploymentState,
    check_runtime,
    deployments_by_ids,
    runtime_for_format,
)
from aiaas.core.signatures import STRING_DTYPES, ModelSignature
from aiaas.core.storage import Connection
from aiaas.core.training.registry import ModelVersion, get_model_version

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

BATCH_PREDICTION_JOB = "batch_prediction"
"""The kind of job this module submits, and the one a worker hands to `run_batch_prediction`."""
READ_BATCH_ROWS = 65_536
"""Rows read from the version's Parquet file at once: what bounds the job's memory beyond the
model. Large enough that Arrow's and the writer's per-batch overheads do not count."""
MAX_BATCH_ROWS = 1_048_576
SCORING_BATCH_ROWS = 4096
"""Rows per call into the model. Not a deployment's batch size, which is set for latency: a
job wants few calls, each worth its overhead (preprocessing, dispatch). Only two shapes are
ever compiled, a full batch and a job's last one, padded to its bucket; 4,096 rows of a tabular
model's activations are a few megabytes."""
NARROW_SCORING_BATCH_ROWS = 16_384
"""Rows per call into a model of a few numeric columns (`scoring_batch_rows`)."""
NARROW_INPUTS = 64
OUTPUT_SUFFIX = "-predictions"


def scoring_batch_rows(signature: ModelSignature) -> int:
    """Rows per call into the model for a job. A model of at most `NARROW_INPUTS` numeric
    columns (a tabular one) costs so little a row that a call's overhead (each column
    preprocessed, the dispatch, the copies) is most of it: on 1M rows of 13 features, calls of
    16,384 rows save a tenth of a second over 4,096-row ones, a tenth of the job, and their
    activations are still a few megabytes. Any other keeps `SCORING_BATCH_ROWS`: an image's
    pixels or a text's tokens make a row's activations many times larger."""
    narrow = len(signature.inputs) <= NARROW_INPUTS and all(
        spec.dtype not in STRING_DTYPES and len(spec.shape) == 1 for spec in signature.inputs
    )
    return NARROW_SCORING_BATCH_ROWS if narrow else SCORING_BATCH_ROWS


@dataclass(frozen=True, kw_only=True)
class BatchPredictionRequest:
    dataset_version_id: UUID
    model_version_id: UUID | None = None
    deployment_id: UUID | None = None
    """Exactly one of `model_version_id` and `deployment_id`."""
    output_dataset: str | None = None
    """None: the scored version's dataset name followed by `-predictions`."""
    batch_rows: int = READ_BATCH_ROWS
    """Rows per record batch, and so per checkpointed part."""


# Submitting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scorer:
    model_version: ModelVersion
    runtime: str


async def _scorer(
    platform: Platform, connection: Connection, request: BatchPredictionRequest, project_id: UUID
) -> _Scorer:
    """The model version and runtime the request names. `NotFoundError` for one
    that does not exist in the dataset version's project: another project's is not told apart
    from none."""
    if request.deployment_id is not None:
        deployment = (await deployments_by_ids(connection, [request.deployment_id])).get(
            request.deployment_id
        )
        if deployment is None or deployment.project_id != project_id:
            raise NotFoundError("no such deployment")
        if deployment.state is DeploymentState.STOPPED:
            raise InputError("the deployment is stopped", field_errors={"deployment": "stopped"})
        version = await get_model_version(connection, deployment.stable_version_id)
        return _Scorer(version, deployment.runtime)
    assert request.model_version_id is not None  # exactly one, checked by the caller
    version = await get_model_version(connection, request.model_version_id)
    if version.project_id != project_id:
        raise NotFoundError("no such model version")
    return _Scorer(version, runtime_for_format(platform, version.format))


def _vet(
    platform: Platform,
    scorer: _Scorer,
    version: DatasetVersion,
    output_dataset: str,
) -> dict[str, str]:
    problems: dict[str, str] = {}
    model_field = "modelVersion"
    signature = ModelSignature.from_json(scorer.model_version.signature)
    problem = output_problem(signature)
    if problem is not None:
        problems[model_field] = problem
    else:
        try:
            check_runtime(platform, scorer.runtime, [scorer.model_version])
        except InputError as exc:
            problems[model_field] = str(exc)
    columns = version.column_types
    missing = [spec.name for spec in signature.inputs if spec.name not in columns]
    if missing:
        problems["datasetVersion"] = (
            f"lacks the model's feature column(s): {', '.join(missing[:20])}"
        )
    elif problem is None:
        taken = [name for name, _, _ in output_columns(signature) if name in columns]
        if taken:
            problems["datasetVersion"] = (
                f"already has column(s) named as the predictions: {', '.join(taken[:20])}"
            )
    try:
        check_dataset_name(output_dataset)
    except InputError:
        problems["outputDataset"] = (
            "1 to 100 lowercase letters, digits, dots, hyphens and underscores, starting and "
            "ending with a letter or digit"
        )
    return problems


async def submit_batch_prediction(
    platform: Platform,
    actor: Principal,
    request: BatchPredictionRequest,
    *,
    request_id: str | None = None,
) -> Job:
    """Vet the request and queue its job; `InputError` naming every problem, and nothing made,
    otherwise."""
    if not 1 <= request.batch_rows <= MAX_BATCH_ROWS:
        raise InputError(
            f"batch_rows must be 1 to {MAX_BATCH_ROWS}",
            field_errors={"batchRows": f"1 to {MAX_BATCH_ROWS}"},
        )
    if (request.model_version_id is None) == (request.deployment_id is None):
        raise InputError(
            "give exactly one of modelVersion and deployment",
            field_errors={"modelVersion": "give exactly one of modelVersion and deployment"},
        )
    async with platform.metadata.acquire() as connection:
        version = await get_version(connection, request.dataset_version_id)
        dataset = (await datasets_by_ids(connection, [version.dataset_id]))[version.dataset_id]
    output_dataset = request.output_dataset or f"{dataset.name}{OUTPUT_SUFFIX}"
    async with ChangeInProject(
        platform, actor, "batch_prediction.submit", request_id, project_id=version.project_id
    ) as change:
        # Held until the job is recorded: a deletion either sees the job as a user of the
        # version, or happens first and is seen here.
        await lock_live_version(change.connection, version.id)
        scorer = await _scorer(platform, change.connection, request, version.project_id)
        problems = _vet(platform, scorer, version, output_dataset)
        if problems:
            raise InputError(
                f"the batch prediction job cannot run: {len(problems)} problem(s)",
                field_errors=problems,
            )
        payload = {
            "dataset_version_id": str(version.id),
            "model_version_id": str(scorer.model_version.id),
            "deployment_id": str(request.deployment_id) if request.deployment_id else None,
            "runtime": scorer.runtime,
            "max_batch_size": scoring_batch_rows(
                ModelSignature.from_json(scorer.model_version.signature)
            ),
            "output_dataset": output_dataset,
            "batch_rows": request.batch_rows,
        }
        job = await record_new_job(
            change,
            project_id=version.project_id,
            kind=BATCH_PREDICTION_JOB,
            payload=payload,
            created_by=actor.user_id,
        )
    await publish_state(platform, job)
    await hand_committed_job_to_queue(platform, job)
    return job


async def output_of_job(connection: Connection, job: Job) -> DatasetVersion | None:
    """The version a batch prediction job registered, if it did: the one whose transformation
    names the job."""
    return await version_with_step(
        connection, job.project_id, {"step": BATCH_PREDICTION_JOB, "job_id": str(job.id)}
    )


async def cancel_batch_prediction(
    platform: Platform, actor: Principal, job_id: UUID, *, request_id: str | None = None
) -> Job:
    """A queued job is cancelled at once; a running one stops at its next part, registering
    nothing, and ends CANCELLED. `ConflictError` once it has finished."""
    return await cancel_job(
        platform,
        actor,
        job_id,
        kind=BATCH_PREDICTION_JOB,
        action="batch_prediction.cancel",
        request_id=request_id,
    )
