"""Recording a job a user submits: inserted and audited in the submitting change's own
transaction, so that a job and its audit event exist together or not at all."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiaas.core.jobs import Job, insert_job

if TYPE_CHECKING:
    from aiaas.core.audit import AuditedChange


async def record_new_job(
    change: AuditedChange,
    *,
    project_id: UUID,
    kind: str,
    payload: dict[str, Any],
    created_by: UUID | None,
) -> Job:
    """Insert a QUEUED job in `change`'s transaction, audited with its kind and payload.
    Enqueue it after the change commits."""
    job = await insert_job(
        change.connection, project_id=project_id, kind=kind, payload=payload, created_by=created_by
    )
    await change.record(
        object_type="job",
        object_id=str(job.id),
        project_id=project_id,
        details={"kind": kind, **payload},
    )
    return job
