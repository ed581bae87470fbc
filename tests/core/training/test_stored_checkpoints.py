"""A training job's checkpoints in the artifact store (here the `s3` store, on a real SeaweedFS):
each lands there with a row, only the newest two are kept, a job resumed with an empty scratch
directory starts from the newest stored one that verifies (a tampered one is refused), a run
whose job another worker took over stores nothing more, the rows outrank a stale scratch
directory, a store refusing the worker stops the job, success forgets them, a failed job's are
kept for the retention period, and garbage collection keeps them while their rows exist."""

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
from aiaas.core.errors import ArtifactError, JobCancelledError
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
from aiaas.plugins.s3_artifacts import OBJECTS, S3ArtifactStore
from artifact_streams import stored_keys
from e2e.test_training_live import assert_one_point_per_step, stream_events
from object_store import ObjectStoreServer
from serving_support import upload_wine
from support import Team, audit_mark, events_since, new_team, poll_until

pytestmark = pytest.mark.slow

PREFIX = f"checkpoints/{uuid.uuid4().hex}"
CHECKPOINT_EVERY_STEPS = 10
DAY_S = 24 * 3600
CLAIM = "checkpoints:1:a"


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
) -> tuple[Job, list[int], list[StoredCheckpoint]]:
    """Run the job here until it has stored the checkpoint of `steps` steps, then let another
    worker take it over, as one would once this one's heartbeat went stale: this run stops at
    its next step boundary, its stored checkpoints left for the heir. The heir's claim, the
    steps this run checkpointed, and the rows as the heir claimed."""
    claimed = await claim_job(platform, job.id, "first:1:a", stale_after_s=300)
    assert claimed is not None
    first = asyncio.ensure_future(run_training(platform, claimed))

    async def far_enough() -> bool:
        rows = await rows_of(platform, job.id)
        return max((row.step for row in rows), default=0) >= steps or first.done()

    assert await poll_until(far_enough, 120) is not None
    heir = await claim_job(platform, job.id, "heir:2:b", stale_after_s=0)
    assert heir is not None and heir.attempt == 2
    at_claim = await rows_of(platform, job.id)
    with pytest.raises(JobCancelledError):
        await first
    return heir, await checkpoint_events(platform, job.id), at_claim


async def test_checkpoints_land_in_the_store_and_a_resume_with_no_scratch_refuses_a_tampered_one(
    platform: Platform,
    config: Config,
    team: Team,
    wine: datasets.DatasetVersion,
    object_store: ObjectStoreServer,
) -> None:
    job = await new_job(platform, team, wine, epochs=200)
    heir, checkpointed, at_claim = await stopped_after_a_few_checkpoints(platform, job, 3 * 10)

    # Each checkpoint reached the store with a row; only the newest two are kept, and the
    # older ones' objects are deleted at once. Once the heir claimed, the first run recorded
    # nothing more (whatever it checkpointed until it stopped), and its objects are gone.
    rows = await rows_of(platform, job.id)
    assert rows == at_claim
    assert len(checkpointed) >= 3 and rows[0].step >= 3 * 10
    # The newest two stored, newest first. Not necessarily the last two checkpointed: one
    # still waiting to go up when a newer one came is replaced by it, never stored.
    steps = [row.step for row in rows]
    assert len(steps) == 2 and steps[0] > steps[1] and set(steps) <= set(checkpointed), steps
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
    job = await running_job(platform, team, wine)
    await store_checkpoints(platform, job, tmp_path / "written", [10, 20])
    # The newest was tampered with; the older one's object is gone.
    newest, older = await rows_of(platform, job.id)
    await tamper(object_store, newest.artifact_key)
    await obstore.delete_async(object_store.raw(PREFIX), OBJECTS + older.artifact_key)

    scratch = tmp_path / "scratch" / str(job.id)
    assert await fetch_stored_checkpoints(platform, job.id, scratch) == []
    assert local_steps(scratch) == []  # the trainer starts afresh

    # A scratch directory that already holds the recorded ones gets nothing.
    await forget_all(platform, job)
    await store_checkpoints(platform, job, tmp_path / "again", [30, 40])
    assert await fetch_stored_checkpoints(platform, job.id, tmp_path / "again") == []
    assert local_steps(tmp_path / "again") == [30, 40]
    # One that holds one of them gets the other.
    behind = tmp_path / "behind" / str(job.id)
    await store_checkpoints(platform, job, behind, [30], upload=False)
    assert await fetch_stored_checkpoints(platform, job.id, behind) == [40]
    assert local_steps(behind) == [30, 40]
    await forget_all(platform, job)


