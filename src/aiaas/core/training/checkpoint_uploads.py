"""A training job's checkpoints in the artifact store, so that any worker can resume it.

The trainer writes and reads its sealed checkpoints in the worker's local scratch directory
(`checkpoint_dir`, in the layout of `aiaas.core.trainers.CHECKPOINT_FILE`). Around it:

- `CheckpointUploads` puts each checkpoint the trainer reports into the artifact store, as it is:
  already sealed with the project's data key, in the vault's format, like every artifact. The
  training thread only reads the file it just wrote (so that the trainer may delete it when it
  moves on); the upload runs on the event loop, one at a time, the newest waiting one next and
  any older one waiting skipped. A row (`checkpoint_records`) is written once the artifact is
  completely in the store, never before, and only while the run holds the job's claim: a run
  whose job another worker took over stores nothing more (the artifact it just put is deleted).
- `fetch_stored_checkpoints` makes the scratch directory hold the job's recorded checkpoints
  before `fit`: the rows are the truth. A step there that has no row is removed (the scratch of
  an earlier attempt on this worker may hold steps that another worker's run has since trained
  again and forgotten), and each recorded one not there is fetched: a job resumed on a worker
  that never ran it (no shared disk) starts from the newest recorded one. Each is verified by
  the store against its key; one that does not verify, or is gone, is skipped, leaving the
  trainer the older one or a fresh start. Any other failure of the store (unreachable, or
  refusing the worker's credentials) stops the job instead: it could not store the model
  either, and a fresh start would forget the checkpoints that are still good.
- A job that succeeds forgets its checkpoints at once; a failed or cancelled one keeps them for
  `checkpoint_retention_s`, after which `expire_checkpoints` (the worker's garbage collection
  cron, and `aiaas gc`) forgets them. Forgotten checkpoints' artifacts are deleted right away;
  the garbage collector deletes any that this missed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from aiaas.core.audit import AuditedChange
from aiaas.core.errors import ArtifactIntegrityError, ArtifactNotFoundError
from aiaas.core.governance import PendingArtifacts
from aiaas.core.jobs import Job, JobState, jobs_by_ids
from aiaas.core.trainers import CHECKPOINT_FILE, CHECKPOINT_PARTIAL_SUFFIX
from aiaas.core.training.checkpoint_records import (
    forget_checkpoints,
    forget_checkpoints_after,
    jobs_with_checkpoints,
    record_checkpoint,
    stored_checkpoints,
)

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

RETAINED_STATES = frozenset({JobState.FAILED, JobState.CANCELLED})


async def discard_artifacts(platform: Platform, keys: list[str]) -> None:
    """Delete the artifacts of forgotten checkpoints, unless a row still refers to one."""
    if keys:
        pending = PendingArtifacts(platform)
        pending.keys.extend(keys)
        await pending.discard_unrecorded()


def sealed_checkpoint(checkpoint_dir: Path, step: int) -> bytes | None:
    """The sealed bytes of the checkpoint of `step`, None if the trainer wrote none there."""
    try:
        return (checkpoint_dir / str(step) / CHECKPOINT_FILE).read_bytes()
    except FileNotFoundError:
        return None


class CheckpointUploads:
    """Puts a job's checkpoints into the artifact store, on the event loop, one at a time, for
    the run that holds the job's claim `claim` (`Job.claimed_by`): once the job is found to be
    another's, nothing more is stored or forgotten."""

    def __init__(
        self, platform: Platform, job_id: UUID, claim: str | None, checkpoint_dir: Path
    ) -> None:
        self._platform = platform
        self._job_id = job_id
        self._claim = claim
        self._checkpoint_dir = checkpoint_dir
        self._waiting: tuple[int, bytes] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self.claim_lost = False
        self._task = asyncio.create_task(self._upload_all(), name=f"checkpoints-{job_id}")

    def offer(self, step: int, sealed: bytes) -> None:
        """Upload this checkpoint next, in place of any older one still waiting. On the loop."""
        if not self.claim_lost:
            self._waiting = (step, sealed)
            self._wake.set()

    async def forget_after(self, step: int) -> None:
        """A run resumed from `step` (0: afresh) trains what came after again: the checkpoints
        after it are forgotten."""
        async with self._platform.metadata.acquire() as connection:
            forgotten = await forget_checkpoints_after(connection, self._job_id, self._claim, step)
        if forgotten is None:
            self._lose_claim()
        await discard_artifacts(self._platform, forgotten or [])

    def _lose_claim(self) -> None:
        logger.warning(
            "job %s: claimed by another worker; this run stores no more checkpoints", self._job_id
        )
        self.claim_lost = True
        self._waiting = None

    def offer_from_thread(self, loop: asyncio.AbstractEventLoop, step: int) -> None:
        """From the training thread, as the trainer reports the checkpoint of `step` complete:
        its file is read now, before the trainer may remove it."""
        sealed = sealed_checkpoint(self._checkpoint_dir, step)
        if sealed is None:
            logger.warning(
                "job %s: no checkpoint file for step %d; a resume elsewhere starts from an "
                "older checkpoint",
                self._job_id,
                step,
            )
            return
        loop.call_soon_threadsafe(self.offer, step, sealed)

    async def close(self) -> None:
        """Wait for the waiting checkpoint to be stored, and stop."""
        self._closing = True
        self._wake.set()
        await self._task

    async def _upload_all(self) -> None:
        while True:
            if self._waiting is None:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            step, sealed = self._waiting
            self._waiting = None
            await self._upload(step, sealed)

    async def _upload(self, step: int, sealed: bytes) -> None:
        platform = self._platform
        stored = None
        try:
            stored = await platform.artifacts.put_bytes(sealed)
            async with platform.metadata.acquire() as connection:
                recorded = await record_checkpoint(
                    connection, self._job_id, self._claim, step, stored.key, stored.size_bytes
                )
            if recorded is None:  # the heir's checkpoints stay as they are
                self._lose_claim()
            forgotten = [stored.key] if recorded is None else recorded
        except Exception:  # the store or the database failed: the older checkpoint stays
            logger.warning(
                "job %s: checkpoint of step %d not stored; a resume elsewhere starts from an "
                "older one",
                self._job_id,
                step,
                exc_info=True,
            )
            forgotten = [stored.key] if stored is not None else []
        await discard_artifacts(platform, forgotten)


