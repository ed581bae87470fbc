"""A deployment as stored and announced: its states, its traffic split, reading it, and the
events of its changes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiaas.core.errors import NotFoundError
from aiaas.core.event_streams import EventStream, EventStreamRelay, publish_job_events_quietly
from aiaas.core.identity.projects import project_by_slug
from aiaas.core.pagination import Order, Page, fetch_page
from aiaas.core.platform import ProcessService
from aiaas.core.storage import Connection, Record

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

CHANGES_CHANNEL = "aiaas:deployment-changes"
"""Pub/sub channel on which every committed change is announced, so that every serving process
drops what it cached about the deployment at once (they also re-read it after a short TTL, in
case an announcement is lost)."""


class DeploymentState(StrEnum):
    CREATING = "CREATING"
    WARMING = "WARMING"
    READY = "READY"
    UPDATING = "UPDATING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"


SERVING_STATES = frozenset({DeploymentState.READY, DeploymentState.UPDATING})
"""States in which a deployment answers predictions (while UPDATING, with its old split)."""
ROLLOUT_STATES = frozenset(
    {DeploymentState.CREATING, DeploymentState.WARMING, DeploymentState.UPDATING}
)

DEPLOYMENT_STREAM = EventStream("aiaas:deployment-events", frozenset({"STOPPED"}))

DEPLOYMENT_EVENTS: ProcessService[EventStreamRelay] = ProcessService(
    "deployment-events",
    lambda platform: EventStreamRelay(platform.redis, stream=DEPLOYMENT_STREAM),
    close=EventStreamRelay.close,
)
"""This process's relay of deployments' event streams to their subscribers."""

ChangeListener = Callable[[UUID], Awaitable[object]]


class LocalChangeListeners:
    """Who in this process wants to hear of a deployment change the moment it commits here.

    Other processes hear of it through `CHANGES_CHANNEL`; this process's own listeners (the
    inference server) are called at once, because a request taken before the announcement comes
    back round must not be routed by, or refused for, the state before the change."""

    def __init__(self) -> None:
        self._listeners: list[ChangeListener] = []

    def listen(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    async def changed(self, deployment_id: UUID) -> None:
        for listener in self._listeners:
            try:
                await listener(deployment_id)
            except Exception:
                logger.warning("could not refresh deployment %s here", deployment_id, exc_info=True)


LOCAL_CHANGES: ProcessService[LocalChangeListeners] = ProcessService(
    "deployment-local-changes", lambda platform: LocalChangeListeners()
)


class Role(StrEnum):
    STABLE = "stable"
    CANARY = "canary"
    SHADOW = "shadow"


@dataclass(frozen=True)
class TrafficSplit:
    stable_version_id: UUID
    canary_version_id: UUID | None = None
    canary_percent: int = 0
    shadow_version_id: UUID | None = None

    def versions(self) -> dict[UUID, Role]:
        """Each version this split serves, with its role."""
        served = {self.stable_version_id: Role.STABLE}
        if self.canary_version_id is not None:
            served[self.canary_version_id] = Role.CANARY
        if self.shadow_version_id is not None:
            served[self.shadow_version_id] = Role.SHADOW
        return served

    def as_json(self) -> dict[str, Any]:
        return {
            "stable_version_id": str(self.stable_version_id),
            "canary_version_id": _text_or_none(self.canary_version_id),
            "canary_percent": self.canary_percent,
            "shadow_version_id": _text_or_none(self.shadow_version_id),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrafficSplit:
        return cls(
            stable_version_id=UUID(data["stable_version_id"]),
            canary_version_id=_uuid_or_none(data.get("canary_version_id")),
            canary_percent=int(data.get("canary_percent", 0)),
            shadow_version_id=_uuid_or_none(data.get("shadow_version_id")),
        )


def _text_or_none(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _uuid_or_none(value: Any) -> UUID | None:
    return None if value is None else UUID(str(value))


@dataclass(frozen=True)
class Deployment:
    id: UUID
    project_id: UUID
    name: str
    model_id: UUID
    source_alias: str | None
    runtime: str
    state: DeploymentState
    reason: str | None
    stable_version_id: UUID
    canary_version_id: UUID | None
    canary_percent: int
    shadow_version_id: UUID | None
    previous_stable_version_id: UUID | None
    pending_traffic: dict[str, Any] | None
    max_batch_size: int
    max_wait_ms: float
    max_queue_rows: int
    drift_threshold: float | None
    generation: int
    created_by: UUID | None
    created_at: datetime
    updated_at: datetime
    ready_at: datetime | None
    stopped_at: datetime | None

    @property
    def traffic(self) -> TrafficSplit:
        return TrafficSplit(
            self.stable_version_id,
            self.canary_version_id,
            self.canary_percent,
            self.shadow_version_id,
        )

    @property
    def pending(self) -> TrafficSplit | None:
        return (
            None if self.pending_traffic is None else TrafficSplit.from_json(self.pending_traffic)
        )

    @property
    def is_serving(self) -> bool:
        return self.state in SERVING_STATES


COLUMNS = (
    "id, project_id, name, model_id, source_alias, runtime, state, reason, stable_version_id, "
    "canary_version_id, canary_percent, shadow_version_id, previous_stable_version_id, "
    "pending_traffic, max_batch_size, max_wait_ms, max_queue_rows, drift_threshold, generation, "
    "created_by, created_at, updated_at, ready_at, stopped_at"
)


def to_deployment(row: Record) -> Deployment:
    values = dict(row)
    values["state"] = DeploymentState(values["state"])
    return Deployment(**values)


# Reading ------------------------------------------------------------------------------------


async def deployments_by_ids(connection: Connection, ids: list[UUID]) -> dict[UUID, Deployment]:
    rows = await connection.fetch(
        f"SELECT {COLUMNS} FROM deployments WHERE id = ANY($1::uuid[])", ids
    )
    return {row["id"]: to_deployment(row) for row in rows}


async def get_deployment(connection: Connection, deployment_id: UUID) -> Deployment:
    found = (await deployments_by_ids(connection, [deployment_id])).get(deployment_id)
    if found is None:
        raise NotFoundError("no such deployment")
    return found


async def live_deployment_by_name(
    connection: Connection, project_id: UUID, name: str
) -> Deployment | None:
    """The deployment that answers to `name` in the project (not a stopped one of old)."""
    row = await connection.fetchrow(
        f"SELECT {COLUMNS} FROM deployments "
        "WHERE project_id = $1 AND name = $2 AND state <> 'STOPPED'",
        project_id,
        name,
    )
    return to_deployment(row) if row is not None else None


async def list_deployments(
    connection: Connection,
    project_id: UUID,
    *,
    first: int | None,
    after: str | None,
    include_stopped: bool = False,
) -> Page[Deployment]:
    conditions = ["project_id = $1"]
    if not include_stopped:
        conditions.append("state <> 'STOPPED'")
    return await fetch_page(
        connection,
        query=f"SELECT {COLUMNS} FROM deployments",
        conditions=conditions,
        arguments=[project_id],
        first=first,
        after=after,
        to_item=to_deployment,
        order=Order(newest_first=True),
    )


# Events -------------------------------------------------------------------------------------


def state_event(deployment: Deployment) -> dict[str, Any]:
    return {
        "type": "state",
        "state": deployment.state.value,
        "reason": deployment.reason,
        "generation": deployment.generation,
        "traffic": deployment.traffic.as_json(),
        "at": deployment.updated_at.isoformat(),
    }


async def announce(platform: Platform, deployment: Deployment) -> None:
    """After a change commits: the event for its subscribers, and the word to every serving
    process that its cached copy is stale. Both are conveniences over PostgreSQL, which holds
    the truth, so a Redis failure here is logged, never raised."""
    await publish_job_events_quietly(
        platform.redis, deployment.id, [state_event(deployment)], stream=DEPLOYMENT_STREAM
    )
    try:
        await platform.events.publish(
            CHANGES_CHANNEL,
            {"deployment_id": str(deployment.id), "generation": deployment.generation},
        )
    except Exception:  # redis-py's errors, or no Redis at all: the TTL covers it
        logger.warning("could not announce deployment %s changed", deployment.id, exc_info=True)
    await platform.service(LOCAL_CHANGES).changed(deployment.id)


async def find_live_deployment(
    connection: Connection, project_slug: str, name: str
) -> Deployment | None:
    """The live deployment `name` of the project with that slug (the V2 API's model name)."""
    # Two indexed lookups where a JOIN was one: the slug is identity's to resolve. Serving
    # processes cache what this answers for their TTL (`DeploymentCache.named`).
    project = await project_by_slug(connection, project_slug)
    if project is None:
        return None
    row = await connection.fetchrow(
        f"SELECT {COLUMNS} FROM deployments "
        "WHERE project_id = $1 AND name = $2 AND state <> 'STOPPED'",
        project.id,
        name,
    )
    return to_deployment(row) if row is not None else None
