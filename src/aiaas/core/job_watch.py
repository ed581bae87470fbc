"""Watching a running job for the request to stop it: what a handler whose work runs in a
thread (a trainer's `fit`, batch scoring) polls, since the thread cannot await the database.

The job's row is the source of truth: `cancel_job` marks it, and another worker's claim of it
(after this one's heartbeat went stale) shows in `claimed_by`. Either way the thread is to stop
at its next step or part, where what it wrote is whole."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

from aiaas.core.jobs import Job, JobState, get_job

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

STOP_POLL_INTERVAL_S = 0.25
"""How often the row is read: a cancellation is seen within this, at one small query each."""


def _should_stop(job: Job, current: Job | None) -> bool:
    return (
        current is None
        or current.cancel_requested_at is not None
        or current.state is not JobState.RUNNING
        or current.claimed_by != job.claimed_by
    )


async def watch_for_stop(
    platform: Platform,
    job: Job,
    stop: threading.Event,
    *,
    interval_s: float = STOP_POLL_INTERVAL_S,
) -> None:
    """Set `stop` once the job is cancelled, or once this worker no longer holds it. Returns
    then, or runs until cancelled (the work ended first)."""
    while not stop.is_set():
        await asyncio.sleep(interval_s)
        try:
            async with platform.metadata.acquire() as connection:
                current = await get_job(connection, job.id)
        except Exception:  # a passing database failure must not end the watch
            logger.warning("job %s: could not check for cancellation", job.id, exc_info=True)
            continue
        if _should_stop(job, current):
            stop.set()


async def cancelled_while_held(platform: Platform, job: Job) -> bool:
    """Whether the job's cancellation was asked for while this worker still holds it: its run
    is then to end CANCELLED, where a job another worker took over is that worker's."""
    async with platform.metadata.acquire() as connection:
        current = await get_job(connection, job.id)
    return (
        current is not None
        and current.cancel_requested_at is not None
        and current.state is JobState.RUNNING
        and current.claimed_by == job.claimed_by
    )
