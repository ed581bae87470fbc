"""The reconciler: PostgreSQL is the source of truth of what should run, and this puts Redis
back in line with it (`jobs` says why). An arq cron job calls it every 15 s and as a worker
starts."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from uuid import UUID

from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)

from aiaas.core.jobs import (
    end_abandoned_cancellations,
    enqueue_job,
    jobs_to_deliver,
    publish_state,
)

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)


async def reconcile_jobs(platform: Platform, stale_after_s: float) -> list[UUID]:
    """Re-deliver the jobs PostgreSQL says should run but that nothing is running. Returns them.

    A QUEUED job is re-enqueued when Redis holds no arq job for it (Redis lost its data, or the
    enqueue after commit never happened). A RUNNING job with a stale heartbeat lost its worker:
    arq's own bookkeeping for it is dropped, since it would hold the job back until arq's timeout,
    and the job is enqueued afresh for another worker to claim.
    """
    # A job cancelled while its worker was dead is not run again: it ends as asked.
    for job in await end_abandoned_cancellations(platform, stale_after_s):
        await publish_state(platform, job)
    rows = await jobs_to_deliver(platform, stale_after_s)
    redis = platform.redis
    requeued = []
    for job_id, stale in rows:
        arq_id = str(job_id)
        held_keys = (job_key_prefix + arq_id, in_progress_key_prefix + arq_id)
        if stale:
            await redis.zrem(platform.config.queue_name, arq_id)
            await redis.delete(*held_keys, retry_key_prefix + arq_id)
        elif await redis.exists(*held_keys):
            continue
        # A result left by an earlier delivery would make arq refuse the same job id again.
        await redis.delete(result_key_prefix + arq_id)
        if await enqueue_job(platform, job_id):
            requeued.append(job_id)
    if requeued:
        logger.warning("re-enqueued %d job(s) that nothing was running", len(requeued))
    return requeued
