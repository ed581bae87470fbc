"""Background jobs: their persisted lifecycle in PostgreSQL and their delivery through arq.

PostgreSQL is the source of truth; Redis only delivers. A job row moves

    QUEUED ──claim──▶ RUNNING ──▶ SUCCEEDED | FAILED | CANCELLED
     │ ▲                 │                                 ▲
     │ └───hand back─────┘                                 │
     └───────────────────────cancel────────────────────────┘

A worker must claim a job before running it. The claim is one conditional UPDATE, so a job
delivered twice runs once. While it runs, the worker renews a heartbeat; a RUNNING job whose
heartbeat has gone stale belonged to a worker that died, and may be claimed again; a worker that
stops cleanly hands its running jobs back instead, QUEUED again at once. The reconciler
(`job_reconciliation`) re-enqueues every QUEUED job and every stale RUNNING job that Redis no
longer holds, so losing Redis's data loses no job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from arq.constants import retry_key_prefix

from aiaas.core.event_streams import TERMINAL_STATES as TERMINAL_STATE_NAMES
from aiaas.core.event_streams import publish_job_events_quietly
from aiaas.core.job_announcements import announce_job_change
from aiaas.core.pagination import Order, Page, fetch_page
from aiaas.core.storage import Connection
from aiaas.core.tracing import trace_carrier

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

RUN_JOB_FUNCTION = "run_job"
"""The one arq function that every job is delivered to; it dispatches on the job's kind."""


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_STATES = frozenset(JobState(name) for name in TERMINAL_STATE_NAMES)


@dataclass(frozen=True)
class Job:
    id: UUID
    project_id: UUID
    kind: str
    state: JobState
    payload: dict[str, Any]
    attempt: int
    created_by: UUID | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    reason: str | None
    claimed_by: str | None
    heartbeat_at: datetime | None
    cancel_requested_at: datetime | None = None


@dataclass(frozen=True)
class JobEvent:
    """A committed state change, as `aiaas_job_event` observers receive it."""

    job_id: UUID
    project_id: UUID
    kind: str
    state: JobState
    attempt: int
    occurred_at: datetime
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def notify_job_observers(platform: Platform, event: JobEvent) -> None:
    """Call the `aiaas_job_event` observers with a committed state change."""
    for _ in platform.plugins.call_each("aiaas_job_event", event=event):
        pass


JOB_COLUMNS = (
    "id, project_id, kind, state, payload, attempt, created_by, created_at, updated_at, "
    "started_at, finished_at, reason, claimed_by, heartbeat_at, cancel_requested_at"
)


async def announce_job(platform: Platform, job: Job) -> None:
    """`job_announcements.announce_job_change` of the job as it now stands."""
    await announce_job_change(
        platform, job_id=job.id, project_id=job.project_id, kind=job.kind, state=job.state.value
    )


def job_of_row(row: Any) -> Job:
    values = dict(row)
    values["state"] = JobState(values["state"])
    return Job(**values)


def _event(job: Job) -> JobEvent:
    return JobEvent(
        job_id=job.id,
        project_id=job.project_id,
        kind=job.kind,
        state=job.state,
        attempt=job.attempt,
        occurred_at=job.updated_at,
        reason=job.reason,
    )


async def insert_job(
    connection: Connection,
    *,
    project_id: UUID,
    kind: str,
    payload: dict[str, Any],
    created_by: UUID | None,
) -> Job:
    """Insert a QUEUED job inside the caller's transaction. Enqueue it after that commits."""
    row = await connection.fetchrow(
        f"INSERT INTO jobs (project_id, kind, payload, created_by) VALUES ($1, $2, $3, $4) "
        f"RETURNING {JOB_COLUMNS}",
        project_id,
        kind,
        payload,
        created_by,
    )
    return job_of_row(row)


async def enqueue_job(platform: Platform, job_id: UUID) -> bool:
    """Hand the job to arq. The arq job id is the job's id, so enqueueing a job that arq still
    holds is a no-op; False then. While tracing is on, the job carries the current trace context
    to `run_job`'s `trace_context`; while it is off, the job is what it was before tracing."""
    carrier = trace_carrier()
    traced: dict[str, Any] = {} if carrier is None else {"trace_context": carrier}
    enqueued = await platform.redis.enqueue_job(
        RUN_JOB_FUNCTION,
        str(job_id),
        _job_id=str(job_id),
        _queue_name=platform.config.queue_name,
        **traced,
    )
    return enqueued is not None


