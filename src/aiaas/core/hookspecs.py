"""Every hook of aiaas, in one place.

Hooks are synchronous and cheap: they register things. The runtime work goes through the async
protocols in `aiaas.core.storage`, `aiaas.core.auth`, `aiaas.core.trainers`,
`aiaas.core.runtimes` and `aiaas.core.validation`.

- Backend hooks are registries: they return an iterable of spec dataclasses
  (`aiaas.core.specs`), keyed by name. Two plugins registering one name is a startup error.
- A hook implementation that raises is reported (`aiaas plugins`, the log) and its contribution is
  left out; it does not take the platform down.
- docs/plugin_hooks.md has a section per hook, headed by its exact signature, and tests/core has a
  test named for each hook. A test fails when either is missing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from aiaas.core.plugin_manager import PROJECT_NAME

if TYPE_CHECKING:
    import click

    from aiaas.core.audit import AuditEvent
    from aiaas.core.auth import PolicyEnforcer
    from aiaas.core.config import Config
    from aiaas.core.jobs import JobEvent
    from aiaas.core.platform import Platform
    from aiaas.core.specs import (
        ArtifactStoreSpec,
        AuthenticatorSpec,
        GraphQLContribution,
        JobKindSpec,
        MetadataStoreSpec,
        ServingRuntimeSpec,
        TrainerSpec,
        ValidatorSpec,
    )

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# Storage ------------------------------------------------------------------------------------


@hookspec
def aiaas_artifact_stores() -> Iterable[ArtifactStoreSpec]:
    """Register artifact store backends.

    Called once per process while the registries are built. Returns an iterable of
    `ArtifactStoreSpec`. The `artifact_store` setting picks one by name; `filesystem` is built in.
    """


@hookspec
def aiaas_metadata_stores() -> Iterable[MetadataStoreSpec]:
    """Register metadata store backends: sources of asyncpg connections to PostgreSQL.

    Called once per process while the registries are built. Returns an iterable of
    `MetadataStoreSpec`. The `metadata_store` setting picks one by name; `postgresql` is built in.
    """


# Compute ------------------------------------------------------------------------------------


@hookspec
def aiaas_trainers() -> Iterable[TrainerSpec]:
    """Register trainers, each a family of models with a typed hyperparameter schema.

    Called once per process while the registries are built. Returns an iterable of `TrainerSpec`.
    """


@hookspec
def aiaas_serving_runtimes() -> Iterable[ServingRuntimeSpec]:
    """Register serving runtimes ("servers") that load model versions and answer predictions.

    Called once per process while the registries are built. Returns an iterable of
    `ServingRuntimeSpec`.
    """


@hookspec
def aiaas_validators() -> Iterable[ValidatorSpec]:
    """Register validators: data quality checks and model promotion gates.

    Called once per process while the registries are built. Returns an iterable of
    `ValidatorSpec`.
    """


@hookspec
def aiaas_job_kinds() -> Iterable[JobKindSpec[Any]]:
    """Register kinds of worker job, each with the pydantic model its payload must match and
    the async handler a worker runs it with.

    Called once per process while the registries are built. Returns an iterable of
    `JobKindSpec`. `training`, `dataset.validate` and `batch_prediction` are built in.
    """


# Auth ---------------------------------------------------------------------------------------


@hookspec
def aiaas_authenticators() -> Iterable[AuthenticatorSpec]:
    """Register authenticators. Every registered one is active; they are asked in turn until one
    recognises the credentials.

    Called once per process while the registries are built. Returns an iterable of
    `AuthenticatorSpec`. API tokens (`api-token`) are built in.
    """


@hookspec(firstresult=True)
def aiaas_policy_enforcer(config: Config) -> PolicyEnforcer | None:
    """Provide the one policy enforcer that every GraphQL field, route and subscription goes
    through.

    `firstresult`: the first implementation returning an enforcer wins, so a plugin registered
    after the built-ins replaces the built-in Casbin enforcer. Called once per process. Returns a
    `PolicyEnforcer`, or None to let the next implementation decide.
    """


# Lifecycle and observers --------------------------------------------------------------------


@hookspec
def aiaas_startup(platform: Platform) -> Awaitable[None] | None:
    """Run when a process (API or worker) has connected to its services and before it serves.

    Called once per process start, after the database, Redis and the artifact store are up.
    May return an awaitable, which is awaited. Returns nothing otherwise.
    """


@hookspec
def aiaas_shutdown(platform: Platform) -> Awaitable[None] | None:
    """Run when a process stops, before its connections close.

    Called once per process stop. May return an awaitable, which is awaited.
    """


@hookspec
def aiaas_audit_event(event: AuditEvent) -> None:
    """Observe an audit event after the transaction that wrote it has committed.

    Called once per audit event, in the process that wrote it. Returns nothing. The event is
    already durable: an observer that raises is logged and cannot undo it.
    """


@hookspec
def aiaas_job_event(event: JobEvent) -> None:
    """Observe a job's state change after it has been committed.

    Called once per state change, in the process that made it (API or worker). Returns nothing.
    """


# Extensions of the API and the CLI ----------------------------------------------------------


@hookspec
def aiaas_graphql_schema() -> Iterable[GraphQLContribution]:
    """Add root fields to the GraphQL schema.

    Called once per process while the schema is built. Returns an iterable of
    `GraphQLContribution`. Each added field must declare its permission.
    """


@hookspec
def aiaas_cli_commands() -> Iterable[click.Command]:
    """Add commands to the `aiaas` CLI.

    Called once when the CLI starts. Returns an iterable of `click.Command`; a name that is
    already taken is reported and left out.
    """
