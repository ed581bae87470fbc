"""Running a batch prediction job in a worker (`run_batch_prediction`, the handler of
`BATCH_PREDICTION_JOB` jobs): the model loaded, the version scored part by part
(`batch_scoring`), the output registered.

`run_batch_prediction` is the worker's handler. It loads the model version with the serving
runtime, in this process and with no HTTP in between, then streams the version's Parquet
artifact in record batches of `READ_BATCH_ROWS`: each is cut into model batches
(`scoring_batch_rows`), checked as a prediction request is (`check_inputs`), predicted in a
thread, its predictions written as one part (below), and the batch, with its prediction
columns appended, written into the output file. Memory holds the model and one record batch at
a time, whatever the version's size. Progress goes to the job's event stream (`progress`
events: `step` rows done of `total_steps`).

A cancelled job (`cancel_job`) stops where it is: the job's row is watched while it runs
(`job_watch`), the scoring thread stops at its next part, the parts are removed, no version is
registered (the registering transaction checks the row again), and the job ends CANCELLED.

The output is a new version of the named dataset (`<dataset>-predictions` by default) in the
same project. Its lineage names both sources: its parent is the scored version, and its
`transformation` is one `batch_prediction` step naming the model version and the job. A 1-D
output of the signature becomes one column named after it (`predicted_label`,
`predicted_value`); a 2-D one becomes one column per position (`predicted_probabilities_0`,
`predicted_probabilities_1`...).

Each record batch's predictions are one part: an Arrow IPC stream sealed with the project's
data key (as training checkpoints are), renamed into the job's checkpoint directory once whole.
A job whose worker is killed is claimed again once its heartbeat goes stale (or handed back at
once by a worker that stops cleanly); the next run reads the predictions of the rows its
finished parts hold from them, says so with a `resumed` event, and scores the rest, writing the
output file whole again. The output's input columns are the scored version's, unchanged, so
their statistics are the scored version's; only the prediction columns are profiled. The
directory is removed when the job ends, whatever its outcome but a stop of its worker. Exactly
one output version comes of a job: it is registered in one transaction that holds the job's
row and checks that this worker still holds the claim, and a run that finds its job's version
registered already (a worker that died between registering and recording the outcome) scores
nothing again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from aiaas.core.auth import Principal
from aiaas.core.compilation_cache import use_compilation_cache
from aiaas.core.data.datasets import (
    DatasetVersion,
    NewVersion,
    get_version,
    record_derived_version,
    scratch,
)
from aiaas.core.data.datasets.sealed_profile import seal_profile, version_column_stats
from aiaas.core.data.tabular.normalized import NormalizedTable
from aiaas.core.errors import ConflictError, JobCancelledError
from aiaas.core.event_streams import publish_job_events_quietly
from aiaas.core.governance import VAULT, artifacts_kept_on_success
from aiaas.core.identity.projects import ChangeInProject, archived_job_result, projects_by_ids
from aiaas.core.job_watch import cancelled_while_held, watch_for_stop
from aiaas.core.jobs import Job, lock_job
from aiaas.core.serving.batch_prediction import (
    BATCH_PREDICTION_JOB,
    READ_BATCH_ROWS,
    output_of_job,
)
from aiaas.core.serving.batch_scoring import Parts, Progress, ScoringRun, Stopped, score_file
from aiaas.core.signatures import ModelSignature
from aiaas.core.storage import sha256_of
from aiaas.core.training.checkpoint_sealing import ProjectCheckpointSealer
from aiaas.core.training.registry import ModelVersion, get_model_version

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5
"""At most one progress event per interval goes to the job's stream: it is for people."""
T = TypeVar("T")


async def _relay_progress(platform: Platform, job_id: UUID, progress: Progress) -> None:
    sent = -1
    while True:
        if progress.rows != sent:
            sent = progress.rows
            await publish_job_events_quietly(
                platform.redis,
                job_id,
                [
                    {
                        "type": "progress",
                        "step": sent,
                        "total_steps": progress.total,
                        "parts": progress.parts,
                    }
                ],
            )
        await asyncio.sleep(PROGRESS_INTERVAL_S)


