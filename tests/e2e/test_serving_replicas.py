"""Serving across real processes: two `aiaas serve` (uvicorn) on loopback against one database and
one Redis, the first with every role and the second with the inference role (AIAAS_ROLE, which
`aiaas serve --role inference` sets), each called over V2 REST by tritonclient, a standard
client not written here, with its defaults (binary tensors).

Either process may roll a deployment out; the other loads the model from the artifact store on
first use. They must answer alike, and a change made through the first (a new traffic split, a
deletion) must reach the second without a restart.

tritonclient.http runs on gevent; its blocking calls are made in a thread
(`asyncio.to_thread`), which keeps gevent's hub off the test's asyncio loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from aiaas.core.config import Config
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.training import registry as models
from aiaas.graphql.relay import to_global_id
from serving_support import wine_table, wine_versions
from support import (
    RunningServer,
    Team,
    data_of,
    graphql,
    new_team,
    poll_until,
    running_server,
    server_environment,
    wait_until_ready,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CHANGE_TIMEOUT_S = 15
"""Bound on waiting for the other process to see a change: far above the announcement (and the
two-second fallback re-read) it takes, so that a slow machine does not fail the test."""


@dataclass(frozen=True)
class Replicas:
    everything: RunningServer
    """`aiaas serve`: GraphQL, uploads, V2 inference, rollouts."""
    inference_only: RunningServer
    """`aiaas serve --role inference`: V2 inference, /metrics, health, rollouts."""


@pytest.fixture(scope="module")
async def replicas(
    config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Replicas]:
    logs = tmp_path_factory.mktemp("replicas")
    environment = server_environment(
        config,
        # The artifact store is in the data dir: both processes load the models trained here.
        AIAAS_DATA_DIR=str(config.data_dir),
        AIAAS_DEPLOYMENT_POLL_INTERVAL_S="0.2",
    )
    inference_environment = {**environment, "AIAAS_ROLE": "inference"}
    with (
        running_server(environment, logs / "everything.log") as everything,
        running_server(inference_environment, logs / "inference.log") as inference_only,
    ):
        await asyncio.gather(
            wait_until_ready(everything, timeout_s=60),
            wait_until_ready(inference_only, timeout_s=60),
        )
        yield Replicas(everything, inference_only)


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(
        platform,
        "replicas",
        (ProjectRole.VIEWER, ProjectRole.DEVELOPER, ProjectRole.MAINTAINER),
    )


@pytest.fixture(scope="module")
async def versions(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> dict[int, models.ModelVersion]:
    return await wine_versions(
        platform,
        team.members[ProjectRole.DEVELOPER].principal,
        team.project_id,
        tmp_path_factory.mktemp("wine"),
    )


# GraphQL on the first process ----------------------------------------------------------------

DEPLOYMENT_FIELDS = "id state reason v2ModelName traffic { canaryPercent canaryVersion { number } }"
RESULT = f"""
  __typename
  ... on DeploymentSuccess {{ deployment {{ {DEPLOYMENT_FIELDS} }} }}
  ... on Error {{ message }}
