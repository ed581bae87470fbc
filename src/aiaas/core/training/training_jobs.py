"""Training jobs: submitting one, cancelling it, and what the worker does to run it.

`submit_training_job` vets everything it can before a job exists (the trainer, its typed
hyperparameters, the target and features against the version's schema, the split, the version's
quality gate) and reports every problem at once. The job runs in a worker
(`run_training`): the trainer's `fit` runs in a thread, its progress flows to the job's Redis
Stream (live, throttled for people) and to the metric history in PostgreSQL (every step, in
COPY batches), and a successful job registers a model version.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.data.datasets import (
    datasets_by_ids,
    get_version,
    lock_live_version,
    read_version_table,
)
from aiaas.core.data.quality import require_usable_for_training
from aiaas.core.errors import ConflictError, InputError, NotFoundError
from aiaas.core.event_streams import publish_job_events_quietly
from aiaas.core.governance.vault import VAULT
from aiaas.core.jobs import (
    Job,
    JobCancelledError,
    JobState,
    cancel_queued_job,
    enqueue_job,
    get_job,
    insert_job,
    jobs_by_ids,
    publish_state,
    request_cancel,
)
from aiaas.core.serialization import finite_or_none, json_safe
from aiaas.core.trainers import (
    Progress,
    TrainedModel,
    Trainer,
    TrainingCancelled,
    TrainingReporter,
    TrainingRun,
    split_sizes,
    vet_hyperparameters,
)
from aiaas.core.training.metric_history import MetricWriter, drop_points_after, latest_metrics
from aiaas.core.training.registry import (
    ModelVersion,
    NewModelVersion,
    check_model_name,
    model_versions_by_jobs,
    register_model_version,
)

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

TRAINING_JOB = "training"
MAX_FEATURES = 10_000
LIVE_PROGRESS_INTERVAL_S = 0.2
"""Live progress is for people watching: at most one progress event per interval goes to the
stream (the latest one), while the metric history keeps every step. Five a second keeps a chart
moving, and keeps the API's work per subscriber small when a hundred people watch one job."""
STOP_POLL_INTERVAL_S = 0.25

# The column types trainers are told about, by aiaas's logical column type.
TRAINER_COLUMN_TYPES = {
    "integer": "int64",
    "float": "float64",
    "boolean": "bool",
    "string": "string",
    "timestamp": "timestamp",
    "date": "date",
}


@dataclass(frozen=True, kw_only=True)
class TrainingRequest:
    dataset_version_id: UUID
    trainer: str
    target: str
    features: Sequence[str] | None = None
    """None: every column but the target."""
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    validation_fraction: float = 0.2
    seed: int = 0
    model_name: str | None = None
    """None: the dataset's name."""


def trainer_column_types(columns: Mapping[str, str]) -> dict[str, str]:
    return {name: TRAINER_COLUMN_TYPES.get(kind, kind) for name, kind in columns.items()}


def _vet_trainer(
    platform: Platform, request: TrainingRequest, problems: dict[str, str]
) -> tuple[Trainer | None, dict[str, Any]]:
    """The trainer and its full hyperparameters (defaults filled in), noting what is wrong."""
    names = [spec.name for spec in platform.registries.trainers]
    if request.trainer not in names:
        problems["trainer"] = f"unknown trainer {request.trainer!r}; known: {', '.join(names)}"
        return None, {}
    trainer = platform.trainer(request.trainer)
    if not isinstance(request.hyperparameters, Mapping):
        problems["hyperparameters"] = "must be an object"
        return trainer, {}
    values, wrong = vet_hyperparameters(trainer.hyperparameters(), request.hyperparameters)
    problems.update({f"hyperparameters.{name}": problem for name, problem in wrong.items()})
    return trainer, values


