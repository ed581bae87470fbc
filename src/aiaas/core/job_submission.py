"""Recording a job a user submits, and cancelling one: each inserted or changed and audited in
the change's own transaction, so that a job's change and its audit event exist together or not
at all."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import BaseModel

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.errors import ConflictError, NotFoundError
from aiaas.core.job_kinds import vet_payload
from aiaas.core.jobs import (
    Job,
    JobState,
    announce_job,
    cancel_queued_job,
    enqueue_job,
    get_job,
    insert_job,
    lock_job,
    publish_state,
    request_cancel,
)
from aiaas.core.outages import as_outage

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)


async def hand_committed_job_to_queue(platform: Platform, job: Job) -> None:
    """Announce a job whose row is committed to its project's live lists, and enqueue it.
    Without Redis it stays QUEUED in PostgreSQL, where the reconciler finds it and enqueues it
    once Redis is back: the submission has succeeded, and failing it now would only make its
    caller submit a second job."""
    await announce_job(platform, job)
    try:
        await enqueue_job(platform, job.id)
    except Exception as exc:
        outage = as_outage(exc)
        if outage is None:
            raise
        logger.warning("job %s left for the reconciler to enqueue: %s", job.id, outage.message)


async def record_new_job(
    change: AuditedChange,
    *,
    project_id: UUID,
    kind: str,
    payload: Mapping[str, Any] | BaseModel,
    created_by: UUID | None,
) -> Job:
    """Insert a QUEUED job in `change`'s transaction, audited with its kind and payload.
    Enqueue it after the change commits (`hand_committed_job_to_queue`).

    Every job a user submits comes through here, so this is where its kind and payload are
    checked against the registered job kinds (`aiaas.core.job_kinds`): `UnknownJobKindError`
    or `JobPayloadError`, and nothing inserted, otherwise. `payload` is a mapping or an
    instance of the kind's payload model."""
    stored = vet_payload(change.platform, kind, payload)
    job = await insert_job(
        change.connection, project_id=project_id, kind=kind, payload=stored, created_by=created_by
    )
    await change.record(
        object_type="job",
        object_id=str(job.id),
        project_id=project_id,
        details={"kind": kind, **stored},
    )
    return job


async def cancel_job(
    platform: Platform,
    actor: Principal,
    job_id: UUID,
    *,
    kind: str,
    action: str,
    request_id: str | None = None,
) -> Job:
    """Cancel the job of kind `kind`, audited as `action`: a queued one at once (CANCELLED);
    a running one is asked to stop, which its handler does at its next step or part (it ends
    CANCELLED then). `NotFoundError` for a job of another kind or none, as if there were none;
    `ConflictError` for one that has finished. The job as the change left it."""
    what = f"{kind.replace('_', ' ')} job"
    async with platform.metadata.acquire() as connection:
        job = await get_job(connection, job_id)
    if job is None or job.kind != kind:
        raise NotFoundError(f"no such {what}")
    async with AuditedChange(
        platform, actor, action, request_id, project_id=job.project_id
    ) as change:
        # Locked: no worker's claim can slip in between reading the state and changing it.
        locked = await lock_job(change.connection, job_id)
        if locked is None:
            raise NotFoundError(f"no such {what}")
        state = locked.state
        if state not in (JobState.QUEUED, JobState.RUNNING):
            raise ConflictError(f"the job is {state.value} already; there is nothing to cancel")
        cancelled = None
        if state is JobState.QUEUED:
            cancelled = await cancel_queued_job(
                change.connection, job_id, f"cancelled by {actor.username} before it started"
            )
        # The row is locked, so a queued job is still queued; asking is the running case.
        current = cancelled or await request_cancel(
            change.connection, job_id, f"cancelled by {actor.username}"
        )
        await change.record(
            object_type="job",
            object_id=str(job_id),
            project_id=job.project_id,
            details={"state": state.value},
        )
    if cancelled is not None:
        await publish_state(platform, cancelled)
    return current
