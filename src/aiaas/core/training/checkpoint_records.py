"""The rows of `job_checkpoints`: which of a training job's checkpoints the artifact store holds.

A row is written only once its checkpoint is completely in the store, so every row names an
artifact a resumed job can read. A job keeps its `KEPT_CHECKPOINTS` newest by step; a resume
forgets the rows after the step it resumed from, whose training is done again. Each function
returns the artifact keys of the rows it removed: nothing else refers to them (a sealed
checkpoint starts with a random nonce), so the caller deletes them at once, and the garbage
collector deletes whatever that missed.

Only the run that holds the job's claim changes its rows: a run whose claim another worker took
over (its heartbeat went stale) may still be finishing an upload, and its checkpoints would
replace the heir's, or run ahead of the heir's metric history. Each change locks the job's row
and checks the claim in the same transaction, so no claim slips in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from aiaas.core.jobs import JobState, lock_job
from aiaas.core.storage import Connection

KEPT_CHECKPOINTS = 2
"""As many as the trainer keeps locally: the newest, and one to fall back on should the newest
not open."""


@dataclass(frozen=True)
class StoredCheckpoint:
    job_id: UUID
    step: int
    artifact_key: str
    size_bytes: int
    created_at: datetime


async def _holds_claim(connection: Connection, job_id: UUID, claim: str | None) -> bool:
    """Whether the job is still running under `claim`; the job's row stays locked until the
    caller's transaction ends."""
    job = await lock_job(connection, job_id)
    return job is not None and job.state is JobState.RUNNING and job.claimed_by == claim


async def record_checkpoint(
    connection: Connection,
    job_id: UUID,
    claim: str | None,
    step: int,
    artifact_key: str,
    size_bytes: int,
) -> list[str] | None:
    """Record the checkpoint of `step` (replacing one of the same step, written again by a
    resumed run), and forget those beyond the newest kept. None, recording nothing, if the job
    is no longer running under `claim`."""
    async with connection.transaction():
        if not await _holds_claim(connection, job_id, claim):
            return None
        replaced = await connection.fetch(
            "DELETE FROM job_checkpoints WHERE job_id = $1 AND step = $2 RETURNING artifact_key",
            job_id,
            step,
        )
        await connection.execute(
            "INSERT INTO job_checkpoints (job_id, step, artifact_key, size_bytes) "
            "VALUES ($1, $2, $3, $4)",
            job_id,
            step,
            artifact_key,
            size_bytes,
        )
        beyond = await connection.fetch(
            """
            DELETE FROM job_checkpoints WHERE job_id = $1 AND step NOT IN (
                SELECT step FROM job_checkpoints WHERE job_id = $1
                ORDER BY step DESC LIMIT $2
            )
            RETURNING artifact_key
            """,
            job_id,
            KEPT_CHECKPOINTS,
        )
    # A step lower than the kept ones is forgotten as it is recorded: its artifact goes too.
    return [row[0] for row in [*replaced, *beyond]]


async def stored_checkpoints(connection: Connection, job_id: UUID) -> list[StoredCheckpoint]:
    """The job's recorded checkpoints, newest first."""
    rows = await connection.fetch(
        "SELECT job_id, step, artifact_key, size_bytes, created_at FROM job_checkpoints "
        "WHERE job_id = $1 ORDER BY step DESC",
        job_id,
    )
    return [StoredCheckpoint(**dict(row.items())) for row in rows]


async def forget_checkpoints_after(
    connection: Connection, job_id: UUID, claim: str | None, step: int
) -> list[str] | None:
    """Forget the job's checkpoints after `step`: a run resumed from it trains them again. None,
    forgetting nothing, if the job is no longer running under `claim`."""
    async with connection.transaction():
        if not await _holds_claim(connection, job_id, claim):
            return None
        rows = await connection.fetch(
            "DELETE FROM job_checkpoints WHERE job_id = $1 AND step > $2 RETURNING artifact_key",
            job_id,
            step,
        )
    return [row[0] for row in rows]


async def forget_checkpoints(connection: Connection, job_ids: list[UUID]) -> list[str]:
    rows = await connection.fetch(
        "DELETE FROM job_checkpoints WHERE job_id = ANY($1::uuid[]) RETURNING artifact_key",
        job_ids,
    )
    return [row[0] for row in rows]


async def jobs_with_checkpoints(connection: Connection) -> list[UUID]:
    """Every job that has a checkpoint recorded: the running ones, and those that ended within
    the retention period or whose checkpoints were not yet forgotten."""
    rows = await connection.fetch("SELECT DISTINCT job_id FROM job_checkpoints")
    return [row[0] for row in rows]
