"""Sweeps' studies in Optuna's relational storage, on the platform's PostgreSQL.

The storage's tables are in the `optuna` schema, created by the platform's migrations (revision
0009); `StudyStore` opens them without letting Optuna create anything, and Optuna's own
compatibility check still runs, so a version of Optuna whose schema differs fails loudly rather
than writing into tables it does not know. Optuna's storage is synchronous (SQLAlchemy, on
psycopg), so every call runs in a thread, never on the event loop.

Samplers and pruners are not stored by Optuna: every process builds them again from the sweep's
spec. A sampler gets a seed that moves on with each trial, so that two processes asking for the
same sweep's next trial do not draw the same point. TPE runs with the constant liar when trials
run at once, so that it does not propose again what a running trial is already trying.
"""

from __future__ import annotations

import asyncio
import math
import threading
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from aiaas.core.errors import ConfigError
from aiaas.core.platform import ProcessService

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

OPTUNA_SCHEMA = "optuna"
ResultT = TypeVar("ResultT")

optuna.logging.set_verbosity(optuna.logging.WARNING)


def storage_url(database_url: str) -> str:
    """The platform's database as a SQLAlchemy URL on psycopg, which Optuna's storage needs."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


class StudyStore:
    """This process's handle on Optuna's storage, opened on first use in a worker thread."""

    def __init__(self, database_url: str) -> None:
        self._url = storage_url(database_url)
        self._storage: optuna.storages.RDBStorage | None = None
        self._opening = threading.Lock()

    def _open(self) -> optuna.storages.RDBStorage:
        with self._opening:
            if self._storage is None:
                self._storage = optuna.storages.RDBStorage(
                    self._url,
                    engine_kwargs={
                        "connect_args": {"options": f"-c search_path={OPTUNA_SCHEMA}"},
                        "pool_pre_ping": True,
                    },
                    skip_table_creation=True,
                )
            return self._storage

    async def run(self, work: Callable[..., ResultT], *arguments: Any) -> ResultT:
        """`work(storage, *arguments)` in a thread."""

        def call() -> ResultT:
            return work(self._open(), *arguments)

        return await asyncio.to_thread(call)

    async def close(self) -> None:
        if self._storage is not None:
            storage, self._storage = self._storage, None
            await asyncio.to_thread(storage.engine.dispose)


def _build_store(platform: Platform) -> StudyStore:
    if platform.config.database_url is None:
        raise ConfigError("database_url (AIAAS_DATABASE_URL) is not set")
    return StudyStore(str(platform.config.database_url))


STUDY_STORE: ProcessService[StudyStore] = ProcessService(
    "optuna-studies", _build_store, StudyStore.close
)


def distributions(space: Sequence[Mapping[str, Any]]) -> dict[str, BaseDistribution]:
    made: dict[str, BaseDistribution] = {}
    for dimension in space:
        kind = dimension["kind"]
        if kind == "categorical":
            made[dimension["name"]] = CategoricalDistribution(dimension["choices"])
        elif kind == "int":
            made[dimension["name"]] = IntDistribution(
                dimension["low"],
                dimension["high"],
                log=dimension["log"],
                step=dimension["step"] or 1,
            )
        else:
            made[dimension["name"]] = FloatDistribution(
                dimension["low"], dimension["high"], log=dimension["log"], step=dimension["step"]
            )
    return made


def make_sampler(spec: Mapping[str, Any], seed: int, parallel: bool) -> optuna.samplers.BaseSampler:
    name = spec["sampler"]
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cma_es":
        return optuna.samplers.CmaEsSampler(seed=seed)
    # The constant liar is marked experimental (its interface is all that may change). Warning
    # filters are process-wide, not per thread: one lock keeps two threads from restoring each
    # other's filters midway.
    with _QUIET_CONSTRUCTION, warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=parallel)


_QUIET_CONSTRUCTION = threading.Lock()


def max_resource(spec: Mapping[str, Any], fixed: Mapping[str, Any]) -> int | str:
    """The most epochs a trial may run, which successive halving and Hyperband divide into
    rungs; Optuna's estimate from finished trials where the trainer has no `epochs`."""
    for dimension in spec["search_space"]:
        if dimension["name"] == "epochs" and dimension["kind"] == "int":
            return int(dimension["high"])
    epochs = fixed.get("epochs")
    return int(epochs) if isinstance(epochs, int) and epochs >= 1 else "auto"


def make_pruner(spec: Mapping[str, Any], fixed: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    name = spec["pruner"]
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max_resource(spec, fixed), reduction_factor=3
        )
    return optuna.pruners.NopPruner()


