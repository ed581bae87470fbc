"""What a sweep asks for, vetted against its trainer before anything exists.

A sweep searches some of a trainer's typed hyperparameters (`SearchDimension`: an int or float
range, on a log scale or in steps, or a set of choices) and fixes the others; each trial trains
with one point of that space. Every dimension is checked against the hyperparameter it names:
its type, its declared bounds and choices. The objective must be a figure the trainer reports
(`Trainer.objective_metrics`), and its direction defaults to the one that improves it.

`vet_sweep` reports every problem at once, as `submit_training_job` does, so a refused sweep is
refused whole. Nothing here imports Optuna: `sweep_studies` turns a vetted spec into its
distributions, samplers and pruners.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from aiaas.core.trainers import Direction, HyperParameter, Trainer

MAX_DIMENSIONS = 20
MAX_CHOICES = 100
MAX_TRIALS = 1000
MAX_PARALLELISM = 32
MAX_TIME_BUDGET_S = 7 * 24 * 3600
ALIAS_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")


class Sampler(StrEnum):
    TPE = "tpe"
    RANDOM = "random"
    CMA_ES = "cma_es"


class Pruner(StrEnum):
    NONE = "none"
    MEDIAN = "median"
    SUCCESSIVE_HALVING = "successive_halving"
    HYPERBAND = "hyperband"


@dataclass(frozen=True, kw_only=True)
class SearchDimension:
    """One searched hyperparameter: `low`..`high` (inclusive, optionally `log` or in `step`s)
    for numbers, or `choices` for any type."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: Sequence[Any] | None = None


@dataclass(frozen=True, kw_only=True)
class SweepRequest:
    dataset_version_id: UUID
    trainer: str
    target: str
    search_space: Sequence[SearchDimension]
    objective_metric: str
    direction: Direction | None = None
    """None: the direction that improves `objective_metric`."""
    features: Sequence[str] | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    """The fixed ones, the same for every trial; the searched ones may not be among them."""
    n_trials: int = 20
    parallelism: int = 1
    time_budget_s: float | None = None
    """After it, no trial starts; those running finish."""
    sampler: Sampler = Sampler.TPE
    pruner: Pruner = Pruner.NONE
    validation_fraction: float = 0.2
    seed: int = 0
    model_name: str | None = None
    promote_to: str | None = None
    """An alias the best trial's model version is promoted to when the sweep ends."""


def _number_dimension(
    parameter: HyperParameter, dimension: SearchDimension, problems: dict[str, str], where: str
) -> dict[str, Any] | None:
    if parameter.type not in ("int", "float"):
        problems[where] = f"{parameter.name} is a {parameter.type}: give its choices"
        return None
    if dimension.low is None or dimension.high is None:
        problems[where] = "give low and high, or choices"
        return None
    for end in ("low", "high"):
        problem = parameter.problem(getattr(dimension, end))
        if problem is not None:
            problems[f"{where}.{end}"] = problem
    if any(key.startswith(where) for key in problems):
        return None
    low, high = dimension.low, dimension.high
    if low >= high:
        problems[where] = "low must be below high"
    elif dimension.log and low <= 0:
        problems[f"{where}.log"] = "a log scale needs low above 0"
    elif dimension.step is not None and (
        dimension.log or not math.isfinite(dimension.step) or dimension.step <= 0
    ):
        problems[f"{where}.step"] = "a step must be above 0, and not on a log scale"
    elif (
        parameter.type == "int"
        and dimension.step is not None
        and not float(dimension.step).is_integer()
    ):
        problems[f"{where}.step"] = "must be an integer"
    else:
        return {
            "name": parameter.name,
            "kind": parameter.type,
            "low": parameter.coerce(low),
            "high": parameter.coerce(high),
            "log": dimension.log,
            "step": None if dimension.step is None else parameter.coerce(dimension.step),
        }
    return None


def _choice_dimension(
    parameter: HyperParameter, dimension: SearchDimension, problems: dict[str, str], where: str
) -> dict[str, Any] | None:
    choices = dimension.choices
    if choices is None:
        # A flag or a closed set of words searches all its values when none are named.
        if parameter.type == "bool":
            choices = [False, True]
        elif parameter.type == "str" and parameter.choices:
            choices = list(parameter.choices)
        else:
            return _number_dimension(parameter, dimension, problems, where)
    if dimension.low is not None or dimension.high is not None or dimension.log:
        problems[where] = "give either choices, or low and high"
        return None
    coerced = _vet_choices(parameter, choices, problems, where)
    if coerced is None:
        return None
    return {"name": parameter.name, "kind": "categorical", "choices": coerced}