def _vet_columns(
    trainer: Trainer | None,
    request: TrainingRequest,
    columns: Mapping[str, str],
    values: Mapping[str, Any],
    problems: dict[str, str],
) -> list[str]:
    """The feature columns, noting what is wrong with them and with the target."""
    types = trainer_column_types(columns)
    if request.target not in columns:
        problems["target"] = f"no column {request.target!r} in the dataset version"
    elif trainer is not None:
        problem = trainer.target_problem(types[request.target])
        if problem is not None:
            problems["target"] = problem
    features = (
        [name for name in columns if name != request.target]
        if request.features is None
        else list(request.features)
    )
    unknown = [name for name in features if name not in columns]
    if unknown:
        problems["features"] = f"no such columns: {', '.join(unknown[:20])}"
    elif request.target in features:
        problems["features"] = "the target cannot also be a feature"
    elif not features or len(features) > MAX_FEATURES or len(set(features)) != len(features):
        problems["features"] = f"give 1 to {MAX_FEATURES} distinct feature columns"
    elif trainer is not None and not any(k.startswith("hyperparameters") for k in problems):
        wrong = trainer.feature_problems({name: types[name] for name in features}, values)
        problems.update({f"features.{name}": problem for name, problem in wrong.items()})
    return features


def _vet(
    platform: Platform, request: TrainingRequest, columns: Mapping[str, str], row_count: int
) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """The full hyperparameters, the features, and every problem found."""
    problems: dict[str, str] = {}
    trainer, values = _vet_trainer(platform, request, problems)
    features = _vet_columns(trainer, request, columns, values, problems)
    if not 0 <= request.validation_fraction < 1:
        problems["validationFraction"] = "must be at least 0 and below 1"
    elif split_sizes(row_count, request.validation_fraction).train == 0:
        problems["validationFraction"] = (
            f"the training split would be empty ({row_count} usable rows)"
        )
    if not 0 <= request.seed < 2**31:
        problems["seed"] = "must be between 0 and 2147483647"
    return values, features, problems


def _usable_rows(row_count: int, column_stats: Mapping[str, Any], target: str) -> int:
    """Rows with a target: the only ones a trainer can learn from."""
    null_fraction = float(column_stats.get(target, {}).get("null_fraction", 0.0))
    return round(row_count * (1.0 - null_fraction))


async def submit_training_job(
    platform: Platform,
    actor: Principal,
    request: TrainingRequest,
    *,
    request_id: str | None = None,
) -> Job:
    async with platform.metadata.acquire() as connection:
        version = await get_version(connection, request.dataset_version_id)
        dataset = (await datasets_by_ids(connection, [version.dataset_id]))[version.dataset_id]
    async with AuditedChange(
        platform, actor, "training.submit", request_id, project_id=version.project_id
    ) as change:
        # Locked until the job is recorded, so that a deletion of the version either sees the
        # job as its user or happens first and is seen here.
        await lock_live_version(change.connection, version.id)
        rows = _usable_rows(version.row_count, version.column_stats, request.target)
        values, features, problems = _vet(platform, request, version.column_types, rows)
        model_name = request.model_name or dataset.name
        try:
            check_model_name(model_name)
        except InputError as exc:
            problems.update(exc.field_errors)
        try:
            await require_usable_for_training(change.connection, version.id)
        except InputError as exc:
            problems.update(exc.field_errors)
        if problems:
            raise InputError(
                f"the training job cannot run: {len(problems)} problem(s)",
                field_errors=problems,
            )
        payload = {
            "dataset_version_id": str(version.id),
            "trainer": request.trainer,
            "target": request.target,
            "features": features,
            "hyperparameters": values,
            "validation_fraction": request.validation_fraction,
            "seed": request.seed,
            "model_name": model_name,
        }
        job = await insert_job(
            change.connection,
            project_id=version.project_id,
            kind=TRAINING_JOB,
            payload=payload,
            created_by=actor.user_id,
        )
        await change.record(
            object_type="job",
            object_id=str(job.id),
            project_id=version.project_id,
            details={"kind": TRAINING_JOB, **payload},
        )
    await publish_state(platform, job)
    await enqueue_job(platform, job.id)
    return job


