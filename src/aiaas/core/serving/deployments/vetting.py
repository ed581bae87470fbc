"""What a deployment change must pass: batching settings, versions of the project that fit
their role, and a runtime that loads them."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiaas.core.errors import InputError
from aiaas.core.serving.deployments.records import Deployment, Role, TrafficSplit
from aiaas.core.storage import Connection
from aiaas.core.training.registry import ModelVersion, model_versions_by_ids

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

DEPLOYMENT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_BATCH_SIZE_LIMIT = 4096
MAX_WAIT_MS_LIMIT = 1000.0
DEFAULT_QUEUE_BATCHES = 16
"""A queue holds this many full batches by default: enough to ride out a burst, little enough
that a request at its back still waits only a few batch executions."""


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


async def version_of_project(
    connection: Connection, project_id: UUID, version_id: UUID | None, field: str
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


def runtime_for_format(platform: Platform, model_format: str) -> str:
    """The serving runtime that loads `model_format`: what a deployment or a scoring job uses
    when it names none. Several that do: the first by name, so the choice never depends on the
    order plugins were loaded in."""
    registered = platform.registries.serving_runtimes.names()
    loading = sorted(
        name
        for name in registered
        if model_format in platform.serving_runtime(name).supported_model_formats()
    )
    if not loading:
        raise InputError(
            f"no serving runtime loads {model_format!r} models; installed: "
            f"{', '.join(sorted(registered))} (a plugin's extra may be missing)",
            field_errors={"runtime": f"none loads {model_format}"},
        )
    return loading[0]


def vet_shares(stable_percent: int, canary_version_id: UUID | None, canary_percent: int) -> None:
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


async def vetted_split(
    platform: Platform,
    connection: Connection,
    deployment: Deployment,
    canary_version_id: UUID | None,
    canary_percent: int,
    shadow_version_id: UUID | None,
) -> TrafficSplit:
    """The new split, once every version in it is of the project, fits its role, and loads
    with the deployment's runtime."""
    project_id = deployment.project_id
    stable = await version_of_project(
        connection, project_id, deployment.stable_version_id, "stable"
    )
    assert stable is not None
    canary = await version_of_project(connection, project_id, canary_version_id, "canary")
    shadow = await version_of_project(connection, project_id, shadow_version_id, "shadow")
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
