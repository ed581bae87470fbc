"""Sweep mutations: creating a sweep, cancelling one, promoting one of its trials."""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

import strawberry
from strawberry.types import Info

from aiaas.core import training
from aiaas.core.errors import InputError
from aiaas.core.training.promotion import PROTECTED_ALIAS
from aiaas.graphql.context import RequestContext
from aiaas.graphql.errors import expected
from aiaas.graphql.models.types import ModelVersion
from aiaas.graphql.permissions import (
    project_by_global_id,
    require_more_in_project,
    requires_in_project,
)
from aiaas.graphql.relay import uuid_of
from aiaas.graphql.sweeps.types import (
    CancelSweepResult,
    CreateSweepInput,
    CreateSweepResult,
    PromoteSweepTrialResult,
    PromoteSweepTrialSuccess,
    Sweep,
    SweepSuccess,
)


async def _require_alias_grant(
    context: RequestContext, project_id: UUID, alias: str, field: str
) -> None:
    """Moving an alias needs what `setModelAlias` needs: `model:alias`, and `model:promote`
    for production."""
    action = "promote" if alias == PROTECTED_ALIAS else "alias"
    await require_more_in_project(context, project_id, "model", action, field)


def _request(input: CreateSweepInput, version_id: UUID) -> training.SweepRequest:
    if not isinstance(input.hyperparameters, Mapping):
        raise InputError(
            "hyperparameters must be an object",
            field_errors={"hyperparameters": "must be an object"},
        )
    return training.SweepRequest(
        dataset_version_id=version_id,
        trainer=input.trainer,
        target=input.target,
        search_space=[
            training.SearchDimension(
                name=d.name, low=d.low, high=d.high, log=d.log, step=d.step, choices=d.choices
            )
            for d in input.search_space
        ],
        objective_metric=input.objective.metric,
        direction=input.objective.direction.value if input.objective.direction else None,
        features=input.features,
        hyperparameters=input.hyperparameters,
        n_trials=input.n_trials,
        parallelism=input.parallelism,
        time_budget_s=input.time_budget_seconds,
        sampler=training.Sampler(input.sampler.value),
        pruner=training.Pruner(input.pruner.value),
        validation_fraction=input.validation_fraction,
        seed=input.seed,
        model_name=input.model_name,
        promote_to=input.promote_to,
    )


@strawberry.type
class SweepMutation:
    @strawberry.mutation(
        extensions=requires_in_project(
            "sweep",
            "create",
            project_by_global_id("dataset_version", within="input", of="DatasetVersion"),
        ),
        description="Search a trainer's hyperparameters: trials, each an ordinary training "
        "job, run on every worker up to `parallelism` at once. Every problem with the request "
        "is reported at once, and no sweep is created then.",
    )
    async def create_sweep(self, info: Info, input: CreateSweepInput) -> CreateSweepResult:
        context: RequestContext = info.context
        version_id = uuid_of(input.dataset_version, "DatasetVersion", "input.datasetVersion")
        if input.promote_to is not None:
            version = await context.loader("dataset_version").load(version_id)
            if version is not None:
                await _require_alias_grant(
                    context, version.project_id, input.promote_to, "createSweep"
                )

        async def create() -> SweepSuccess:
            sweep = await training.create_sweep(
                context.platform,
                context.require_principal(),
                _request(input, version_id),
                request_id=context.request_id,
            )
            return SweepSuccess(sweep=Sweep.from_domain(sweep))

        return await expected(create)

    @strawberry.mutation(
        extensions=requires_in_project("sweep", "cancel", project_by_global_id("id", of="Sweep")),
        description="Start no more trials and cancel the running ones; the sweep ends "
        "CANCELLED once they have stopped.",
    )
    async def cancel_sweep(self, info: Info, id: strawberry.ID) -> CancelSweepResult:
        context: RequestContext = info.context
        sweep_id = uuid_of(id, "Sweep", "id")

        async def cancel() -> SweepSuccess:
            sweep = await training.cancel_sweep(
                context.platform,
                context.require_principal(),
                sweep_id,
                request_id=context.request_id,
            )
            return SweepSuccess(sweep=Sweep.from_domain(sweep))

        return await expected(cancel)

    @strawberry.mutation(
        extensions=requires_in_project("model", "alias", project_by_global_id("id", of="Sweep")),
        description="Point `alias` of the sweep's model at a trial's version (the best "
        "trial's unless `trialNumber` names one), through the model's promotion gates. Needs "
        "what setModelAlias needs: `production` needs maintainer.",
    )
    async def promote_sweep_trial(
        self, info: Info, id: strawberry.ID, alias: str, trial_number: int | None = None
    ) -> PromoteSweepTrialResult:
        context: RequestContext = info.context
        sweep_id = uuid_of(id, "Sweep", "id")
        found = await context.loader("sweep").load(sweep_id)
        if found is not None and alias == PROTECTED_ALIAS:
            await _require_alias_grant(context, found.project_id, alias, "promoteSweepTrial")

        async def promote() -> PromoteSweepTrialSuccess:
            sweep, version_id = await training.promote_sweep_trial(
                context.platform,
                context.require_principal(),
                sweep_id,
                alias,
                trial_number=trial_number,
            )
            version = await context.loader("model_version").load(version_id)
            return PromoteSweepTrialSuccess(
                sweep=Sweep.from_domain(sweep), model_version=ModelVersion.from_domain(version)
            )

        return await expected(promote)
