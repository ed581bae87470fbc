"""The built-in kinds of worker job: training, dataset validation and batch prediction.

They are registered through `aiaas_job_kinds` as a plugin's kinds are, each with the pydantic
model of the payload its domain's submission writes (`submit_training_job`,
`submit_validation`, `submit_batch_prediction`). Their handlers are the domains' own, which read
the job's stored payload themselves (a resumed run reads it as the first did); the model is what
keeps a payload they cannot read from reaching them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from aiaas.core.hookspecs import hookimpl
from aiaas.core.jobs import Job
from aiaas.core.platform import Platform
from aiaas.core.specs import JobKindSpec


class _Payload(BaseModel):
    # As strict as the config: a key the handler does not know is a bug in what wrote it.
    model_config = ConfigDict(extra="forbid", frozen=True)


class SweepTrialLink(_Payload):
    """The sweep a training job is a trial of (`SweepTrialLink.as_payload`)."""

    id: UUID
    number: int
    trial_id: int


class TrainingPayload(_Payload):
    dataset_version_id: UUID
    trainer: str
    target: str
    features: list[str]
    hyperparameters: dict[str, Any]
    validation_fraction: float
    seed: int
    model_name: str
    sweep: SweepTrialLink | None = None


class ValidationPayload(_Payload):
    dataset_version_id: UUID


class BatchPredictionPayload(_Payload):
    dataset_version_id: UUID
    model_version_id: UUID
    deployment_id: UUID | None = None
    runtime: str
    max_batch_size: int
    output_dataset: str
    batch_rows: int | None = None
    """Absent from the jobs of releases before it was a choice: the runner's default then."""


@hookimpl
def aiaas_job_kinds() -> Iterable[JobKindSpec[Any]]:
    # The domains are imported when the registries are built, not with this module: every
    # process registers the built-in plugins, and the CLI needs none of them to start.
    from aiaas.core.data import VALIDATE_JOB, run_validation
    from aiaas.core.serving import BATCH_PREDICTION_JOB, run_batch_prediction
    from aiaas.core.training import TRAINING_JOB, run_training

    async def train(platform: Platform, job: Job, payload: TrainingPayload) -> str | None:
        del payload  # vetted; `run_training` reads the stored payload, as a resumed run must
        return await run_training(platform, job)

    async def validate(platform: Platform, job: Job, payload: ValidationPayload) -> str | None:
        del payload  # vetted; `run_validation` reads the stored payload
        return await run_validation(platform, job)

    async def score(platform: Platform, job: Job, payload: BatchPredictionPayload) -> str | None:
        del payload  # vetted; `run_batch_prediction` reads the stored payload, as a resumed run
        return await run_batch_prediction(platform, job)

    return [
        JobKindSpec(
            name=TRAINING_JOB,
            payload_type=TrainingPayload,
            handler=train,
            description="Train a model version with a registered trainer.",
        ),
        JobKindSpec(
            name=VALIDATE_JOB,
            payload_type=ValidationPayload,
            handler=validate,
            description="Check a dataset version against its expectations.",
        ),
        JobKindSpec(
            name=BATCH_PREDICTION_JOB,
            payload_type=BatchPredictionPayload,
            handler=score,
            description="Score a dataset version with a model version into a new dataset.",
        ),
    ]
