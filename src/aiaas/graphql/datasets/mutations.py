from __future__ import annotations

from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from aiaas.core.data import datasets, quality
from aiaas.core.data.tabular.read_options import ReadOptions
from aiaas.core.data.uploads import copy_upload
from aiaas.core.training import models_trained_on
from aiaas.disconnects import unless_disconnected
from aiaas.graphql.context import RequestContext
from aiaas.graphql.datasets.types import (
    Dataset,
    DatasetVersion,
    DatasetVersionResult,
    DatasetVersionSuccess,
    DeleteDatasetVersionResult,
    DeleteDatasetVersionSuccess,
    SetDatasetExpectationsResult,
    SetDatasetExpectationsSuccess,
    TransformDatasetVersionInput,
    UploadDatasetInput,
)
from aiaas.graphql.errors import ConflictResult, InvalidInputResult, NotFoundResult, expected
from aiaas.graphql.jobs.types import Job
from aiaas.graphql.permissions import project_by_global_id, requires_in_project
from aiaas.graphql.relay import uuid_of


# Here rather than with the other result types: `Job` names `DatasetVersion` (the version a
# batch prediction job made), so the dataset types name no job.
@strawberry.type
class ValidationQueued:
    job: Job


ValidateDatasetVersionResult = Annotated[
    ValidationQueued | NotFoundResult | ConflictResult | InvalidInputResult,
    strawberry.union("ValidateDatasetVersionResult"),
]

EXPECTATIONS_DESCRIPTION = (
    'A list of expectations, each {"kind": ..., its arguments, "blocking": true}; `blocking` '
    "is true unless set. The kinds, their arguments and an example of each: docs/reference.md. "
    "An error names each problem by its path, e.g. `expectations.2.columns`."
)


def version_of(id: strawberry.ID, argument: str = "id") -> Any:
    return uuid_of(id, "DatasetVersion", argument)


@strawberry.type
class DatasetMutation:
    @strawberry.mutation(
        extensions=requires_in_project(
            "dataset", "upload", project_by_global_id("project", within="input")
        ),
        description="Upload a CSV or Parquet file (multipart, with the X-Aiaas-CSRF header) as "
        "a new version of a dataset. The same content again answers the existing version.",
    )
    async def upload_dataset(self, info: Info, input: UploadDatasetInput) -> DatasetVersionResult:
        context: RequestContext = info.context
        project_id = uuid_of(input.project, "Project", "input.project")

        async def upload() -> DatasetVersionSuccess:
            # Made here, inside `expected`, so that a bad option answers InvalidInputError.
            options = ReadOptions(
                format=input.format.value if input.format else None,
                encoding=input.encoding,
                delimiter=input.delimiter,
                header=input.header,
            )
            with datasets.scratch(context.platform) as work:
                received = await copy_upload(
                    input.file, work / "upload", context.platform.config.upload_max_bytes
                )
                added = await unless_disconnected(
                    context.request.receive,
                    datasets.upload_version(
                        context.platform,
                        context.require_principal(),
                        project_id,
                        dataset_name=input.name,
                        source=received.path,
                        content_sha256=received.sha256,
                        options=options,
                        description=input.description,
                        request_id=context.request_id,
                    ),
                )
            return DatasetVersionSuccess(
                version=DatasetVersion.from_domain(added.version), created=added.created
            )

        return await expected(upload)

    @strawberry.mutation(
        extensions=requires_in_project(
            "dataset", "configure", project_by_global_id("dataset", of="Dataset")
        ),
        description="Declare what the dataset's versions must satisfy (a list of expectations).",
    )
    async def set_dataset_expectations(
        self,
        info: Info,
        dataset: strawberry.ID,
        expectations: Annotated[JSON, strawberry.argument(description=EXPECTATIONS_DESCRIPTION)],
    ) -> SetDatasetExpectationsResult:
        context: RequestContext = info.context
        dataset_id = uuid_of(dataset, "Dataset", "dataset")

        async def configure() -> SetDatasetExpectationsSuccess:
            updated = await datasets.set_expectations(
                context.platform,
                context.require_principal(),
                dataset_id,
                expectations,  # type: ignore[arg-type]
                request_id=context.request_id,
            )
            return SetDatasetExpectationsSuccess(dataset=Dataset.from_domain(updated))

        return await expected(configure)

    @strawberry.mutation(
        extensions=requires_in_project(
            "dataset", "validate", project_by_global_id("id", of="DatasetVersion")
        ),
        description="Check a version against its dataset's expectations, in a background job.",
    )
    async def validate_dataset_version(
        self, info: Info, id: strawberry.ID
    ) -> ValidateDatasetVersionResult:
        context: RequestContext = info.context

        async def validate() -> ValidationQueued:
            job = await quality.submit_validation(
                context.platform,
                context.require_principal(),
                version_of(id),
                request_id=context.request_id,
            )
            return ValidationQueued(job=Job.from_domain(job))

        return await expected(validate)

    @strawberry.mutation(
        extensions=requires_in_project(
            "dataset",
            "transform",
            project_by_global_id("version", within="input", of="DatasetVersion"),
        ),
        description="Clean a version into a new version of the same dataset, with lineage.",
    )
    async def transform_dataset_version(
        self, info: Info, input: TransformDatasetVersionInput
    ) -> DatasetVersionResult:
        context: RequestContext = info.context

        async def transform() -> DatasetVersionSuccess:
            added = await datasets.transform_version(
                context.platform,
                context.require_principal(),
                version_of(input.version, "input.version"),
                [step.as_step() for step in input.steps],
                request_id=context.request_id,
            )
            return DatasetVersionSuccess(
                version=DatasetVersion.from_domain(added.version), created=added.created
            )

        return await expected(transform)

    @strawberry.mutation(
        extensions=requires_in_project(
            "dataset", "delete", project_by_global_id("id", of="DatasetVersion")
        ),
        description="Delete a version nothing uses; its data goes at the next garbage collection.",
    )
    async def delete_dataset_version(
        self, info: Info, id: strawberry.ID
    ) -> DeleteDatasetVersionResult:
        context: RequestContext = info.context

        async def delete() -> DeleteDatasetVersionSuccess:
            version = await datasets.delete_version(
                context.platform,
                context.require_principal(),
                version_of(id),
                models_using=models_trained_on,
                request_id=context.request_id,
            )
            return DeleteDatasetVersionSuccess(version=DatasetVersion.from_domain(version))

        return await expected(delete)