@dataclass(frozen=True)
class SweepStudy:
    """A sweep's study as one process sees it: its name and how to sample and prune it."""

    name: str
    spec: Mapping[str, Any]
    fixed: Mapping[str, Any]
    seed: int
    parallelism: int

    def sampler_seed(self, trials_so_far: int) -> int:
        """A seed of its own for each trial of each sweep: `seed + n` would have the sweep of
        seed 1 draw what the sweep of seed 0 drew one trial later. The same for the same sweep
        and trial, so a sweep asked again draws again what it drew."""
        return zlib.crc32(f"{self.name}:{self.seed}:{trials_so_far}".encode())

    def load(
        self, storage: optuna.storages.BaseStorage, trials_so_far: int | None = None
    ) -> optuna.Study:
        """The study; with its own sampler only when it is to sample (`trials_so_far` given):
        telling, pruning and reading need none."""
        sampler = (
            optuna.samplers.RandomSampler(seed=self.seed)
            if trials_so_far is None
            else make_sampler(self.spec, self.sampler_seed(trials_so_far), self.parallelism > 1)
        )
        return optuna.load_study(
            study_name=self.name,
            storage=storage,
            sampler=sampler,
            pruner=make_pruner(self.spec, self.fixed),
        )


def create_study(storage: optuna.storages.BaseStorage, study: SweepStudy) -> None:
    optuna.create_study(
        storage=storage,
        study_name=study.name,
        direction=study.spec["objective"]["direction"],
    )


def delete_study(storage: optuna.storages.BaseStorage, name: str) -> None:
    optuna.delete_study(study_name=name, storage=storage)


@dataclass(frozen=True)
class AskedTrial:
    number: int
    trial_id: int
    params: dict[str, Any]


def ask(storage: optuna.storages.BaseStorage, study: SweepStudy, trials_so_far: int) -> AskedTrial:
    loaded = study.load(storage, trials_so_far)
    trial = loaded.ask(distributions(study.spec["search_space"]))
    return AskedTrial(number=trial.number, trial_id=trial._trial_id, params=dict(trial.params))


TELL_STATES = {
    "COMPLETE": TrialState.COMPLETE,
    "PRUNED": TrialState.PRUNED,
    "FAIL": TrialState.FAIL,
}


def tell(
    storage: optuna.storages.BaseStorage,
    study: SweepStudy,
    trial_id: int,
    state: str,
    value: float | None,
) -> bool:
    """Record a trial's end once: False (and nothing changes) when Optuna has it ended already,
    so that a trial a restarted worker finishes again is never counted twice."""
    if storage.get_trial(trial_id).state.is_finished():
        return False
    loaded = study.load(storage)
    number = storage.get_trial_number_from_id(trial_id)
    if state == "COMPLETE":
        loaded.tell(number, value)
    else:
        loaded.tell(number, state=TELL_STATES[state])
    return True


def report_and_judge(
    storage: optuna.storages.BaseStorage, study: SweepStudy, trial_id: int, epoch: int, value: float
) -> bool:
    """Record a trial's objective at the end of an epoch; True when its pruner says to stop.
    Recording an epoch again (a trial resumed from a checkpoint) overwrites it."""
    if not math.isfinite(value):
        return False
    trial = storage.get_trial(trial_id)
    if trial.state.is_finished():
        return False
    storage.set_trial_intermediate_value(trial_id, epoch, value)
    loaded = study.load(storage)
    return bool(loaded.pruner.prune(loaded, storage.get_trial(trial_id)))


def fail_unfinished(storage: optuna.storages.BaseStorage, study: SweepStudy) -> int:
    """End every trial Optuna still has running (one asked for by a process that died before
    its job existed): a finished sweep leaves none behind."""
    loaded = study.load(storage)
    unfinished = loaded.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in unfinished:
        loaded.tell(trial.number, state=TrialState.FAIL)
    return len(unfinished)


def importances(storage: optuna.storages.BaseStorage, study: SweepStudy) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) over the completed trials; empty until two have
    completed with different parameters, when there is nothing to tell them apart."""
    loaded = study.load(storage)
    completed = loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(completed) < 2 or len({repr(trial.params) for trial in completed}) < 2:
        return {}
    try:
        found = optuna.importance.get_param_importances(
            loaded, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
    except (ValueError, RuntimeError):
        return {}
    return {name: float(value) for name, value in found.items()}


def intermediate_values(
    storage: optuna.storages.BaseStorage, study: SweepStudy
) -> dict[int, dict[int, float]]:
    """Each trial's objective at the end of each epoch it reported, by trial number."""
    loaded = study.load(storage)
    return {
        trial.number: {int(step): float(value) for step, value in trial.intermediate_values.items()}
        for trial in loaded.get_trials(deepcopy=False)
    }