async def test_the_rows_outrank_a_stale_scratch_directory(
    platform: Platform, team: Team, wine: datasets.DatasetVersion, tmp_path: Path
) -> None:
    """A worker's scratch from an earlier attempt holds a step that another worker's run has
    since trained again and forgotten: it is removed, and the job resumes from the newest
    recorded checkpoint."""
    job = await running_job(platform, team, wine)
    await store_checkpoints(platform, job, tmp_path / "heir", [10, 20])
    scratch = tmp_path / "scratch" / str(job.id)
    await store_checkpoints(platform, job, scratch, [5, 30, 40], upload=False)
    (scratch / "50").mkdir()  # a step directory the trainer never finished

    assert await fetch_stored_checkpoints(platform, job.id, scratch) == [20, 10]
    assert local_steps(scratch) == [10, 20]
    assert sorted(entry.name for entry in scratch.iterdir()) == ["10", "20"]
    sealer = await sealer_of(platform, job.project_id)
    sealed = (scratch / "20" / "checkpoint.sealed").read_bytes()
    with np.load(io.BytesIO(sealer.unseal(sealed)), allow_pickle=False) as archive:
        assert int(archive["step"]) == 20

    # With no rows at all, the trainer starts afresh.
    await forget_all(platform, job)
    assert await fetch_stored_checkpoints(platform, job.id, scratch) == []
    assert local_steps(scratch) == []


