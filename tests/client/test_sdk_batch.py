"""The SDK's batch scoring against a real `aiaas serve` and `aiaas worker`: a version of the wine
data scored by a model version and by a deployment (`batch_predict`), followed to its end with
a progress bar of rows, its `output` a new version whose parent is the scored one and whose
predictions are what `deployment.predict` answers for the same rows; a version without the
model's feature columns refused naming them, with no job made; a running job cancelled through
the SDK ends CANCELLED with no output, and a finished one cannot be cancelled."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aiaas.client import BatchPredictionJob, Client, DatasetVersion, Deployment, ModelVersion
from aiaas.client.errors import ConflictError, InvalidInputError, JobFailedError
from aiaas.client.generated.schema_types import JobState
from aiaas.core.identity.accounts import verify_token
from aiaas.core.platform import Platform
from aiaas.core.serving.batch_prediction import BatchPredictionRequest, submit_batch_prediction
from aiaas.graphql.relay import from_global_id, to_global_id
from serving_support import wine_table

pytestmark = pytest.mark.slow

PREDICTIONS = ["predicted_label", *(f"predicted_probabilities_{i}" for i in range(3))]


@pytest.fixture(scope="module")
def wine(client: Client, project_slug: str, versions: list[ModelVersion]) -> DatasetVersion:
    """The version the model versions were trained on (uploaded by `versions`)."""
    return client.project(project_slug).latest_version("wine")


def downloaded(client: Client, slug: str, dataset: str, version: DatasetVersion) -> pa.Table:
    """A version's rows, as the server's REST download answers them."""
    path = f"/v1/projects/{slug}/datasets/{dataset}/versions/{version.number}/data"
    response = client.http.get(path)
    assert response.status_code == 200, response.text
    return pq.read_table(io.BytesIO(response.content))


def parent_of(client: Client, version: DatasetVersion) -> str:
    query = "query($id: ID!) { node(id: $id) { ... on DatasetVersion { parent { id } } } }"
    response = client.http.post("/graphql", json={"query": query, "variables": {"id": version.id}})
    assert response.status_code == 200, response.text
    parent: str = response.json()["data"]["node"]["parent"]["id"]
    return parent


async def job_count(platform: Platform) -> int:
    async with platform.metadata.acquire() as connection:
        return int(await connection.fetchval("SELECT count(*) FROM jobs"))


def test_a_version_is_scored_as_the_deployment_predicts_it_with_lineage_to_it(
    client: Client,
    project_slug: str,
    wine: DatasetVersion,
    versions: list[ModelVersion],
    deployment: Deployment,
    capfd: pytest.CaptureFixture[str],
) -> None:
    by_version = versions[0].batch_predict(wine, output_dataset="wine-scored")
    assert isinstance(by_version, BatchPredictionJob)
    assert by_version.wait(progress=True, timeout=300) is by_version
    assert "batch prediction" in capfd.readouterr().err  # the progress bar, on stderr
    assert by_version.rows_done == wine.row_count
    # A deployment scores with its stable version, which is versions[0]: the same answers.
    by_deployment = deployment.batch_predict(wine.id).wait(progress=False, timeout=300)

    scored = by_version.output
    assert scored is not None
    assert (scored.row_count, scored.created) == (wine.row_count, False)
    assert [column["name"] for column in scored.columns][-4:] == PREDICTIONS
    assert parent_of(client, scored) == wine.id
    table = downloaded(client, project_slug, "wine-scored", scored)
    other = by_deployment.output
    assert other is not None and other.id != scored.id
    assert parent_of(client, other) == wine.id

    features = wine_table().drop_columns(["cultivar"])
    assert table.select(features.column_names).to_pydict() == features.to_pydict()
    predicted = deployment.predict(features)
    assert table["predicted_label"].to_pylist() == list(predicted["label"])
    probabilities = np.stack(
        [table[f"predicted_probabilities_{i}"].to_numpy() for i in range(3)], axis=1
    )
    np.testing.assert_allclose(
        probabilities, np.stack(predicted["probabilities"].to_list()), rtol=1e-5, atol=1e-6
    )
    from_deployment = downloaded(client, project_slug, "wine-predictions", other)
    assert from_deployment.select(PREDICTIONS).equals(table.select(PREDICTIONS))

    with pytest.raises(ConflictError):
        by_version.cancel()  # it has finished


async def test_a_version_without_the_models_feature_columns_is_refused_and_no_job_made(
    client: Client, platform: Platform, project_slug: str, versions: list[ModelVersion]
) -> None:
    partial = client.project(project_slug).upload(
        wine_table().drop_columns(["alcohol", "hue"]), name="wine-partial", progress=False
    )
    before = await job_count(platform)
    with pytest.raises(InvalidInputError) as refused:
        versions[0].batch_predict(partial)
    problem = refused.value.field_errors["datasetVersion"]
    assert "alcohol" in problem and "hue" in problem, problem
    assert await job_count(platform) == before


async def test_a_running_job_is_cancelled_and_ends_without_output(
    client: Client,
    platform: Platform,
    admin_token: str,
    project_slug: str,
    versions: list[ModelVersion],
) -> None:
    # Parts of one row each, of 7,120 rows: the job runs for seconds, where a cancellation is
    # seen within a quarter of one. (The API takes no part size; the kernel does.)
    many = client.project(project_slug).upload(
        pa.concat_tables([wine_table()] * 40), name="wine-many", progress=False
    )
    async with platform.metadata.acquire() as connection:
        admin = await verify_token(connection, admin_token, "test")
    queued = await submit_batch_prediction(
        platform,
        admin,
        BatchPredictionRequest(
            dataset_version_id=from_global_id(many.id)[1],
            model_version_id=from_global_id(versions[0].id)[1],
            batch_rows=1,
        ),
    )
    job = BatchPredictionJob.get(client, to_global_id("Job", queued.id))
    for event in job.events(timeout=120):
        if event.type == "progress" and (event.step or 0) >= 3:
            break
    assert job.state is JobState.RUNNING
    assert job.cancel().state is JobState.RUNNING  # asked: it stops at its next part
    with pytest.raises(JobFailedError) as stopped:
        job.wait(progress=False, timeout=120)
    assert stopped.value.job is job
    assert job.state is JobState.CANCELLED
    assert job.reason is not None and "no version registered" in job.reason
    assert job.output is None
    with pytest.raises(ConflictError):
        job.cancel()