def local_steps(checkpoint_dir: Path) -> list[int]:
    """The steps of the complete checkpoints in the scratch directory."""
    if not checkpoint_dir.is_dir():
        return []
    return sorted(
        int(entry.name)
        for entry in checkpoint_dir.iterdir()
        if entry.name.isdigit() and (entry / CHECKPOINT_FILE).is_file()
    )


def _place(checkpoint_dir: Path, step: int, sealed: bytes) -> None:
    """Write a fetched checkpoint where the trainer reads it: 0600 in 0700 directories, renamed
    into place once complete and synced."""
    for private in (checkpoint_dir.parent, checkpoint_dir):
        private.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = checkpoint_dir / f"{step}{CHECKPOINT_PARTIAL_SUFFIX}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700)
    descriptor = os.open(
        partial / CHECKPOINT_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
    )
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(sealed)
        handle.flush()
        os.fsync(handle.fileno())
    partial.rename(checkpoint_dir / str(step))


def _remove_unrecorded(checkpoint_dir: Path, recorded: set[int]) -> list[int]:
    """Remove the steps in the scratch directory that have no row; the steps left there."""
    if not checkpoint_dir.is_dir():
        return []
    for entry in checkpoint_dir.iterdir():
        if entry.name.isdigit() and int(entry.name) not in recorded:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    return local_steps(checkpoint_dir)


async def fetch_stored_checkpoints(
    platform: Platform, job_id: UUID, checkpoint_dir: Path
) -> list[int]:
    """Make `checkpoint_dir` hold the job's recorded checkpoints, for `fit` to resume from: the
    steps with no row are removed, the recorded ones not there fetched; the steps fetched,
    newest first."""
    async with platform.metadata.acquire() as connection:
        stored = await stored_checkpoints(connection, job_id)
    recorded = {checkpoint.step for checkpoint in stored}
    present = set(await asyncio.to_thread(_remove_unrecorded, checkpoint_dir, recorded))
    fetched = []
    for checkpoint in stored:
        if checkpoint.step in present:
            continue
        try:
            sealed = await platform.artifacts.read_bytes(checkpoint.artifact_key)
        except (ArtifactNotFoundError, ArtifactIntegrityError):
            # Tampered with, or gone: an older one, or a fresh start. Anything else (the store
            # unreachable, or refusing this worker) stops the job, the good ones kept.
            logger.warning(
                "job %s: stored checkpoint of step %d cannot be read",
                job_id,
                checkpoint.step,
                exc_info=True,
            )
            continue
        await asyncio.to_thread(_place, checkpoint_dir, checkpoint.step, sealed)
        fetched.append(checkpoint.step)
    return fetched


async def forget_job_checkpoints(platform: Platform, job_id: UUID) -> None:
    """A job that succeeded needs its checkpoints no more. Its model is registered by then, so
    a failure here only leaves them to `expire_checkpoints`, which forgets a succeeded job's at
    its next pass."""
    try:
        async with platform.metadata.acquire() as connection:
            forgotten = await forget_checkpoints(connection, [job_id])
    except Exception:
        logger.warning("job %s: checkpoints left to the next expiry", job_id, exc_info=True)
        return
    await discard_artifacts(platform, forgotten)


def _expired(job: Job | None, now: datetime, retention: timedelta) -> bool:
    if job is None or job.state is JobState.SUCCEEDED:
        return True  # kept by a success that could not forget them
    if job.state not in RETAINED_STATES or job.finished_at is None:
        return False  # queued again or running: a worker may resume it
    return job.finished_at <= now - retention


async def expire_checkpoints(platform: Platform, *, retention_s: float | None = None) -> list[UUID]:
    """Forget the checkpoints of the jobs that failed or were cancelled more than
    `retention_s` (by default `checkpoint_retention_s`) ago, and delete their artifacts; the
    jobs."""
    retention = timedelta(
        seconds=platform.config.checkpoint_retention_s if retention_s is None else retention_s
    )
    async with platform.metadata.acquire() as connection:
        job_ids = await jobs_with_checkpoints(connection)
        jobs = await jobs_by_ids(connection, job_ids)
        now = await connection.fetchval("SELECT clock_timestamp()")
    expired = [job_id for job_id in job_ids if _expired(jobs.get(job_id), now, retention)]
    if not expired:
        return []
    async with AuditedChange(platform, None, "checkpoints.expire") as change:
        forgotten = await forget_checkpoints(change.connection, expired)
        for job_id in expired:
            job = jobs.get(job_id)
            await change.record(
                object_type="job",
                object_id=str(job_id),
                project_id=job.project_id if job is not None else None,
                details={"state": job.state.value if job is not None else None},
            )
    await discard_artifacts(platform, forgotten)
    return expired
