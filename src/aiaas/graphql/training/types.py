"""GraphQL types of training: trainers and their hyperparameters, training jobs with their
metric history and live events, job comparisons, and the submit and cancel results."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from aiaas.core import jobs
from aiaas.core import trainers as training
from aiaas.core.errors import InputError
from aiaas.core.serialization import finite_or_none, json_safe
from aiaas.core.training import finished_charts, metric_history
from aiaas.core.training.finished_charts import DEFAULT_CHART_POINTS
from aiaas.graphql.datasets.types import DatasetVersion, as_json
from aiaas.graphql.errors import ConflictResult, InvalidInputResult, NotFoundResult
from aiaas.graphql.jobs.types import JobState
from aiaas.graphql.models.types import ModelVersion
from aiaas.graphql.relay import Node, to_global_id
from aiaas.graphql.training.metric_columns import MetricColumns

MAX_POINT_OBJECTS = 10_000
"""The most points `metrics` answers as objects: each costs the execution of four fields."""


@strawberry.type(description="One typed hyperparameter of a trainer.")
class HyperParameter:
    name: str
    type: str = strawberry.field(description="int, float, bool or str.")
    default: JSON
    description: str
    minimum: float | None
    maximum: float | None
    choices: list[str]

    @classmethod
    def from_domain(cls, parameter: training.HyperParameter) -> HyperParameter:
        return cls(
            name=parameter.name,
            type=parameter.type,
            default=as_json(parameter.default),
            description=parameter.description,
            minimum=parameter.minimum,
            maximum=parameter.maximum,
            choices=list(parameter.choices),
        )


@strawberry.type(description="A family of models that training jobs can train.")
class Trainer:
    name: str
    description: str
    plugin: str
    task: str = strawberry.field(description="classification or regression.")
    hyperparameters: list[HyperParameter]
    hyperparameter_schema: JSON = strawberry.field(description="The same, as JSON Schema.")


@strawberry.type(
    description="One point of a metric's history; a bucket's mean once downsampled. Null where "
    "the value was not finite (a diverged run)."
)
class MetricPoint:
    step: int
    value: float | None
    min: float | None
    max: float | None

    @classmethod
    def from_domain(cls, point: metric_history.MetricPoint) -> MetricPoint:
        return cls(
            step=point.step,
            value=finite_or_none(point.value),
            min=finite_or_none(point.min),
            max=finite_or_none(point.max),
        )


@strawberry.type(description="A training job: what it trains on, how, and how far it got.")
class TrainingJob(Node):
    state: JobState
    attempt: int = strawberry.field(description="Runs so far; above 1 once it was resumed.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    reason: str | None = strawberry.field(description="Why it failed or was cancelled.")
    cancel_requested_at: datetime | None
    trainer: str
    target: str
    features: list[str]
    hyperparameters: JSON
    validation_fraction: float
    seed: int
    model_name: str
    job_uuid: strawberry.Private[UUID]
    dataset_version_uuid: strawberry.Private[UUID]
    project_uuid: strawberry.Private[UUID]

    @strawberry.field
    async def dataset_version(self, info: Info) -> DatasetVersion | None:
        found = await info.context.loader("dataset_version").load(self.dataset_version_uuid)
        return DatasetVersion.from_domain(found) if found is not None else None

    @strawberry.field(description="The model version it registered, once it succeeded.")
    async def model_version(self, info: Info) -> ModelVersion | None:
        found = await info.context.loader("model_version_by_job").load(self.job_uuid)
        return ModelVersion.from_domain(found) if found is not None else None

    @strawberry.field(
        description="The keys of its metric history: loss at every step; train_loss and val_* "
        "(val_loss, val_accuracy, val_f1_macro, val_rmse, ...) at the end of each epoch."
    )
    async def metric_keys(self, info: Info) -> list[str]:
        found: list[str] | None = await info.context.loader("metric_keys").load(self.job_uuid)
        return found or []

    @strawberry.field(description="Each metric's value at its latest step.")
    async def latest_metrics(self, info: Info) -> JSON:
        found = await info.context.loader("latest_metrics").load(self.job_uuid)
        return as_json(json_safe(found or {}))

    @strawberry.field(
        description="A metric's history, downsampled to at most maxPoints buckets (1 to "
        f"{MAX_POINT_OBJECTS}) so that a long run charts fast; one object per point."
    )
    async def metrics(
        self, info: Info, key: str, max_points: int = DEFAULT_CHART_POINTS
    ) -> list[MetricPoint]:
        if type(max_points) is int and max_points > MAX_POINT_OBJECTS:
            raise InputError(
                f"maxPoints is from 1 to {MAX_POINT_OBJECTS} here; metricColumns reads up to "
                f"{metric_history.MAX_SERIES_POINTS} points at once",
                field_errors={"max_points": "out of range"},
            )
        points = await self._series(info, key, max_points)
        return [MetricPoint.from_domain(point) for point in points]

    @strawberry.field(
        description="The same history as columns, downsampled to at most maxPoints buckets (1 "
        f"to {metric_history.MAX_SERIES_POINTS}): the way to read a long history whole."
    )
    async def metric_columns(
        self, info: Info, key: str, max_points: int = DEFAULT_CHART_POINTS
    ) -> MetricColumns:
        return MetricColumns(points=await self._series(info, key, max_points))

    async def _series(
        self, info: Info, key: str, max_points: int
    ) -> list[metric_history.MetricPoint]:
        finished = jobs.JobState(self.state.value) in jobs.TERMINAL_STATES
        return await finished_charts.chart_series(
            info.context.platform, self.job_uuid, key, max_points, finished=finished
        )

    @classmethod
    def from_domain(cls, job: jobs.Job) -> TrainingJob:
        payload = job.payload
        return cls(
            id=to_global_id("TrainingJob", job.id),
            state=JobState(job.state.value),
            attempt=job.attempt,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            reason=job.reason,
            cancel_requested_at=job.cancel_requested_at,
            trainer=payload["trainer"],
            target=payload["target"],
            features=list(payload["features"]),
            hyperparameters=as_json(payload["hyperparameters"]),
            validation_fraction=float(payload["validation_fraction"]),
            seed=int(payload["seed"]),
            model_name=payload["model_name"],
            job_uuid=job.id,
            dataset_version_uuid=UUID(payload["dataset_version_id"]),
            project_uuid=job.project_id,
        )


@strawberry.type(description="One event of a job's live stream. `cursor` resumes after it.")
class JobEvent:
    cursor: str
    type: str = strawberry.field(description="state, progress, checkpoint, resumed or model.")
    state: JobState | None
    reason: str | None
    attempt: int | None
    step: int | None
    total_steps: int | None
    epoch: int | None
    metrics: JSON | None = strawberry.field(
        description="Of a progress event: the latest value of each metric, the step's loss and "
        "the train_loss and val_* of the last epoch that ended. Of a model event: the "
        "version's metrics."
    )
    examples_per_second: float | None
    eta_seconds: float | None
    model_version: strawberry.ID | None

    @classmethod
    def from_stream(cls, cursor: str, event: dict[str, Any]) -> JobEvent:
        state = event.get("state")
        model_version = event.get("model_version_id")
        return cls(
            cursor=cursor,
            type=str(event.get("type")),
            state=JobState(state) if isinstance(state, str) else None,
            reason=event.get("reason"),
            attempt=event.get("attempt"),
            step=event.get("step"),
            total_steps=event.get("total_steps"),
            epoch=event.get("epoch"),
            metrics=as_json(event["metrics"]) if "metrics" in event else None,
            examples_per_second=event.get("examples_per_s"),
            eta_seconds=event.get("eta_s"),
            model_version=(
                to_global_id("ModelVersion", UUID(model_version)) if model_version else None
            ),
        )


@strawberry.type(description="Jobs side by side: their hyperparameters and final metrics.")
class TrainingJobComparison:
    jobs: list[TrainingJob]
    hyperparameter_names: list[str]
    metric_names: list[str]
    rows: JSON = strawberry.field(
        description="One object per job: id, trainer, hyperparameters, and final metrics "
        "(evaluation metrics once registered, else the latest training ones)."
    )


@strawberry.input
class SubmitTrainingJobInput:
    dataset_version: strawberry.ID
    trainer: str
    target: str
    features: list[str] | None = strawberry.field(
        default=None, description="Feature columns; every other column when left out."
    )
    hyperparameters: JSON = strawberry.field(
        default_factory=dict, description="Left-out hyperparameters take their defaults."
    )
    validation_fraction: float = strawberry.field(
        default=0.2,
        description="Share of rows held out for evaluation, in [0, 1), drawn by the seed (not "
        "stratified). Every epoch's val_* metrics and the model version's metrics are measured "
        "on it. 0 trains on every row and measures nothing, so it is refused while the model "
        "has promotion gates.",
    )
    seed: int = 0
    model_name: str | None = strawberry.field(
        default=None, description="The model to register under; the dataset's name by default."
    )


@strawberry.type
class TrainingJobSuccess:
    job: TrainingJob


SubmitTrainingJobResult = Annotated[
    TrainingJobSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("SubmitTrainingJobResult"),
]
CancelTrainingJobResult = Annotated[
    TrainingJobSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("CancelTrainingJobResult"),
]