async def jobs_by_ids(connection: Connection, ids: list[UUID]) -> dict[UUID, Job]:
    rows = await connection.fetch(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ANY($1::uuid[])", ids)
    return {row["id"]: job_of_row(row) for row in rows}


async def list_jobs(
    connection: Connection, project_id: UUID, kind: str, *, first: int | None, after: str | None
) -> Page[Job]:
    """A project's jobs of one kind, newest first."""
    return await fetch_page(
        connection,
        query=f"SELECT {JOB_COLUMNS} FROM jobs",
        conditions=["project_id = $1", "kind = $2"],
        arguments=[project_id, kind],
        first=first,
        after=after,
        to_item=job_of_row,
        order=Order(newest_first=True),
    )


async def get_job(connection: Connection, job_id: UUID) -> Job | None:
    row = await connection.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1", job_id)
    return job_of_row(row) if row is not None else None


async def lock_job(connection: Connection, job_id: UUID) -> Job | None:
    """The job, its row locked until the caller's transaction ends: what a change that depends
    on the job's state or holder reads, so that no claim or cancellation slips in between."""
    row = await connection.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE", job_id
    )
    return job_of_row(row) if row is not None else None


async def hold_jobs(connection: Connection, job_ids: list[UUID]) -> None:
    """Share-lock the jobs until the caller's transaction ends: no worker can claim one of
    them (take it over) meanwhile, while heartbeats and reads go on."""
    await connection.execute("SELECT 1 FROM jobs WHERE id = ANY($1::uuid[]) FOR SHARE", job_ids)


async def unfinished_jobs_naming(connection: Connection, field: str, value: str) -> list[Job]:
    """The jobs not yet finished (QUEUED or RUNNING) whose payload holds `value` under `field`:
    what will still read the thing it names, so that thing must stay."""
    rows = await connection.fetch(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('QUEUED', 'RUNNING') "
        "AND payload ->> $1::text = $2",
        field,
        value,
    )
    return [job_of_row(row) for row in rows]


def state_event(job: Job) -> dict[str, Any]:
    """A state change as the job's event stream carries it."""
    return {
        "type": "state",
        "state": job.state.value,
        "reason": job.reason,
        "attempt": job.attempt,
        "at": job.updated_at.isoformat(),
    }


async def publish_state(platform: Platform, job: Job) -> None:
    """Tell observers, the job's live stream and its project's channel about a committed state
    change. Both are a convenience: PostgreSQL holds the state, so a Redis failure here is only
    logged."""
    notify_job_observers(platform, _event(job))
    await publish_job_events_quietly(platform.redis, job.id, [state_event(job)])
    await announce_job(platform, job)


async def _change(platform: Platform, sql: str, *arguments: Any) -> Job | None:
    async with platform.metadata.transaction() as connection:
        row = await connection.fetchrow(sql, *arguments)
    if row is None:
        return None
    job = job_of_row(row)
    await publish_state(platform, job)
    return job


async def request_cancel(connection: Connection, job_id: UUID, reason: str) -> Job:
    """Ask a running job to stop at its next step boundary, inside the caller's transaction;
    the job as it now stands."""
    row = await connection.fetchrow(
        f"""
        UPDATE jobs
        SET cancel_requested_at = coalesce(cancel_requested_at, clock_timestamp()), reason = $2
        WHERE id = $1
        RETURNING {JOB_COLUMNS}
        """,
        job_id,
        reason,
    )
    return job_of_row(row)


async def cancel_queued_job(connection: Connection, job_id: UUID, reason: str) -> Job | None:
    """Cancel a job no worker has claimed, inside the caller's transaction; None if it was
    claimed meanwhile. Publish its state after the commit."""
    row = await connection.fetchrow(
        f"""
        UPDATE jobs
        SET state = 'CANCELLED', reason = $2, cancel_requested_at = clock_timestamp(),
            finished_at = clock_timestamp(), updated_at = clock_timestamp()
        WHERE id = $1 AND state = 'QUEUED'
        RETURNING {JOB_COLUMNS}
        """,
        job_id,
        reason,
    )
    return job_of_row(row) if row is not None else None


async def claim_job(
    platform: Platform, job_id: UUID, worker_id: str, stale_after_s: float
) -> Job | None:
    """Make `worker_id` the job's runner. None if the job is finished, or running elsewhere
    with a live heartbeat: a duplicate delivery then does nothing."""
    return await _change(
        platform,
        f"""
        UPDATE jobs
        SET state = 'RUNNING', attempt = attempt + 1, claimed_by = $2,
            heartbeat_at = clock_timestamp(), updated_at = clock_timestamp(),
            started_at = coalesce(started_at, clock_timestamp())
        WHERE id = $1
          AND (state = 'QUEUED'
               OR (state = 'RUNNING' AND cancel_requested_at IS NULL
                   AND heartbeat_at < clock_timestamp() - make_interval(secs => $3)))
        RETURNING {JOB_COLUMNS}
        """,
        job_id,
        worker_id,
        stale_after_s,
    )


