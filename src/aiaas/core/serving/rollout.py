"""Rollouts: the work between a deployment's states, done by whichever serving process claims it.

A deployment that is CREATING, or UPDATING with a pending split, waits for a rollout. Every
serving process that answers inference runs a `RolloutSupervisor`, which claims one such
deployment at a time with a conditional UPDATE (so two processes never roll out the same one),
loads and warms each version it needs into its own model cache, and then moves the deployment
on: READY once every bucket of every version has compiled and run, FAILED with the reason when
the first rollout fails. A failed update leaves the deployment READY on its old split, with the
reason: a canary that cannot load must not take the stable version down with it.

While it works, the claimant renews a heartbeat; a claim whose heartbeat is older than
`stale_after_s` belonged to a process that died, and another process takes the rollout over.
The rollout ends with a write conditioned on the generation it claimed, so that a deployment
deleted or rolled back meanwhile is left as the user left it. It holds the deployment's project
open as it ends: a project archived meanwhile is read-only, so the rollout fails there as a failed
load would (a new deployment FAILED, an update dropped), whatever it warmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

from aiaas.core.audit import AuditedChange
from aiaas.core.identity.projects import ARCHIVED_IS_READ_ONLY, hold_project, projects_by_ids
from aiaas.core.platform import ProcessService
from aiaas.core.serving.deployments import (
    COLUMNS,
    Deployment,
    DeploymentState,
    announce,
    to_deployment,
)
from aiaas.core.serving.inference import INFERENCE_SERVER, InferenceServer

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

_CLAIM = f"""
UPDATE deployments
SET state = CASE WHEN state = 'CREATING' THEN 'WARMING' ELSE state END,
    generation = generation + 1,
    rollout_claimed_by = $1, rollout_heartbeat_at = clock_timestamp(),
    updated_at = clock_timestamp()
