"""A training job's checkpoints in the artifact store (here the `s3` store, on a real SeaweedFS):
each lands there with a row, only the newest two are kept, a job resumed with an empty scratch
directory starts from the newest stored one that verifies (a tampered one is refused), success
forgets them, a failed job's are kept for the retention period, and garbage collection keeps them
while their rows exist."""

from __future__ import annotations

import asyncio
import io
import shutil
import uuid
from pathlib import Path

import numpy as np
import obstore
import pytest

from aiaas.core.config import Config, build_config
from aiaas.core.data import datasets
from aiaas.core.errors import JobCancelledError
from aiaas.core.governance import VAULT
from aiaas.core.governance.garbage import collect_garbage
from aiaas.core.identity.access import ProjectRole
from aiaas.core.jobs import Job, JobState, claim_job, finish_job
from aiaas.core.platform import Platform
from aiaas.core.training import TrainingRequest, run_training, submit_training_job
from aiaas.core.training.checkpoint_records import (
    StoredCheckpoint,
    forget_checkpoints,
    stored_checkpoints,
)
from aiaas.core.training.checkpoint_sealing import ProjectCheckpointSealer
from aiaas.core.training.checkpoint_uploads import (
    CheckpointUploads,
    expire_checkpoints,
    fetch_stored_checkpoints,
    local_steps,
)
from aiaas.plugins.s3_artifacts import OBJECTS
from artifact_streams import stored_keys
from e2e.test_training_live import assert_one_point_per_step, stream_events
from object_store import ObjectStoreServer
from serving_support import upload_wine
from support import Team, audit_mark, events_since, new_team, poll_until

pytestmark = pytest.mark.slow

PREFIX = f"checkpoints/{uuid.uuid4().hex}"
CHECKPOINT_EVERY_STEPS = 10
DAY_S = 24 * 3600


@pytest.fixture(scope="module")
def config(config: Config, object_store: ObjectStoreServer) -> Config:
    """Artifacts in the bucket, none under the data dir; checkpoints every ten steps."""
    return build_config(
        {
            **config.model_dump(),
            **object_store.settings(PREFIX),
            "checkpoint_every_steps": CHECKPOINT_EVERY_STEPS,
        }
    )


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "stored-checkpoints", (ProjectRole.DEVELOPER,))