async def _in_thread_until_done(stop: threading.Event, work: Callable[[], T]) -> T:
    """`work` in a thread. Cancelled (the worker stops), the thread is told to stop at its next
    part and waited for, so that what it writes is whole before the job is handed back."""
    future = asyncio.get_running_loop().run_in_executor(None, work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(BaseException):
            await future
        raise


async def _load_model(platform: Platform, version: ModelVersion, payload: dict[str, Any]) -> Any:
    chunks = [
        chunk
        async for chunk in platform.service(VAULT).open(version.project_id, version.artifact_key)
    ]
    runtime = platform.serving_runtime(payload["runtime"])
    use_compilation_cache(platform.config)
    # Not warmed up: a job meets two batch shapes (full, and its last batch), compiled when
    # first met, where warming would compile every bucket up to the batch size.
    return await asyncio.to_thread(
        runtime.load, b"".join(chunks), max_batch_size=int(payload["max_batch_size"])
    )


class _TakenOverError(RuntimeError):
    """Another worker claimed the job while this one ran it (this one's heartbeat went stale):
    the parts are that worker's to resume from, and the outcome its to record."""


async def _stopped(platform: Platform, job: Job, progress: Progress) -> Exception:
    """What a run whose scoring was told to stop ends with."""
    if await cancelled_while_held(platform, job):
        return JobCancelledError(
            f"stopped after {progress.rows} of {progress.total} rows; no version registered"
        )
    return _TakenOverError("the job was claimed by another worker while it scored")


def _archived(slug: str) -> ConflictError:
    return archived_job_result(slug, "the job registers no dataset version")


async def _register(
    platform: Platform,
    job: Job,
    parent: DatasetVersion,
    model_version: ModelVersion,
    table: NormalizedTable,
) -> NewVersion:
    if job.created_by is None:
        raise RuntimeError("the job has no submitter to own its output version")
    owner = Principal(
        user_id=job.created_by,
        username="batch-prediction",
        is_admin=False,
        authenticated_by="job",
    )
    change = ChangeInProject(
        platform, None, "batch_prediction.register", None, project_id=job.project_id, deferred=True
    )
    try:
        async with artifacts_kept_on_success(platform) as pending, change:
            # The content's hash (a read of the whole file) is taken on a second core while the
            # event loop seals and stores the file, not before: 0.08 s of 0.3 s on 1M rows.
            content_sha256, stored = await asyncio.gather(
                asyncio.to_thread(sha256_of, table.path),
                pending.store_file(job.project_id, table.path),
            )
            profile = await seal_profile(platform, job.project_id, table)
            connection = await change.begin()
            locked = await lock_job(connection, job.id)
            if locked is None or locked.claimed_by != job.claimed_by:
                # Another worker took the job over: its output is that worker's to register.
                raise _TakenOverError("the job was claimed by another worker while it scored")
            if locked.cancel_requested_at is not None:
                # Cancelled while the output was finished: a cancelled job registers nothing.
                raise Stopped
            return await record_derived_version(
                change,
                parent=parent,
                dataset_name=job.payload["output_dataset"],
                table=table,
                profile=profile,
                content_sha256=content_sha256,
                artifact_key=stored.key,
                owner=owner,
                transformation=[
                    {
                        "step": BATCH_PREDICTION_JOB,
                        "job_id": str(job.id),
                        "model_version_id": str(model_version.id),
                        "deployment_id": job.payload.get("deployment_id"),
                    }
                ],
            )
    except ConflictError:
        if change.project is not None and change.project.is_archived:
            raise _archived(change.project.slug) from None
        raise


async def run_batch_prediction(platform: Platform, job: Job) -> str:
    """The job handler: score the version, part by part from where an earlier run of the job
    stopped, register the output. Returns the job's note."""
    payload = job.payload
    checkpoint_dir = platform.config.resolved_checkpoint_dir / str(job.id)
    async with platform.metadata.acquire() as connection:
        registered = await output_of_job(connection, job)
        version = await get_version(connection, UUID(payload["dataset_version_id"]))
        model_version = await get_model_version(connection, UUID(payload["model_version_id"]))
        project = (await projects_by_ids(connection, [job.project_id]))[job.project_id]
    if registered is not None:
        # An earlier run registered it and died before recording the outcome.
        await asyncio.to_thread(shutil.rmtree, checkpoint_dir, True)
        return f"registered {payload['output_dataset']} version {registered.number}"
    try:
        added = await _score_and_register(
            platform, job, version, model_version, project.slug if project.is_archived else None
        )
    except (asyncio.CancelledError, _TakenOverError):
        raise  # the worker stops, or another has the job: the parts stay for it to resume
    except BaseException:
        # A failed or cancelled job is not run again: what it scored is of no further use.
        await asyncio.to_thread(shutil.rmtree, checkpoint_dir, True)
        raise
    await asyncio.to_thread(shutil.rmtree, checkpoint_dir, True)
    return (
        f"scored {added.version.row_count} rows into {payload['output_dataset']} "
        f"version {added.version.number}"
    )


async def _score_and_register(
    platform: Platform,
    job: Job,
    version: DatasetVersion,
    model_version: ModelVersion,
    archived_slug: str | None,
) -> NewVersion:
    payload = job.payload
    if archived_slug is not None:
        raise _archived(archived_slug)  # no use scoring what could not be registered
    if version.deleted_at is not None:
        raise ConflictError("the dataset version was deleted")
    signature = ModelSignature.from_json(model_version.signature)
    checkpoint_dir = platform.config.resolved_checkpoint_dir / str(job.id)
    await asyncio.to_thread(checkpoint_dir.mkdir, parents=True, exist_ok=True)
    sealer = ProjectCheckpointSealer(
        job.project_id, await platform.service(VAULT).data_key(job.project_id)
    )
    parts = Parts(checkpoint_dir, sealer)
    run = ScoringRun(
        progress=Progress(total=version.row_count),
        stop=threading.Event(),
        batch_rows=int(payload.get("batch_rows", READ_BATCH_ROWS)),
        input_column_stats=await version_column_stats(platform, version),
    )
    progress, stop = run.progress, run.stop
    times = {"started": time.perf_counter()}
    # Polls the job's row: a cancellation sets `stop`, which the scoring thread sees at its
    # next part.
    watch = asyncio.create_task(watch_for_stop(platform, job, stop), name=f"stop-{job.id}")
    try:
        with scratch(platform) as work:
            finished = await asyncio.to_thread(parts.finished)
            done = sum(rows for _, rows in finished)
            if done:
                await publish_job_events_quietly(
                    platform.redis,
                    job.id,
                    [{"type": "resumed", "step": done, "total_steps": version.row_count}],
                )
            model = None
            if done < version.row_count:
                model = await _load_model(platform, model_version, payload)
            times["loaded"] = time.perf_counter()
            # Read even when every row is scored: the parts hold the predictions, the input
            # the rows they belong to.
            source = work / "input.parquet"
            await platform.service(VAULT).read_to_file(
                version.project_id, version.artifact_key, source
            )
            times["read"] = time.perf_counter()
            relay = asyncio.create_task(_relay_progress(platform, job.id, progress))
            try:
                table = await _in_thread_until_done(
                    stop,
                    lambda: score_file(
                        model, signature, source, parts, run, work / "output.parquet"
                    ),
                )
            finally:
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay
            await asyncio.to_thread(source.unlink)
            times["scored"] = time.perf_counter()
            await publish_job_events_quietly(
                platform.redis,
                job.id,
                [{"type": "progress", "step": table.row_count, "total_steps": version.row_count}],
            )
            if stop.is_set():
                raise Stopped  # cancelled while the output file was finished
            added = await _register(platform, job, version, model_version, table)
    except Stopped:
        raise await _stopped(platform, job, progress) from None
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
    ended_at = time.perf_counter()
    logger.info(
        "job %s: scored %d rows (%d resumed) in %.2f s: loading the model %.2f s, reading the "
        "input %.2f s, scoring into the output file %.2f s, registering %.2f s",
        job.id,
        table.row_count,
        done,
        ended_at - times["started"],
        times["loaded"] - times["started"],
        times["read"] - times["loaded"],
        times["scored"] - times["read"],
        ended_at - times["scored"],
    )
    return added
