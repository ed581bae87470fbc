"""Deployments: which model versions answer predictions under a name, and in what shares.

A deployment's life is persisted, state by state, and every change is an event on its stream:

    CREATING ──▶ WARMING ──▶ READY ◀──▶ UPDATING
        │            │          │            │
        └────────────┴──▶ FAILED│            │
    every state but STOPPED ────┴────────────┴──▶ STOPPED (deleteDeployment)

Serving processes do the work between the states (`aiaas.core.rollout`): one claims a CREATING
deployment, loads and warms every version it serves (WARMING), and marks it READY only once
every batch bucket is compiled and has run; a failure marks it FAILED with the reason. A traffic
change that brings a version not yet served waits in `pending_traffic` while the deployment is
UPDATING, and the old split goes on answering until the new version is warm. Changes among the
versions already served (promote, rollback, new percentages) apply at once.

The split: a stable version, optionally a canary that takes `canary_percent` of the requests,
and optionally a shadow that sees a copy of every request and whose answers are logged, never
returned. Every version comes from the deployment's project; a canary must have the stable
version's signature (its answers reach the same clients), a shadow its inputs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.errors import ConflictError, InputError, NotFoundError
from aiaas.core.job_events import EventStream, publish_job_events_quietly
from aiaas.core.models import ModelVersion, model_versions_by_ids, resolve_alias
from aiaas.core.pagination import Order, Page, fetch_page

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

DEPLOYMENT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_BATCH_SIZE_LIMIT = 4096
MAX_WAIT_MS_LIMIT = 1000.0
DEFAULT_QUEUE_BATCHES = 16
"""A queue holds this many full batches by default: enough to ride out a burst, little enough
that a request at its back still waits only a few batch executions."""

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


def to_deployment(row: Any) -> Deployment:
    values = dict(row)
    values["state"] = DeploymentState(values["state"])
    return Deployment(**values)


# Reading ------------------------------------------------------------------------------------


async def deployments_by_ids(connection: Any, ids: list[UUID]) -> dict[UUID, Deployment]:
    rows = await connection.fetch(
        f"SELECT {COLUMNS} FROM deployments WHERE id = ANY($1::uuid[])", ids
    )
    return {row["id"]: to_deployment(row) for row in rows}


async def get_deployment(connection: Any, deployment_id: UUID) -> Deployment:
    found = (await deployments_by_ids(connection, [deployment_id])).get(deployment_id)
    if found is None:
        raise NotFoundError("no such deployment")
    return found


async def live_deployment_by_name(
    connection: Any, project_id: UUID, name: str
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
    connection: Any,
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
    # This process's own copy at once: the announcement reaches its listener only a moment
    # later, and a request it takes meanwhile must not be routed by (or refused for) the state
    # before a change this very process made.
    try:
        await platform.inference.refresh(deployment.id)
    except Exception:
        logger.warning("could not refresh deployment %s here", deployment.id, exc_info=True)


# Vetting --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batching:
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue_rows: int | None = None

    def vetted(self) -> Batching:
        problems: dict[str, str] = {}
        if not 1 <= self.max_batch_size <= MAX_BATCH_SIZE_LIMIT:
            problems["maxBatchSize"] = f"must be within 1..{MAX_BATCH_SIZE_LIMIT}"
        if not 0 <= self.max_wait_ms <= MAX_WAIT_MS_LIMIT:
            problems["maxWaitMs"] = f"must be within 0..{MAX_WAIT_MS_LIMIT:g}"
        queue = self.max_queue_rows
        if queue is None:
            queue = self.max_batch_size * DEFAULT_QUEUE_BATCHES
        elif not self.max_batch_size <= queue <= self.max_batch_size * 1024:
            problems["maxQueueRows"] = (
                "must hold at least one full batch and at most 1024 of them "
                f"({self.max_batch_size}..{self.max_batch_size * 1024})"
            )
        if problems:
            raise InputError("invalid batching settings", field_errors=problems)
        return replace(self, max_queue_rows=queue)


async def _version_of_project(
    connection: Any, project_id: UUID, version_id: UUID | None, field: str
) -> ModelVersion | None:
    if version_id is None:
        return None
    version = (await model_versions_by_ids(connection, [version_id])).get(version_id)
    # A version of another project is answered as one that does not exist: its id alone must
    # not tell a caller that it is real.
    if version is None or version.project_id != project_id:
        raise InputError("no such model version in this project", field_errors={field: "not found"})
    return version


def _inputs(version: ModelVersion) -> list[Any]:
    return list(version.signature.get("inputs", []))


def check_signatures(stable: ModelVersion, other: ModelVersion, role: Role, field: str) -> None:
    """A canary answers the stable version's clients, so it needs its whole signature; a shadow
    only sees the same requests, so it needs its inputs."""
    same_inputs = _inputs(stable) == _inputs(other)
    same_outputs = stable.signature.get("outputs") == other.signature.get("outputs")
    if role is Role.CANARY and not (same_inputs and same_outputs):
        raise InputError(
            "a canary must have the stable version's signature: its answers reach the same clients",
            field_errors={field: "signature differs from the stable version's"},
        )
    if role is Role.SHADOW and not same_inputs:
        raise InputError(
            "a shadow must take the stable version's inputs",
            field_errors={field: "inputs differ from the stable version's"},
        )


def check_runtime(platform: Platform, runtime: str, versions: list[ModelVersion]) -> None:
    if runtime not in platform.registries.serving_runtimes.names():
        known = ", ".join(sorted(platform.registries.serving_runtimes.names()))
        raise InputError(
            f"no serving runtime {runtime!r}; known: {known}",
            field_errors={"runtime": "unknown"},
        )
    supported = platform.serving_runtime(runtime).supported_model_formats()
    for version in versions:
        if version.format not in supported:
            raise InputError(
                f"the {runtime!r} runtime cannot load {version.format!r} models",
                field_errors={"runtime": f"does not support {version.format}"},
            )


# Creating -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NewDeployment:
    name: str
    version_id: UUID | None = None
    """Deploy this version, or..."""
    model_id: UUID | None = None
    alias: str | None = None
    """... the version that this alias of the model points at now (the deployment keeps that
    version: moving the alias later does not redeploy)."""
    runtime: str = "jax"
    batching: Batching = Batching()
    drift_threshold: float | None = None


async def project_of_new_deployment(connection: Any, new: NewDeployment) -> UUID | None:
    """The project a deployment would be created in: its version's or its model's."""
    if new.version_id is not None:
        version = (await model_versions_by_ids(connection, [new.version_id])).get(new.version_id)
        return version.project_id if version else None
    if new.model_id is not None:
        project_id: UUID | None = await connection.fetchval(
            "SELECT project_id FROM models WHERE id = $1", new.model_id
        )
        return project_id
    return None


async def _chosen_version(connection: Any, new: NewDeployment) -> ModelVersion:
    if (new.version_id is None) == (new.model_id is None or new.alias is None):
        raise InputError(
            "name either a model version, or a model and one of its aliases",
            field_errors={"modelVersion": "give a version, or a model and an alias"},
        )
    if new.version_id is not None:
        version = (await model_versions_by_ids(connection, [new.version_id])).get(new.version_id)
        if version is None:
            raise NotFoundError("no such model version")
        return version
    assert new.model_id is not None
    assert new.alias is not None
    version = await resolve_alias(connection, new.model_id, new.alias)
    if version is None:
        raise InputError(f"the model has no alias {new.alias!r}", field_errors={"alias": "not set"})
    return version


async def create_deployment(
    platform: Platform, actor: Principal, new: NewDeployment, *, request_id: str | None = None
) -> Deployment:
    async with platform.metadata.acquire() as connection:
        project_id = await project_of_new_deployment(connection, new)
    async with AuditedChange(
        platform, actor, "deployment.create", request_id, project_id=project_id
    ) as change:
        connection = change.connection
        if not DEPLOYMENT_NAME.fullmatch(new.name):
            raise InputError(
                "a deployment name is 1 to 63 lowercase letters, digits or '-', starting and "
                "ending with a letter or digit",
                field_errors={"name": "invalid"},
            )
        batching = new.batching.vetted()
        if new.drift_threshold is not None and not new.drift_threshold > 0:
            raise InputError(
                "the drift threshold is a PSI above 0", field_errors={"driftThreshold": "<= 0"}
            )
        version = await _chosen_version(connection, new)
        check_runtime(platform, new.runtime, [version])
        # Serialized per project, so that two creations of one name cannot both pass the check.
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtext('deployment-name:' || $1::uuid::text))",
            version.project_id,
        )
        if await live_deployment_by_name(connection, version.project_id, new.name) is not None:
            raise ConflictError(f"a deployment named {new.name!r} exists in this project")
        row = await connection.fetchrow(
            f"""
            INSERT INTO deployments (project_id, name, model_id, source_alias, runtime, state,
                stable_version_id, max_batch_size, max_wait_ms, max_queue_rows, drift_threshold,
                created_by)
            VALUES ($1, $2, $3, $4, $5, 'CREATING', $6, $7, $8, $9, $10, $11)
            RETURNING {COLUMNS}
            """,
            version.project_id,
            new.name,
            version.model_id,
            new.alias,
            new.runtime,
            version.id,
            batching.max_batch_size,
            batching.max_wait_ms,
            batching.max_queue_rows,
            new.drift_threshold,
            actor.user_id,
        )
        deployment = to_deployment(row)
        await change.record(
            object_type="deployment",
            object_id=str(deployment.id),
            project_id=deployment.project_id,
            details={
                "name": deployment.name,
                "version_id": str(version.id),
                "alias": new.alias,
                "runtime": new.runtime,
                "max_batch_size": batching.max_batch_size,
                "max_wait_ms": batching.max_wait_ms,
            },
        )
    await announce(platform, deployment)
    return deployment


# Changing traffic -----------------------------------------------------------------------------


async def _locked(connection: Any, deployment_id: UUID) -> Deployment:
    row = await connection.fetchrow(
        f"SELECT {COLUMNS} FROM deployments WHERE id = $1 FOR UPDATE", deployment_id
    )
    if row is None:
        raise NotFoundError("no such deployment")
    return to_deployment(row)


async def _apply(
    connection: Any,
    deployment: Deployment,
    split: TrafficSplit,
    *,
    state: DeploymentState,
    pending: TrafficSplit | None = None,
    previous_stable: UUID | None = None,
    reason: str | None = None,
) -> Deployment:
    row = await connection.fetchrow(
        f"""
        UPDATE deployments SET stable_version_id = $2, canary_version_id = $3,
            canary_percent = $4, shadow_version_id = $5, previous_stable_version_id = $6,
            pending_traffic = $7, state = $8, reason = $9, generation = generation + 1,
            rollout_claimed_by = NULL, rollout_heartbeat_at = NULL,
            updated_at = clock_timestamp()
        WHERE id = $1
        RETURNING {COLUMNS}
        """,
        deployment.id,
        split.stable_version_id,
        split.canary_version_id,
        split.canary_percent,
        split.shadow_version_id,
        previous_stable,
        None if pending is None else pending.as_json(),
        state.value,
        reason,
    )
    return to_deployment(row)


@dataclass
class _DeploymentChange:
    """What `_changing` hands a mutation: the locked deployment and its transaction; the
    mutation sets `changed` and the audit `details`."""

    change: AuditedChange
    deployment: Deployment
    changed: Deployment | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def connection(self) -> Any:
        return self.change.connection


@asynccontextmanager
async def _changing(
    platform: Platform,
    actor: Principal,
    deployment_id: UUID,
    action: str,
    request_id: str | None,
) -> AsyncIterator[_DeploymentChange]:
    """One audited change of a deployment, locked for its transaction, announced once
    committed."""
    async with platform.metadata.acquire() as connection:
        project_id = (await get_deployment(connection, deployment_id)).project_id
    async with AuditedChange(platform, actor, action, request_id, project_id=project_id) as change:
        step = _DeploymentChange(change, await _locked(change.connection, deployment_id))
        yield step
        assert step.changed is not None, "a deployment change must say what it changed"
        await change.record(
            object_type="deployment",
            object_id=str(deployment_id),
            project_id=project_id,
            details=step.details,
        )
    assert step.changed is not None
    await announce(platform, step.changed)


def _require_state(deployment: Deployment, allowed: frozenset[DeploymentState], doing: str) -> None:
    if deployment.state not in allowed:
        raise ConflictError(
            f"cannot {doing} a deployment that is {deployment.state.value}",
            details={"state": deployment.state.value},
        )


async def update_traffic(
    platform: Platform,
    actor: Principal,
    deployment_id: UUID,
    *,
    stable_percent: int,
    canary_version_id: UUID | None,
    canary_percent: int,
    shadow_version_id: UUID | None,
    request_id: str | None = None,
) -> Deployment:
    """Send `canary_percent` of the requests to a canary and mirror them all to a shadow. The
    shares must add up to 100. A version not served yet is warmed first (UPDATING)."""
    async with _changing(
        platform, actor, deployment_id, "deployment.update_traffic", request_id
    ) as step:
        _vet_shares(stable_percent, canary_version_id, canary_percent)
        deployment = step.deployment
        _require_state(deployment, frozenset({DeploymentState.READY}), "change the traffic of")
        split = await _vetted_split(
            platform,
            step.connection,
            deployment,
            canary_version_id,
            canary_percent,
            shadow_version_id,
        )
        previous_stable = deployment.previous_stable_version_id
        if set(split.versions()) <= set(deployment.traffic.versions()):
            step.changed = await _apply(
                step.connection,
                deployment,
                split,
                state=DeploymentState.READY,
                previous_stable=previous_stable,
            )
        else:
            step.changed = await _apply(
                step.connection,
                deployment,
                deployment.traffic,
                state=DeploymentState.UPDATING,
                pending=split,
                previous_stable=previous_stable,
            )
        step.details = {"from": deployment.traffic.as_json(), "to": split.as_json()}
    return step.changed


def _vet_shares(stable_percent: int, canary_version_id: UUID | None, canary_percent: int) -> None:
    problems: dict[str, str] = {}
    if not 0 <= stable_percent <= 100:
        problems["stablePercent"] = "must be within 0..100"
    if not 0 <= canary_percent <= 100:
        problems["canaryPercent"] = "must be within 0..100"
    if stable_percent + canary_percent != 100:
        problems["canaryPercent"] = (
            f"the shares add up to {stable_percent + canary_percent}, not 100"
        )
    if canary_percent > 0 and canary_version_id is None:
        problems["canary"] = "a canary share needs a canary version"
    if canary_version_id is not None and canary_percent == 0:
        problems["canaryPercent"] = "a canary needs a share above 0"
    if problems:
        raise InputError("invalid traffic split", field_errors=problems)


async def _vetted_split(
    platform: Platform,
    connection: Any,
    deployment: Deployment,
    canary_version_id: UUID | None,
    canary_percent: int,
    shadow_version_id: UUID | None,
) -> TrafficSplit:
    """The new split, once every version in it is of the project, fits its role, and loads
    with the deployment's runtime."""
    project_id = deployment.project_id
    stable = await _version_of_project(
        connection, project_id, deployment.stable_version_id, "stable"
    )
    assert stable is not None
    canary = await _version_of_project(connection, project_id, canary_version_id, "canary")
    shadow = await _version_of_project(connection, project_id, shadow_version_id, "shadow")
    served = [stable]
    if canary is not None:
        if canary.id == stable.id:
            raise InputError(
                "the canary is the stable version", field_errors={"canary": "same as stable"}
            )
        check_signatures(stable, canary, Role.CANARY, "canary")
        served.append(canary)
    if shadow is not None:
        if shadow.id in {stable.id, canary_version_id}:
            raise InputError(
                "the shadow must be a version that answers no request itself",
                field_errors={"shadow": "already in the split"},
            )
        check_signatures(stable, shadow, Role.SHADOW, "shadow")
        served.append(shadow)
    check_runtime(platform, deployment.runtime, served)
    return TrafficSplit(stable.id, canary_version_id, canary_percent, shadow_version_id)