@pytest.fixture(scope="module")
async def wine(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> datasets.DatasetVersion:
    return await upload_wine(platform, team, tmp_path_factory.mktemp("wine"))


async def new_job(
    platform: Platform, team: Team, wine: datasets.DatasetVersion, epochs: int
) -> Job:
    developer = team.members[ProjectRole.DEVELOPER].principal
    return await submit_training_job(
        platform,
        developer,
        TrainingRequest(
            dataset_version_id=wine.id,
            trainer="tabular-classifier",
            target="cultivar",
            # Every epoch runs (no early stopping), in small batches: long enough to be stopped.
            hyperparameters={"epochs": epochs, "batch_size": 16, "hidden_size": 16, "patience": 0},
            seed=0,
            model_name=f"stored-{uuid.uuid4().hex[:6]}",
        ),
    )


async def rows_of(platform: Platform, job_id: uuid.UUID) -> list[StoredCheckpoint]:
    async with platform.metadata.acquire() as connection:
        return await stored_checkpoints(connection, job_id)


async def checkpoint_events(platform: Platform, job_id: uuid.UUID) -> list[int]:
    return [e["step"] for e in await stream_events(platform, job_id) if e["type"] == "checkpoint"]


async def tamper(object_store: ObjectStoreServer, key: str) -> None:
    """Change one byte of the stored object behind the platform's back."""
    raw = object_store.raw(PREFIX)
    stored = bytearray(await (await obstore.get_async(raw, OBJECTS + key)).bytes_async())
    stored[len(stored) // 2] ^= 0xFF
    await obstore.put_async(raw, OBJECTS + key, bytes(stored))


async def sealer_of(platform: Platform, project_id: uuid.UUID) -> ProjectCheckpointSealer:
    return ProjectCheckpointSealer(project_id, await platform.service(VAULT).data_key(project_id))


async def stopped_after_a_few_checkpoints(
    platform: Platform, job: Job, steps: int
) -> tuple[Job, list[int]]:
    """Run the job here until it has checkpointed `steps` steps, then let another worker take
    it over, as one would once this one's heartbeat went stale: this run stops at its next step
    boundary, its stored checkpoints left for the heir. The heir's claim, and the steps this
    run checkpointed."""
    claimed = await claim_job(platform, job.id, "first:1:a", stale_after_s=300)
    assert claimed is not None
    first = asyncio.ensure_future(run_training(platform, claimed))

    async def far_enough() -> bool:
        return max(await checkpoint_events(platform, job.id), default=0) >= steps or first.done()

    assert await poll_until(far_enough, 120) is not None
    heir = await claim_job(platform, job.id, "heir:2:b", stale_after_s=0)
    assert heir is not None and heir.attempt == 2
    with pytest.raises(JobCancelledError):
        await first
    return heir, await checkpoint_events(platform, job.id)


async def test_checkpoints_land_in_the_store_and_a_resume_with_no_scratch_refuses_a_tampered_one(
    platform: Platform,
    config: Config,
    team: Team,
    wine: datasets.DatasetVersion,
    object_store: ObjectStoreServer,
) -> None:
    job = await new_job(platform, team, wine, epochs=200)
    heir, checkpointed = await stopped_after_a_few_checkpoints(platform, job, 3 * 10)

    # Each checkpoint reached the store with a row; only the newest two are kept, and the
    # older ones' objects are deleted at once.
    rows = await rows_of(platform, job.id)
    assert len(checkpointed) >= 3
    assert [row.step for row in rows] == checkpointed[::-1][:2]
    assert set(await stored_keys(platform.artifacts)) == {
        wine.artifact_key,
        *(row.artifact_key for row in rows),
    }
    # Each holds the sealed checkpoint of its step, as the trainer wrote it.
    sealer = await sealer_of(platform, job.project_id)
    for row in rows:
        sealed = await platform.artifacts.read_bytes(row.artifact_key)
        assert row.size_bytes == len(sealed)
        with np.load(io.BytesIO(sealer.unseal(sealed)), allow_pickle=False) as archive:
            assert int(archive["step"]) == row.step

    # The heir runs on a worker that never saw the job (nothing in its scratch directory), and
    # the newest stored checkpoint was tampered with: it resumes from the one before.
    newest, older = rows
    await tamper(object_store, newest.artifact_key)
    scratch = config.resolved_checkpoint_dir / str(job.id)
    shutil.rmtree(scratch)
    await run_training(platform, heir)
    await finish_job(platform, job.id, "heir:2:b", JobState.SUCCEEDED, None)

    resumed = [e["step"] for e in await stream_events(platform, job.id) if e["type"] == "resumed"]
    assert resumed == [0, older.step]
    await assert_one_point_per_step(platform, job.id)
    # Success forgets the checkpoints and deletes their objects, the tampered one too; the
    # scratch directory goes.
    assert await rows_of(platform, job.id) == []
    left = set(await stored_keys(platform.artifacts))
    assert not left & {newest.artifact_key, older.artifact_key}
    assert not scratch.exists()


async def test_a_scratch_directory_gets_no_checkpoint_that_does_not_verify(
    platform: Platform,
    team: Team,
    wine: datasets.DatasetVersion,
    object_store: ObjectStoreServer,
    tmp_path: Path,
) -> None:
    job = await new_job(platform, team, wine, 1)
    await store_checkpoints(platform, job, tmp_path / "written", [10, 20])
    # The newest was tampered with; the older one's object is gone.
    newest, older = await rows_of(platform, job.id)
    await tamper(object_store, newest.artifact_key)
    await obstore.delete_async(object_store.raw(PREFIX), OBJECTS + older.artifact_key)

    scratch = tmp_path / "scratch" / str(job.id)
    assert await fetch_stored_checkpoints(platform, job.id, scratch) == []
    assert local_steps(scratch) == []  # the trainer starts afresh

    # A scratch directory that already holds a newer checkpoint than the store gets nothing.
    await store_checkpoints(platform, job, tmp_path / "again", [30])
    kept = tmp_path / "kept" / str(job.id)
    await store_checkpoints(platform, job, kept, [40], upload=False)
    assert await fetch_stored_checkpoints(platform, job.id, kept) == []
    assert local_steps(kept) == [40]
    # And one that holds an older one gets what is newer.
    behind = tmp_path / "behind" / str(job.id)
    await store_checkpoints(platform, job, behind, [5], upload=False)
    assert await fetch_stored_checkpoints(platform, job.id, behind) == [30]
    assert local_steps(behind) == [5, 30]
    await forget_all(platform, job)


async def store_checkpoints(
    platform: Platform, job: Job, directory: Path, steps: list[int], *, upload: bool = True
) -> None:
    """Checkpoints as a trainer writes them (sealed with the project's key, in its layout), put
    into the store as a worker does, each upload finished before the next is offered."""
    sealer = await sealer_of(platform, job.project_id)
    for step in steps:
        (directory / str(step)).mkdir(parents=True, mode=0o700)
        buffer = io.BytesIO()
        np.savez(buffer, step=np.asarray(step, np.int64))
        (directory / str(step) / "checkpoint.sealed").write_bytes(sealer.seal(buffer.getvalue()))
        if upload:
            uploads = CheckpointUploads(platform, job.id, directory)
            uploads.offer_from_thread(asyncio.get_running_loop(), step)
            await asyncio.sleep(0)  # the offer arrives through the loop
            await uploads.close()


async def forget_all(platform: Platform, job: Job) -> None:
    """The module leaves no unreferenced artifact: what a test stored is forgotten, deleted."""
    async with platform.metadata.acquire() as connection:
        keys = await forget_checkpoints(connection, [job.id])
    for key in keys:
        await platform.artifacts.delete(key)


async def test_only_the_newest_two_are_kept_and_a_waiting_older_upload_is_skipped(
    platform: Platform, team: Team, wine: datasets.DatasetVersion, tmp_path: Path
) -> None:
    job = await new_job(platform, team, wine, 1)
    before = set(await stored_keys(platform.artifacts))
    await store_checkpoints(platform, job, tmp_path, [10, 20, 30])
    assert [row.step for row in await rows_of(platform, job.id)] == [30, 20]

    # Two checkpoints reported before the uploader runs: only the newer one is uploaded.
    await store_checkpoints(platform, job, tmp_path, [40, 50], upload=False)
    uploads = CheckpointUploads(platform, job.id, tmp_path)
    loop = asyncio.get_running_loop()
    for step in (40, 50):
        uploads.offer_from_thread(loop, step)
    await asyncio.sleep(0)
    await uploads.close()

    rows = await rows_of(platform, job.id)
    assert [row.step for row in rows] == [50, 30]
    assert set(await stored_keys(platform.artifacts)) - before == {r.artifact_key for r in rows}
    await forget_all(platform, job)


async def test_a_failed_jobs_checkpoints_are_kept_for_the_retention_period_then_collected(
    platform: Platform, config: Config, team: Team, wine: datasets.DatasetVersion, tmp_path: Path
) -> None:
    failed, running, succeeded = [await new_job(platform, team, wine, 1) for _ in range(3)]
    for job in (failed, running, succeeded):
        assert await claim_job(platform, job.id, "retention:1:a", stale_after_s=300) is not None
        await store_checkpoints(platform, job, tmp_path / str(job.id), [10, 20])
    await finish_job(platform, failed.id, "retention:1:a", JobState.FAILED, "diverged")
    # A job that succeeded but could not forget its checkpoints then (the database away).
    await finish_job(platform, succeeded.id, "retention:1:a", JobState.SUCCEEDED, None)
    failed_keys = {row.artifact_key for row in await rows_of(platform, failed.id)}
    assert config.checkpoint_retention_s == 7 * DAY_S

    # Within the retention period, only the succeeded job's are forgotten; the garbage
    # collector keeps the objects that the rows refer to, however old.
    assert await expire_checkpoints(platform) == [succeeded.id]
    assert await rows_of(platform, succeeded.id) == []
    assert await expire_checkpoints(platform, retention_s=DAY_S) == []
    collection = await collect_garbage(platform, grace_s=0)
    assert collection.deleted == 0
    assert failed_keys <= set(await stored_keys(platform.artifacts))

    # Past it, the failed job's are forgotten and their objects deleted, audited; the running
    # job's stay, whatever their age.
    mark = await audit_mark(platform)
    assert await expire_checkpoints(platform, retention_s=0) == [failed.id]
    assert await rows_of(platform, failed.id) == []
    assert not failed_keys & set(await stored_keys(platform.artifacts))
    assert await events_since(platform, mark) == [("checkpoints.expire", "success")]
    assert [row.step for row in await rows_of(platform, running.id)] == [20, 10]

    # Rows gone any other way (the deletion of their objects failed, say): the garbage
    # collector deletes the objects they referred to.
    running_keys = {row.artifact_key for row in await rows_of(platform, running.id)}
    async with platform.metadata.acquire() as connection:
        await forget_checkpoints(connection, [running.id])
    collection = await collect_garbage(platform, grace_s=0)
    assert collection.deleted == len(running_keys) == 2
    assert not running_keys & set(await stored_keys(platform.artifacts))
    await finish_job(platform, running.id, "retention:1:a", JobState.FAILED, "ended")
