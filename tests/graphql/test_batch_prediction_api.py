"""`submitBatchPredictionJob` over GraphQL: a developer queues a job that a real worker runs
into a new version of `<dataset>-predictions`, with its lineage readable through the API; the
refusals are typed and name their field; a viewer may not submit."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiaas.core.config import Config
from aiaas.core.data import datasets
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.training import registry as models
from aiaas.graphql.relay import to_global_id
from core.serving.test_batch_prediction import run_worker_until_idle
from serving_support import train_version, upload, wine_table
from support import Team, data_of, graphql, new_team, project_state

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
        rowCount transformation columns { name }
        parent { id }
      }
    }
  }
}
"""

JOB = "query($id: ID!) { node(id: $id) { ... on Job { state reason kind } } }"


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
