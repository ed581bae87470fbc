"""Batch scoring through a real arq worker: a whole dataset version scored with a deployment's
model into a new version, equal to what the serving runtime answers on the same rows, in their
order, with lineage to both sources; progress on the job's stream; audited; bad requests
refused with nothing made; a project archived before the job ran gets nothing; and a worker
killed with SIGKILL mid-job leaves its job to another, which resumes from its last part and
registers exactly one version with every row."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from arq.worker import Worker

from aiaas.core.auth import Principal
from aiaas.core.config import Config
from aiaas.core.data import datasets
from aiaas.core.data.tabular.normalized import write_normalized
from aiaas.core.errors import ConflictError, InputError, NotFoundError
from aiaas.core.identity.access import ProjectRole
from aiaas.core.identity.projects import archive_project
from aiaas.core.jobs import Job, JobState, get_job
from aiaas.core.platform import Platform
from aiaas.core.serving import INFERENCE_SERVER, deployments
from aiaas.core.serving.batch_prediction import BatchPredictionRequest, submit_batch_prediction
from aiaas.core.serving.batch_prediction_runner import output_of_job
from aiaas.core.serving.deployments import Batching, Deployment, NewDeployment
from aiaas.core.serving.rollout import RolloutSupervisor
from aiaas.core.training import registry as models
from aiaas.workers.settings import worker_settings
from e2e.test_training_live import start_worker, stream_events, wait_for, worker_processes
from serving_support import assert_same_stats, train_version, upload, wine_table
from support import Team, audit_mark, events_since, leftovers, new_team, poll_until, project_state

__all__ = ["worker_processes"]  # the fixture, used by the kill test

BATCH_ROWS = 16
"""Rows per part in the kill test."""
FEATURES = [name for name in wine_table().column_names if name != "cultivar"]
PREDICTIONS = [
    "predicted_label",
    "predicted_probabilities_0",
    "predicted_probabilities_1",
    "predicted_probabilities_2",
]


async def run_worker_until_idle(config: Config) -> None:
    """A real arq worker with the real job handlers, in burst mode: it runs what is queued."""
    settings = worker_settings(config)
    settings["cron_jobs"] = []
    worker = Worker(**settings, burst=True, handle_signals=False)
    try:
        await asyncio.wait_for(worker.async_run(), timeout=180)
    finally:
        await worker.close()


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, f"batch-{uuid.uuid4().hex[:8]}", (ProjectRole.DEVELOPER,))


@pytest.fixture(scope="module")
def developer(team: Team) -> Principal:
    return team.members[ProjectRole.DEVELOPER].principal


@pytest.fixture(scope="module")
async def wine(
    platform: Platform, team: Team, developer: Principal, tmp_path_factory: pytest.TempPathFactory
) -> datasets.DatasetVersion:
    return await upload(
        platform, developer, team.project_id, wine_table(), "wine", tmp_path_factory.mktemp("w")
    )


@pytest.fixture(scope="module")
async def version(
    platform: Platform, developer: Principal, wine: datasets.DatasetVersion
) -> models.ModelVersion:
    return await train_version(platform, developer, wine, target="cultivar", model_name="wine")


@pytest.fixture(scope="module")
async def deployment(
    platform: Platform, developer: Principal, version: models.ModelVersion
) -> Deployment:
    created = await deployments.create_deployment(
        platform,
        developer,
        NewDeployment(
            name="wine-batch",
            version_id=version.id,
            batching=Batching(max_batch_size=32, max_wait_ms=1.0, max_queue_rows=10_000),
        ),
    )
    rollouts = RolloutSupervisor(
        platform, platform.service(INFERENCE_SERVER), poll_interval_s=60.0, stale_after_s=30.0
    )
    assert await rollouts.roll_out_one() is True
    async with platform.metadata.acquire() as connection:
        ready = await deployments.get_deployment(connection, created.id)
    assert ready.state is deployments.DeploymentState.READY, ready.reason
    return ready


async def ended(platform: Platform, job: Job) -> Job:
    async with platform.metadata.acquire() as connection:
        found = await get_job(connection, job.id)
    assert found is not None
    return found


async def output_table(platform: Platform, job: Job) -> tuple[datasets.DatasetVersion, pa.Table]:
    async with platform.metadata.acquire() as connection:
        output = await output_of_job(connection, job)
    assert output is not None
    return output, await datasets.read_version_table(platform, output)


def project_rows(state: dict[str, object]) -> dict[str, object]:
    return {table: rows for table, rows in state.items() if table != "projects"}


async def test_a_version_scored_with_a_deployment_equals_its_predictions_in_row_order(
    platform: Platform,
    config: Config,
    team: Team,
    developer: Principal,
    wine: datasets.DatasetVersion,
    version: models.ModelVersion,
    deployment: Deployment,
    tmp_path: Path,
) -> None:
    mark = await audit_mark(platform)
    job = await submit_batch_prediction(
        platform,
        developer,
        BatchPredictionRequest(
            dataset_version_id=wine.id, deployment_id=deployment.id, batch_rows=50
        ),
    )

    await run_worker_until_idle(config)

    finished = await ended(platform, job)
    assert finished.state is JobState.SUCCEEDED, finished.reason
    output, table = await output_table(platform, job)
    # Lineage to both: the scored version is its parent, the model version is named.
    assert output.parent_version_id == wine.id
    assert output.transformation == [
        {
            "step": "batch_prediction",
            "job_id": str(job.id),
            "model_version_id": str(version.id),
            "deployment_id": str(deployment.id),
        }
    ]
    async with platform.metadata.acquire() as connection:
        dataset = (await datasets.datasets_by_ids(connection, [output.dataset_id]))[
            output.dataset_id
        ]
    assert (dataset.name, dataset.project_id) == ("wine-predictions", team.project_id)
    # The input's rows, whole and in their order, then the predictions.
    source = wine_table()
    assert table.column_names == [*source.column_names, *PREDICTIONS]
    assert table.num_rows == output.row_count == source.num_rows
    assert table.select(source.column_names).to_pydict() == source.to_pydict()
    served = await platform.service(INFERENCE_SERVER).predict(
        deployment.id,
        {name: np.asarray(source[name], dtype=np.float32) for name in FEATURES},
        protocol="graphql",
    )
    assert table["predicted_label"].to_pylist() == served.outputs["label"].tolist()
    scored = np.stack([table[f"predicted_probabilities_{i}"].to_numpy() for i in range(3)], axis=1)
    np.testing.assert_allclose(scored, served.outputs["probabilities"], rtol=1e-6, atol=1e-7)
    # Its statistics are those of its whole table: the input columns' taken from the scored
    # version (the same values), the prediction columns' profiled.
    whole = write_normalized(
        iter(table.to_batches()), table.schema, tmp_path / "whole.parquet", "derived"
    )
    assert_same_stats(await datasets.version_column_stats(platform, output), whole.column_stats)
    assert await datasets.version_preview(platform, output) == whole.preview
    # Progress on the job's stream, up to every row; the parts are gone once registered.
    progress = [e for e in await stream_events(platform, job.id) if e["type"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["total_steps"] == source.num_rows
    assert not (config.resolved_checkpoint_dir / str(job.id)).exists()
    assert (await leftovers(platform)).scratch_files == ()
    # Audited: the submission, and the version the job registered.
    events = await events_since(platform, mark)
    assert ("batch_prediction.submit", "success") in events
    assert ("batch_prediction.register", "success") in events


async def test_a_version_without_the_models_feature_columns_is_refused_with_nothing_made(
    platform: Platform,
    team: Team,
    developer: Principal,
    version: models.ModelVersion,
    tmp_path: Path,
) -> None:
    partial = await upload(
        platform,
        developer,
        team.project_id,
        wine_table().drop_columns(["alcohol", "hue"]),
        "wine-partial",
        tmp_path,
    )
    before = await project_state(platform, team.project_id)
    with pytest.raises(InputError) as refused:
        await submit_batch_prediction(
            platform,
            developer,
            BatchPredictionRequest(dataset_version_id=partial.id, model_version_id=version.id),
        )
    problem = refused.value.field_errors["datasetVersion"]
    assert "alcohol" in problem and "hue" in problem, problem
    assert await project_state(platform, team.project_id) == before


async def test_an_unknown_or_foreign_model_and_a_double_source_are_refused(
    platform: Platform,
    team: Team,
    developer: Principal,
    wine: datasets.DatasetVersion,
    version: models.ModelVersion,
    deployment: Deployment,
    tmp_path: Path,
) -> None:
    other = await new_team(platform, f"other-{uuid.uuid4().hex[:8]}", ())
    outsider = other.members[ProjectRole.OWNER].principal
    foreign_data = await upload(
        platform, outsider, other.project_id, wine_table(), "wine", tmp_path
    )
    before = await project_state(platform, team.project_id)
    with pytest.raises(NotFoundError):
        await submit_batch_prediction(
            platform,
            developer,
            BatchPredictionRequest(dataset_version_id=wine.id, model_version_id=uuid.uuid4()),
        )
    # A dataset version of another project with this project's model: not found, as if none.
    with pytest.raises(NotFoundError):
        await submit_batch_prediction(
            platform,
            outsider,
            BatchPredictionRequest(dataset_version_id=foreign_data.id, model_version_id=version.id),
        )
    with pytest.raises(InputError) as both:
        await submit_batch_prediction(
            platform,
            developer,
            BatchPredictionRequest(
                dataset_version_id=wine.id, model_version_id=version.id, deployment_id=deployment.id
            ),
        )
    assert "exactly one" in str(both.value)
    with pytest.raises(InputError) as badly_named:
        await submit_batch_prediction(
            platform,
            developer,
            BatchPredictionRequest(
                dataset_version_id=wine.id, model_version_id=version.id, output_dataset="No Way"
            ),
        )
    assert set(badly_named.value.field_errors) == {"outputDataset"}
    assert await project_state(platform, team.project_id) == before


async def test_an_archived_project_takes_no_job_and_a_queued_job_registers_nothing(
    platform: Platform, config: Config, tmp_path: Path
) -> None:
    team = await new_team(platform, f"archived-{uuid.uuid4().hex[:8]}", ())
    owner = team.members[ProjectRole.OWNER].principal
    wine = await upload(platform, owner, team.project_id, wine_table(), "wine", tmp_path)
    version = await train_version(platform, owner, wine, target="cultivar", model_name="wine")
    queued = await submit_batch_prediction(
        platform,
        owner,
        BatchPredictionRequest(dataset_version_id=wine.id, model_version_id=version.id),
    )
    await archive_project(platform, owner, team.project_id)
    before = await project_state(platform, team.project_id)
    with pytest.raises(ConflictError):
        await submit_batch_prediction(
            platform,
            owner,
            BatchPredictionRequest(dataset_version_id=wine.id, model_version_id=version.id),
        )
    assert project_rows(await project_state(platform, team.project_id)) == project_rows(before)

    await run_worker_until_idle(config)

    finished = await ended(platform, queued)
    assert finished.state is JobState.FAILED
    assert finished.reason is not None and "archived" in finished.reason
    async with platform.metadata.acquire() as connection:
        assert await output_of_job(connection, queued) is None
    assert not (config.resolved_checkpoint_dir / str(queued.id)).exists()


@pytest.mark.slow
async def test_a_worker_killed_mid_job_is_resumed_and_registers_one_version_with_every_row(
    platform: Platform,
    config: Config,
    team: Team,
    developer: Principal,
    version: models.ModelVersion,
    worker_processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    # Thousands of small parts: the job is still scoring when its first five are there.
    copies = 200
    many = pa.concat_tables([wine_table()] * copies)
    big = await upload(platform, developer, team.project_id, many, "wine-many", tmp_path)
    job = await submit_batch_prediction(
        platform,
        developer,
        BatchPredictionRequest(
            dataset_version_id=big.id, model_version_id=version.id, batch_rows=BATCH_ROWS
        ),
    )
    doomed = start_worker(config, tmp_path / "doomed.log", worker_processes)

    parts = config.resolved_checkpoint_dir / str(job.id)

    async def some_parts_scored() -> bool:
        # Whole parts only: a part is renamed into place once written.
        return len(list(parts.glob("part-*.sealed"))) >= 5

    assert await poll_until(some_parts_scored, timeout_s=120, interval_s=0.01) is not None
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    killed_at = await ended(platform, job)
    assert killed_at.state is JobState.RUNNING and killed_at.attempt == 1
    start_worker(config, tmp_path / "heir.log", worker_processes)
    finished = await wait_for(platform, job.id, lambda j: j.state.value != "RUNNING", 240)
    assert finished.state is JobState.SUCCEEDED, finished.reason
    assert finished.attempt == 2
    resumed = [e for e in await stream_events(platform, job.id) if e["type"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["step"] >= 5 * BATCH_ROWS, resumed
    # Exactly one version, with every row once, in order, scored as one run would.
    async with platform.metadata.acquire() as connection:
        outputs = await connection.fetchval(
            "SELECT count(*) FROM dataset_versions WHERE parent_version_id = $1", big.id
        )
    assert outputs == 1
    output, table = await output_table(platform, job)
    assert table.num_rows == output.row_count == many.num_rows
    assert table.select(many.column_names).to_pydict() == many.to_pydict()
    labels = np.asarray(table["predicted_label"].to_pylist()).reshape(copies, -1)
    assert (labels == labels[0]).all()
    assert not (config.resolved_checkpoint_dir / str(job.id)).exists()
