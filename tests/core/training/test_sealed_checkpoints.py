"""Checkpoints are sealed like other artifacts: a training job's checkpoints on disk are sealed
with its project's data key (0600 files in 0700 directories, no readable byte of the state),
and a run resumes from them exactly as from plaintext ones."""

from __future__ import annotations

import io
import stat
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_wine

from aiaas.core.auth import Principal
from aiaas.core.config import Config, build_config
from aiaas.core.errors import TrainingCancelled, TrainingDiverged
from aiaas.core.governance import VAULT
from aiaas.core.identity.projects import create_project
from aiaas.core.jobs import claim_job
from aiaas.core.platform import Platform
from aiaas.core.trainers import Progress, TrainingReporter, TrainingRun
from aiaas.core.training import TrainingRequest, run_training, submit_training_job
from aiaas.core.training.checkpoint_sealing import ProjectCheckpointSealer
from aiaas.plugins.flax_trainers import TabularClassifier
from serving_support import upload, wine_table
from support import bootstrap_admin_principal

# Wine has 142 training rows: 4 steps an epoch in batches of 32, 16 steps in all.
HYPERPARAMETERS = {"epochs": 4, "hidden_size": 16}
PLAINTEXT_MARKS = (b"\x93NUMPY", b"leaf_0", b"PK\x03\x04", b"batch_size", b"layout")
"""What a checkpoint's state shows in clear: the npy magic, the leaves' names, the zip header
of an .npz, the layout's keys. (Orbax's files, which these replaced, show the leaves' names.)"""


class Reporter(TrainingReporter):
    def __init__(self, stop_after_checkpoint: int | None = None) -> None:
        self.resumed_steps: list[int] = []
        self.steps: list[int] = []
        self.checkpoints: list[int] = []
        self.stop_after_checkpoint = stop_after_checkpoint

    def resumed(self, step: int) -> None:
        self.resumed_steps.append(step)

    def progress(self, progress: Progress) -> None:
        self.steps.append(progress.step)

    def checkpointed(self, step: int) -> None:
        self.checkpoints.append(step)

    def should_stop(self) -> bool:
        limit = self.stop_after_checkpoint
        return limit is not None and any(step >= limit for step in self.checkpoints)


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """Checkpoints every other step, so that a job that diverges within a few keeps one."""
    return build_config({**config.model_dump(), "checkpoint_every_steps": 2})


@pytest.fixture(scope="module")
async def admin(platform: Platform, admin_token: str) -> Principal:
    return await bootstrap_admin_principal(platform)


async def new_project(platform: Platform, admin: Principal) -> uuid.UUID:
    slug = f"checkpoints-{uuid.uuid4().hex[:10]}"
    return (await create_project(platform, admin, slug=slug, name=slug)).id


async def project_sealer(platform: Platform, project_id: uuid.UUID) -> ProjectCheckpointSealer:
    return ProjectCheckpointSealer(project_id, await platform.service(VAULT).data_key(project_id))


def wine_run(directory: Path, sealer: ProjectCheckpointSealer) -> TrainingRun:
    features, target = load_wine(return_X_y=True)
    columns = {f"x{index:02d}": features[:, index] for index in range(features.shape[1])}
    return TrainingRun(
        table=pa.table({**columns, "target": target}),
        target="target",
        features=tuple(columns),
        hyperparameters=HYPERPARAMETERS,
        validation_fraction=0.2,
        seed=0,
        checkpoint_dir=directory,
        checkpoint_every_steps=5,
        checkpoint_sealer=sealer,
    )


def assert_sealed_and_private(directory: Path) -> list[Path]:
    """Every file under `directory` is 0600 and shows nothing of the state; every directory is
    0700. Returns the files."""
    files = []
    for path in [directory, *directory.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, f"{path} is {mode:o}"
            continue
        assert mode == 0o600, f"{path} is {mode:o}"
        content = path.read_bytes()
        for mark in PLAINTEXT_MARKS:
            assert mark not in content, f"{path} shows {mark!r} in clear"
        files.append(path)
    assert files, f"no checkpoint under {directory}"
    return files


async def test_a_run_checkpoints_sealed_and_resumes_only_with_its_project_key(
    platform: Platform, admin: Principal, tmp_path: Path
) -> None:
    directory = tmp_path / "checkpoints" / "job"
    sealer = await project_sealer(platform, await new_project(platform, admin))
    cancelled = Reporter(stop_after_checkpoint=10)
    with pytest.raises(TrainingCancelled):
        TabularClassifier().fit(wine_run(directory, sealer), cancelled)
    assert cancelled.checkpoints == [5, 10]
    assert_sealed_and_private(directory)

    # Another worker, with the same project's key, resumes where the run stopped.
    same_key = ProjectCheckpointSealer(sealer.project_id, sealer.data_key)
    resumed = Reporter()
    TabularClassifier().fit(wine_run(directory, same_key), resumed)
    assert resumed.resumed_steps == [10]
    assert resumed.steps == list(range(11, 17))
    assert_sealed_and_private(directory)

    # Another project's key opens none of them: the run starts afresh.
    other = await project_sealer(platform, await new_project(platform, admin))
    afresh = Reporter(stop_after_checkpoint=5)
    with pytest.raises(TrainingCancelled):
        TabularClassifier().fit(wine_run(directory, other), afresh)
    assert afresh.resumed_steps == [0]


async def test_a_job_keeps_its_checkpoints_sealed_with_its_project_key(
    platform: Platform, admin: Principal, tmp_path: Path
) -> None:
    project_id = await new_project(platform, admin)
    version = await upload(platform, admin, project_id, wine_table(), "wine", tmp_path)
    # The loss overflows within a few steps; the job fails and keeps its last good checkpoint.
    job = await submit_training_job(
        platform,
        admin,
        TrainingRequest(
            dataset_version_id=version.id,
            trainer="tabular-classifier",
            target="cultivar",
            hyperparameters={"epochs": 20, "learning_rate": 100.0, "weight_decay": 1.0},
            seed=0,
            model_name="diverged",
        ),
    )
    claimed = await claim_job(platform, job.id, "checkpoint-tests", stale_after_s=300)
    assert claimed is not None
    with pytest.raises(TrainingDiverged):
        await run_training(platform, claimed)

    directory = platform.config.resolved_checkpoint_dir / str(job.id)
    assert stat.S_IMODE(directory.parent.stat().st_mode) == 0o700
    files = assert_sealed_and_private(directory)
    # Sealed with this project's data key: it opens with it, to the state.
    opened = (await project_sealer(platform, project_id)).unseal(files[-1].read_bytes())
    with np.load(io.BytesIO(opened), allow_pickle=False) as archive:
        assert "leaf_00000" in archive.files
        assert int(archive["step"]) == int(files[-1].parent.name)