async def cancel_training_job(
    platform: Platform, actor: Principal, job_id: UUID, *, request_id: str | None = None
) -> Job:
    """A queued job is cancelled at once; a running one stops at its next step boundary."""
    async with platform.metadata.acquire() as connection:
        job = await get_job(connection, job_id)
    if job is None or job.kind != TRAINING_JOB:
        raise NotFoundError("no such training job")
    async with AuditedChange(
        platform, actor, "training.cancel", request_id, project_id=job.project_id
    ) as change:
        row = await change.connection.fetchrow(
            "SELECT state FROM jobs WHERE id = $1 FOR UPDATE", job_id
        )
        state = JobState(row["state"])
        if state not in (JobState.QUEUED, JobState.RUNNING):
            raise ConflictError(f"the job is {state.value} already; there is nothing to cancel")
        if state is JobState.QUEUED:
            cancelled = await cancel_queued_job(
                change.connection, job_id, f"cancelled by {actor.username} before it started"
            )
        else:
            asked = await request_cancel(
                change.connection, job_id, f"cancelled by {actor.username}"
            )
            cancelled = None
        await change.record(
            object_type="job",
            object_id=str(job_id),
            project_id=job.project_id,
            details={"state": state.value},
        )
    if cancelled is not None:
        await publish_state(platform, cancelled)
        return cancelled
    return asked


# Running ------------------------------------------------------------------------------------


_END_OF_EVENTS = None
"""Put in the outbox after the last event: the relay publishes what it holds, then stops."""