"""
CREATE = (
    f"mutation($input: CreateDeploymentInput!) {{ createDeployment(input: $input) {{ {RESULT} }} }}"
)
TRAFFIC = (
    "mutation($input: UpdateDeploymentTrafficInput!) "
    f"{{ updateDeploymentTraffic(input: $input) {{ {RESULT} }} }}"
)
DELETE = f"mutation($id: ID!) {{ deleteDeployment(deployment: $id) {{ {RESULT} }} }}"
DEPLOYMENT = (
    f"query($id: ID!) {{ node(id: $id) {{ ... on Deployment {{ {DEPLOYMENT_FIELDS} }} }} }}"
)


async def mutate(
    server: RunningServer,
    team: Team,
    query: str,
    variables: dict[str, Any],
    role: ProjectRole = ProjectRole.DEVELOPER,
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        data = data_of(await graphql(client, query, variables, token=team.token(role)))
    result: dict[str, Any] = next(iter(data.values()))
    assert result["__typename"] == "DeploymentSuccess", result
    deployment: dict[str, Any] = result["deployment"]
    return deployment


async def rolled_out(server: RunningServer, team: Team, deployment_id: str) -> dict[str, Any]:
    """The deployment once no rollout waits for it (READY or FAILED), as `server` tells it."""
    latest: dict[str, Any] = {}

    async def settled() -> bool:
        nonlocal latest
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            latest = data_of(
                await graphql(
                    client, DEPLOYMENT, {"id": deployment_id}, token=team.token(ProjectRole.VIEWER)
                )
            )["node"]
        return latest["state"] in {"READY", "FAILED"}

    assert await poll_until(settled, timeout_s=60, interval_s=0.1) is not None, latest
    return latest


async def deploy(
    replicas: Replicas, team: Team, version: models.ModelVersion, name: str
) -> dict[str, Any]:
    created = await mutate(
        replicas.everything,
        team,
        CREATE,
        {"input": {"name": name, "modelVersion": to_global_id("ModelVersion", version.id)}},
    )
    deployment = await rolled_out(replicas.everything, team, created["id"])
    assert deployment["state"] == "READY", deployment
    assert deployment["v2ModelName"] == f"{team.slug}.{name}"
    return deployment


@pytest.fixture(scope="module")
async def wine(
    replicas: Replicas, team: Team, versions: dict[int, models.ModelVersion]
) -> dict[str, Any]:
    return await deploy(replicas, team, versions[1], "wine")


# V2 through tritonclient ----------------------------------------------------------------------

FEATURE_COLUMNS = {
    name: np.asarray(values, dtype=np.float32)
    for name, values in wine_table().drop_columns(["cultivar"]).slice(0, 5).to_pydict().items()
}


@dataclass(frozen=True)
class V2Answer:
    model_version: str
    labels: np.ndarray
    probabilities: np.ndarray


def v2_predict(server: RunningServer, model: str, token: str) -> V2Answer:
    """Five wine rows through tritonclient with its defaults: binary tensors both ways.
    Blocking (gevent): call it in a thread."""
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        inputs = []
        for name, values in FEATURE_COLUMNS.items():
            tensor = triton.InferInput(name, list(values.shape), "FP32")
            tensor.set_data_from_numpy(values)
            inputs.append(tensor)
        result = client.infer(model, inputs, headers={"Authorization": f"Bearer {token}"})
        return V2Answer(
            model_version=result.get_response()["model_version"],
            labels=result.as_numpy("label"),
            probabilities=result.as_numpy("probabilities"),
        )
    finally:
        client.close()


def v2_describe(server: RunningServer, model: str, token: str) -> tuple[bool, bool, Any]:
    """Whether the server is live and the model ready, and the model's metadata, as
    tritonclient reads them. Blocking: call it in a thread."""
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    headers = {"Authorization": f"Bearer {token}"}
    try:
        return (
            client.is_server_live(),
            client.is_model_ready(model, headers=headers),
            client.get_model_metadata(model, headers=headers),
        )
    finally:
        client.close()


async def answer_of(server: RunningServer, model: str, team: Team) -> V2Answer:
    return await asyncio.to_thread(v2_predict, server, model, team.token(ProjectRole.VIEWER))


async def status_of(server: RunningServer, model: str, team: Team) -> str:
    """The HTTP status of a prediction, as tritonclient reports it."""
    try:
        await answer_of(server, model, team)
    except InferenceServerException as error:
        return str(error.status())
    return "200"


async def requests_counted(server: RunningServer, deployment: str, token: str) -> float:
    """The process's successful V2 requests of a deployment, from its /metrics, scraped with
    the token of a caller holding `metrics:read`."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        response = await client.get("/metrics", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "aiaas_inference_requests_total"
                and labels.get("deployment") == deployment
                and (labels.get("protocol"), labels.get("outcome")) == ("v2", "ok")
            ):
                total += sample.value
    return total


# The tests ------------------------------------------------------------------------------------


