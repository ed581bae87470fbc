from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any, cast
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from aiaas.core import global_ids
from aiaas.core.serving import deployments
from aiaas.core.serving import drift_checks as drift_monitoring
from aiaas.graphql.errors import ConflictResult, Error, InvalidInputResult, NotFoundResult
from aiaas.graphql.models.types import Model, ModelVersion
from aiaas.graphql.relay import Node, to_global_id


@strawberry.enum(
    description="CREATING → WARMING → READY ⇄ UPDATING; STOPPED once deleted, FAILED when the "
    "first rollout failed."
)
class DeploymentState(Enum):
    CREATING = "CREATING"
    WARMING = "WARMING"
    READY = "READY"
    UPDATING = "UPDATING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"


async def _version(info: Info, version_id: UUID | None) -> ModelVersion | None:
    if version_id is None:
        return None
    found = await info.context.loader("model_version").load(version_id)
    return ModelVersion.from_domain(found) if found is not None else None


@strawberry.type(description="Who answers a deployment's requests, and in what shares.")
class DeploymentTraffic:
    stable_percent: int
    canary_percent: int
    stable_uuid: strawberry.Private[UUID]
    canary_uuid: strawberry.Private[UUID | None]
    shadow_uuid: strawberry.Private[UUID | None]

    @strawberry.field
    async def stable_version(self, info: Info) -> ModelVersion:
        found = await _version(info, self.stable_uuid)
        assert found is not None
        return found

    @strawberry.field(description="Takes `canaryPercent` of the requests.")
    async def canary_version(self, info: Info) -> ModelVersion | None:
        return await _version(info, self.canary_uuid)

    @strawberry.field(description="Sees a copy of every request; its answers are logged only.")
    async def shadow_version(self, info: Info) -> ModelVersion | None:
        return await _version(info, self.shadow_uuid)

    @classmethod
    def from_domain(cls, split: deployments.TrafficSplit) -> DeploymentTraffic:
        return cls(
            stable_percent=100 - split.canary_percent,
            canary_percent=split.canary_percent,
            stable_uuid=split.stable_version_id,
            canary_uuid=split.canary_version_id,
            shadow_uuid=split.shadow_version_id,
        )


@strawberry.type(description="One feature's drift: PSI < 0.1 stable, up to 0.25 moderate.")
class FeatureDrift:
    feature: str
    psi: float | None = strawberry.field(description="Null without enough samples.")
    sample_count: int


@strawberry.type(description="Sampled prediction inputs of one version against its training data.")
class DriftReport:
    computed_at: datetime
    window_start: datetime
    sample_count: int
    max_psi: float | None
    threshold: float
    alert: bool = strawberry.field(description="Whether some feature's PSI passed the threshold.")
    features: list[FeatureDrift]
    version_uuid: strawberry.Private[UUID]

    @strawberry.field
    async def model_version(self, info: Info) -> ModelVersion:
        found = await _version(info, self.version_uuid)
        assert found is not None
        return found

    @classmethod
    def from_domain(cls, report: drift_monitoring.DriftReport) -> DriftReport:
        return cls(
            computed_at=report.computed_at,
            window_start=report.window_start,
            sample_count=report.sample_count,
            max_psi=report.max_psi,
            threshold=report.threshold,
            alert=report.alert,
            features=[
                FeatureDrift(feature=name, psi=found.get("psi"), sample_count=found["sampleCount"])
                for name, found in sorted(report.features.items())
            ],
            version_uuid=report.version_id,
        )


@strawberry.type(description="Model versions served under a name, with adaptive batching.")
class Deployment(Node):
    name: str
    state: DeploymentState
    reason: str | None = strawberry.field(description="Why it FAILED, or why an update failed.")
    runtime: str
    source_alias: str | None = strawberry.field(
        description="The alias it was deployed from; the deployment keeps that version."
    )
    v2_model_name: str = strawberry.field(
        description="Its name in the V2 inference REST API: /v2/models/<this>/infer."
    )
    max_batch_size: int
    max_wait_ms: float
    max_queue_rows: int
    drift_threshold: float | None
    generation: int = strawberry.field(description="Grows with every change.")
    traffic: DeploymentTraffic
    pending_traffic: DeploymentTraffic | None = strawberry.field(
        description="The split being warmed while UPDATING; the old one serves meanwhile."
    )
    created_at: datetime
    updated_at: datetime
    ready_at: datetime | None
    stopped_at: datetime | None
    deployment_uuid: strawberry.Private[UUID]
    model_uuid: strawberry.Private[UUID]
    project_uuid: strawberry.Private[UUID]
    previous_stable_uuid: strawberry.Private[UUID | None]

    @strawberry.field(
        description="The model it was deployed from (the one `sourceAlias` belongs to); what "
        "it serves now is `traffic`, each version with its own model."
    )
    async def model(self, info: Info) -> Model:
        return Model.from_domain(await info.context.loader("model").load(self.model_uuid))

    @strawberry.field(
        description="The newest drift report of each version it serves (PSI per feature of "
        "sampled inputs against the training data)."
    )
    async def drift(self, info: Info) -> list[DriftReport]:
        async with info.context.platform.metadata.acquire() as connection:
            reports = await drift_monitoring.latest_reports(connection, self.deployment_uuid)
        return [DriftReport.from_domain(report) for report in reports]

    @strawberry.field(description="What `rollbackDeployment` returns to after a promotion.")
    async def previous_stable_version(self, info: Info) -> ModelVersion | None:
        return await _version(info, self.previous_stable_uuid)

    @classmethod
    def from_domain(cls, deployment: deployments.Deployment, project_slug: str) -> Deployment:
        pending = deployment.pending
        return cls(
            id=to_global_id("Deployment", deployment.id),
            name=deployment.name,
            state=DeploymentState(deployment.state.value),
            reason=deployment.reason,
            runtime=deployment.runtime,
            source_alias=deployment.source_alias,
            v2_model_name=v2_model_name(project_slug, deployment.name),
            max_batch_size=deployment.max_batch_size,
            max_wait_ms=deployment.max_wait_ms,
            max_queue_rows=deployment.max_queue_rows,
            drift_threshold=deployment.drift_threshold,
            generation=deployment.generation,
            traffic=DeploymentTraffic.from_domain(deployment.traffic),
            pending_traffic=DeploymentTraffic.from_domain(pending) if pending else None,
            created_at=deployment.created_at,
            updated_at=deployment.updated_at,
            ready_at=deployment.ready_at,
            stopped_at=deployment.stopped_at,
            deployment_uuid=deployment.id,
            model_uuid=deployment.model_id,
            project_uuid=deployment.project_id,
            previous_stable_uuid=deployment.previous_stable_version_id,
        )


