"""Deployments: which model versions answer predictions under a name, and in what shares.

A deployment's life is persisted, state by state, and every change is an event on its stream:

    CREATING ──▶ WARMING ──▶ READY ◀──▶ UPDATING
        │            │          │            │
        └────────────┴──▶ FAILED│            │
    every state but STOPPED ────┴────────────┴──▶ STOPPED (deleteDeployment)

Serving processes do the work between the states (`aiaas.core.serving.rollout`): one claims a
CREATING deployment, loads and warms every version it serves (WARMING), and marks it READY only
once every batch bucket is compiled and has run; a failure marks it FAILED with the reason. A
traffic change that brings a version not yet served waits in `pending_traffic` while the
deployment is UPDATING, and the old split goes on answering until the new version is warm.
Changes among the versions already served (promote, rollback, new percentages) apply at once.

The split: a stable version, optionally a canary that takes `canary_percent` of the requests,
and optionally a shadow that sees a copy of every request and whose answers are logged, never
returned. Every version comes from the deployment's project; a canary must have the stable
version's signature (its answers reach the same clients), a shadow its inputs.
"""

from aiaas.core.serving.deployments.changes import (
    NewDeployment,
    create_deployment,
    project_of_new_deployment,
    promote_canary,
    rollback,
    stop_deployment,
    update_traffic,
)
from aiaas.core.serving.deployments.records import (
    CHANGES_CHANNEL,
    COLUMNS,
    DEPLOYMENT_EVENTS,
    DEPLOYMENT_STREAM,
    LOCAL_CHANGES,
    ROLLOUT_STATES,
    SERVING_STATES,
    Deployment,
    DeploymentState,
    Role,
    TrafficSplit,
    announce,
    deployments_by_ids,
    find_live_deployment,
    get_deployment,
    list_deployments,
    live_deployment_by_name,
    state_event,
    to_deployment,
)
from aiaas.core.serving.deployments.vetting import (
    DEFAULT_QUEUE_BATCHES,
    DEPLOYMENT_NAME,
    MAX_BATCH_SIZE_LIMIT,
    MAX_WAIT_MS_LIMIT,
    Batching,
    check_runtime,
    check_signatures,
    runtime_for_format,
)

__all__ = [
    "CHANGES_CHANNEL",
    "COLUMNS",
    "DEFAULT_QUEUE_BATCHES",
    "DEPLOYMENT_EVENTS",
    "DEPLOYMENT_NAME",
    "DEPLOYMENT_STREAM",
    "LOCAL_CHANGES",
    "MAX_BATCH_SIZE_LIMIT",
    "MAX_WAIT_MS_LIMIT",
    "ROLLOUT_STATES",
    "SERVING_STATES",
    "Batching",
    "Deployment",
    "DeploymentState",
    "NewDeployment",
    "Role",
    "TrafficSplit",
    "announce",
    "check_runtime",
    "check_signatures",
    "create_deployment",
    "deployments_by_ids",
    "find_live_deployment",
    "get_deployment",
    "list_deployments",
    "live_deployment_by_name",
    "project_of_new_deployment",
    "promote_canary",
    "rollback",
    "runtime_for_format",
    "state_event",
    "stop_deployment",
    "to_deployment",
    "update_traffic",
]