async def test_both_processes_answer_alike_through_a_standard_v2_client(
    replicas: Replicas, team: Team, wine: dict[str, Any]
) -> None:
    model = wine["v2ModelName"]
    token = team.token(ProjectRole.VIEWER)
    servers = (replicas.everything, replicas.inference_only)

    for server in servers:
        live, ready, metadata = await asyncio.to_thread(v2_describe, server, model, token)
        assert (live, ready) == (True, True)
        assert [tensor["name"] for tensor in metadata["inputs"]] == list(FEATURE_COLUMNS)
        assert metadata["versions"] == ["1"]
    first, second = await asyncio.gather(*(answer_of(server, model, team) for server in servers))

    assert first.model_version == second.model_version == "1"
    assert first.labels.shape == (5,)
    assert set(first.labels.tolist()) <= {b"c0", b"c1", b"c2"}
    assert first.probabilities.shape == (5, 3)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.probabilities, second.probabilities)


async def test_the_inference_role_serves_v2_and_metrics_but_no_graphql(
    replicas: Replicas, team: Team, wine: dict[str, Any], admin_token: str
) -> None:
    before = await requests_counted(replicas.inference_only, "wine", admin_token)
    await answer_of(replicas.inference_only, wine["v2ModelName"], team)

    assert await requests_counted(replicas.inference_only, "wine", admin_token) == before + 1
    async with httpx.AsyncClient(base_url=replicas.inference_only.base_url, timeout=10) as client:
        token = {"authorization": f"Bearer {team.token(ProjectRole.DEVELOPER)}"}
        query = {"query": "{ health { status } }"}
        assert (await client.post("/graphql", json=query, headers=token)).status_code == 404
        assert (await client.get("/graphql", headers=token)).status_code == 404
        assert (await client.get("/v2/health/ready")).status_code == 200
    async with httpx.AsyncClient(base_url=replicas.everything.base_url, timeout=10) as client:
        assert (await client.post("/graphql", json=query)).status_code == 200


async def test_a_traffic_change_made_on_one_process_reaches_the_other(
    replicas: Replicas, team: Team, versions: dict[int, models.ModelVersion]
) -> None:
    name = f"moving-{uuid.uuid4().hex[:6]}"
    deployment = await deploy(replicas, team, versions[1], name)
    model = deployment["v2ModelName"]
    # The inference process has the deployment cached before the change.
    assert (await answer_of(replicas.inference_only, model, team)).model_version == "1"

    await mutate(
        replicas.everything,
        team,
        TRAFFIC,
        {
            "input": {
                "deployment": deployment["id"],
                "stablePercent": 0,
                "canary": to_global_id("ModelVersion", versions[2].id),
                "canaryPercent": 100,
            }
        },
    )
    changed = await rolled_out(replicas.everything, team, deployment["id"])
    assert changed["traffic"] == {"canaryPercent": 100, "canaryVersion": {"number": 2}}, changed

    async def answers_from_the_canary() -> bool:
        answer = await answer_of(replicas.inference_only, model, team)
        return answer.model_version == "2"

    assert await poll_until(answers_from_the_canary, CHANGE_TIMEOUT_S, interval_s=0.1) is not None
    answered = [
        (await answer_of(replicas.inference_only, model, team)).model_version for _ in range(3)
    ]
    assert answered == ["2", "2", "2"]


async def test_a_deployment_deleted_on_one_process_is_not_found_on_the_other(
    replicas: Replicas, team: Team, versions: dict[int, models.ModelVersion]
) -> None:
    name = f"doomed-{uuid.uuid4().hex[:6]}"
    deployment = await deploy(replicas, team, versions[1], name)
    model = deployment["v2ModelName"]
    assert await status_of(replicas.inference_only, model, team) == "200"

    await mutate(
        replicas.everything, team, DELETE, {"id": deployment["id"]}, ProjectRole.MAINTAINER
    )

    async def not_found() -> bool:
        return await status_of(replicas.inference_only, model, team) == "404"

    assert await poll_until(not_found, CHANGE_TIMEOUT_S, interval_s=0.1) is not None
    # Gone for metadata and readiness too, not only for predictions.
    headers = {"authorization": f"Bearer {team.token(ProjectRole.VIEWER)}"}
    async with httpx.AsyncClient(base_url=replicas.inference_only.base_url, timeout=10) as client:
        for path in (f"/v2/models/{model}", f"/v2/models/{model}/ready"):
            assert (await client.get(path, headers=headers)).status_code == 404, path
