"""arq job coroutines. They are thin: claim, dispatch to the handler for the job's kind, record
the outcome. The work itself lives in core services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from uuid import UUID

from aiaas.core.errors import JobCancelledError, JobPayloadError
from aiaas.core.governance.garbage import collect_garbage
from aiaas.core.job_reconciliation import reconcile_jobs
from aiaas.core.jobs import (
    Job,
    JobState,
    claim_job,
    finish_job,
    hand_back_job,
    renew_heartbeat,
)
from aiaas.core.log_records import bind_log_context
from aiaas.core.outages import as_outage
from aiaas.core.platform import Platform
from aiaas.core.serving.drift_checks import check_drift
from aiaas.core.tracing import continued_trace
from aiaas.core.training import advance_running_sweeps, expire_checkpoints

logger = logging.getLogger(__name__)

OUTCOME_PATIENCE_S = 120.0
OUTCOME_RETRY_S = 1.0
OUTAGE_REQUEUE_LIMIT = 5
"""How many times a job goes back to the queue for an outage before one more fails it. An
outage that outlasts a few deliveries, or a job that brings the service down itself (a query
that makes PostgreSQL run out of memory), would otherwise be queued again for ever. Counted
by the job's deliveries (`Job.attempt`), which a stopping worker's hand-back and a stale claim
also add to: the bound errs towards failing sooner, never towards looping."""
OUTAGES_FAILED_IT = "stopped by an outage on too many deliveries"

Recorded = TypeVar("Recorded")

CLAIM_LOST = "job %s: claim lost; its outcome will not be recorded here"
"""Logged by a worker that finds another holds its job now (its claim went stale, say while
its host was cut off): whatever it was about to record, it records nothing."""

JobHandler = Callable[[Platform, Job], Awaitable[str | None]]
"""Runs one job of a kind; returns an optional note stored as the job's reason."""


