"""The SDK's deploying and predicting against a real `aiaas serve` and `aiaas worker`: a wine
classifier uploaded, trained by the worker and found as `job.model_version` and through
`project.model(name)`; deployed and waited READY; 114 rows predicted in requests of at most
`maxBatchSize` 32, equal to tritonclient's answers row by row, in the frame's order; a frame
missing input columns refused naming them with no request sent; a stopped deployment refused;
a refusal of the V2 API (`{"error", "code"}`) a typed exception; a canary, its promotion and
the rollback round trip; the drift reports of the served version."""

from __future__ import annotations

import dataclasses
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from aiaas.client import Client, Deployment, ModelVersion
from aiaas.client.deployments import (
    DeploymentFailedError,
    DeploymentNotReadyError,
    MissingColumnsError,
)
from aiaas.client.errors import InvalidInputError, NotFoundError
from aiaas.client.generated.schema_types import DeploymentState
from aiaas.core.platform import Platform
from aiaas.core.serving.drift_checks import check_drift
from server_watch import Server
from serving_support import wine_table

pytestmark = pytest.mark.slow


def features(start: int, stop: int) -> dict[str, np.ndarray]:
    table = wine_table().drop_columns(["cultivar"]).slice(start, stop - start)
    return {name: np.asarray(values, np.float32) for name, values in table.to_pydict().items()}


def _rows_of(request: httpx.Request) -> int:
    """The rows of a binary V2 request: the first dimension of the inputs of its JSON header."""
    header = json.loads(request.content[: int(request.headers["Inference-Header-Content-Length"])])
    return int(header["inputs"][0]["shape"][0])


def test_a_trained_version_is_found_by_its_model_and_deployed_ready(
    client: Client, project_slug: str, versions: list[ModelVersion], deployment: Deployment
) -> None:
    model = client.project(project_slug).model("wine")
    assert sorted(version.number for version in model.versions) == [1, 2]
    assert model.version(2).id == versions[1].id
    with pytest.raises(NotFoundError):
        model.version(3)
    assert deployment.state is DeploymentState.READY
    assert (deployment.max_batch_size, deployment.stable_version_id) == (32, versions[0].id)
    found = client.project(project_slug).deployment("wine")
    assert (found.id, found.v2_model_name) == (deployment.id, deployment.v2_model_name)


def test_114_rows_are_predicted_in_order_as_tritonclient_answers_them(
    server: Server, admin_token: str, deployment: Deployment
) -> None:
    import pandas

    order = np.random.default_rng(7).permutation(114)
    columns = {name: values[order] for name, values in features(0, 114).items()}
    frame = pandas.DataFrame(columns)
    sent: list[httpx.Request] = []
    with Client(server.running.base_url, admin_token) as counted:
        counted.http.event_hooks["request"].append(sent.append)
        predicted = dataclasses.replace(deployment, client=counted).predict(frame, concurrency=3)
    inferred = [request for request in sent if request.url.path.startswith("/v2/")]
    # 114 rows in requests of at most 32: 32, 32, 32 and 18.
    assert sorted(_rows_of(request) for request in inferred) == [18, 32, 32, 32]

    def by_tritonclient() -> dict[str, np.ndarray]:
        reference = triton.InferenceServerClient(url=f"127.0.0.1:{server.running.port}")
        try:
            inputs = []
            for name, values in columns.items():
                tensor = triton.InferInput(name, list(values.shape), "FP32")
                tensor.set_data_from_numpy(values)
                inputs.append(tensor)
            answer = reference.infer(
                deployment.v2_model_name,
                inputs,
                headers={"Authorization": f"Bearer {admin_token}"},
            )
            return {name: answer.as_numpy(name) for name in ("label", "probabilities")}
        finally:
            reference.close()

    with ThreadPoolExecutor(1) as thread:  # tritonclient's gevent stays off this thread
        expected = thread.submit(by_tritonclient).result()
    assert list(predicted.columns) == ["label", "probabilities"]
    assert len(predicted) == 114
    labels = [value.decode() if isinstance(value, bytes) else value for value in expected["label"]]
    assert list(predicted["label"]) == labels
    np.testing.assert_allclose(
        np.stack(predicted["probabilities"].to_list()), expected["probabilities"], rtol=1e-5
    )
    # A pyarrow Table and a dict of columns answer the same.
    import pyarrow as pa

    assert list(deployment.predict(pa.table(columns))["label"]) == labels
    assert list(deployment.predict(columns)["label"]) == labels


def test_a_frame_missing_input_columns_is_refused_naming_them_before_any_request(
    server: Server, admin_token: str, deployment: Deployment
) -> None:
    sent: list[httpx.Request] = []
    with Client(server.running.base_url, admin_token) as counted:
        counted.http.event_hooks["request"].append(sent.append)
        watched = dataclasses.replace(deployment, client=counted)
        columns = features(0, 10)
        missing = ["alcohol", "proline"]
        for name in missing:
            del columns[name]
        with pytest.raises(MissingColumnsError) as refused:
            watched.predict(columns)
    assert refused.value.missing == missing
    assert all(repr(name) in str(refused.value) for name in missing)
    assert sent == []


def test_a_deployment_that_does_not_serve_is_refused(versions: list[ModelVersion]) -> None:
    stopped = versions[0].deploy(f"gone-{uuid.uuid4().hex[:6]}", max_batch_size=8)
    stopped.delete()
    with pytest.raises(DeploymentNotReadyError) as refused:
        stopped.predict(features(0, 4))
    assert refused.value.state is stopped.state
    assert stopped.state is not DeploymentState.READY
    with pytest.raises(DeploymentFailedError):
        stopped.wait_ready(timeout=60)


def test_a_canary_is_promoted_and_rolled_back(
    versions: list[ModelVersion], deployment: Deployment
) -> None:
    first, second = versions
    deployment.update_traffic(canary=second, canary_percent=20).wait_ready(timeout=120)
    assert (deployment.stable_version_id, deployment.canary_version_id) == (first.id, second.id)
    assert (deployment.stable_percent, deployment.canary_percent) == (80, 20)
    deployment.promote().wait_ready(timeout=120)
    assert deployment.stable_version_id == second.id
    assert deployment.previous_stable_version_id == first.id
    assert (deployment.stable_percent, deployment.canary_version_id) == (100, None)
    deployment.rollback().wait_ready(timeout=120)
    assert deployment.stable_version_id == first.id
    assert len(deployment.predict(features(0, 5))) == 5


def test_a_refusal_of_the_v2_api_is_a_typed_exception_with_its_message(
    deployment: Deployment,
) -> None:
    columns = features(0, 4)
    columns["alcohol"] = np.stack([columns["alcohol"], columns["alcohol"]], axis=1)
    with pytest.raises(InvalidInputError) as refused:
        deployment.predict(columns)
    assert "alcohol" in str(refused.value)
    assert refused.value.code


async def test_drift_reports_are_read_per_served_version(
    deployment: Deployment, versions: list[ModelVersion], platform: Platform
) -> None:
    assert deployment.refresh().drift() == []  # no check has run yet
    # The worker's periodic check, run now against the same database.
    await check_drift(platform)

    [report] = deployment.drift()
    assert report.model_version.number == versions[0].number
    assert report.threshold == platform.config.drift_psi_threshold
    if report.sample_count < platform.config.drift_min_samples:
        # Too few samples for a PSI: the report says so rather than guess.
        assert (report.max_psi, report.alert) == (None, False)
    assert report.computed_at >= report.window_start
