"""Creating a deployment and changing it: traffic, promotion, rollback, stop. Each change is
one transaction with its audit event, holding the deployment's row, and is announced once
committed. Each but the stop also holds its project open (`ChangeInProject`): none lands in an
archived project, where a running deployment can only be stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.errors import ConflictError, InputError, NotFoundError
from aiaas.core.identity.projects import ChangeInProject, hold_open_project
from aiaas.core.serving.deployments.records import (
    COLUMNS,
    Deployment,
    DeploymentState,
    TrafficSplit,
    announce,
    get_deployment,
    live_deployment_by_name,
    to_deployment,
)
from aiaas.core.serving.deployments.vetting import (
    DEPLOYMENT_NAME,
    Batching,
    check_runtime,
    runtime_for_format,
    vet_shares,
    vetted_split,
)
from aiaas.core.storage import Connection, Record, returned_row
from aiaas.core.training.registry import (
    ModelVersion,
    model_versions_by_ids,
    models_by_ids,
    resolve_alias,
)

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

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
    runtime: str | None = None
    """None: the runtime that loads the version's format (`runtime_for_format`)."""
    batching: Batching = field(default_factory=Batching)
    drift_threshold: float | None = None


async def project_of_new_deployment(connection: Connection, new: NewDeployment) -> UUID | None:
    """The project a deployment would be created in: its version's or its model's."""
    if new.version_id is not None:
        version = (await model_versions_by_ids(connection, [new.version_id])).get(new.version_id)
        return version.project_id if version else None
    if new.model_id is not None:
        model = (await models_by_ids(connection, [new.model_id])).get(new.model_id)
        return model.project_id if model else None
    return None


async def _chosen_version(connection: Connection, new: NewDeployment) -> ModelVersion:
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
        # Known only now when the input named no project: held here, before anything is
        # written, rather than by a `ChangeInProject`.
        await hold_open_project(connection, version.project_id)
        runtime = new.runtime or runtime_for_format(platform, version.format)
        check_runtime(platform, runtime, [version])
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
            runtime,
            version.id,
            batching.max_batch_size,
            batching.max_wait_ms,
            batching.max_queue_rows,
            new.drift_threshold,
            actor.user_id,
        )
        deployment = to_deployment(returned_row(row))
        await change.record(
            object_type="deployment",
            object_id=str(deployment.id),
            project_id=deployment.project_id,
            details={
                "name": deployment.name,
                "version_id": str(version.id),
                "alias": new.alias,
                "runtime": runtime,
                "max_batch_size": batching.max_batch_size,
                "max_wait_ms": batching.max_wait_ms,
            },
        )
    await announce(platform, deployment)
    return deployment


# Changing traffic -----------------------------------------------------------------------------


async def _locked(connection: Connection, deployment_id: UUID) -> Deployment:
    row = await connection.fetchrow(
        f"SELECT {COLUMNS} FROM deployments WHERE id = $1 FOR UPDATE", deployment_id
    )
    return _found(row)


def _found(row: Record | None) -> Deployment:
    """The deployment a query returned. An UPDATE of a row this transaction has locked always
    returns it; a row that is gone is a deployment that does not exist."""
    if row is None:
        raise NotFoundError("no such deployment")
    return to_deployment(row)


async def _apply(
    connection: Connection,
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
    return _found(row)


@dataclass
class _DeploymentChange:
    """What `_changing` hands a mutation: the locked deployment and its transaction; the
    mutation sets `changed` and the audit `details`."""

    change: AuditedChange
    deployment: Deployment
    changed: Deployment | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def connection(self) -> Connection:
        connection: Connection = self.change.connection
        return connection


@asynccontextmanager
async def _changing(
    platform: Platform,
    actor: Principal,
    deployment_id: UUID,
    action: str,
    request_id: str | None,
    *,
    stops: bool = False,
) -> AsyncIterator[_DeploymentChange]:
    """One audited change of a deployment, locked for its transaction, announced once
    committed. It holds the project open unless it `stops` the deployment, which is still
    allowed in an archived project."""
    async with platform.metadata.acquire() as connection:
        project_id = (await get_deployment(connection, deployment_id)).project_id
    opened = (
        AuditedChange(platform, actor, action, request_id, project_id=project_id)
        if stops
        else ChangeInProject(platform, actor, action, request_id, project_id=project_id)
    )
    async with opened as change:
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
        vet_shares(stable_percent, canary_version_id, canary_percent)
        deployment = step.deployment
        _require_state(deployment, frozenset({DeploymentState.READY}), "change the traffic of")
        split = await vetted_split(
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
    drains what it has queued (`deleteDeployment` drains its own process at once:
    `aiaas.core.serving.inference.stop_and_drain`)."""
    async with _changing(
        platform, actor, deployment_id, "deployment.delete", request_id, stops=True
    ) as step:
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
        step.changed = _found(row)
        step.details = {"name": deployment.name, "was": deployment.state.value}
    return step.changed
