"""GraphQL types of the model registry: models, their versions and aliases, and the results of
the mutations that move an alias or set promotion gates."""

from __future__ import annotations

import enum
import functools
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import strawberry
from strawberry import LazyType
from strawberry.scalars import JSON
from strawberry.types import Info

from aiaas.core.pagination import DEFAULT_PAGE_SIZE
from aiaas.core.training import registry as models
from aiaas.graphql.datasets.types import DatasetVersion, as_json
from aiaas.graphql.errors import ConflictResult, InvalidInputResult, NotFoundResult
from aiaas.graphql.relay import Connection, Node, page_connection, to_global_id

_TRAINING_JOB: LazyType[Any, Any] = LazyType("TrainingJob", "aiaas.graphql.training.types")
"""The type of `ModelVersion.job`, by name. It points back up the lineage, at the job that
trained the version, and `aiaas.graphql.training.types` imports this module for
`TrainingJob.modelVersion`: naming the type, rather than importing it, keeps the two modules out
of an import cycle. The schema looks it up when it is built."""


@functools.cache
def _training_job_type() -> type[Any]:
    """The `TrainingJob` class, looked up once: by the time a field resolves, the schema has
    imported its module."""
    return _TRAINING_JOB.resolve_type()


@strawberry.type(description="A movable name (`staging`, `production`...) for a model version.")
class ModelAlias:
    alias: str
    updated_at: datetime
    version_uuid: strawberry.Private[UUID]

    @strawberry.field
    async def version(self, info: Info) -> ModelVersion:
        found = await info.context.loader("model_version").load(self.version_uuid)
        return ModelVersion.from_domain(found)

    @classmethod
    def from_domain(cls, alias: models.ModelAlias) -> ModelAlias:
        return cls(alias=alias.alias, updated_at=alias.updated_at, version_uuid=alias.version_id)


@strawberry.enum(description="How a model version came to be.")
class ModelVersionSource(enum.Enum):
    TRAINING = "training"
    UPLOAD = "upload"


@strawberry.type(
    description="An immutable model, trained here or uploaded: weights, signature, metrics, "
    "lineage."
)
class ModelVersion(Node):
    number: int
    source: ModelVersionSource
    trainer: str = strawberry.field(description="The trainer that made it; `upload` if uploaded.")
    format: str = strawberry.field(description="What a serving runtime must load, e.g. flax-nnx.")
    size_bytes: int
    signature: JSON = strawberry.field(description="Inputs and outputs: names, dtypes, shapes.")
    metrics: JSON = strawberry.field(description="Evaluation on the held-out split.")
    hyperparameters: JSON
    created_at: datetime
    model_uuid: strawberry.Private[UUID]
    job_uuid: strawberry.Private[UUID | None]
    dataset_version_uuid: strawberry.Private[UUID | None]
    version_uuid: strawberry.Private[UUID]
    project_uuid: strawberry.Private[UUID]

    @strawberry.field
    async def model(self, info: Info) -> Model:
        found = await info.context.loader("model").load(self.model_uuid)
        return Model.from_domain(found)

    @strawberry.field(
        description="The training job that produced it; null for an uploaded version.",
        graphql_type=_TRAINING_JOB | None,
    )
    async def job(self, info: Info) -> Node | None:
        if self.job_uuid is None:
            return None
        found = await info.context.loader("job").load(self.job_uuid)
        job: Node = _training_job_type().from_domain(found)
        return job

    @strawberry.field(
        description="The dataset version it was trained on; for an uploaded version, the "
        "reference data its uploader named, if any (drift is measured against it)."
    )
    async def dataset_version(self, info: Info) -> DatasetVersion | None:
        if self.dataset_version_uuid is None:
            return None
        found = await info.context.loader("dataset_version").load(self.dataset_version_uuid)
        return DatasetVersion.from_domain(found)

    @strawberry.field(description="The aliases pointing at it.")
    async def aliases(self, info: Info) -> list[str]:
        found = await info.context.loader("model_aliases").load(self.model_uuid)
        return [alias.alias for alias in found or [] if alias.version_id == self.version_uuid]

    @classmethod
    def from_domain(cls, version: models.ModelVersion) -> ModelVersion:
        return cls(
            id=to_global_id("ModelVersion", version.id),
            number=version.number,
            source=ModelVersionSource(version.source),
            trainer=version.trainer,
            format=version.format,
            size_bytes=version.size_bytes,
            signature=as_json(version.signature),
            metrics=as_json(version.metrics),
            hyperparameters=as_json(version.hyperparameters),
            created_at=version.created_at,
            model_uuid=version.model_id,
            job_uuid=version.job_id,
            dataset_version_uuid=version.dataset_version_id,
            version_uuid=version.id,
            project_uuid=version.project_id,
        )


@strawberry.type(description="A registered model: its versions, and the aliases that pick one.")
class Model(Node):
    name: str
    description: str
    promotion_gates: JSON = strawberry.field(
        description="Checks a version must pass before an alias they guard moves to it; each "
        "guards the aliases it lists in `aliases` (see `setModelPromotionGates`)."
    )
    created_at: datetime
    model_uuid: strawberry.Private[UUID]
    project_uuid: strawberry.Private[UUID]

    @strawberry.field
    async def versions(
        self, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[ModelVersion]:
        return await page_connection(
            info,
            ModelVersion.from_domain,
            models.list_model_versions,
            self.model_uuid,
            first=first,
            after=after,
        )

    @strawberry.field
    async def aliases(self, info: Info) -> list[ModelAlias]:
        found = await info.context.loader("model_aliases").load(self.model_uuid)
        return [ModelAlias.from_domain(alias) for alias in found or []]

    @strawberry.field(description="Its newest version: the highest number.")
    async def latest_version(self, info: Info) -> ModelVersion | None:
        async with info.context.platform.metadata.acquire() as connection:
            found = await models.latest_model_version(connection, self.model_uuid)
        return ModelVersion.from_domain(found) if found is not None else None

    @strawberry.field(description="The version an alias points at.")
    async def version_by_alias(self, info: Info, alias: str) -> ModelVersion | None:
        async with info.context.platform.metadata.acquire() as connection:
            found = await models.resolve_alias(connection, self.model_uuid, alias)
        return ModelVersion.from_domain(found) if found is not None else None

    @classmethod
    def from_domain(cls, model: models.Model) -> Model:
        return cls(
            id=to_global_id("Model", model.id),
            name=model.name,
            description=model.description,
            promotion_gates=as_json(model.promotion_gates),
            created_at=model.created_at,
            model_uuid=model.id,
            project_uuid=model.project_id,
        )


@strawberry.input
class SetModelAliasInput:
    version: strawberry.ID = strawberry.field(description="The ModelVersion the alias moves to.")
    alias: str = strawberry.field(description="e.g. staging or production (maintainers).")


@strawberry.type
class SetModelAliasSuccess:
    alias: ModelAlias
    version: ModelVersion


@strawberry.type
class SetPromotionGatesSuccess:
    model: Model


SetModelAliasResult = Annotated[
    SetModelAliasSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("SetModelAliasResult"),
]
SetPromotionGatesResult = Annotated[
    SetPromotionGatesSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("SetPromotionGatesResult"),
]
