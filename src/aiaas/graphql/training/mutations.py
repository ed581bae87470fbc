"""Training mutations: submitting a training job and cancelling one."""

from __future__ import annotations

from collections.abc import Mapping

import strawberry
from strawberry.types import Info

from aiaas.core.errors import InputError
from aiaas.core.training import submission
from aiaas.graphql.context import RequestContext
from aiaas.graphql.errors import expected
from aiaas.graphql.permissions import project_by_global_id, requires_in_project
from aiaas.graphql.relay import uuid_of
from aiaas.graphql.training.types import (
    CancelTrainingJobResult,
    SubmitTrainingJobInput,
    SubmitTrainingJobResult,
    TrainingJob,
    TrainingJobSuccess,
)


@strawberry.type
class TrainingMutation:
    @strawberry.mutation(
        extensions=requires_in_project(
            "training",
            "submit",
            project_by_global_id("dataset_version", within="input", of="DatasetVersion"),
        ),
        description="Train a model on a dataset version in a background job. Every problem "
        "with the request is reported at once, and no job is created then.",
    )
    async def submit_training_job(
        self, info: Info, input: SubmitTrainingJobInput
    ) -> SubmitTrainingJobResult:
        context: RequestContext = info.context
        version_id = uuid_of(input.dataset_version, "DatasetVersion", "input.datasetVersion")

        async def submit() -> TrainingJobSuccess:
            if not isinstance(input.hyperparameters, Mapping):
                raise InputError(
                    "hyperparameters must be an object",
                    field_errors={"hyperparameters": "must be an object"},
                )
            job = await submission.submit_training_job(
                context.platform,
                context.require_principal(),
                submission.TrainingRequest(
                    dataset_version_id=version_id,
                    trainer=input.trainer,
                    target=input.target,
                    features=input.features,
                    hyperparameters=input.hyperparameters,
                    validation_fraction=input.validation_fraction,
                    seed=input.seed,
                    model_name=input.model_name,
                ),
                request_id=context.request_id,
            )
            return TrainingJobSuccess(job=TrainingJob.from_domain(job))

        return await expected(submit)

    @strawberry.mutation(
        extensions=requires_in_project(
            "training", "cancel", project_by_global_id("id", of="TrainingJob")
        ),
        description="Cancel a training job: at once if it is queued; if it is running, where "
        "its trainer next checks (the built-in trainers: within 8 steps, or at the end of an "
        "epoch when early stopping judges epochs).",
    )
    async def cancel_training_job(self, info: Info, id: strawberry.ID) -> CancelTrainingJobResult:
        context: RequestContext = info.context
        job_id = uuid_of(id, "TrainingJob", "id")

        async def cancel() -> TrainingJobSuccess:
            job = await submission.cancel_training_job(
                context.platform, context.require_principal(), job_id, request_id=context.request_id
            )
            return TrainingJobSuccess(job=TrainingJob.from_domain(job))

        return await expected(cancel)