async def renew_heartbeat(platform: Platform, job_id: UUID, worker_id: str) -> bool:
    """Keep the claim alive. False if the claim was lost (reclaimed or cancelled)."""
    async with platform.metadata.acquire() as connection:
        renewed = await connection.fetchval(
            "UPDATE jobs SET heartbeat_at = clock_timestamp() "
            "WHERE id = $1 AND claimed_by = $2 AND state = 'RUNNING' RETURNING true",
            job_id,
            worker_id,
        )
    return bool(renewed)


async def finish_job(
    platform: Platform, job_id: UUID, worker_id: str, state: JobState, reason: str | None
) -> Job | None:
    """Record the outcome of a run. None if the claim was lost meanwhile, in which case the
    outcome belongs to whoever holds the job now."""
    if state not in TERMINAL_STATES:
        raise ValueError(f"{state} is not a final state")
    return await _change(
        platform,
        f"""
        UPDATE jobs
        SET state = $3, finished_at = clock_timestamp(),
            -- A cancellation keeps who asked for it, and adds where the job stopped.
            reason = CASE WHEN $3 = 'CANCELLED' AND reason IS NOT NULL
                          THEN reason || coalesce('; ' || $4, '') ELSE $4 END,
            updated_at = clock_timestamp()
        WHERE id = $1 AND claimed_by = $2 AND state = 'RUNNING'
        RETURNING {JOB_COLUMNS}
        """,
        job_id,
        worker_id,
        state.value,
        reason,
    )


HANDED_BACK_REASON = "its worker stopped; queued again, to resume from its last checkpoint"


async def hand_back_job(platform: Platform, job_id: UUID, worker_id: str) -> Job | None:
    """Give up `worker_id`'s claim on a job it stopped running because the worker is stopping:
    the job is QUEUED again at once, rather than RUNNING until its heartbeat goes stale, and arq,
    which keeps it queued, may deliver it again. A job whose cancellation was asked for ends
    CANCELLED instead. None if this worker did not hold the job."""
    job = await _change(
        platform,
        f"""
        UPDATE jobs
        SET state = CASE WHEN cancel_requested_at IS NULL THEN 'QUEUED' ELSE 'CANCELLED' END,
            reason = CASE WHEN cancel_requested_at IS NULL THEN $3
                          ELSE coalesce(reason, 'cancelled') || '; its worker stopped before it did'
                     END,
            finished_at = CASE WHEN cancel_requested_at IS NULL THEN NULL
                               ELSE clock_timestamp() END,
            claimed_by = CASE WHEN cancel_requested_at IS NULL THEN NULL ELSE claimed_by END,
            heartbeat_at = CASE WHEN cancel_requested_at IS NULL THEN NULL ELSE heartbeat_at END,
            updated_at = clock_timestamp()
        WHERE id = $1 AND claimed_by = $2 AND state = 'RUNNING'
        RETURNING {JOB_COLUMNS}
        """,
        job_id,
        worker_id,
        HANDED_BACK_REASON,
    )
    if job is not None:
        # arq counts each delivery against the one it allows: this one is not to count, or the
        # next would be refused as "max retries exceeded".
        await platform.redis.delete(retry_key_prefix + str(job_id))
    return job


async def end_abandoned_cancellations(platform: Platform, stale_after_s: float) -> list[Job]:
    """The RUNNING jobs asked to cancel whose worker died before it stopped: CANCELLED now, as
    asked, never run again (`job_reconciliation`)."""
    async with platform.metadata.transaction() as connection:
        rows = await connection.fetch(
            f"""
            UPDATE jobs
            SET state = 'CANCELLED', finished_at = clock_timestamp(),
                updated_at = clock_timestamp(),
                reason = coalesce(reason, 'cancelled') || '; its worker stopped before it did'
            WHERE state = 'RUNNING' AND cancel_requested_at IS NOT NULL
              AND heartbeat_at < clock_timestamp() - make_interval(secs => $1)
            RETURNING {JOB_COLUMNS}
            """,
            stale_after_s,
        )
    return [job_of_row(row) for row in rows]


async def jobs_to_deliver(platform: Platform, stale_after_s: float) -> list[tuple[UUID, bool]]:
    """Every job that should be running or waiting for a worker, oldest first: its id, and
    whether it is a RUNNING one whose worker's heartbeat went stale (`job_reconciliation`)."""
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            """
            SELECT id, state = 'RUNNING' AS stale FROM jobs
            WHERE state = 'QUEUED'
               OR (state = 'RUNNING'
                   AND heartbeat_at < clock_timestamp() - make_interval(secs => $1))
            ORDER BY created_at
            """,
            stale_after_s,
        )
    return [(row["id"], row["stale"]) for row in rows]