async def test_a_store_that_refuses_the_worker_stops_the_job_and_keeps_the_checkpoints(
    platform: Platform,
    team: Team,
    wine: datasets.DatasetVersion,
    object_store: ObjectStoreServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a tampered or missing checkpoint is skipped: a store refusing the worker's
    credentials says nothing of the checkpoints, and a fresh start would forget good ones."""
    job = await running_job(platform, team, wine)
    await store_checkpoints(platform, job, tmp_path / "written", [10, 20])
    rows = await rows_of(platform, job.id)
    wrong = build_config(
        {**object_store.settings(PREFIX), "s3_secret_access_key": f"wrong-{uuid.uuid4().hex}"}
    )
    monkeypatch.setattr(platform, "artifacts", S3ArtifactStore(wrong))

    scratch = tmp_path / "scratch" / str(job.id)
    with pytest.raises(ArtifactError, match="refused the s3 artifact store's"):
        await fetch_stored_checkpoints(platform, job.id, scratch)
    monkeypatch.undo()
    assert await rows_of(platform, job.id) == rows
    assert await fetch_stored_checkpoints(platform, job.id, scratch) == [20, 10]
    await forget_all(platform, job)


async def test_a_run_whose_job_was_taken_over_stores_and_forgets_nothing(
    platform: Platform, team: Team, wine: datasets.DatasetVersion, tmp_path: Path
) -> None:
    job = await running_job(platform, team, wine, claim="old:1:a")
    before = set(await stored_keys(platform.artifacts))
    stale = CheckpointUploads(platform, job.id, "old:1:a", tmp_path / "old")
    await store_checkpoints(platform, job, tmp_path / "old", [10, 20], claim="old:1:a")
    # The heir resumes from 10 and records it again; the old run is still finishing.
    heir = await claim_job(platform, job.id, "heir:2:b", stale_after_s=0)
    assert heir is not None
    heirs = CheckpointUploads(platform, job.id, "heir:2:b", tmp_path / "heir")
    await heirs.forget_after(10)
    await store_checkpoints(platform, job, tmp_path / "heir", [10], claim="heir:2:b")
    await heirs.close()
    recorded = await rows_of(platform, job.id)
    assert [row.step for row in recorded] == [10]

    # The old run's checkpoints of steps 10 (the heir's step) and 30 (ahead of it) are refused,
    # their objects deleted; it stores nothing more, and forgets none of the heir's.
    await store_checkpoints(platform, job, tmp_path / "old", [30], upload=False)
    stale.offer_from_thread(asyncio.get_running_loop(), 10)

    async def refused() -> bool:
        return stale.claim_lost

    assert await poll_until(refused, 60) is not None
    stale.offer_from_thread(asyncio.get_running_loop(), 30)
    await stale.forget_after(0)
    await stale.close()
    assert stale.claim_lost
    assert await rows_of(platform, job.id) == recorded
    assert set(await stored_keys(platform.artifacts)) - before == {recorded[0].artifact_key}
    await forget_all(platform, job)


async def running_job(
    platform: Platform, team: Team, wine: datasets.DatasetVersion, *, claim: str = CLAIM
) -> Job:
    """A job claimed by `claim`, as a worker running it: only its runner stores checkpoints."""
    job = await new_job(platform, team, wine, 1)
    claimed = await claim_job(platform, job.id, claim, stale_after_s=300)
    assert claimed is not None
    return claimed


async def store_checkpoints(
    platform: Platform,
    job: Job,
    directory: Path,
    steps: list[int],
    *,
    upload: bool = True,
    claim: str = CLAIM,
) -> None:
    """Checkpoints as a trainer writes them (sealed with the project's key, in its layout), put
    into the store as the worker holding `claim` does, each upload finished before the next is
    offered."""
    sealer = await sealer_of(platform, job.project_id)
    for step in steps:
        (directory / str(step)).mkdir(parents=True, mode=0o700, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, step=np.asarray(step, np.int64))
        (directory / str(step) / "checkpoint.sealed").write_bytes(sealer.seal(buffer.getvalue()))
        if upload:
            uploads = CheckpointUploads(platform, job.id, claim, directory)
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
    job = await running_job(platform, team, wine)
    before = set(await stored_keys(platform.artifacts))
    await store_checkpoints(platform, job, tmp_path, [10, 20, 30])
    assert [row.step for row in await rows_of(platform, job.id)] == [30, 20]

    # Two checkpoints reported before the uploader runs: only the newer one is uploaded.
    await store_checkpoints(platform, job, tmp_path, [40, 50], upload=False)
    uploads = CheckpointUploads(platform, job.id, CLAIM, tmp_path)
    loop = asyncio.get_running_loop()
    for step in (40, 50):
        uploads.offer_from_thread(loop, step)
    await asyncio.sleep(0)
    await uploads.close()

    rows = await rows_of(platform, job.id)
    assert [row.step for row in rows] == [50, 30]
    assert set(await stored_keys(platform.artifacts)) - before == {r.artifact_key for r in rows}

    # A lower step recorded after them is forgotten at once, and its object deleted with it.
    await store_checkpoints(platform, job, tmp_path, [25])
    assert await rows_of(platform, job.id) == rows
    assert set(await stored_keys(platform.artifacts)) - before == {r.artifact_key for r in rows}
    await forget_all(platform, job)


async def test_a_failed_jobs_checkpoints_are_kept_for_the_retention_period_then_collected(
    platform: Platform, config: Config, team: Team, wine: datasets.DatasetVersion, tmp_path: Path
) -> None:
    failed, running, succeeded = [
        await running_job(platform, team, wine, claim="retention:1:a") for _ in range(3)
    ]
    for job in (failed, running, succeeded):
        await store_checkpoints(
            platform, job, tmp_path / str(job.id), [10, 20], claim="retention:1:a"
        )
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