WHERE id = (
    SELECT id FROM deployments
    WHERE state IN ('CREATING', 'WARMING', 'UPDATING')
      AND (state = 'CREATING' OR rollout_claimed_by IS NULL
           OR rollout_heartbeat_at < clock_timestamp() - $2 * interval '1 second')
    ORDER BY updated_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING {COLUMNS}
"""

_FINISH = f"""
UPDATE deployments
SET state = $3, reason = $4, generation = generation + 1,
    stable_version_id = coalesce(($5::jsonb ->> 'stable_version_id')::uuid, stable_version_id),
    canary_version_id = CASE WHEN $5::jsonb IS NULL THEN canary_version_id
                             ELSE ($5::jsonb ->> 'canary_version_id')::uuid END,
    canary_percent = CASE WHEN $5::jsonb IS NULL THEN canary_percent
                          ELSE ($5::jsonb ->> 'canary_percent')::smallint END,
    shadow_version_id = CASE WHEN $5::jsonb IS NULL THEN shadow_version_id
                             ELSE ($5::jsonb ->> 'shadow_version_id')::uuid END,
    pending_traffic = NULL, rollout_claimed_by = NULL, rollout_heartbeat_at = NULL,
    ready_at = CASE WHEN $3 = 'READY' THEN coalesce(ready_at, clock_timestamp()) ELSE ready_at END,
    updated_at = clock_timestamp()
WHERE id = $1 AND generation = $2
RETURNING {COLUMNS}
"""


class RolloutSupervisor:
    def __init__(
        self,
        platform: Platform,
        server: InferenceServer,
        *,
        poll_interval_s: float,
        stale_after_s: float,
    ) -> None:
        self.platform = platform
        self.server = server
        self.poll_interval_s = poll_interval_s
        self.stale_after_s = stale_after_s
        self.heartbeat_interval_s = stale_after_s / 3
        self.claimant = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rollouts")

    def wake(self) -> None:
        """Look for work now rather than at the next poll (a deployment was just created)."""
        self.start()
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                while await self.roll_out_one():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("rollouts: a poll failed; trying again", exc_info=True)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval_s):
                    await self._wake.wait()

    async def roll_out_one(self) -> bool:
        """Claim one deployment that waits for a rollout and do it; False when none waits."""
        async with self.platform.metadata.acquire() as connection:
            row = await connection.fetchrow(_CLAIM, self.claimant, self.stale_after_s)
        if row is None:
            return False
        claimed = to_deployment(row)
        await announce(self.platform, claimed)
        heartbeat = asyncio.get_running_loop().create_task(self._keep_claim(claimed))
        try:
            failure = await self._warm(claimed)
        finally:
            heartbeat.cancel()
        await self._finish(claimed, failure)
        return True

    async def _warm(self, deployment: Deployment) -> str | None:
        pending = deployment.pending
        versions = (pending or deployment.traffic).versions()
        async with self.platform.metadata.acquire() as connection:
            found = await projects_by_ids(connection, [deployment.project_id])
        if found[deployment.project_id].is_archived:
            return ARCHIVED_IS_READ_ONLY  # the rollout fails at its end: no use warming
        try:
            for version_id in versions:
                await self.server.warm(deployment, version_id)
        except Exception as error:
            logger.warning("rollout of deployment %s failed: %s", deployment.id, error)
            return str(error) or type(error).__name__
        return None

    async def _finish(self, deployment: Deployment, failure: str | None) -> None:
        async with AuditedChange(
            self.platform, None, "deployment.rollout", project_id=deployment.project_id
        ) as change:
            # Held until this commits, so that the project cannot be archived in between.
            if (await hold_project(change.connection, deployment.project_id)).is_archived:
                failure = ARCHIVED_IS_READ_ONLY
            state, reason, split = _outcome(deployment, failure)
            row = await change.connection.fetchrow(
                _FINISH, deployment.id, deployment.generation, state.value, reason, split
            )
            if row is None:
                # Deleted or rolled back while warming: the user's change stands.
                change.unchanged()
                return
            finished = to_deployment(row)
            await change.record(
                object_type="deployment",
                object_id=str(deployment.id),
                project_id=deployment.project_id,
                details={
                    "state": state.value,
                    "reason": reason,
                    "claimant": self.claimant,
                    "traffic": finished.traffic.as_json(),
                },
            )
        await announce(self.platform, finished)

    async def _keep_claim(self, deployment: Deployment) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            try:
                async with self.platform.metadata.acquire() as connection:
                    await connection.execute(
                        "UPDATE deployments SET rollout_heartbeat_at = clock_timestamp() "
                        "WHERE id = $1 AND rollout_claimed_by = $2",
                        deployment.id,
                        self.claimant,
                    )
            except Exception:
                logger.warning("rollout %s: heartbeat failed", deployment.id, exc_info=True)


def _outcome(
    deployment: Deployment, failure: str | None
) -> tuple[DeploymentState, str | None, dict[str, Any] | None]:
    """The state, reason and split (None: unchanged) a rollout leaves the deployment in."""
    updating = deployment.state is DeploymentState.UPDATING
    if failure is None:
        split = deployment.pending.as_json() if updating and deployment.pending else None
        return DeploymentState.READY, None, split
    if updating:
        return DeploymentState.READY, f"update failed: {failure}", None
    return DeploymentState.FAILED, failure, None


def _build_supervisor(platform: Platform) -> RolloutSupervisor:
    server = platform.service(INFERENCE_SERVER)
    server.start()
    return RolloutSupervisor(
        platform,
        server,
        poll_interval_s=platform.config.deployment_poll_interval_s,
        stale_after_s=platform.config.deployment_stale_after_s,
    )


ROLLOUT_SUPERVISOR: ProcessService[RolloutSupervisor] = ProcessService(
    "rollout-supervisor", _build_supervisor, close=RolloutSupervisor.close
)


def wake_rollouts(platform: Platform) -> None:
    """Start this process's rollout supervisor if its role serves inference, and have it look
    for waiting deployments now. Needs a running event loop."""
    if platform.serves_inference:
        platform.service(ROLLOUT_SUPERVISOR).wake()
