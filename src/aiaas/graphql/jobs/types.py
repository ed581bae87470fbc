from __future__ import annotations

from datetime import datetime
from enum import Enum
from uuid import UUID

import strawberry
from strawberry.types import Info

from aiaas.core import jobs
from aiaas.core.serving.batch_prediction import BATCH_PREDICTION_JOB, output_of_job
from aiaas.graphql.datasets.types import DatasetVersion
from aiaas.graphql.permissions import project_of_source, requires_in_project
from aiaas.graphql.relay import Node, to_global_id


@strawberry.enum(description="Where a background job is in its life.")
class JobState(Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@strawberry.type(description="A background job run by a worker.")
class Job(Node):
    kind: str
    state: JobState
    attempt: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    reason: str | None = strawberry.field(description="Why it failed, or its outcome's note.")
    project_uuid: strawberry.Private[UUID]
    record: strawberry.Private[jobs.Job]

    @strawberry.field(
        extensions=requires_in_project("dataset", "read", project_of_source),
        description="The dataset version a batch prediction job made, once it has succeeded; "
        "null otherwise.",
    )
    async def output_dataset_version(self, info: Info) -> DatasetVersion | None:
        if (
            self.record.kind != BATCH_PREDICTION_JOB
            or self.record.state is not jobs.JobState.SUCCEEDED
        ):
            return None
        async with info.context.platform.metadata.acquire() as connection:
            found = await output_of_job(connection, self.record)
        return DatasetVersion.from_domain(found) if found is not None else None

    @classmethod
    def from_domain(cls, job: jobs.Job) -> Job:
        return cls(
            id=to_global_id("Job", job.id),
            kind=job.kind,
            state=JobState(job.state.value),
            attempt=job.attempt,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            reason=job.reason,
            project_uuid=job.project_id,
            record=job,
        )