async def _keep_claim(platform: Platform, job_id: UUID, worker_id: str, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            renewed = await renew_heartbeat(platform, job_id, worker_id)
        except Exception:  # a passing database failure: the next beat may get through
            logger.warning("job %s: could not renew its heartbeat", job_id, exc_info=True)
            continue
        if not renewed:
            logger.warning(CLAIM_LOST, job_id)
            return


async def run_job(
    ctx: dict[str, Any], job_id: str, trace_context: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """`trace_context`, the W3C headers of the trace that enqueued the job, is there only when
    tracing was on as it did (`enqueue_job`): a job enqueued without it runs all the same."""
    platform: Platform = ctx["platform"]
    worker_id: str = ctx["worker_id"]
    bind_log_context(job_id=job_id)  # arq runs each job in a task of its own: it ends there
    try:
        with continued_trace(trace_context, "run_job", {"aiaas.job_id": job_id}):
            return await _run_claimed(ctx, platform, UUID(job_id), worker_id)
    except asyncio.CancelledError:
        # The worker is stopping (SIGINT, SIGTERM): the handler stopped where it could, at a
        # step boundary after its last checkpoint. The job goes back to the queue at once for
        # the next worker; arq keeps it queued, since the cancellation propagates.
        await _to_the_end(ctx, _hand_back(platform, UUID(job_id), worker_id))
        raise


async def _to_the_end(ctx: dict[str, Any], work: Awaitable[None]) -> None:
    """Await `work` to its end, even through further cancellations (a second Ctrl-C, arq's
    close). A further one ends arq's wait for this job, so the worker's shutdown also waits
    for what is in `ctx["hand_backs"]` before it stops the platform."""
    task = asyncio.ensure_future(work)
    pending: set[asyncio.Future[None]] = ctx["hand_backs"]
    pending.add(task)
    task.add_done_callback(pending.discard)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)


async def _hand_back(
    platform: Platform,
    job_id: UUID,
    worker_id: str,
    *,
    quietly: bool = True,
    why: str = "as its worker stops",
) -> None:
    try:
        job = await hand_back_job(platform, job_id, worker_id)
    except Exception:  # it then goes stale, and the reconciler hands it on
        if not quietly:
            raise
        logger.warning("job %s: could not hand it back", job_id, exc_info=True)
        return
    if job is None:
        logger.warning(CLAIM_LOST, job_id)
    else:
        logger.info("job %s (%s): %s, %s", job.id, job.kind, job.state.value, why)


async def _run_claimed(
    ctx: dict[str, Any], platform: Platform, job_id: UUID, worker_id: str
) -> dict[str, Any]:
    handlers: Mapping[str, JobHandler] = ctx["job_handlers"]
    job = await _claim(platform, job_id, worker_id, ctx["stale_after_s"])
    if job is None:
        return {"job_id": str(job_id), "ran": False}
    bind_log_context(project=job.project_id)
    handler = handlers.get(job.kind)
    if handler is None:
        await finish_job(
            platform, job.id, worker_id, JobState.FAILED, f"no handler for job kind {job.kind!r}"
        )
        return {"job_id": str(job_id), "ran": False}
    heartbeat = asyncio.create_task(
        _keep_claim(platform, job.id, worker_id, ctx["heartbeat_interval_s"])
    )
    # The claim is kept until the outcome is recorded, through `_once_reachable`'s retries too:
    # a claim gone stale meanwhile would let the reconciler run the finished job again.
    try:
        note = await handler(platform, job)
    except JobCancelledError as exc:
        await finish_job(platform, job.id, worker_id, JobState.CANCELLED, str(exc) or None)
        return {"job_id": str(job_id), "ran": True, "state": JobState.CANCELLED.value}
    except JobPayloadError as exc:
        # A payload that no longer matches its kind's type fails as the job's fault, not the
        # worker's: no traceback, and it will not go better on another delivery.
        reason = exc.message
        logger.warning("job %s (%s) failed: %s", job.id, job.kind, reason)
        await _finish(platform, job.id, worker_id, JobState.FAILED, reason)
        return {"job_id": str(job_id), "ran": True, "state": JobState.FAILED.value}
    except Exception as exc:
        state = await _stopped_by(platform, job, worker_id, exc)
        return {"job_id": str(job_id), "ran": True, "state": state.value}
    else:
        await _finish(platform, job.id, worker_id, JobState.SUCCEEDED, note)
        return {"job_id": str(job_id), "ran": True, "state": JobState.SUCCEEDED.value}
    finally:
        heartbeat.cancel()


async def _claim(
    platform: Platform, job_id: UUID, worker_id: str, stale_after_s: float
) -> Job | None:
    try:
        return await claim_job(platform, job_id, worker_id, stale_after_s)
    except Exception as exc:
        outage = as_outage(exc)
        if outage is None:
            raise
        # Still QUEUED in PostgreSQL, so the reconciler delivers it again once it can.
        logger.warning("job %s not claimed: %s", job_id, outage.message)
        return None


async def _stopped_by(platform: Platform, job: Job, worker_id: str, exc: Exception) -> JobState:
    """Record why the handler stopped; returns the job's state."""
    outage = as_outage(exc)
    if outage is not None and job.attempt > OUTAGE_REQUEUE_LIMIT:
        logger.warning("job %s (%s) stopped by an outage once too often", job.id, job.kind)
        reason = f"{OUTAGES_FAILED_IT} ({job.attempt} deliveries; the last: {outage.message})"
        await _finish(platform, job.id, worker_id, JobState.FAILED, reason)
        return JobState.FAILED
    if outage is not None:
        # No fault of the job's: it goes back to the queue, and runs again from its last
        # checkpoint once the service is back (the reconciler enqueues it).
        logger.warning("job %s (%s) stopped: %s", job.id, job.kind, outage.message)
        await _once_reachable(
            lambda: _hand_back(
                platform, job.id, worker_id, quietly=False, why="until the service is back"
            )
        )
        return JobState.QUEUED
    logger.exception("job %s (%s) failed", job.id, job.kind)
    reason = str(exc) or repr(exc)
    await _finish(platform, job.id, worker_id, JobState.FAILED, reason)
    return JobState.FAILED


async def _finish(
    platform: Platform, job_id: UUID, worker_id: str, state: JobState, reason: str | None
) -> None:
    """Record the job's outcome, unless another worker holds it now."""
    finished = await _once_reachable(lambda: finish_job(platform, job_id, worker_id, state, reason))
    if finished is None:
        logger.warning(CLAIM_LOST, job_id)


async def _once_reachable(record: Callable[[], Awaitable[Recorded]]) -> Recorded:
    """Record a job's outcome, trying again while PostgreSQL is away, for at most
    `OUTCOME_PATIENCE_S`: a finished job's work is not to be redone for want of a write. Past
    that, its claim goes stale and the reconciler hands it on."""
    deadline = asyncio.get_running_loop().time() + OUTCOME_PATIENCE_S
    while True:
        try:
            return await record()
        except Exception as exc:
            if as_outage(exc) is None or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(OUTCOME_RETRY_S)


async def reconcile(ctx: dict[str, Any]) -> dict[str, Any]:
    requeued = await reconcile_jobs(ctx["platform"], ctx["stale_after_s"])
    # After the jobs: a sweep's trials whose jobs were abandoned have ended by now.
    sweeps = await advance_running_sweeps(ctx["platform"])
    return {
        "requeued": [str(job_id) for job_id in requeued],
        "finished_sweeps": [str(sweep_id) for sweep_id in sweeps],
    }


async def collect_garbage_job(ctx: dict[str, Any]) -> dict[str, Any]:
    # First the checkpoints past their retention: what they leave is garbage at once.
    expired = await expire_checkpoints(ctx["platform"])
    result = await collect_garbage(ctx["platform"])
    return {
        "deleted": result.deleted,
        "kept_young": result.kept_young,
        "expired_checkpoints_of": [str(job_id) for job_id in expired],
    }


async def check_drift_job(ctx: dict[str, Any]) -> dict[str, Any]:
    reports = await check_drift(ctx["platform"])
    return {
        "reports": len(reports),
        "alerts": [str(report.deployment_id) for report in reports if report.alert],
    }
