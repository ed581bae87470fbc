"""The rows of `job_checkpoints`: which of a training job's checkpoints the artifact store holds.

A row is written only once its checkpoint is completely in the store, so every row names an
artifact a resumed job can read. A job keeps its `KEPT_CHECKPOINTS` newest by step; a resume
forgets the rows after the step it resumed from, whose training is done again. Each function
returns the artifact keys of the rows it removed: nothing else refers to them (a sealed
checkpoint starts with a random nonce), so the caller deletes them at once, and the garbage
collector deletes whatever that missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

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


async def record_checkpoint(
    connection: Connection, job_id: UUID, step: int, artifact_key: str, size_bytes: int
) -> list[str]:
    """Record the checkpoint of `step` (replacing one of the same step, written again by a
    resumed run), and forget those beyond the newest kept."""
    async with connection.transaction():
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
    return [row[0] for row in [*replaced, *beyond] if row[0] != artifact_key]


async def stored_checkpoints(connection: Connection, job_id: UUID) -> list[StoredCheckpoint]:
    """The job's recorded checkpoints, newest first."""
    rows = await connection.fetch(
        "SELECT job_id, step, artifact_key, size_bytes, created_at FROM job_checkpoints "
        "WHERE job_id = $1 ORDER BY step DESC",
        job_id,
    )
    return [StoredCheckpoint(**dict(row.items())) for row in rows]


async def forget_checkpoints_after(connection: Connection, job_id: UUID, step: int) -> list[str]:
    """Forget the job's checkpoints after `step`: a run resumed from it trains them again."""
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
