"""Resume after kill -9 with no shared disk: two real `aiaas worker` processes, each with a data
dir (and so a checkpoint scratch directory) of its own, sharing only PostgreSQL, Redis and the
`s3` artifact store (a real SeaweedFS). The first is killed with SIGKILL mid-training after a
checkpoint reached the store; the second, which never saw the job, resumes it from the stored
checkpoint, and the job's metric history has exactly one row per step."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from aiaas.core.config import Config, build_config
from aiaas.core.data import datasets
from aiaas.core.governance.garbage import collect_garbage
from aiaas.core.identity.access import ProjectRole
from aiaas.core.jobs import Job, JobState
from aiaas.core.platform import Platform
from aiaas.core.training import TrainingRequest, model_versions_by_jobs, submit_training_job
from aiaas.core.training.checkpoint_records import stored_checkpoints
from artifact_streams import stored_keys
from core.training.test_stored_checkpoints import team, wine
from e2e.test_training_live import (
    assert_one_point_per_step,
    job_of,
    start_worker,
    stream_events,
    wait_for,
    worker_processes,
)
from object_store import ObjectStoreServer
from support import Team, poll_until

__all__ = ["team", "wine", "worker_processes"]  # the fixtures

pytestmark = pytest.mark.slow

PREFIX = f"no-shared-disk/{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def config(config: Config, object_store: ObjectStoreServer) -> Config:
    return build_config({**config.model_dump(), **object_store.settings(PREFIX)})


def store_variables(object_store: ObjectStoreServer) -> dict[str, str]:
    """The `s3` store's settings as a worker's environment."""
    return {
        f"AIAAS_{name.upper()}": ("true" if value is True else str(value))
        for name, value in object_store.settings(PREFIX).items()
    }


def own_host(
    config: Config,
    object_store: ObjectStoreServer,
    directory: Path,
    started: list[subprocess.Popen[bytes]],
) -> subprocess.Popen[bytes]:
    """A worker as on a host of its own: its own data dir, the shared database, Redis and
    bucket."""
    directory.mkdir()
    return start_worker(
        config,
        directory / "worker.log",
        started,
        AIAAS_DATA_DIR=str(directory / "data"),
        AIAAS_WORKER_MAX_JOBS="1",
        **store_variables(object_store),
    )


async def newest_stored_step(platform: Platform, job_id: uuid.UUID) -> int:
    async with platform.metadata.acquire() as connection:
        rows = await stored_checkpoints(connection, job_id)
    return rows[0].step if rows else 0


def claimed_pid(job: Job) -> int:
    assert job.claimed_by is not None
    return int(job.claimed_by.split(":")[1])


def log_of(directory: Path) -> str:
    return (directory / "worker.log").read_text(errors="replace")[-3000:]


async def test_a_job_killed_on_one_worker_resumes_on_another_from_the_store(
    platform: Platform,
    config: Config,
    team: Team,
    wine: datasets.DatasetVersion,
    object_store: ObjectStoreServer,
    worker_processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    developer = team.members[ProjectRole.DEVELOPER].principal
    job = await submit_training_job(
        platform,
        developer,
        TrainingRequest(
            dataset_version_id=wine.id,
            trainer="tabular-classifier",
            target="cultivar",
            # Every epoch runs (no early stopping): the kill is timed by checkpoints.
            hyperparameters={"epochs": 200, "batch_size": 16, "hidden_size": 16, "patience": 0},
            model_name="no-shared-disk",
        ),
    )
    first_host, second_host = tmp_path / "host-a", tmp_path / "host-b"
    doomed = own_host(config, object_store, first_host, worker_processes)

    async def a_checkpoint_in_the_store() -> bool:
        return await newest_stored_step(platform, job.id) >= 20

    assert await poll_until(a_checkpoint_in_the_store, 180, 0.05) is not None, log_of(first_host)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    stored_at_kill = await newest_stored_step(platform, job.id)
    killed = await job_of(platform, job.id)
    assert (killed.state, killed.attempt) == (JobState.RUNNING, 1)
    assert claimed_pid(killed) == doomed.pid
    # The first host's scratch holds the job's checkpoints; the second host has none of them.
    first_scratch = first_host / "data" / "checkpoints" / str(job.id)
    second_scratch = second_host / "data" / "checkpoints" / str(job.id)
    assert any(first_scratch.iterdir())

    heir = own_host(config, object_store, second_host, worker_processes)
    await wait_for(platform, job.id, lambda j: j.attempt == 2, 60)
    finished = await wait_for(platform, job.id, lambda j: j.state is not JobState.RUNNING, 240)

    assert finished.state is JobState.SUCCEEDED, (finished.reason, log_of(second_host))
    assert (finished.attempt, claimed_pid(finished)) == (2, heir.pid)
    resumed = [e["step"] for e in await stream_events(platform, job.id) if e["type"] == "resumed"]
    # Attempt 1 started afresh; attempt 2 from the newest checkpoint stored before the kill.
    assert resumed == [0, stored_at_kill], resumed
    await assert_one_point_per_step(platform, job.id)
    # Success forgot the stored checkpoints, and the heir's scratch directory is gone.
    assert await newest_stored_step(platform, job.id) == 0
    assert not second_scratch.exists()
    assert "Traceback" not in log_of(second_host)
    # What the killed worker may have put in the store without recording it (it died between
    # the two) is garbage: collected, the bucket holds the dataset and the model only.
    await collect_garbage(platform, grace_s=0)
    async with platform.metadata.acquire() as connection:
        model = (await model_versions_by_jobs(connection, [job.id]))[job.id]
    assert set(await stored_keys(platform.artifacts)) == {wine.artifact_key, model.artifact_key}
