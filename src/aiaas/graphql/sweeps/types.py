"""GraphQL types of sweeps: a sweep with its trials, history and importances, its live events,
and the inputs and results of its mutations."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from aiaas.core import training
from aiaas.graphql.datasets.types import DatasetVersion, as_json
from aiaas.graphql.errors import ConflictResult, InvalidInputResult, NotFoundResult
from aiaas.graphql.models.types import ModelVersion
from aiaas.graphql.relay import Node, to_global_id
from aiaas.graphql.training.types import TrainingJob


@strawberry.enum(description="Where a sweep is in its life.")
class SweepState(Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@strawberry.enum(description="How a trial ended, as Optuna records it.")
class SweepTrialState(Enum):
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"


@strawberry.enum(description="How a sweep picks its next trial's hyperparameters.")
class SweepSampler(Enum):
    TPE = "tpe"
    RANDOM = "random"
    CMA_ES = "cma_es"


@strawberry.enum(description="How a sweep stops trials that lag, judged at every epoch's end.")
class SweepPruner(Enum):
    NONE = "none"
    MEDIAN = "median"
    SUCCESSIVE_HALVING = "successive_halving"
    HYPERBAND = "hyperband"


@strawberry.enum(description="Whether a smaller or a larger objective is better.")
class ObjectiveDirection(Enum):
    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


@strawberry.type(description="One searched hyperparameter.")
class SearchDimension:
    name: str
    kind: str = strawberry.field(description="int, float or categorical.")
    low: float | None
    high: float | None
    log: bool
    step: float | None
    choices: JSON | None

    @classmethod
    def from_spec(cls, dimension: dict[str, Any]) -> SearchDimension:
        return cls(
            name=dimension["name"],
            kind=dimension["kind"],
            low=dimension.get("low"),
            high=dimension.get("high"),
            log=bool(dimension.get("log", False)),
            step=dimension.get("step"),
            choices=as_json(dimension["choices"]) if "choices" in dimension else None,
        )


@strawberry.type(description="What a sweep optimizes: a figure of the validation split.")
class SweepObjective:
    metric: str
    direction: ObjectiveDirection


@strawberry.type(description="One trial of a sweep: a training job with one point of the space.")
class SweepTrial:
    number: int
    state: SweepTrialState
    value: float | None = strawberry.field(description="The objective, once COMPLETE.")
    params: JSON = strawberry.field(description="The searched hyperparameters it trained with.")
    pruned_at_epoch: int | None
    started_at: datetime
    finished_at: datetime | None
    job_uuid: strawberry.Private[UUID]

    @strawberry.field(description="The training job that runs it.")
    async def job(self, info: Info) -> TrainingJob | None:
        found = await info.context.loader("job").load(self.job_uuid)
        return TrainingJob.from_domain(found) if found is not None else None

    @strawberry.field(description="The model version it registered, once COMPLETE.")
    async def model_version(self, info: Info) -> ModelVersion | None:
        found = await info.context.loader("model_version_by_job").load(self.job_uuid)
        return ModelVersion.from_domain(found) if found is not None else None

    @classmethod
    def from_domain(cls, trial: training.SweepTrial) -> SweepTrial:
        return cls(
            number=trial.number,
            state=SweepTrialState(trial.state.value),
            value=trial.value,
            params=as_json(trial.params),
            pruned_at_epoch=trial.pruned_at_epoch,
            started_at=trial.started_at,
            finished_at=trial.finished_at,
            job_uuid=trial.job_id,
        )


@strawberry.type(description="A completed trial's objective, and the best one up to it.")
class SweepHistoryPoint:
    number: int
    value: float
    best_value: float


@strawberry.type(description="How much a hyperparameter mattered to the objective (fANOVA).")
class ParameterImportance:
    name: str
    importance: float


@strawberry.type(description="One epoch's objective of a trial, as its pruner judged it.")
class EpochValue:
    epoch: int
    value: float


@strawberry.type(description="A trial's objective by epoch.")
class TrialCurve:
    number: int
    values: list[EpochValue]


@strawberry.type(
    description="A hyperparameter search: trials, each an ordinary training job, sampled and "
    "pruned by Optuna, until nTrials have run or the time budget is spent."
)
class Sweep(Node):
    state: SweepState
    reason: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    cancel_requested_at: datetime | None
    deadline_at: datetime | None = strawberry.field(description="When no more trials start.")
    trainer: str
    target: str
    features: list[str]
    hyperparameters: JSON = strawberry.field(description="The fixed ones, the same every trial.")
    search_space: list[SearchDimension]
    objective: SweepObjective
    sampler: SweepSampler
    pruner: SweepPruner
    n_trials: int
    parallelism: int
    validation_fraction: float
    seed: int
    model_name: str
    promote_to: str | None = strawberry.field(
        description="The alias its best trial's version moves to when it succeeds."
    )
    best_trial_number: int | None
    sweep: strawberry.Private[training.Sweep]

    @strawberry.field
    async def dataset_version(self, info: Info) -> DatasetVersion | None:
        version_id = UUID(self.sweep.spec["dataset_version_id"])
        found = await info.context.loader("dataset_version").load(version_id)
        return DatasetVersion.from_domain(found) if found is not None else None

    @strawberry.field(description="Every trial it started, by number.")
    async def trials(self, info: Info) -> list[SweepTrial]:
        found = await info.context.loader("sweep_trials").load(self.sweep.id)
        return [SweepTrial.from_domain(trial) for trial in found or []]

    @strawberry.field(description="The completed trial with the best objective.")
    async def best_trial(self, info: Info) -> SweepTrial | None:
        found = await info.context.loader("sweep_trials").load(self.sweep.id)
        best = training.best_of(self.sweep, found or [])
        return SweepTrial.from_domain(best) if best is not None else None

    @strawberry.field(description="The version its promotion moved an alias to.")
    async def promoted_version(self, info: Info) -> ModelVersion | None:
        if self.sweep.promoted_version_id is None:
            return None
        found = await info.context.loader("model_version").load(self.sweep.promoted_version_id)
        return ModelVersion.from_domain(found) if found is not None else None

    @strawberry.field(description="The optimization history: completed trials in order.")
    async def history(self, info: Info) -> list[SweepHistoryPoint]:
        found = await info.context.loader("sweep_trials").load(self.sweep.id)
        points: list[SweepHistoryPoint] = []
        for trial in found or []:
            if trial.state is not training.TrialState.COMPLETE or trial.value is None:
                continue
            best = points[-1].best_value if points else trial.value
            best = max(best, trial.value) if self.sweep.maximize else min(best, trial.value)
            points.append(
                SweepHistoryPoint(number=trial.number, value=trial.value, best_value=best)
            )
        return points

    @strawberry.field(
        description="Each searched hyperparameter's importance to the objective, by Optuna's "
        "fANOVA evaluator over the completed trials; empty until two completed differently."
    )
    async def importances(self, info: Info) -> list[ParameterImportance]:
        found = await training.parameter_importances(info.context.platform, self.sweep)
        return [ParameterImportance(name=name, importance=value) for name, value in found.items()]

    @strawberry.field(description="Every trial's objective by epoch (the learning curves).")
    async def curves(self, info: Info) -> list[TrialCurve]:
        found = await training.trial_curves(info.context.platform, self.sweep)
        return [
            TrialCurve(
                number=number,
                values=[EpochValue(epoch=e, value=v) for e, v in sorted(values.items())],
            )
            for number, values in sorted(found.items())
        ]

    @classmethod
    def from_domain(cls, sweep: training.Sweep) -> Sweep:
        spec = sweep.spec
        return cls(
            id=to_global_id("Sweep", sweep.id),
            state=SweepState(sweep.state.value),
            reason=sweep.reason,
            created_at=sweep.created_at,
            updated_at=sweep.updated_at,
            finished_at=sweep.finished_at,
            cancel_requested_at=sweep.cancel_requested_at,
            deadline_at=sweep.deadline_at,
            trainer=spec["trainer"],
            target=spec["target"],
            features=list(spec["features"]),
            hyperparameters=as_json(spec["hyperparameters"]),
            search_space=[SearchDimension.from_spec(d) for d in spec["search_space"]],
            objective=SweepObjective(
                metric=spec["objective"]["metric"],
                direction=ObjectiveDirection(spec["objective"]["direction"]),
            ),
            sampler=SweepSampler(spec["sampler"]),
            pruner=SweepPruner(spec["pruner"]),
            n_trials=sweep.n_trials,
            parallelism=sweep.parallelism,
            validation_fraction=float(spec["validation_fraction"]),
            seed=int(spec["seed"]),
            model_name=spec["model_name"],
            promote_to=spec.get("promote_to"),
            best_trial_number=sweep.best_trial_number,
            sweep=sweep,
        )


@strawberry.type(description="One event of a sweep's live stream. `cursor` resumes after it.")
class SweepEvent:
    cursor: str
    type: str = strawberry.field(
        description="state, trial_started, intermediate, trial_finished, promoted or "
        "promotion_refused."
    )
    state: SweepState | None
    reason: str | None
    trial_number: int | None
    trial_state: SweepTrialState | None
    epoch: int | None
    value: float | None
    params: JSON | None
    job: strawberry.ID | None
    model_version: strawberry.ID | None
    alias: str | None

    @classmethod
    def from_stream(cls, cursor: str, event: dict[str, Any]) -> SweepEvent:
        kind = str(event.get("type"))
        state = event.get("state") if kind == "state" else None
        trial_state = event.get("state") if kind == "trial_finished" else None
        job = event.get("job_id")
        version = event.get("model_version_id")
        return cls(
            cursor=cursor,
            type=kind,
            state=SweepState(state) if isinstance(state, str) else None,
            reason=event.get("reason"),
            trial_number=event.get("number", event.get("best_trial_number")),
            trial_state=SweepTrialState(trial_state) if isinstance(trial_state, str) else None,
            epoch=event.get("epoch", event.get("pruned_at_epoch")),
            value=event.get("value"),
            params=as_json(event["params"]) if "params" in event else None,
            job=to_global_id("TrainingJob", UUID(job)) if job else None,
            model_version=to_global_id("ModelVersion", UUID(version)) if version else None,
            alias=event.get("alias"),
        )


@strawberry.input(
    description="One hyperparameter to search: low and high (inclusive; on a log scale, or "
    "in steps) for numbers, or choices for any type. A flag, or a word with declared choices, "
    "searches all its values when neither is given."
)
class SearchDimensionInput:
    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[JSON] | None = None


@strawberry.input
class SweepObjectiveInput:
    metric: str = strawberry.field(
        description="A figure of the model version's evaluation that the trainer reports "
        "(accuracy, f1_macro, loss, rmse, r2, ...); judged per epoch as val_<metric>."
    )
    direction: ObjectiveDirection | None = strawberry.field(
        default=None, description="The direction that improves the metric by default."
    )


@strawberry.input
class CreateSweepInput:
    dataset_version: strawberry.ID
    trainer: str
    target: str
    search_space: list[SearchDimensionInput]
    objective: SweepObjectiveInput
    features: list[str] | None = None
    hyperparameters: JSON = strawberry.field(
        default_factory=dict,
        description="The fixed hyperparameters, the same for every trial; left-out ones that "
        "are not searched take their defaults.",
    )
    n_trials: int = 20
    parallelism: int = strawberry.field(default=1, description="Trials running at once.")
    time_budget_seconds: float | None = strawberry.field(
        default=None, description="After it no trial starts; those running finish."
    )
    sampler: SweepSampler = SweepSampler.TPE
    pruner: SweepPruner = SweepPruner.NONE
    validation_fraction: float = 0.2
    seed: int = 0
    model_name: str | None = None
    promote_to: str | None = strawberry.field(
        default=None,
        description="An alias to move to the best trial's version when the sweep succeeds, "
        "through the model's promotion gates. `production` needs maintainer.",
    )


@strawberry.type
class SweepSuccess:
    sweep: Sweep


@strawberry.type
class PromoteSweepTrialSuccess:
    sweep: Sweep
    model_version: ModelVersion


CreateSweepResult = Annotated[
    SweepSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("CreateSweepResult"),
]
CancelSweepResult = Annotated[
    SweepSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("CancelSweepResult"),
]
PromoteSweepTrialResult = Annotated[
    PromoteSweepTrialSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("PromoteSweepTrialResult"),
]
