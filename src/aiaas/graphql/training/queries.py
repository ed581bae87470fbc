"""The training queries: the trainers this platform can run."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from aiaas.graphql.context import RequestContext
from aiaas.graphql.permissions import requires
from aiaas.graphql.training.types import HyperParameter, Trainer


@strawberry.type
class TrainingQuery:
    @strawberry.field(
        extensions=requires("trainer", "list"),
        description="The trainers this platform can run, with their typed hyperparameters.",
    )
    def trainers(self, info: Info) -> list[Trainer]:
        context: RequestContext = info.context
        listed = []
        for spec in context.platform.registries.trainers:
            trainer = context.platform.trainer(spec.name)
            listed.append(
                Trainer(
                    name=spec.name,
                    description=spec.description,
                    plugin=spec.plugin,
                    task=trainer.task,
                    hyperparameters=[
                        HyperParameter.from_domain(p) for p in trainer.hyperparameters()
                    ],
                    hyperparameter_schema=trainer.hyperparameter_schema(),  # type: ignore[arg-type]
                )
            )
        return listed
