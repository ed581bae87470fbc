"""Running a training job in a worker: the trainer's `fit` in a thread, its progress relayed,
its cancellation watched, and the model version it produced registered.

`run_training` is the worker's handler for jobs of kind `TRAINING_JOB`. Progress flows from the
training thread through `WorkerReporter` to the job's Redis Stream (live, throttled for people)
and to the metric history in PostgreSQL (every step, in COPY batches). A run resumed from a
checkpoint drops the points after it first, so that the history has no duplicate; a run whose
version is already registered (it died before recording its outcome) trains nothing again.
Checkpoints go to the artifact store as the trainer writes them, and come back from it to a
worker that resumes the job with none of its own (`checkpoint_uploads`).

A job of a project archived before it registers its model fails, naming the project: an archived
project is read-only. Its registration holds the project open (`ChangeInProject`), so that an
archive committed while the job trains cannot let the version in; a job that finds its project
archived as it starts does not train at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.data.datasets import get_version, read_version_table
from aiaas.core.errors import ConflictError, JobCancelledError, TrainingCancelled
from aiaas.core.event_streams import publish_job_events_quietly
from aiaas.core.governance import VAULT, artifacts_kept_on_success
from aiaas.core.identity.projects import (
    ChangeInProject,
    Project,
    archived_job_result,
    projects_by_ids,
)
from aiaas.core.job_watch import watch_for_stop
from aiaas.core.jobs import Job, lock_job
from aiaas.core.serialization import finite_or_none, json_safe
from aiaas.core.tracing import span
from aiaas.core.trainers import Progress, TrainedModel, TrainingReporter, TrainingRun
from aiaas.core.training.checkpoint_sealing import ProjectCheckpointSealer
from aiaas.core.training.checkpoint_uploads import (
    CheckpointUploads,
    fetch_stored_checkpoints,
    forget_job_checkpoints,
)
from aiaas.core.training.finished_charts import keep_default_charts
from aiaas.core.training.metric_history import drop_points_after
from aiaas.core.training.metric_writer import MetricWriter
from aiaas.core.training.registry import (
    ModelVersion,
    NewModelVersion,
    model_versions_by_jobs,
    register_model_version,
)
from aiaas.core.training.sweep_trials import (
    EpochListener,
    TrialPruning,
    run_trial,
    trial_pruning,
)

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

LIVE_PROGRESS_INTERVAL_S = 0.2
"""Live progress is for people watching: at most one progress event per interval goes to the
stream (the latest one), while the metric history keeps every step. Five a second keeps a chart
moving, and keeps the API's work per subscriber small when a hundred people watch one job."""
STOP_GRACE_S = 2.0
"""How long a stopping worker waits for the trainer to reach a step boundary: within the
seconds a supervisor gives a worker to stop (`aiaas dev` gives 4)."""

_END_OF_EVENTS = None
"""Put in the outbox after the last event: the relay publishes what it holds, then stops."""