class WorkerReporter(TrainingReporter):
    """Carries progress from the training thread to the event loop without making the thread
    wait: every step's metrics go to the metric writer's buffer, and the latest progress, at
    most once per `LIVE_PROGRESS_INTERVAL_S`, to the live stream."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        outbox: asyncio.Queue[dict[str, Any] | None],
        writer: MetricWriter,
        job_id: UUID,
        platform: Platform,
    ) -> None:
        self._loop = loop
        self._outbox = outbox
        self._writer = writer
        self._job_id = job_id
        self._platform = platform
        self._last_live = 0.0
        self.stop = threading.Event()
        self.last_checkpoint = 0

    def _send(self, event: dict[str, Any]) -> None:
        self._loop.call_soon_threadsafe(self._outbox.put_nowait, event)

    def _wait_for(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def resumed(self, step: int) -> None:
        # Before any new point is written: the rows after the checkpoint are written again.
        dropped = self._wait_for(_drop_points_after(self._platform, self._job_id, step))
        self.last_checkpoint = step
        self._send({"type": "resumed", "step": step, "dropped_points": dropped})

    def progress(self, progress: Progress) -> None:
        # A diverged run's NaN is kept in the history; live events say null.
        self._writer.add(progress.step, progress.metrics)
        now = time.monotonic()
        if now - self._last_live >= LIVE_PROGRESS_INTERVAL_S or progress.step == (
            progress.total_steps
        ):
            self._last_live = now
            self._send(
                {
                    "type": "progress",
                    "step": progress.step,
                    "total_steps": progress.total_steps,
                    "epoch": progress.epoch,
                    "metrics": json_safe(progress.metrics),
                    "examples_per_s": finite_or_none(progress.examples_per_s),
                    "eta_s": finite_or_none(progress.eta_s),
                }
            )

    def checkpointing(self, step: int) -> None:
        # Every point up to the checkpoint is committed before the checkpoint exists: a resume
        # from it drops only what came after, so the history can have no gap, even if the
        # worker dies the moment the checkpoint is written.
        self._wait_for(self._writer.flush())

    def checkpointed(self, step: int) -> None:
        self.last_checkpoint = step
        self._send({"type": "checkpoint", "step": step})

    def should_stop(self) -> bool:
        return self.stop.is_set()


async def _drop_points_after(platform: Platform, job_id: UUID, step: int) -> int:
    async with platform.metadata.acquire() as connection:
        return await drop_points_after(connection, job_id, step)


async def _relay_events(
    platform: Platform, job_id: UUID, outbox: asyncio.Queue[dict[str, Any] | None]
) -> None:
    """Publish what the reporter sends, in batches: one round trip however many piled up."""
    while True:
        events = [await outbox.get()]
        while not outbox.empty():
            events.append(outbox.get_nowait())
        ended = _END_OF_EVENTS in events
        await publish_job_events_quietly(
            platform.redis, job_id, [event for event in events if event is not None]
        )
        if ended:
            return


async def _watch_for_stop(platform: Platform, job: Job, stop: threading.Event) -> None:
    """Stop the trainer once the job is cancelled, or once this worker no longer holds it."""
    while not stop.is_set():
        await asyncio.sleep(STOP_POLL_INTERVAL_S)
        try:
            async with platform.metadata.acquire() as connection:
                row = await connection.fetchrow(
                    "SELECT state, claimed_by, cancel_requested_at FROM jobs WHERE id = $1",
                    job.id,
                )
        except Exception:  # a passing database failure must not end the watch
            logger.warning("job %s: could not check for cancellation", job.id, exc_info=True)
            continue
        if (
            row is None
            or row["cancel_requested_at"] is not None
            or row["state"] != JobState.RUNNING.value
            or row["claimed_by"] != job.claimed_by
        ):
            stop.set()


def _training_table(table: pa.Table, target: str, features: Sequence[str]) -> pa.Table:
    selected = table.select([*features, target])
    return selected.filter(pc.is_valid(selected.column(target)))


async def _bundle_chunks(bundle: bytes) -> AsyncIterator[bytes]:
    yield bundle


async def _train(platform: Platform, job: Job, run: TrainingRun) -> TrainedModel:
    """`fit` in a thread, with its progress relayed and its cancellation watched."""
    trainer = platform.trainer(job.payload["trainer"])
    loop = asyncio.get_running_loop()
    outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    writer = MetricWriter(platform.metadata, job.id)
    await writer.start()
    reporter = WorkerReporter(loop, outbox, writer, job.id, platform)
    relay = asyncio.create_task(_relay_events(platform, job.id, outbox), name=f"events-{job.id}")
    watch = asyncio.create_task(
        _watch_for_stop(platform, job, reporter.stop), name=f"stop-{job.id}"
    )
    try:
        return await asyncio.to_thread(trainer.fit, run, reporter)
    except TrainingCancelled:
        raise JobCancelledError(
            f"stopped at a step boundary; last checkpoint at step {reporter.last_checkpoint}"
        ) from None
    finally:
        reporter.stop.set()
        watch.cancel()
        # Every point reported is committed before the job's outcome is: a chart never misses
        # the last steps of a finished job.
        try:
            await writer.close()
        finally:
            outbox.put_nowait(_END_OF_EVENTS)
            await asyncio.gather(relay, watch, return_exceptions=True)


async def _register(
    platform: Platform, job: Job, version_id: UUID, trained: TrainedModel
) -> ModelVersion:
    payload = job.payload
    stored = await platform.service(VAULT).store(job.project_id, _bundle_chunks(trained.bundle))
    async with AuditedChange(
        platform, None, "model.register", None, project_id=job.project_id
    ) as change:
        holder = await change.connection.fetchval(
            "SELECT claimed_by FROM jobs WHERE id = $1 FOR UPDATE", job.id
        )
        if holder != job.claimed_by:
            # Another worker took the job over: its outcome is that worker's to record.
            raise RuntimeError("the job was claimed by another worker while it trained")
        return await register_model_version(
            change,
            NewModelVersion(
                project_id=job.project_id,
                model_name=payload["model_name"],
                job_id=job.id,
                dataset_version_id=version_id,
                trainer=payload["trainer"],
                format=trained.format,
                artifact_key=stored.key,
                size_bytes=stored.size_bytes,
                signature=trained.signature.as_json(),
                metrics=json_safe(trained.metrics),
                hyperparameters=payload["hyperparameters"],
                created_by=job.created_by,
            ),
        )


async def run_training(platform: Platform, job: Job) -> str:
    """The job handler: train, evaluate, register the model version. Returns the job's note."""
    payload = job.payload
    async with platform.metadata.acquire() as connection:
        registered = (await model_versions_by_jobs(connection, [job.id])).get(job.id)
        version = await get_version(connection, UUID(payload["dataset_version_id"]))
    checkpoint_dir = platform.config.resolved_checkpoint_dir / str(job.id)
    if registered is None:
        table = _training_table(
            await read_version_table(platform, version), payload["target"], payload["features"]
        )
        run = TrainingRun(
            table=table,
            target=payload["target"],
            features=tuple(payload["features"]),
            hyperparameters=payload["hyperparameters"],
            validation_fraction=float(payload["validation_fraction"]),
            seed=int(payload["seed"]),
            checkpoint_dir=checkpoint_dir,
            checkpoint_every_steps=platform.config.checkpoint_every_steps,
        )
        trained = await _train(platform, job, run)
        registered = await _register(platform, job, version.id, trained)
        await publish_job_events_quietly(
            platform.redis,
            job.id,
            [
                {
                    "type": "model",
                    "model_version_id": str(registered.id),
                    "number": registered.number,
                    "metrics": registered.metrics,
                }
            ],
        )
    # Else an earlier run registered it and died before recording the outcome: nothing to
    # train again. The weights are registered; the checkpoints only served to resume.
    await asyncio.to_thread(shutil.rmtree, checkpoint_dir, True)
    return f"registered {payload['model_name']} version {registered.number}"


