"""Batch scoring: submitting a job that scores a whole dataset version into a new one, and
cancelling it."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import strawberry
from strawberry.types import Info

from aiaas.core.serving import batch_prediction
from aiaas.graphql.context import RequestContext
from aiaas.graphql.errors import ConflictResult, InvalidInputResult, NotFoundResult, expected
from aiaas.graphql.jobs.types import Job
from aiaas.graphql.permissions import project_by_global_id, requires_in_project
from aiaas.graphql.relay import uuid_of


@strawberry.input(
    description="What to score and with what: exactly one of modelVersion and deployment."
)
class SubmitBatchPredictionJobInput:
    dataset_version: strawberry.ID = strawberry.field(
        description="The version to score; it must have every input column of the model."
    )
    model_version: strawberry.ID | None = strawberry.field(
        default=None,
        description="A model version of the same project, scored by the runtime of its format.",
    )
    deployment: strawberry.ID | None = strawberry.field(
        default=None,
        description="A deployment of the same project: its stable version, with its runtime.",
    )
    output_dataset: str | None = strawberry.field(
        default=None,
        description="The dataset that receives the scored version; `<dataset>-predictions` by "
        "default.",
    )


@strawberry.type(description="The batch prediction job, queued.")
class BatchPredictionQueued:
    job: Job


@strawberry.type(description="The batch prediction job, as the change left it.")
class BatchPredictionJobSuccess:
    job: Job


CancelBatchPredictionJobResult = Annotated[
    BatchPredictionJobSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("CancelBatchPredictionJobResult"),
]

SubmitBatchPredictionJobResult = Annotated[
    BatchPredictionQueued | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("SubmitBatchPredictionJobResult"),
]


def _optional_uuid_of(global_id: strawberry.ID | None, type_name: str, field: str) -> UUID | None:
    return None if global_id is None else uuid_of(global_id, type_name, field)


@strawberry.type
class BatchPredictionMutation:
    @strawberry.mutation(
        extensions=requires_in_project(
            "dataset",
            "transform",
            project_by_global_id("dataset_version", within="input", of="DatasetVersion"),
        ),
        description="Score a whole dataset version with a model version or a deployment's, in "
        "a background job, into a new dataset version with the prediction columns and lineage "
        "to both. Its `jobEvents` carry progress (rows done in `step`, of `totalSteps`). A "
        "version without the model's input columns, or a model of another project, is refused "
        "and no job is created.",
    )
    async def submit_batch_prediction_job(
        self, info: Info, input: SubmitBatchPredictionJobInput
    ) -> SubmitBatchPredictionJobResult:
        context: RequestContext = info.context

        async def submit() -> BatchPredictionQueued:
            request = batch_prediction.BatchPredictionRequest(
                dataset_version_id=uuid_of(
                    input.dataset_version, "DatasetVersion", "input.datasetVersion"
                ),
                model_version_id=_optional_uuid_of(
                    input.model_version, "ModelVersion", "input.modelVersion"
                ),
                deployment_id=_optional_uuid_of(input.deployment, "Deployment", "input.deployment"),
                output_dataset=input.output_dataset,
            )
            job = await batch_prediction.submit_batch_prediction(
                context.platform,
                context.require_principal(),
                request,
                request_id=context.request_id,
            )
            return BatchPredictionQueued(job=Job.from_domain(job))

        return await expected(submit)

    @strawberry.mutation(
        extensions=requires_in_project(
            "dataset", "transform", project_by_global_id("id", of="Job")
        ),
        description="Cancel a batch prediction job: at once if it is queued; if it is running, "
        "it stops at its next part, registers no dataset version and ends CANCELLED. A job "
        "that has finished is a ConflictError.",
    )
    async def cancel_batch_prediction_job(
        self, info: Info, id: strawberry.ID
    ) -> CancelBatchPredictionJobResult:
        context: RequestContext = info.context
        job_id = uuid_of(id, "Job", "id")

        async def cancel() -> BatchPredictionJobSuccess:
            job = await batch_prediction.cancel_batch_prediction(
                context.platform, context.require_principal(), job_id, request_id=context.request_id
            )
            return BatchPredictionJobSuccess(job=Job.from_domain(job))

        return await expected(cancel)