class WorkerReporter(TrainingReporter):
    """Carries progress from the training thread to the event loop without making the thread
    wait: every step's metrics go to the metric writer's buffer, and the latest progress, at
    most once per `LIVE_PROGRESS_INTERVAL_S`, to the live stream.

    A live event's metrics are the latest value of every metric reported: the step's `loss`,
    and the metrics of the last epoch that ended (`train_loss`, `val_loss`, ...), which only
    an epoch's last step carries and which would otherwise be lost whenever that step's event
    is one the interval skips."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        outbox: asyncio.Queue[dict[str, Any] | None],
        writer: MetricWriter,
        job_id: UUID,
        platform: Platform,
        epoch_listener: EpochListener | None = None,
        *,
        uploads: CheckpointUploads,
    ) -> None:
        self._loop = loop
        self._uploads = uploads
        self._epoch_listener = epoch_listener
        self._outbox = outbox
        self._writer = writer
        self._job_id = job_id
        self._platform = platform
        self._last_live = 0.0
        self._latest: dict[str, float] = {}
        self.stop = threading.Event()
        self.last_checkpoint = 0

    def _send(self, event: dict[str, Any]) -> None:
        self._loop.call_soon_threadsafe(self._outbox.put_nowait, event)

    def _wait_for(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def resumed(self, step: int) -> None:
        # Before any new point is written: the rows after the checkpoint are written again.
        dropped = self._wait_for(_drop_points_after(self._platform, self._job_id, step))
        self._wait_for(self._uploads.forget_after(step))
        self.last_checkpoint = step
        self._send({"type": "resumed", "step": step, "dropped_points": dropped})

    def progress(self, progress: Progress) -> None:
        # A diverged run's NaN is kept in the history; live events say null.
        self._writer.add(progress.step, progress.metrics)
        self._latest.update(progress.metrics)
        if self._epoch_listener is not None and "val_loss" in progress.metrics:
            self._epoch_listener(progress.epoch, progress.metrics)
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
                    "metrics": json_safe(self._latest),
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
        # Into the artifact store, without waiting: any worker can resume from it once stored.
        self._uploads.offer_from_thread(self._loop, step)
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


def _training_table(table: pa.Table, target: str, features: Sequence[str]) -> pa.Table:
    selected = table.select([*features, target])
    return selected.filter(pc.is_valid(selected.column(target)))


async def _bundle_chunks(bundle: bytes) -> AsyncIterator[bytes]:
    yield bundle


async def _train(
    platform: Platform, job: Job, run: TrainingRun, pruning: TrialPruning | None
) -> TrainedModel:
    """`fit` in a thread, with its progress relayed, its cancellation watched, and, for a
    sweep's trial, its objective judged by the sweep's pruner."""
    trainer = platform.trainer(job.payload["trainer"])
    loop = asyncio.get_running_loop()
    outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    writer = MetricWriter(platform.metadata, job.id)
    await writer.start()
    uploads = CheckpointUploads(platform, job.id, job.claimed_by, run.checkpoint_dir)
    reporter = WorkerReporter(
        loop,
        outbox,
        writer,
        job.id,
        platform,
        pruning.epoch_ended if pruning else None,
        uploads=uploads,
    )
    if pruning is not None:
        pruning.start(reporter.stop)
    relay = asyncio.create_task(_relay_events(platform, job.id, outbox), name=f"events-{job.id}")
    watch = asyncio.create_task(watch_for_stop(platform, job, reporter.stop), name=f"stop-{job.id}")
    fitting = asyncio.ensure_future(asyncio.to_thread(trainer.fit, run, reporter))
    try:
        return await asyncio.shield(fitting)
    except asyncio.CancelledError:
        # The worker is stopping: the trainer stops at its next step boundary, having reported
        # its steps. Waiting for it (a while) keeps those in the history, and keeps it from
        # writing anything once the job is handed back.
        reporter.stop.set()
        with contextlib.suppress(Exception):  # TrainingCancelled, or the wait ran out
            await asyncio.wait_for(asyncio.shield(fitting), STOP_GRACE_S)
        raise
    except TrainingCancelled:
        raise JobCancelledError(
            f"stopped at a step boundary; last checkpoint at step {reporter.last_checkpoint}"
        ) from None
    finally:
        reporter.stop.set()
        watch.cancel()
        if pruning is not None:
            await pruning.close()
        # Every point reported is committed before the job's outcome is: a chart never misses
        # the last steps of a finished job.
        try:
            await writer.close()
        finally:
            outbox.put_nowait(_END_OF_EVENTS)
            # The last checkpoint reported is stored (or known lost) before the outcome is.
            await asyncio.gather(relay, watch, uploads.close(), return_exceptions=True)


def _archived(project: Project) -> ConflictError:
    return archived_job_result(project.slug, "the job registers no model version")


async def _register(
    platform: Platform, job: Job, version_id: UUID, trained: TrainedModel
) -> ModelVersion:
    with span("register model version", {"aiaas.job_id": str(job.id)}):
        return await _register_traced(platform, job, version_id, trained)


async def _register_traced(
    platform: Platform, job: Job, version_id: UUID, trained: TrainedModel
) -> ModelVersion:
    payload = job.payload
    change = ChangeInProject(platform, None, "model.register", None, project_id=job.project_id)
    try:
        async with artifacts_kept_on_success(platform) as pending, change:
            stored = await pending.store(job.project_id, _bundle_chunks(trained.bundle))
            locked = await lock_job(change.connection, job.id)
            if locked is None or locked.claimed_by != job.claimed_by:
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
    except ConflictError:
        if change.project is not None and change.project.is_archived:
            # Archived while the job trained: the job's reason names the project.
            raise _archived(change.project) from None
        raise


async def run_training(platform: Platform, job: Job) -> str:
    """The job handler: train, evaluate, register the model version. Returns the job's note.
    A sweep's trial also reports to its sweep (`sweep_trials.run_trial`)."""
    pruning = await trial_pruning(platform, job)
    return await run_trial(
        platform, job, pruning, lambda: _train_and_register(platform, job, pruning)
    )


async def _train_and_register(
    platform: Platform, job: Job, pruning: TrialPruning | None
) -> tuple[str, Mapping[str, Any]]:
    payload = job.payload
    async with platform.metadata.acquire() as connection:
        registered = (await model_versions_by_jobs(connection, [job.id])).get(job.id)
        version = await get_version(connection, UUID(payload["dataset_version_id"]))
        project = (await projects_by_ids(connection, [job.project_id]))[job.project_id]
    checkpoint_dir = platform.config.resolved_checkpoint_dir / str(job.id)
    if registered is None:
        if project.is_archived:
            raise _archived(project)  # no use training what could not be registered
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
            checkpoint_sealer=ProjectCheckpointSealer(
                job.project_id, await platform.service(VAULT).data_key(job.project_id)
            ),
            epoch_verdicts=pruning is not None and pruning.prunes,
        )
        # A job resumed on a worker that never ran it finds its checkpoints in the store.
        await fetch_stored_checkpoints(platform, job.id, checkpoint_dir)
        trained = await _train(platform, job, run, pruning)
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
    # Its history is final now: its charts are kept, so that its page opens fast at once.
    await keep_default_charts(platform, job.id)
    await forget_job_checkpoints(platform, job.id)
    await asyncio.to_thread(shutil.rmtree, checkpoint_dir, True)
    return f"registered {payload['model_name']} version {registered.number}", registered.metrics
