from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from aiaas.core.errors import ConflictError, InputError, NotFoundError, ServiceUnavailableError
from aiaas.core.serving import (
    INFERENCE_SERVER,
    deployments,
    output_records,
    records_to_columns,
    stop_and_drain,
    wake_rollouts,
)
from aiaas.graphql.context import RequestContext
from aiaas.graphql.deployments.types import (
    CreateDeploymentInput,
    DeploymentResult,
    DeploymentSuccess,
    PredictResult,
    PredictSuccess,
    UnavailableResult,
    UpdateDeploymentTrafficInput,
    deployment_from_domain,
)
from aiaas.graphql.errors import as_expected_error, expected
from aiaas.graphql.models.types import ModelVersion
from aiaas.graphql.permissions import project_by_global_id, requires_in_project
from aiaas.graphql.relay import uuid_of


def _optional_uuid_of(global_id: strawberry.ID | None, type_name: str, field: str) -> UUID | None:
    return None if global_id is None else uuid_of(global_id, type_name, field)


async def _project_of_new_deployment(
    context: RequestContext, source: Any, kwargs: dict[str, Any]
) -> UUID | None:
    given: CreateDeploymentInput = kwargs["input"]
    # A bad id is refused here, naming it; any other bad input is the resolver's to answer.
    version_id = _optional_uuid_of(given.model_version, "ModelVersion", "input.modelVersion")
    model_id = _optional_uuid_of(given.model, "Model", "input.model")
    try:
        new = deployments.NewDeployment(name=given.name, version_id=version_id, model_id=model_id)
    except InputError:
        return None
    async with context.platform.metadata.acquire() as connection:
        return await deployments.project_of_new_deployment(connection, new)


_DEPLOYMENT = project_by_global_id("deployment", of="Deployment")

DeploymentChange = Callable[..., Awaitable[deployments.Deployment]]


async def _changed(
    info: Info, deployment: strawberry.ID, change: DeploymentChange
) -> DeploymentResult:
    """Run one of the deployment changes that take nothing but the deployment."""
    context: RequestContext = info.context
    deployment_id = uuid_of(deployment, "Deployment", "deployment")

    async def run() -> DeploymentSuccess:
        changed = await change(
            context.platform,
            context.require_principal(),
            deployment_id,
            request_id=context.request_id,
        )
        return DeploymentSuccess(deployment=await deployment_from_domain(info, changed))

    return await expected(run)


_DEPLOYMENT_IN_INPUT = project_by_global_id("deployment", within="input", of="Deployment")


@strawberry.type
class DeploymentMutation:
    @strawberry.mutation(
        extensions=requires_in_project("deployment", "create", _project_of_new_deployment),
        description="Serve a model version (or the version an alias names) under a name. It "
        "is CREATING at first; `deploymentEvents` tells when it is READY.",
    )
    async def create_deployment(self, info: Info, input: CreateDeploymentInput) -> DeploymentResult:
        context: RequestContext = info.context

        async def create() -> DeploymentSuccess:
            new = deployments.NewDeployment(
                name=input.name,
                version_id=_optional_uuid_of(
                    input.model_version, "ModelVersion", "input.modelVersion"
                ),
                model_id=_optional_uuid_of(input.model, "Model", "input.model"),
                alias=input.alias,
                runtime=input.runtime,
                batching=deployments.Batching(
                    input.max_batch_size, input.max_wait_ms, input.max_queue_rows
                ),
                drift_threshold=input.drift_threshold,
            )
            created = await deployments.create_deployment(
                context.platform, context.require_principal(), new, request_id=context.request_id
            )
            wake_rollouts(context.platform)
            return DeploymentSuccess(deployment=await deployment_from_domain(info, created))

        return await expected(create)

    @strawberry.mutation(
        extensions=requires_in_project("deployment", "update", _DEPLOYMENT_IN_INPUT),
        description="Send a share of the requests to a canary version, and mirror them to a "
        "shadow. stablePercent + canaryPercent must be 100. A version not served yet is warmed "
        "first (UPDATING), while the current split goes on serving.",
    )
    async def update_deployment_traffic(
        self, info: Info, input: UpdateDeploymentTrafficInput
    ) -> DeploymentResult:
        context: RequestContext = info.context

        async def update() -> DeploymentSuccess:
            deployment_id = uuid_of(input.deployment, "Deployment", "input.deployment")
            updated = await deployments.update_traffic(
                context.platform,
                context.require_principal(),
                deployment_id,
                stable_percent=input.stable_percent,
                canary_version_id=_optional_uuid_of(input.canary, "ModelVersion", "input.canary"),
                canary_percent=input.canary_percent,
                shadow_version_id=_optional_uuid_of(input.shadow, "ModelVersion", "input.shadow"),
                request_id=context.request_id,
            )
            wake_rollouts(context.platform)
            return DeploymentSuccess(deployment=await deployment_from_domain(info, updated))

        return await expected(update)

    @strawberry.mutation(
        extensions=requires_in_project("deployment", "promote", _DEPLOYMENT),
        description="Make the canary the stable version, taking every request.",
    )
    async def promote_deployment(self, info: Info, deployment: strawberry.ID) -> DeploymentResult:
        return await _changed(info, deployment, deployments.promote_canary)

    @strawberry.mutation(
        extensions=requires_in_project("deployment", "update", _DEPLOYMENT),
        description="Undo the last traffic change: a pending update, else the canary, else the "
        "last promotion.",
    )
    async def rollback_deployment(self, info: Info, deployment: strawberry.ID) -> DeploymentResult:
        return await _changed(info, deployment, deployments.rollback)

    @strawberry.mutation(
        extensions=requires_in_project("deployment", "delete", _DEPLOYMENT),
        description="Stop the deployment. It answers what it has queued, then nothing more.",
    )
    async def delete_deployment(self, info: Info, deployment: strawberry.ID) -> DeploymentResult:
        return await _changed(info, deployment, stop_and_drain)

    @strawberry.mutation(
        extensions=requires_in_project("deployment", "predict", _DEPLOYMENT),
        description="Predict from JSON records, one object of input values per row, in order. "
        "More records than `maxBatchSize` are split into batches, up to the deployment's "
        "`maxQueueRows` (and 4096). Changes nothing, so it is not audited; refusals are.",
    )
    async def predict(
        self,
        info: Info,
        deployment: strawberry.ID,
        inputs: list[JSON],
        version: int | None = None,
    ) -> PredictResult:
        context: RequestContext = info.context
        deployment_id = uuid_of(deployment, "Deployment", "deployment")
        try:
            columns = records_to_columns(inputs)
            prediction = await context.platform.service(INFERENCE_SERVER).predict(
                deployment_id, columns, protocol="graphql", version_number=version
            )
        except ServiceUnavailableError as exc:
            retry_after = exc.details.get("retryAfter") if exc.details else None
            return UnavailableResult(
                message=exc.message, code=exc.code, retry_after_seconds=retry_after
            )
        except (InputError, NotFoundError, ConflictError) as exc:
            return as_expected_error(exc)
        return PredictSuccess(
            deployment=await deployment_from_domain(info, prediction.deployment),
            model_version=ModelVersion.from_domain(prediction.version),
            role=prediction.role.value,
            outputs=cast(list[JSON], output_records(prediction.outputs)),
        )
