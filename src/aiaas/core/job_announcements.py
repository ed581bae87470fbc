"""A job's committed change of state, announced on its project's pub/sub channel, which lists
that follow a project's jobs live subscribe to (`projectJobChanges`). `jobs.publish_state` and
a submission (`job_submission.hand_committed_job_to_queue`) announce; apart from `jobs`, which
it does not import, so that both stay small.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from uuid import UUID

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)


def project_jobs_channel(project_id: UUID) -> str:
    """The pub/sub channel on which a project's jobs announce each change of state, for pages
    that list them live (`projectJobChanges`)."""
    return f"aiaas:jobs:{project_id}"


async def announce_job_change(
    platform: Platform, *, job_id: UUID, project_id: UUID, kind: str, state: str
) -> None:
    """Announce a job as it now stands on its project's channel: its id, kind and state
    (subscribers read the rest from PostgreSQL). A Redis failure is only logged."""
    change = {"job_id": str(job_id), "kind": kind, "state": state}
    try:
        await platform.events.publish(project_jobs_channel(project_id), change)
    except RedisError:
        logger.warning("job %s: its change of state could not be announced", job_id)