async def promote_canary(
    platform: Platform, actor: Principal, deployment_id: UUID, *, request_id: str | None = None
) -> Deployment:
    """The canary becomes the stable version and takes every request; the old stable version is
    remembered, for `rollback`."""
    async with _changing(platform, actor, deployment_id, "deployment.promote", request_id) as step:
        deployment = step.deployment
        _require_state(deployment, frozenset({DeploymentState.READY}), "promote the canary of")
        if deployment.canary_version_id is None:
            raise ConflictError("the deployment has no canary to promote")
        split = TrafficSplit(deployment.canary_version_id, None, 0, deployment.shadow_version_id)
        step.changed = await _apply(
            step.connection,
            deployment,
            split,
            state=DeploymentState.READY,
            previous_stable=deployment.stable_version_id,
        )
        step.details = {"from": deployment.traffic.as_json(), "to": split.as_json()}
    return step.changed


async def rollback(
    platform: Platform, actor: Principal, deployment_id: UUID, *, request_id: str | None = None
) -> Deployment:
    """Undo the last traffic change: drop a pending update, else the canary, else go back to
    the stable version that the last promotion replaced."""
    async with _changing(platform, actor, deployment_id, "deployment.rollback", request_id) as step:
        deployment = step.deployment
        _require_state(
            deployment,
            frozenset({DeploymentState.READY, DeploymentState.UPDATING}),
            "roll back",
        )
        current = deployment.traffic
        previous = deployment.previous_stable_version_id
        if deployment.state is DeploymentState.UPDATING:
            split, undone = current, "pending update"
        elif current.canary_version_id is not None:
            split, undone = replace(current, canary_version_id=None, canary_percent=0), "canary"
        elif previous is not None:
            shadow = None if current.shadow_version_id == previous else current.shadow_version_id
            split, undone, previous = TrafficSplit(previous, None, 0, shadow), "promotion", None
        else:
            raise ConflictError("nothing to roll back: no pending update, canary or promotion")
        step.changed = await _apply(
            step.connection,
            deployment,
            split,
            state=DeploymentState.READY,
            previous_stable=previous,
        )
        step.details = {"undone": undone, "from": current.as_json(), "to": split.as_json()}
    return step.changed


