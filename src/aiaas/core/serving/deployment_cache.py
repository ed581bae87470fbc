"""Deployments as one serving process sees them, the model versions they serve, and where a
request to one goes.

Any `aiaas serve` process can answer for any deployment: it reads the deployment from PostgreSQL
and trusts its copy for a moment (`ttl_s`). A change is announced, and the inference server
re-reads the deployment at once when it hears of one; the TTL only bounds how stale a copy can
get when an announcement is lost. Model versions never change, so each is read once.

A request is routed by the deployment's split: the canary takes its percentage of requests at
random, the stable version the rest; a request may instead name a version that answers callers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

from aiaas.core.errors import NotFoundError
from aiaas.core.identity.projects import projects_by_ids
from aiaas.core.serving.deployments import (
    Deployment,
    DeploymentState,
    Role,
    find_live_deployment,
    get_deployment,
)
from aiaas.core.signatures import ModelSignature
from aiaas.core.training.registry import ModelVersion, model_versions_by_ids

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

_NOT_READY_YET = frozenset({DeploymentState.CREATING, DeploymentState.WARMING})

MAX_NAMES_REMEMBERED = 10_000
"""Names looked up by protocol routes, remembered at most: names are user input."""


@dataclass
class CachedDeployment:
    deployment: Deployment
    project_slug: str
    fetched_at: float


@dataclass(frozen=True)
class ServingTarget:
    """A deployment as a route presents it: what it serves, and to what signature."""

    deployment: Deployment
    signature: ModelSignature
    """The stable version's: the deployment's inputs and outputs to its callers, whichever
    version answers (a canary has the same signature)."""
    versions: tuple[tuple[ModelVersion, Role], ...]
    """Every version of the split with its role, in the split's order."""

    def answering(self) -> list[ModelVersion]:
        """The versions whose answers reach callers: all but the shadow."""
        return [version for version, role in self.versions if role is not Role.SHADOW]

    def ready(self, version_number: int | None = None) -> bool:
        """Whether the deployment serves now (the version numbered so, if one is named)."""
        if not self.deployment.is_serving:
            return False
        numbers = {version.number for version, _ in self.versions}
        return version_number is None or version_number in numbers


class DeploymentCache:
    """This process's copies of deployments, by id and by (project slug, name), and of model
    versions. `on_refreshed` hears of every newer copy read, as it replaces the old one; `coin`
    decides which requests the canaries take."""

    def __init__(
        self,
        platform: Platform,
        *,
        ttl_s: float,
        on_refreshed: Callable[[CachedDeployment], None],
        coin: random.Random,
    ) -> None:
        self.platform = platform
        self.ttl_s = ttl_s
        self._on_refreshed = on_refreshed
        self._coin = coin
        self._deployments: dict[UUID, CachedDeployment] = {}
        self._names: dict[tuple[str, str], tuple[UUID | None, float]] = {}
        self._versions: dict[UUID, ModelVersion] = {}
        self._signatures: dict[UUID, ModelSignature] = {}

    def __contains__(self, deployment_id: UUID) -> bool:
        return deployment_id in self._deployments

    def current(self, deployment_id: UUID) -> CachedDeployment | None:
        """The copy held now, however old; None if there is none."""
        return self._deployments.get(deployment_id)

    async def get(self, deployment_id: UUID) -> CachedDeployment:
        cached = self._deployments.get(deployment_id)
        if (
            cached is not None
            and time.monotonic() - cached.fetched_at < self.ttl_s
            # One that is still being rolled out may have become READY a moment ago, the word
            # not heard here yet: "not ready" must not rest on a stale copy.
            and cached.deployment.state not in _NOT_READY_YET
        ):
            return cached
        return await self.refresh(deployment_id)

    async def refresh(self, deployment_id: UUID) -> CachedDeployment:
        """Re-read the deployment."""
        async with self.platform.metadata.acquire() as connection:
            deployment = await get_deployment(connection, deployment_id)
            # A deployment's project is always there: a foreign key holds it.
            projects = await projects_by_ids(connection, [deployment.project_id])
        current = self._deployments.get(deployment_id)
        if current is not None and current.deployment.generation > deployment.generation:
            # A slower read that another, newer one overtook: keep the newer.
            return current
        cached = CachedDeployment(
            deployment, projects[deployment.project_id].slug, time.monotonic()
        )
        self._deployments[deployment_id] = cached
        self._on_refreshed(cached)
        return cached

    async def named(self, slug: str, name: str) -> Deployment | None:
        """The live deployment `name` of the project `slug`; None if there is none. Names
        are looked up again after the TTL, since a stopped name can be deployed anew."""
        key = (slug, name)
        found = self._names.get(key)
        if found is None or time.monotonic() - found[1] >= self.ttl_s:
            async with self.platform.metadata.acquire() as connection:
                deployment = await find_live_deployment(connection, slug, name)
            if len(self._names) > MAX_NAMES_REMEMBERED:
                self._names.clear()
            found = (deployment.id if deployment else None, time.monotonic())
            self._names[key] = found
        if found[0] is None:
            return None
        cached = await self.get(found[0])
        if cached.deployment.state is DeploymentState.STOPPED:
            # Stopped since its name was looked up (names are cached for a moment): it is gone,
            # for metadata and readiness as much as for predictions.
            return None
        return cached.deployment

    async def version(self, version_id: UUID) -> ModelVersion:
        """A model version; they never change, so each is read once."""
        found = self._versions.get(version_id)
        if found is None:
            async with self.platform.metadata.acquire() as connection:
                found = (await model_versions_by_ids(connection, [version_id])).get(version_id)
            if found is None:
                raise NotFoundError("no such model version")
            self._versions[version_id] = found
        return found

    def signature(self, version: ModelVersion) -> ModelSignature:
        """The version's signature as a `ModelSignature`, made once per version."""
        found = self._signatures.get(version.id)
        if found is None:
            found = self._signatures[version.id] = ModelSignature.from_json(version.signature)
        return found

    async def target(self, deployment: Deployment) -> ServingTarget:
        """What the deployment serves, resolved for a route."""
        versions = [
            (await self.version(version_id), role)
            for version_id, role in deployment.traffic.versions().items()
        ]
        stable = await self.version(deployment.stable_version_id)
        return ServingTarget(deployment, self.signature(stable), tuple(versions))

    async def route(self, deployment: Deployment, version_number: int | None) -> tuple[Role, UUID]:
        """Which version answers a request, in which role: the one numbered `version_number`
        if the request names one (never the shadow), else by the split."""
        split = deployment.traffic
        if version_number is not None:
            for version_id, role in split.versions().items():
                if (
                    role is not Role.SHADOW
                    and (await self.version(version_id)).number == version_number
                ):
                    return role, version_id
            raise NotFoundError(f"the deployment does not serve version {version_number}")
        if split.canary_version_id is not None and self._coin.random() * 100 < split.canary_percent:
            return Role.CANARY, split.canary_version_id
        return Role.STABLE, split.stable_version_id
