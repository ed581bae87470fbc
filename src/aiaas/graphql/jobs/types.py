from __future__ import annotations

from datetime import datetime
from enum import Enum
from uuid import UUID

import strawberry

from aiaas.core import jobs
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
        )