def v2_model_name(project_slug: str, deployment_name: str) -> str:
    """Slugs and deployment names hold no dot, so the dot joins them unambiguously."""
    return f"{project_slug}.{deployment_name}"


async def deployment_from_domain(info: Info, deployment: deployments.Deployment) -> Deployment:
    project = await info.context.loader("project").load(deployment.project_id)
    return Deployment.from_domain(deployment, project.slug)


def traffic_json(stored: dict[str, Any]) -> JSON:
    """A traffic split as an event carries it to API users: `DeploymentTraffic`'s field names,
    with each version as its global id. (The stream and the row hold the domain's own form.)"""
    split = deployments.TrafficSplit.from_json(stored)

    def version(version_id: UUID | None) -> str | None:
        return None if version_id is None else to_global_id("ModelVersion", version_id)

    return cast(
        JSON,
        {
            "stablePercent": 100 - split.canary_percent,
            "canaryPercent": split.canary_percent,
            "stableVersion": version(split.stable_version_id),
            "canaryVersion": version(split.canary_version_id),
            "shadowVersion": version(split.shadow_version_id),
        },
    )


@strawberry.type(description="A change of a deployment, as `deploymentEvents` streams it.")
class DeploymentEvent:
    cursor: str
    type: str
    state: DeploymentState | None
    reason: str | None
    generation: int | None
    traffic: JSON | None = strawberry.field(
        description="The split after the change, named as `DeploymentTraffic` names it, each "
        'version as its ModelVersion id: {"stablePercent": 90, "canaryPercent": 10, '
        f'"stableVersion": "{global_ids.example("ModelVersion")}", "canaryVersion": ..., '
        '"shadowVersion": null}.'
    )
    at: str | None

    @classmethod
    def from_stream(cls, cursor: str, event: dict[str, Any]) -> DeploymentEvent:
        state = event.get("state")
        return cls(
            cursor=cursor,
            type=str(event.get("type")),
            state=DeploymentState(state) if isinstance(state, str) else None,
            reason=event.get("reason"),
            generation=event.get("generation"),
            traffic=traffic_json(event["traffic"]) if event.get("traffic") else None,
            at=event.get("at"),
        )


@strawberry.input
class CreateDeploymentInput:
    name: str = strawberry.field(description="Unique among the project's live deployments.")
    model_version: strawberry.ID | None = strawberry.field(
        default=None, description="The ModelVersion to serve; or give `model` and `alias`."
    )
    model: strawberry.ID | None = strawberry.field(default=None, description="A Model.")
    alias: str | None = strawberry.field(
        default=None, description="Serve the version this alias of `model` points at now."
    )
    runtime: str | None = strawberry.field(
        default=None,
        description="A serving runtime's name; by default the one that loads the version's format.",
    )
    max_batch_size: int = strawberry.field(default=32, description="Rows per batch, 1..4096.")
    max_wait_ms: float = strawberry.field(
        default=5.0, description="Longest a request waits for others to batch with, 0..1000."
    )
    max_queue_rows: int | None = strawberry.field(
        default=None,
        description="Rows that may wait; past it requests get 503 (default 16 batches).",
    )
    drift_threshold: float | None = strawberry.field(
        default=None, description="PSI above which drift alerts (default from the config)."
    )


@strawberry.input
class UpdateDeploymentTrafficInput:
    deployment: strawberry.ID
    stable_percent: int = strawberry.field(description="With canaryPercent, adds up to 100.")
    canary: strawberry.ID | None = strawberry.field(default=None, description="A ModelVersion.")
    canary_percent: int = 0
    shadow: strawberry.ID | None = strawberry.field(
        default=None, description="A ModelVersion that sees a copy of every request."
    )


@strawberry.type
class DeploymentSuccess:
    deployment: Deployment


@strawberry.type(
    name="UnavailableError",
    description="The deployment cannot take the request now; retry later.",
)
class UnavailableResult(Error):
    retry_after_seconds: int | None


@strawberry.type(description="A prediction: one output record per input record, in order.")
class PredictSuccess:
    deployment: Deployment
    model_version: ModelVersion
    role: str = strawberry.field(description="stable or canary: who answered.")
    outputs: list[JSON]


DeploymentResult = Annotated[
    DeploymentSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("DeploymentResult"),
]
PredictResult = Annotated[
    PredictSuccess | InvalidInputResult | NotFoundResult | ConflictResult | UnavailableResult,
    strawberry.union("PredictResult"),
]
