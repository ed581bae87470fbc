"""Sweeps and their trials as the platform stores them, and their live event stream.

A sweep's row says what it asked for (`spec`) and how it stands; a trial's row links an Optuna
trial to the training job that runs it, and mirrors the trial's end (state, value) once it is
known. Optuna's storage holds the rest of the search (`sweep_studies`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiaas.core.errors import NotFoundError
from aiaas.core.event_streams import EventStream, EventStreamRelay, publish_job_events_quietly
from aiaas.core.pagination import Order, Page, fetch_page
from aiaas.core.platform import ProcessService
from aiaas.core.storage import Connection
from aiaas.core.training.sweep_studies import SweepStudy

if TYPE_CHECKING:
    from aiaas.core.platform import Platform


class SweepState(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class TrialState(StrEnum):
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"


SWEEP_STREAM = EventStream(
    "aiaas:sweep-events", frozenset({SweepState.SUCCEEDED, SweepState.FAILED, SweepState.CANCELLED})
)
SWEEP_EVENTS: ProcessService[EventStreamRelay] = ProcessService(
    "sweep-events",
    lambda platform: EventStreamRelay(platform.redis, stream=SWEEP_STREAM),
    close=EventStreamRelay.close,
)
"""This process's relay of sweeps' event streams to their subscribers."""


async def publish_sweep_events(
    platform: Platform, sweep_id: UUID, events: Sequence[Mapping[str, Any]]
) -> None:
    await publish_job_events_quietly(platform.redis, sweep_id, events, stream=SWEEP_STREAM)


@dataclass(frozen=True)
class Sweep:
    id: UUID
    project_id: UUID
    state: SweepState
    spec: dict[str, Any]
    study_name: str
    n_trials: int
    parallelism: int
    deadline_at: datetime | None
    reason: str | None
    halted_reason: str | None
    best_trial_number: int | None
    promoted_version_id: UUID | None
    created_by: UUID | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    cancel_requested_at: datetime | None

    @property
    def study(self) -> SweepStudy:
        return SweepStudy(
            name=self.study_name,
            spec=self.spec,
            fixed=self.spec["hyperparameters"],
            seed=int(self.spec["seed"]),
            parallelism=self.parallelism,
        )

    @property
    def objective_metric(self) -> str:
        return str(self.spec["objective"]["metric"])

    @property
    def maximize(self) -> bool:
        return bool(self.spec["objective"]["direction"] == "maximize")


@dataclass(frozen=True)
class SweepTrial:
    sweep_id: UUID
    number: int
    optuna_trial_id: int
    job_id: UUID
    params: dict[str, Any]
    state: TrialState
    value: float | None
    pruned_at_epoch: int | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class SweepTrialLink:
    """The trial a training job runs: carried in its payload, recorded with it."""

    sweep_id: UUID
    number: int
    trial_id: int
    params: Mapping[str, Any]

    def as_payload(self) -> dict[str, Any]:
        return {"id": str(self.sweep_id), "number": self.number, "trial_id": self.trial_id}

    async def record(self, connection: Connection, job_id: UUID) -> None:
        await connection.execute(
            "INSERT INTO sweep_trials (sweep_id, number, optuna_trial_id, job_id, params) "
            "VALUES ($1, $2, $3, $4, $5)",
            self.sweep_id,
            self.number,
            self.trial_id,
            job_id,
            dict(self.params),
        )


SWEEP_COLUMNS = (
    "id, project_id, state, spec, study_name, n_trials, parallelism, deadline_at, reason, "
    "halted_reason, best_trial_number, promoted_version_id, created_by, created_at, "
    "updated_at, finished_at, cancel_requested_at"
)
TRIAL_COLUMNS = (
    "sweep_id, number, optuna_trial_id, job_id, params, state, value, pruned_at_epoch, "
    "started_at, finished_at"
)


def to_sweep(row: Any) -> Sweep:
    values = dict(row)
    values["state"] = SweepState(values["state"])
    return Sweep(**values)


def to_trial(row: Any) -> SweepTrial:
    values = dict(row)
    values["state"] = TrialState(values["state"])
    return SweepTrial(**values)


async def get_sweep(connection: Connection, sweep_id: UUID) -> Sweep:
    row = await connection.fetchrow(f"SELECT {SWEEP_COLUMNS} FROM sweeps WHERE id = $1", sweep_id)
    if row is None:
        raise NotFoundError("no such sweep")
    return to_sweep(row)


async def lock_sweep(connection: Connection, sweep_id: UUID) -> Sweep:
    row = await connection.fetchrow(
        f"SELECT {SWEEP_COLUMNS} FROM sweeps WHERE id = $1 FOR NO KEY UPDATE", sweep_id
    )
    if row is None:
        raise NotFoundError("no such sweep")
    return to_sweep(row)


async def sweeps_by_ids(connection: Connection, ids: list[UUID]) -> dict[UUID, Sweep]:
    rows = await connection.fetch(
        f"SELECT {SWEEP_COLUMNS} FROM sweeps WHERE id = ANY($1::uuid[])", ids
    )
    return {row["id"]: to_sweep(row) for row in rows}


async def list_sweeps(
    connection: Connection, project_id: UUID, *, first: int | None, after: str | None
) -> Page[Sweep]:
    """A project's sweeps, newest first."""
    return await fetch_page(
        connection,
        query=f"SELECT {SWEEP_COLUMNS} FROM sweeps",
        conditions=["project_id = $1"],
        arguments=[project_id],
        first=first,
        after=after,
        to_item=to_sweep,
        order=Order(newest_first=True),
    )


async def trials_of(connection: Connection, sweep_ids: list[UUID]) -> dict[UUID, list[SweepTrial]]:
    rows = await connection.fetch(
        f"SELECT {TRIAL_COLUMNS} FROM sweep_trials WHERE sweep_id = ANY($1::uuid[]) "
        "ORDER BY sweep_id, number",
        sweep_ids,
    )
    found: dict[UUID, list[SweepTrial]] = {sweep_id: [] for sweep_id in sweep_ids}
    for row in rows:
        found[row["sweep_id"]].append(to_trial(row))
    return found


async def trials_by_jobs(connection: Connection, job_ids: list[UUID]) -> dict[UUID, SweepTrial]:
    rows = await connection.fetch(
        f"SELECT {TRIAL_COLUMNS} FROM sweep_trials WHERE job_id = ANY($1::uuid[])", job_ids
    )
    return {row["job_id"]: to_trial(row) for row in rows}


def best_of(sweep: Sweep, trials: Sequence[SweepTrial]) -> SweepTrial | None:
    """The completed trial with the best value; the earliest among equals."""
    completed = [t for t in trials if t.state is TrialState.COMPLETE and t.value is not None]
    if not completed:
        return None
    sign = -1.0 if sweep.maximize else 1.0
    return min(completed, key=lambda trial: (sign * float(trial.value or 0.0), trial.number))
