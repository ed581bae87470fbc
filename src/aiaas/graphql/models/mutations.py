"""The model registry's mutations: moving an alias (through its promotion gates) and setting a
model's gates."""

from __future__ import annotations

import json
from typing import Annotated
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from aiaas.core.training import registry as models
from aiaas.core.training.promotion import DEFAULT_GATE_ALIASES, PROTECTED_ALIAS
from aiaas.graphql.context import RequestContext
from aiaas.graphql.errors import expected
from aiaas.graphql.models.types import (
    Model,
    ModelAlias,
    ModelVersion,
    SetModelAliasInput,
    SetModelAliasResult,
    SetModelAliasSuccess,
    SetPromotionGatesResult,
    SetPromotionGatesSuccess,
)
from aiaas.graphql.permissions import (
    project_by_global_id,
    require_more_in_project,
    requires_in_project,
)
from aiaas.graphql.relay import uuid_of

GATES_DESCRIPTION = (
    'A list of gates, each {"kind": ..., its arguments, "aliases": [...]}. A gate guards the '
    "moves of the aliases it lists in `aliases`; a gate that lists none guards "
    f"{json.dumps(list(DEFAULT_GATE_ALIASES))} only. The kinds, their arguments and an example "
    "of each: docs/reference.md."
)


async def _require_promote(context: RequestContext, version_id: UUID) -> None:
    """Production needs more than the field's own grant; a refusal is audited as the field's
    own refusals are."""
    version = await context.loader("model_version").load(version_id)
    if version is None:
        return  # the service answers "not found"
    await require_more_in_project(context, version.project_id, "model", "promote", "setModelAlias")


@strawberry.type
class ModelMutation:
    @strawberry.mutation(
        extensions=requires_in_project(
            "model", "alias", project_by_global_id("version", within="input", of="ModelVersion")
        ),
        description="Point an alias of a model at one of its versions, once the model's "
        "promotion gates that guard that alias pass (see `setModelPromotionGates`). Moving "
        "`production` needs maintainer.",
    )
    async def set_model_alias(self, info: Info, input: SetModelAliasInput) -> SetModelAliasResult:
        context: RequestContext = info.context
        version_id = uuid_of(input.version, "ModelVersion", "input.version")

        async def move() -> SetModelAliasSuccess:
            if input.alias == PROTECTED_ALIAS:
                await _require_promote(context, version_id)
            alias, version = await models.set_model_alias(
                context.platform,
                context.require_principal(),
                version_id,
                input.alias,
                request_id=context.request_id,
            )
            return SetModelAliasSuccess(
                alias=ModelAlias.from_domain(alias), version=ModelVersion.from_domain(version)
            )

        return await expected(move)

    @strawberry.mutation(
        extensions=requires_in_project(
            "model", "configure", project_by_global_id("model", of="Model")
        ),
        description="Set the checks a version must pass before an alias they guard moves to it, "
        'e.g. [{"kind": "metric_threshold", "metric": "accuracy", "min": 0.8, '
        '"aliases": ["staging", "production"]}].',
    )
    async def set_model_promotion_gates(
        self,
        info: Info,
        model: strawberry.ID,
        gates: Annotated[JSON, strawberry.argument(description=GATES_DESCRIPTION)],
    ) -> SetPromotionGatesResult:
        context: RequestContext = info.context
        model_id = uuid_of(model, "Model", "model")

        async def configure() -> SetPromotionGatesSuccess:
            updated = await models.set_promotion_gates(
                context.platform,
                context.require_principal(),
                model_id,
                gates,
                request_id=context.request_id,
            )
            return SetPromotionGatesSuccess(model=Model.from_domain(updated))

        return await expected(configure)
