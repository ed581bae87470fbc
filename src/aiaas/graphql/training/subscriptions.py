"""The training subscriptions: `jobEvents`, a job's stream replayed from a cursor, then followed
live; `projectJobChanges`, a project's training jobs as their states change."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from uuid import UUID

import strawberry
from strawberry.types import Info

from aiaas.core.event_streams import is_terminal_event, parse_cursor
from aiaas.core.job_announcements import project_jobs_channel
from aiaas.core.jobs import TERMINAL_STATES, get_job, state_event
from aiaas.core.training import TRAINING_JOB
from aiaas.graphql.context import RequestContext
from aiaas.graphql.permissions import (
    authorize_in_project,
    project_by_global_id,
    requires_in_project,
)
from aiaas.graphql.relay import uuid_of
from aiaas.graphql.shared_subscriptions import authorizing_only
from aiaas.graphql.training.types import JobEvent, TrainingJob

REAUTHORIZE_EVERY_S = 1.0


@strawberry.type
class TrainingSubscription:
    @strawberry.subscription(
        extensions=requires_in_project(
            "job", "read", project_by_global_id("job_id", of=("TrainingJob", "Job"))
        ),
        description="A job's events: first every one after the cursor `after` (all of them "
        "without it), then live ones as they happen, until the job ends. Pass the last "
        "cursor seen to resume without a gap after a reconnection.",
    )
    async def job_events(
        self, info: Info, job_id: strawberry.ID, after: str | None = None
    ) -> AsyncGenerator[JobEvent, None]:
        context: RequestContext = info.context
        job_uuid = uuid_of(job_id, ("TrainingJob", "Job"), "jobId")
        cursor = parse_cursor(after)
        if authorizing_only(info):  # the subscriber's policy passed; its group reads the job
            return
        job = await context.loader("job").load(job_uuid)
        if job.state in TERMINAL_STATES:
            # Its stream may have expired, or Redis lost it: what is left of it, then the end
            # as PostgreSQL knows it.
            ended = False
            async for stream_cursor, event in context.platform.job_events.history(job_uuid, cursor):
                ended = ended or is_terminal_event(event)
                yield JobEvent.from_stream(stream_cursor, event)
            if not ended:
                yield JobEvent.from_stream(cursor, state_event(job))
            return
        checked_at = time.monotonic()
        async for stream_cursor, event in context.platform.job_events.subscribe(job_uuid, cursor):
            # Checked again while the subscription lasts: a member removed from the project
            # stops hearing its jobs within a second. Not for every event: it is most of the
            # work when events come fast. Once for all the sockets that share this subscription
            # (`aiaas.graphql.shared_subscriptions`): they are all the same caller.
            if time.monotonic() - checked_at >= REAUTHORIZE_EVERY_S:
                await authorize_in_project(context, job.project_id, "job", "read")
                checked_at = time.monotonic()
            yield JobEvent.from_stream(stream_cursor, event)

    @strawberry.subscription(
        extensions=requires_in_project("job", "read", project_by_global_id("project")),
        description="A project's training jobs as their states change: the job as it now "
        "stands each time one is submitted, starts, resumes, ends or is cancelled. For the "
        "jobs before, page through `Project.trainingJobs`.",
    )
    async def project_job_changes(
        self, info: Info, project: strawberry.ID
    ) -> AsyncGenerator[TrainingJob, None]:
        context: RequestContext = info.context
        project_id = uuid_of(project, "Project", "project")
        if authorizing_only(info):  # the subscriber's policy passed; its group follows the jobs
            return
        channel = project_jobs_channel(project_id)
        async for change in context.platform.events.subscribe(channel):
            if change.get("kind") != TRAINING_JOB:
                continue
            # Checked for every change: a member removed from the project stops hearing it
            # at once. The enforcer answers from memory; the row is read fresh, since the
            # request's loaders would answer what they read first.
            await authorize_in_project(context, project_id, "job", "read")
            async with context.platform.metadata.acquire() as connection:
                job = await get_job(connection, UUID(change["job_id"]))
            if job is not None:
                yield TrainingJob.from_domain(job)