def _vet_choices(
    parameter: HyperParameter, choices: Any, problems: dict[str, str], where: str
) -> list[Any] | None:
    if (
        not isinstance(choices, Sequence)
        or isinstance(choices, str)
        or not 1 <= len(choices) <= MAX_CHOICES
    ):
        problems[f"{where}.choices"] = f"give 1 to {MAX_CHOICES} choices"
        return None
    for index, choice in enumerate(choices):
        problem = parameter.problem(choice)
        if problem is not None:
            problems[f"{where}.choices.{index}"] = problem
            return None
    coerced = [parameter.coerce(choice) for choice in choices]
    if len({repr(choice) for choice in coerced}) != len(coerced):
        problems[f"{where}.choices"] = "choices must be distinct"
        return None
    return coerced


def vet_search_space(
    trainer: Trainer,
    dimensions: Sequence[SearchDimension],
    fixed: Mapping[str, Any],
    problems: dict[str, str],
) -> list[dict[str, Any]]:
    """The search space as stored (one JSON object per dimension), noting what is wrong."""
    known = {parameter.name: parameter for parameter in trainer.hyperparameters()}
    if not 1 <= len(dimensions) <= MAX_DIMENSIONS:
        problems["searchSpace"] = f"give 1 to {MAX_DIMENSIONS} hyperparameters to search"
        return []
    space: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, dimension in enumerate(dimensions):
        where = f"searchSpace.{index}"
        parameter = known.get(dimension.name)
        if parameter is None:
            problems[f"{where}.name"] = (
                f"unknown hyperparameter {dimension.name!r}; known: {', '.join(sorted(known))}"
            )
        elif dimension.name in seen:
            problems[f"{where}.name"] = f"{dimension.name} is searched twice"
        elif dimension.name in fixed:
            problems[f"{where}.name"] = f"{dimension.name} is both fixed and searched"
        else:
            seen.add(dimension.name)
            stored = _choice_dimension(parameter, dimension, problems, where)
            if stored is not None:
                space.append(stored)
    return space


def representative_values(space: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One point of the space (each range's low end, each first choice): what the training
    vetting checks the columns with, since any trial may get it."""
    return {
        dimension["name"]: (
            dimension["choices"][0] if dimension["kind"] == "categorical" else dimension["low"]
        )
        for dimension in space
    }


def _vet_objective(
    trainer: Trainer, request: SweepRequest, problems: dict[str, str]
) -> dict[str, str]:
    reported = trainer.objective_metrics()
    if request.objective_metric not in reported:
        problems["objective.metric"] = (
            f"the trainer reports no metric {request.objective_metric!r}; it reports: "
            f"{', '.join(sorted(reported))}"
        )
        return {}
    direction = request.direction or reported[request.objective_metric]
    if direction not in ("minimize", "maximize"):
        problems["objective.direction"] = "must be minimize or maximize"
    return {"metric": request.objective_metric, "direction": direction}


def _vet_budget(request: SweepRequest, problems: dict[str, str]) -> None:
    if not 1 <= request.n_trials <= MAX_TRIALS:
        problems["nTrials"] = f"must be between 1 and {MAX_TRIALS}"
    if not 1 <= request.parallelism <= MAX_PARALLELISM:
        problems["parallelism"] = f"must be between 1 and {MAX_PARALLELISM}"
    elif request.parallelism > request.n_trials:
        problems["parallelism"] = (
            f"must be at most nTrials ({request.n_trials}): more trials cannot run at once "
            "than the sweep has"
        )
    if request.time_budget_s is not None and not (
        math.isfinite(request.time_budget_s) and 1 <= request.time_budget_s <= MAX_TIME_BUDGET_S
    ):
        problems["timeBudgetSeconds"] = f"must be between 1 and {MAX_TIME_BUDGET_S}"
    if request.validation_fraction <= 0:
        problems["validationFraction"] = (
            "must be above 0: a sweep's objective is measured on the validation split"
        )
    if request.promote_to is not None and not ALIAS_NAME.fullmatch(request.promote_to):
        problems["promoteTo"] = (
            "an alias is 1 to 40 lowercase letters, digits or '-', starting with a letter"
        )


def vet_sweep(trainer: Trainer, request: SweepRequest, problems: dict[str, str]) -> dict[str, Any]:
    """The stored spec of what the sweep searches and optimizes, noting every problem (beyond
    those of the training itself, which `submit_training_job`'s vetting finds)."""
    space = vet_search_space(trainer, request.search_space, request.hyperparameters, problems)
    objective = _vet_objective(trainer, request, problems)
    _vet_budget(request, problems)
    if request.sampler is Sampler.CMA_ES and any(d["kind"] == "categorical" for d in space):
        problems["sampler"] = (
            "CMA-ES searches numbers only: "
            + ", ".join(d["name"] for d in space if d["kind"] == "categorical")
            + " would be categorical; use tpe or random"
        )
    return {
        "search_space": space,
        "objective": objective,
        "sampler": request.sampler.value,
        "pruner": request.pruner.value,
        "time_budget_s": request.time_budget_s,
        "promote_to": request.promote_to,
    }
