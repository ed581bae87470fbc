"""Hyperparameter sweeps: trials of a trainer, each an ordinary training job, sampled and pruned
by the server's Optuna study, until `n_trials` have run or the time budget is spent.

    sweep = project.create_sweep(version, trainer="tabular-classifier", target="cultivar",
        search_space={"learning_rate": {"low": 1e-4, "high": 1e-1, "log": True},
                      "hidden_size": [32, 64, 128]},
        objective="accuracy", n_trials=20, parallelism=4)  # or ("rmse", "minimize")
    sweep.wait()  # a progress bar of trials finished, with the best value so far
    print(sweep.best_trial, sweep.importances)
    version = sweep.promote("staging")  # the best trial's ModelVersion

`wait` follows the sweep's `sweepEvents`, resuming from its last event after a dropped
connection, as `TrainingJob.wait` does.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Required, TypedDict, TypeVar

from aiaas.client.connection import Client
from aiaas.client.deployments import ModelVersion
from aiaas.client.errors import (
    InvalidInputError,
    JobFailedError,
    NotFoundError,
    ServerConnectionError,
    raise_for,
)
from aiaas.client.generated import sweeps as generated
from aiaas.client.generated.documents import SWEEP_EVENTS_DOCUMENT
from aiaas.client.generated.schema_types import (
    CreateSweepInput,
    ObjectiveDirection,
    SearchDimensionInput,
    SweepObjectiveInput,
    SweepPruner,
    SweepSampler,
    SweepState,
    SweepTrialState,
)
from aiaas.client.subscriptions import subscribe
from aiaas.client.uploads import progress_wanted

__all__ = ["HistoryPoint", "SearchSpace", "Sweep", "SweepEvent", "SweepOptions", "SweepTrial"]

SweepEvent = generated.SweepEventsEventSweepEvents
"""One event of a sweep: `type` (state, trial_started, intermediate, trial_finished, promoted,
promotion_refused), `cursor`, and the fields of its type (`trial_number`, `value`...)."""
HistoryPoint = generated.SweepAnalysisQueryNodeSweepHistory
"""A completed trial's objective (`number`, `value`) and the best one up to it (`best_value`)."""
SearchSpace = Mapping[str, Any]
"""Hyperparameter -> a list of choices, or a range: a mapping of `low`, `high`, and `log` or
`step`. An empty mapping searches every value of a flag (or of a word with declared choices)."""

FINISHED = frozenset({SweepState.SUCCEEDED, SweepState.FAILED, SweepState.CANCELLED})
"""A sweep in one of these states changes no more."""
_RANGE_KEYS = frozenset({"low", "high", "log", "step", "choices"})
_AS_GIVEN = "n_trials parallelism features promote_to model_name seed validation_fraction"
"""The options the API takes as they are, under their camelCase names."""
_Choice = TypeVar("_Choice", SweepSampler, SweepPruner, ObjectiveDirection)


class SweepOptions(TypedDict, total=False):
    """What `Project.create_sweep` takes besides the dataset version."""

    trainer: Required[str]
    target: Required[str]
    search_space: Required[SearchSpace]
    objective: Required[str | tuple[str, str]]
    """A figure the trainer reports on the validation split ("accuracy", "rmse"...), judged
    in its usual direction, or (figure, "minimize" | "maximize")."""
    n_trials: int
    parallelism: int
    """Trials running at once, at most `n_trials`."""
    time_budget: float | timedelta
    """Seconds (or a timedelta) after which no trial starts; those running finish."""
    sampler: str
    """tpe (the default), random or cma-es."""
    pruner: str
    """none (the default), median, successive-halving or hyperband."""
    hyperparameters: Mapping[str, Any]
    """The fixed ones, the same every trial; others not searched take their defaults."""
    features: list[str]
    promote_to: str
    """An alias to move to the best trial's version once the sweep succeeds."""
    model_name: str
    seed: int
    validation_fraction: float


