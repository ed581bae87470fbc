"""`submitBatchPredictionJob` over GraphQL: a developer queues a job that a real worker runs
into a new version of `<dataset>-predictions`, with its lineage readable through the API and
from the job (`outputDatasetVersion`); the refusals are typed and name their field; a viewer
may not submit. `cancelBatchPredictionJob`: a queued job is CANCELLED at once, a running one
stops at its next part with no version registered and its parts removed, a finished one is a
ConflictError, each audited; a viewer may not cancel."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from aiaas.core.config import Config
from aiaas.core.data import datasets
from aiaas.core.identity.access import ProjectRole
from aiaas.core.jobs import JobState
from aiaas.core.platform import Platform
from aiaas.core.serving.batch_prediction import (
    BatchPredictionRequest,
    output_of_job,
    submit_batch_prediction,
)
from aiaas.core.training import registry as models
from aiaas.graphql.relay import to_global_id
from core.serving.test_batch_prediction import ended, run_worker_until_idle
from serving_support import train_version, upload, wine_table
from support import (
    Team,
    audit_mark,
    audit_rows_since,
    data_of,
    events_since,
    graphql,
    new_team,
    poll_until,
    project_state,
)

SUBMIT = """
mutation($input: SubmitBatchPredictionJobInput!) {
  submitBatchPredictionJob(input: $input) {
    __typename
    ... on BatchPredictionQueued { job { id kind state } }
    ... on InvalidInputError { message fieldErrors { field message } }
    ... on NotFoundError { message }
  }
}
"""

OUTPUT = """
query($slug: String!, $name: String!) {
  project(slug: $slug) {
    dataset(name: $name) {
      latestVersion {
        id rowCount transformation columns { name }
        parent { id }
      }
    }
  }
}
"""

JOB = """
query($id: ID!) {
  node(id: $id) { ... on Job { state reason kind outputDatasetVersion { id rowCount } } }
}
"""

CANCEL = """
mutation($id: ID!) {
  cancelBatchPredictionJob(id: $id) {
    __typename
    ... on BatchPredictionJobSuccess { job { id kind state reason } }
    ... on ConflictError { message code }
    ... on NotFoundError { message }
  }
}
"""


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(
        platform, f"batch-api-{uuid.uuid4().hex[:8]}", (ProjectRole.DEVELOPER, ProjectRole.VIEWER)
    )


@pytest.fixture(scope="module")
async def wine(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> datasets.DatasetVersion:
    developer = team.members[ProjectRole.DEVELOPER].principal
    return await upload(
        platform, developer, team.project_id, wine_table(), "wine", tmp_path_factory.mktemp("w")
    )


@pytest.fixture(scope="module")
async def version(
    platform: Platform, team: Team, wine: datasets.DatasetVersion
) -> models.ModelVersion:
    developer = team.members[ProjectRole.DEVELOPER].principal
    return await train_version(platform, developer, wine, target="cultivar", model_name="wine")


def submit_input(dataset_version: Any, model_version: Any, **more: Any) -> dict[str, Any]:
    return {
        "input": {
            "datasetVersion": to_global_id("DatasetVersion", dataset_version.id),
            "modelVersion": to_global_id("ModelVersion", model_version.id),
            **more,
        }
    }


async def test_a_developer_scores_a_version_into_a_new_one_with_lineage(
    client: httpx.AsyncClient,
    platform: Platform,
    config: Config,
    team: Team,
    wine: datasets.DatasetVersion,
    version: models.ModelVersion,
) -> None:
    token = team.token(ProjectRole.DEVELOPER)
    submitted = data_of(
        await graphql(
            client, SUBMIT, submit_input(wine, version, outputDataset="scored"), token=token
        )
    )["submitBatchPredictionJob"]
    assert submitted["__typename"] == "BatchPredictionQueued", submitted
    assert submitted["job"]["kind"] == "batch_prediction"

    await run_worker_until_idle(config)

    job = data_of(await graphql(client, JOB, {"id": submitted["job"]["id"]}, token=token))["node"]
    assert job["state"] == "SUCCEEDED", job
    found = data_of(
        await graphql(client, OUTPUT, {"slug": team.slug, "name": "scored"}, token=token)
    )["project"]["dataset"]["latestVersion"]
    # The job names the version it made: the one the dataset's latest version is.
    assert job["outputDatasetVersion"] == {"id": found["id"], "rowCount": wine.row_count}
    # A finished job has nothing to cancel.
    mark = await audit_mark(platform)
    finished = data_of(await graphql(client, CANCEL, {"id": submitted["job"]["id"]}, token=token))[
        "cancelBatchPredictionJob"
    ]
    assert finished["__typename"] == "ConflictError", finished
    assert "SUCCEEDED" in finished["message"]
    assert await events_since(platform, mark) == [("batch_prediction.cancel", "failed")]
    assert found["rowCount"] == wine.row_count
    assert found["parent"]["id"] == to_global_id("DatasetVersion", wine.id)
    assert found["transformation"][0]["model_version_id"] == str(version.id)
    names = [column["name"] for column in found["columns"]]
    assert names[-4:] == [
        "predicted_label",
        "predicted_probabilities_0",
        "predicted_probabilities_1",
        "predicted_probabilities_2",
    ]


async def test_missing_feature_columns_are_refused_naming_them_and_nothing_is_made(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    version: models.ModelVersion,
    tmp_path: Path,
) -> None:
    developer = team.members[ProjectRole.DEVELOPER].principal
    partial = await upload(
        platform,
        developer,
        team.project_id,
        wine_table().drop_columns(["proline"]),
        "wine-partial",
        tmp_path,
    )
    before = await project_state(platform, team.project_id)
    refused = data_of(
        await graphql(
            client,
            SUBMIT,
            submit_input(partial, version),
            token=team.token(ProjectRole.DEVELOPER),
        )
    )["submitBatchPredictionJob"]
    assert refused["__typename"] == "InvalidInputError", refused
    errors = {error["field"]: error["message"] for error in refused["fieldErrors"]}
    assert "proline" in errors["datasetVersion"], errors
    assert await project_state(platform, team.project_id) == before


async def test_a_viewer_may_not_submit(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    wine: datasets.DatasetVersion,
    version: models.ModelVersion,
) -> None:
    before = await project_state(platform, team.project_id)
    status, body = await graphql(
        client, SUBMIT, submit_input(wine, version), token=team.token(ProjectRole.VIEWER)
    )
    assert status == 200 and body.get("errors"), body
    assert await project_state(platform, team.project_id) == before


def job_id_of(job: Any) -> str:
    return to_global_id("Job", job.id)


async def test_a_queued_job_is_cancelled_at_once_and_a_viewer_may_not_cancel(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    wine: datasets.DatasetVersion,
    version: models.ModelVersion,
) -> None:
    developer = team.members[ProjectRole.DEVELOPER].principal
    job = await submit_batch_prediction(
        platform,
        developer,
        BatchPredictionRequest(dataset_version_id=wine.id, model_version_id=version.id),
    )
    before = await project_state(platform, team.project_id)
    status, body = await graphql(
        client, CANCEL, {"id": job_id_of(job)}, token=team.token(ProjectRole.VIEWER)
    )
    assert status == 200 and body.get("errors"), body
    assert await project_state(platform, team.project_id) == before
    assert (await ended(platform, job)).state is JobState.QUEUED

    mark = await audit_mark(platform)
    cancelled = data_of(
        await graphql(
            client, CANCEL, {"id": job_id_of(job)}, token=team.token(ProjectRole.DEVELOPER)
        )
    )["cancelBatchPredictionJob"]
    assert cancelled["__typename"] == "BatchPredictionJobSuccess", cancelled
    assert cancelled["job"]["state"] == "CANCELLED"
    assert "before it started" in cancelled["job"]["reason"]
    rows = await audit_rows_since(platform, mark, action="batch_prediction.cancel")
    assert [(row["outcome"], row["object_id"]) for row in rows] == [("success", str(job.id))]
    # A training job's id is no batch prediction job's, nor is an unknown one.
    wrong = data_of(
        await graphql(
            client,
            CANCEL,
            {"id": to_global_id("Job", uuid.uuid4())},
            token=team.token(ProjectRole.DEVELOPER),
        )
    )["cancelBatchPredictionJob"]
    assert wrong["__typename"] == "NotFoundError", wrong


async def test_a_running_job_cancelled_stops_at_a_part_and_registers_nothing(
    client: httpx.AsyncClient,
    platform: Platform,
    config: Config,
    team: Team,
    version: models.ModelVersion,
    tmp_path: Path,
) -> None:
    developer = team.members[ProjectRole.DEVELOPER].principal
    # 3,560 rows in parts of one row: seconds of scoring, where the cancellation is seen
    # within a quarter of a second.
    many = pa.concat_tables([wine_table()] * 20)
    big = await upload(platform, developer, team.project_id, many, "wine-many", tmp_path)
    job = await submit_batch_prediction(
        platform,
        developer,
        BatchPredictionRequest(
            dataset_version_id=big.id,
            model_version_id=version.id,
            output_dataset="never-made",
            batch_rows=1,
        ),
    )
    parts = config.resolved_checkpoint_dir / str(job.id)
    worker = asyncio.create_task(run_worker_until_idle(config))
    try:

        async def scoring() -> bool:
            assert not worker.done(), "the worker ended before the job was cancelled"
            return len(list(parts.glob("part-*.sealed"))) >= 3

        assert await poll_until(scoring, timeout_s=120, interval_s=0.01) is not None
        mark = await audit_mark(platform)
        asked = data_of(
            await graphql(
                client, CANCEL, {"id": job_id_of(job)}, token=team.token(ProjectRole.DEVELOPER)
            )
        )["cancelBatchPredictionJob"]
        assert asked["__typename"] == "BatchPredictionJobSuccess", asked
        assert asked["job"]["state"] == "RUNNING"  # it stops at its next part
    finally:
        await worker

    finished = await ended(platform, job)
    assert finished.state is JobState.CANCELLED, finished.reason
    assert finished.reason is not None
    assert finished.reason.startswith(f"cancelled by {developer.username}; stopped after ")
    assert "no version registered" in finished.reason
    async with platform.metadata.acquire() as connection:
        assert await output_of_job(connection, finished) is None
        made = await datasets.dataset_by_name(connection, team.project_id, "never-made")
    assert made is None
    assert not parts.exists()
    rows = await audit_rows_since(platform, mark, action="batch_prediction.cancel")
    assert [(row["outcome"], row["details"]) for row in rows] == [("success", {"state": "RUNNING"})]
    assert ("batch_prediction.register", "success") not in await events_since(platform, mark)
    node = data_of(
        await graphql(client, JOB, {"id": job_id_of(job)}, token=team.token(ProjectRole.VIEWER))
    )["node"]
    assert (node["state"], node["outputDatasetVersion"]) == ("CANCELLED", None)