async def stop_deployment(
    platform: Platform, actor: Principal, deployment_id: UUID, *, request_id: str | None = None
) -> Deployment:
    """Mark the deployment STOPPED: from then on no process takes a new request for it; each
    drains what it has queued (`InferenceServer.drain`)."""
    async with _changing(platform, actor, deployment_id, "deployment.delete", request_id) as step:
        deployment = step.deployment
        _require_state(
            deployment, frozenset(set(DeploymentState) - {DeploymentState.STOPPED}), "delete"
        )
        row = await step.connection.fetchrow(
            f"""
            UPDATE deployments SET state = 'STOPPED', pending_traffic = NULL,
                generation = generation + 1, rollout_claimed_by = NULL,
                updated_at = clock_timestamp(), stopped_at = clock_timestamp()
            WHERE id = $1 RETURNING {COLUMNS}
            """,
            deployment_id,
        )
        step.changed = to_deployment(row)
        step.details = {"name": deployment.name, "was": deployment.state.value}
    return step.changed


async def find_live_deployment(connection: Any, project_slug: str, name: str) -> Deployment | None:
    """The live deployment `name` of the project with that slug (the V2 API's model name)."""
    row = await connection.fetchrow(
        f"SELECT {', '.join('d.' + c.strip() for c in COLUMNS.split(','))} "
        "FROM deployments d JOIN projects p ON p.id = d.project_id "
        "WHERE p.slug = $1 AND d.name = $2 AND d.state <> 'STOPPED'",
        project_slug,
        name,
    )
    return to_deployment(row) if row is not None else None