def _choice(kind: type[_Choice], value: str | _Choice, field_name: str) -> _Choice:
    """`value` ("cma-es", "CMA_ES", an enum member) as a member of `kind`; an
    `InvalidInputError` naming `field_name` for none, before anything is sent."""
    try:
        return kind(str(value).upper().replace("-", "_"))
    except ValueError:
        known = ", ".join(member.value.lower().replace("_", "-") for member in kind)
        raise InvalidInputError(
            f"{value!r} is no {field_name}", "INVALID_INPUT", {field_name: f"one of {known}"}
        ) from None


def search_dimensions(search_space: SearchSpace) -> list[SearchDimensionInput]:
    """The API's dimensions of `search_space`: a list (or tuple) means choices, a mapping a
    range (or its `choices`)."""
    dimensions: list[SearchDimensionInput] = []
    for name, spec in search_space.items():
        dimension: SearchDimensionInput = {"name": name}
        if isinstance(spec, list | tuple):
            dimension["choices"] = list(spec)
        elif isinstance(spec, Mapping) and set(spec) <= _RANGE_KEYS:
            dimension.update(spec)  # type: ignore[typeddict-item]
        else:
            raise InvalidInputError(
                f"the search space of {name!r} is neither a list of choices nor a range",
                "INVALID_INPUT",
                {f"searchSpace.{name}": "a list of choices, or a mapping of low, high, log, step"},
            )
        dimensions.append(dimension)
    return dimensions


def objective_input(objective: str | tuple[str, str]) -> SweepObjectiveInput:
    if isinstance(objective, str):
        return {"metric": objective}
    metric, direction = objective
    return {"metric": metric, "direction": _choice(ObjectiveDirection, direction, "direction")}


def sweep_input(version_id: str, options: SweepOptions) -> CreateSweepInput:
    """The `createSweep` input of `options` on dataset version `version_id`."""
    sweep: CreateSweepInput = {
        "datasetVersion": version_id,
        "trainer": options["trainer"],
        "target": options["target"],
        "searchSpace": search_dimensions(options["search_space"]),
        "objective": objective_input(options["objective"]),
        "hyperparameters": dict(options.get("hyperparameters") or {}),
    }
    budget = options.get("time_budget")
    if budget is not None:
        seconds = budget.total_seconds() if isinstance(budget, timedelta) else float(budget)
        sweep["timeBudgetSeconds"] = seconds
    if "sampler" in options:
        sweep["sampler"] = _choice(SweepSampler, options["sampler"], "sampler")
    if "pruner" in options:
        sweep["pruner"] = _choice(SweepPruner, options["pruner"], "pruner")
    for option in _AS_GIVEN.split():
        if options.get(option) is not None:
            head, *words = option.split("_")  # n_trials -> nTrials
            name = head + "".join(map(str.title, words))
            sweep[name] = options[option]  # type: ignore[literal-required]
    return sweep


def submit_sweep(client: Client, version_id: str, options: SweepOptions) -> Sweep:
    """Create the sweep (`Project.create_sweep` calls this). `InvalidInputError` names every
    field refused at once (parallelism above n_trials, a hyperparameter the trainer lacks...),
    and no sweep is made then."""
    answer = client.api.create_sweep(input=sweep_input(version_id, options)).create_sweep
    return Sweep.of(client, raise_for(answer).sweep)


@dataclass(frozen=True)
class SweepTrial:
    """One trial: a training job (`job_id`) with one point of the space (`params`)."""

    number: int
    state: SweepTrialState
    value: float | None
    """The objective, once COMPLETE."""
    params: dict[str, Any]
    job_id: str | None
    model_version_id: str | None = None
    """The version it registered, once COMPLETE."""
    pruned_at_epoch: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def of(cls, fields: Any) -> SweepTrial:
        return cls(
            fields.number,
            fields.state,
            fields.value,
            dict(fields.params),
            fields.job.id if fields.job else None,
            fields.model_version.id if fields.model_version else None,
            fields.pruned_at_epoch,
            fields.started_at,
            fields.finished_at,
        )