# Comparing ----------------------------------------------------------------------------------

MAX_COMPARED_JOBS = 20


@dataclass(frozen=True)
class ComparedJob:
    job: Job
    hyperparameters: dict[str, Any]
    final_metrics: dict[str, Any]
    model_version_id: UUID | None

    def as_json(self) -> dict[str, Any]:
        return {
            "jobId": str(self.job.id),
            "state": self.job.state.value,
            "trainer": self.job.payload["trainer"],
            "seed": self.job.payload["seed"],
            "hyperparameters": self.hyperparameters,
            "finalMetrics": json_safe(self.final_metrics),
            "modelVersionId": str(self.model_version_id) if self.model_version_id else None,
        }


async def compare_jobs(
    connection: Any, project_id: UUID, job_ids: Sequence[UUID]
) -> list[ComparedJob]:
    """The project's training jobs among `job_ids`, in the order given: their hyperparameters
    and final metrics (the registered evaluation, else the latest training values)."""
    if len(job_ids) > MAX_COMPARED_JOBS:
        raise InputError(
            f"compare at most {MAX_COMPARED_JOBS} jobs at once",
            field_errors={"ids": f"at most {MAX_COMPARED_JOBS}"},
        )
    found = await jobs_by_ids(connection, list(job_ids))
    mine = [
        found[job_id]
        for job_id in dict.fromkeys(job_ids)
        if job_id in found
        and found[job_id].project_id == project_id
        and found[job_id].kind == TRAINING_JOB
    ]
    ids = [job.id for job in mine]
    registered = await model_versions_by_jobs(connection, ids)
    latest = await latest_metrics(connection, ids)
    return [
        ComparedJob(
            job=job,
            hyperparameters=dict(job.payload["hyperparameters"]),
            final_metrics=(
                dict(registered[job.id].metrics) if job.id in registered else latest.get(job.id, {})
            ),
            model_version_id=registered[job.id].id if job.id in registered else None,
        )
        for job in mine
    ]