@dataclass
class Sweep:
    """A sweep as last read: its trials, the best one, and how it ended (`reason`)."""

    client: Client = field(repr=False)
    id: str
    state: SweepState
    trainer: str
    target: str
    metric: str = ""
    direction: ObjectiveDirection = ObjectiveDirection.MAXIMIZE
    n_trials: int = 0
    parallelism: int = 1
    reason: str | None = None
    model_name: str = ""
    promote_to: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    trials: list[SweepTrial] = field(default_factory=list)
    best_trial_number: int | None = None
    promoted_version_id: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    cursor: str | None = None
    """The last event `events()` saw: where following resumes."""

    @classmethod
    def of(cls, client: Client, fields: Any) -> Sweep:
        sweep = cls(client, fields.id, fields.state, fields.trainer, fields.target)
        sweep._read(fields)
        return sweep

    @classmethod
    def get(cls, client: Client, id: str) -> Sweep:
        """The sweep of global id `id`; `NotFoundError` for none the caller may see."""
        return cls.of(client, _node(client, id))

    def _read(self, fields: Any) -> None:
        self.state, self.reason = fields.state, fields.reason
        self.metric, self.direction = fields.objective.metric, fields.objective.direction
        self.n_trials, self.parallelism = fields.n_trials, fields.parallelism
        self.model_name, self.promote_to = fields.model_name, fields.promote_to
        self.hyperparameters = dict(fields.hyperparameters)
        self.trials = [SweepTrial.of(trial) for trial in fields.trials]
        self.best_trial_number = fields.best_trial_number
        promoted = fields.promoted_version
        self.promoted_version_id = promoted.id if promoted is not None else None
        self.created_at, self.finished_at = fields.created_at, fields.finished_at

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def maximize(self) -> bool:
        return self.direction is ObjectiveDirection.MAXIMIZE

    @property
    def best_trial(self) -> SweepTrial | None:
        """The completed trial with the best objective (the first of equals), as last read."""
        if self.best_trial_number is not None:
            for trial in self.trials:
                if trial.number == self.best_trial_number:
                    return trial
        done = [
            t for t in self.trials if t.state is SweepTrialState.COMPLETE and t.value is not None
        ]
        if not done:
            return None
        sign = -1.0 if self.maximize else 1.0
        return min(done, key=lambda trial: (sign * (trial.value or 0.0), trial.number))

    def refresh(self) -> Sweep:
        """Read its state and trials again; answers itself."""
        self._read(_node(self.client, self.id))
        return self

    def cancel(self) -> Sweep:
        """Start no more trials and cancel the running ones; it ends CANCELLED once they have
        stopped. Answers itself as the server then saw it; `ConflictError` once it ended."""
        answer = self.client.api.cancel_sweep(id=self.id).cancel_sweep
        self._read(raise_for(answer).sweep)
        return self

    def promote(self, alias: str, trial_number: int | None = None) -> ModelVersion:
        """Point `alias` of its model at the best trial's version (or trial `trial_number`'s),
        through the model's promotion gates; answers that `ModelVersion`. `ConflictError` for
        a trial that did not complete."""
        answer = self.client.api.promote_sweep_trial(
            id=self.id, alias=alias, trial_number=trial_number
        ).promote_sweep_trial
        promoted = raise_for(answer)
        self._read(promoted.sweep)
        return ModelVersion.of(self.client, promoted.model_version)

    def _analysis(self) -> generated.SweepAnalysisQueryNodeSweep:
        node = self.client.api.sweep_analysis(id=self.id).node
        if not isinstance(node, generated.SweepAnalysisQueryNodeSweep):
            raise NotFoundError(f"sweep {self.id} is gone", "NOT_FOUND")
        return node

    @property
    def history(self) -> list[HistoryPoint]:
        """Its completed trials in order, each with the best objective up to it (asked of the
        server now)."""
        return list(self._analysis().history)

    @property
    def importances(self) -> dict[str, float]:
        """Each searched hyperparameter's importance to the objective (fANOVA, asked of the
        server now), most important first; empty until two trials completed differently."""
        found = self._analysis().importances
        ranked = sorted(found, key=lambda item: -item.importance)
        return {item.name: item.importance for item in ranked}

    @property
    def curves(self) -> dict[int, dict[int, float]]:
        """Each trial's objective by epoch (its learning curve), asked of the server now."""
        return {
            curve.number: {point.epoch: point.value for point in curve.values}
            for curve in self._analysis().curves
        }

    def events(self, timeout: float | None = None) -> Iterator[SweepEvent]:
        """Its events after `cursor` (all of them at first), then live ones until it ends,
        over a WebSocket; after a dropped connection, resumed from the last one seen.
        `TimeoutError` once `timeout` seconds pass before it ends."""

        def variables() -> dict[str, Any]:
            return {"sweepId": self.id, "after": self.cursor}

        client, document = self.client, SWEEP_EVENTS_DOCUMENT
        deadline = None if timeout is None else time.monotonic() + timeout
        for data in subscribe(
            client.url, client.token, document, variables, timeout=client.timeout, deadline=deadline
        ):
            event = generated.SweepEventsEvent.model_validate(data).sweep_events
            self.cursor = event.cursor
            if event.type == "state" and event.state is not None:
                self.state = event.state
            yield event

    def wait(self, progress: bool | None = None, timeout: float | None = None) -> Sweep:
        """Follow it until it ends, with a progress bar (trials finished of `n_trials`, the
        best objective so far) on stderr in a terminal or a notebook unless `progress=False`.
        Answers itself, its trials read again, once SUCCEEDED; `JobFailedError` if it FAILED
        or was CANCELLED, `TimeoutError` if it is still going after `timeout` seconds."""
        try:
            with _trials_progress_bar(progress_wanted(progress), self) as show:
                for event in self.events(timeout):
                    show(event)
        except TimeoutError as exc:
            if isinstance(exc, ServerConnectionError):
                raise  # the server did not answer: not the sweep's time
            raise TimeoutError(
                f"sweep {self.id} is still {self.state.value} after {timeout} s"
            ) from None
        self.refresh()
        if self.state is not SweepState.SUCCEEDED:
            why = f": {self.reason}" if self.reason else ""
            raise JobFailedError(f"sweep {self.id} {self.state.value}{why}", self)
        return self


def _node(client: Client, id: str) -> generated.SweepQueryNodeSweep:
    node = client.api.sweep(id=id).node
    if not isinstance(node, generated.SweepQueryNodeSweep):
        raise NotFoundError(f"no sweep {id!r} (or none you may see)", "NOT_FOUND")
    return node


@contextlib.contextmanager
def _trials_progress_bar(wanted: bool, sweep: Sweep) -> Iterator[Callable[[SweepEvent], None]]:
    """A function that shows each event of `sweep` as trials finished of its `n_trials` and
    the best objective so far; one that does nothing unless `wanted`. Trials are counted by
    number, so that events seen twice (a replay, a resumed stream) count once."""
    if not wanted:
        yield lambda event: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    finished = {t.number for t in sweep.trials if t.state is not SweepTrialState.RUNNING}
    completed = {
        trial.number: trial.value
        for trial in sweep.trials
        if trial.state is SweepTrialState.COMPLETE and trial.value is not None
    }
    pick = max if sweep.maximize else min

    def best() -> str:
        return f"{pick(completed.values()):.4g}" if completed else "-"

    console = Console(stderr=True)
    columns = [
        TextColumn(f"sweep {sweep.trainer} [{{task.fields[state]}}]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("trials"),
        TextColumn(f"best {sweep.metric} {{task.fields[best]}}"),
    ]
    with Progress(*columns, console=console, transient=console.is_terminal) as bar:
        task = bar.add_task(
            "sweep",
            total=sweep.n_trials,
            completed=len(finished),
            state=sweep.state.value,
            best=best(),
        )

        def show(event: SweepEvent) -> None:
            changes: dict[str, Any] = {}
            if event.type == "state" and event.state is not None:
                changes["state"] = event.state.value
            if event.type == "trial_finished" and event.trial_number is not None:
                finished.add(event.trial_number)
                if event.trial_state is SweepTrialState.COMPLETE and event.value is not None:
                    completed[event.trial_number] = event.value
                changes.update(completed=len(finished), best=best())
            bar.update(task, **changes)

        yield show
