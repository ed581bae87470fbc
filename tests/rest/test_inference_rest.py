"""The KServe V2 REST API in process, on real trained models: predictions with JSON and binary
tensors, version pinning, model metadata and readiness, who may call what, every kind of bad
input with its clear 4xx, and a full queue answering 503 with Retry-After.

Two throwaway serving runtimes are registered for these tests, the way a plugin would register
them: one that cannot load anything (its deployments fail their rollout), and one that wraps the
built-in JAX runtime behind a gate, so that a test can hold a batch in the model and fill the
queue behind it without racing the model."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.http import _utils as triton_errors

from aiaas.core.config import Config, build_config
from aiaas.core.hookspecs import hookimpl
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.plugins import create_plugin_manager
from aiaas.core.runtimes import LoadedModel, ServingRuntime
from aiaas.core.serving import deployments
from aiaas.core.serving.rollout import wake_rollouts
from aiaas.core.specs import ServingRuntimeSpec
from aiaas.core.training import registry as models
from aiaas.plugins.jax_serving import JaxServingRuntime
from aiaas.rest import inference as inference_rest
from serving_support import wine_table, wine_versions
from support import Account, Team, new_account, new_team, poll_until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MAX_REQUEST_BYTES = 8192
WINE_MAX_BATCH = 8
WINE_BATCHING = deployments.Batching(max_batch_size=WINE_MAX_BATCH)
WINE_MAX_REQUEST_ROWS = WINE_MAX_BATCH * deployments.DEFAULT_QUEUE_BATCHES
FLOOD_QUEUE_ROWS = 2
CLASSES = {"c0", "c1", "c2"}


# Throwaway serving runtimes -------------------------------------------------------------------


class UnloadableRuntime(ServingRuntime):
    """Claims the built-in model format and fails to load every bundle."""

    def __init__(self, config: Config | None = None) -> None:
        pass

    def supported_model_formats(self) -> frozenset[str]:
        return frozenset({"flax-nnx"})

    def load(self, bundle: bytes, *, max_batch_size: int) -> LoadedModel:
        raise RuntimeError("this runtime loads nothing")


MODEL_GATE = threading.Event()
"""Open, the gated runtime's models predict at once; closed, each batch waits in the model's
thread until it opens (or a timeout passes, so that a failed test cannot hang the process)."""
MODEL_GATE.set()


class GatedModel(LoadedModel):
    def __init__(self, inner: LoadedModel) -> None:
        super().__init__(inner.signature, inner.max_batch_size)
        self.inner = inner

    def warm_up(self) -> None:
        self.inner.warm_up()  # not gated: the rollout must finish before the flood begins

    def predict_batch(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        MODEL_GATE.wait(timeout=30)
        return self.inner.predict_batch(columns)

    @property
    def compilations(self) -> int:
        return self.inner.compilations


class GatedJaxRuntime(JaxServingRuntime):
    def load(self, bundle: bytes, *, max_batch_size: int) -> LoadedModel:
        return GatedModel(super().load(bundle, max_batch_size=max_batch_size))


class ThrowawayRuntimes:
    @hookimpl
    def aiaas_serving_runtimes(self) -> Iterable[ServingRuntimeSpec]:
        return [
            ServingRuntimeSpec(name="unloadable", factory=UnloadableRuntime),
            ServingRuntimeSpec(name="gated-jax", factory=GatedJaxRuntime),
        ]


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """A small body limit, so that a request over it is cheap to make."""
    return build_config({**config.model_dump(), "inference_max_request_bytes": MAX_REQUEST_BYTES})


@pytest.fixture(scope="module")
async def platform(config: Config) -> AsyncIterator[Platform]:
    manager = create_plugin_manager(config)
    manager.register_plugin(ThrowawayRuntimes(), "ThrowawayRuntimes")
    platform = Platform(config, manager)
    await platform.start()
    yield platform
    await platform.stop()


@pytest.fixture
def closed_model_gate() -> Iterator[threading.Event]:
    MODEL_GATE.clear()
    try:
        yield MODEL_GATE
    finally:
        MODEL_GATE.set()


# The project, its models and deployments ------------------------------------------------------


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "vrest", (ProjectRole.VIEWER, ProjectRole.DEVELOPER))


@pytest.fixture(scope="module")
async def outsider(platform: Platform) -> Account:
    return await new_account(platform, "outsider")


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


async def rolled_out(platform: Platform, deployment_id: uuid.UUID) -> deployments.Deployment:
    """The deployment once no rollout waits for it any more (READY or FAILED)."""
    wake_rollouts(platform)
    latest: deployments.Deployment | None = None

    async def settled() -> bool:
        nonlocal latest
        async with platform.metadata.acquire() as connection:
            latest = await deployments.get_deployment(connection, deployment_id)
        return latest.state not in deployments.ROLLOUT_STATES

    assert await poll_until(settled, timeout_s=60) is not None, latest
    assert latest is not None
    return latest


async def until_v2_ready(app: Any, team: Team, name: str, versions: Iterable[int]) -> None:
    """Wait until V2 `/ready` says each version is served, as a client would before sending
    traffic: a serving process learns of a change a moment after PostgreSQL has it (from the
    change's announcement, or once its cached copy expires)."""
    transport = httpx.ASGITransport(app=app)
    headers = bearer(team.token(ProjectRole.VIEWER))
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:

        async def all_ready() -> bool:
            for number in versions:
                path = model_path(team, name, f"/versions/{number}/ready")
                if (await client.get(path, headers=headers)).status_code != 200:
                    return False
            return True

        assert await poll_until(all_ready, timeout_s=10) is not None


async def deploy(
    platform: Platform,
    team: Team,
    version: models.ModelVersion,
    name: str,
    *,
    runtime: str = "jax",
    batching: deployments.Batching = WINE_BATCHING,
) -> deployments.Deployment:
    created = await deployments.create_deployment(
        platform,
        team.members[ProjectRole.DEVELOPER].principal,
        deployments.NewDeployment(
            name=name, version_id=version.id, runtime=runtime, batching=batching
        ),
    )
    return await rolled_out(platform, created.id)


@pytest.fixture(scope="module")
async def wine(
    app: Any, platform: Platform, team: Team, versions: dict[int, models.ModelVersion]
) -> deployments.Deployment:
    """Version 1 alone, at most WINE_MAX_BATCH rows a request."""
    deployment = await deploy(platform, team, versions[1], "wine")
    assert deployment.state is deployments.DeploymentState.READY, deployment
    await until_v2_ready(app, team, "wine", [1])
    return deployment


@pytest.fixture(scope="module")
async def split(
    app: Any, platform: Platform, team: Team, versions: dict[int, models.ModelVersion]
) -> deployments.Deployment:
    """Version 1 stable and version 2 as a canary, half the requests each."""
    deployment = await deploy(platform, team, versions[1], "split")
    await deployments.update_traffic(
        platform,
        team.members[ProjectRole.DEVELOPER].principal,
        deployment.id,
        stable_percent=50,
        canary_version_id=versions[2].id,
        canary_percent=50,
        shadow_version_id=None,
    )
    deployment = await rolled_out(platform, deployment.id)
    assert deployment.state is deployments.DeploymentState.READY, deployment
    assert deployment.canary_version_id == versions[2].id, deployment
    await until_v2_ready(app, team, "split", [1, 2])
    return deployment


@pytest.fixture(scope="module")
async def failed(
    platform: Platform, team: Team, versions: dict[int, models.ModelVersion]
) -> deployments.Deployment:
    deployment = await deploy(platform, team, versions[1], "failed", runtime="unloadable")
    assert deployment.state is deployments.DeploymentState.FAILED, deployment
    return deployment


@pytest.fixture(scope="module")
async def flood(
    app: Any, platform: Platform, team: Team, versions: dict[int, models.ModelVersion]
) -> deployments.Deployment:
    """One row a batch and room for FLOOD_QUEUE_ROWS more, behind the model gate."""
    deployment = await deploy(
        platform,
        team,
        versions[1],
        "flood",
        runtime="gated-jax",
        batching=deployments.Batching(
            max_batch_size=1, max_wait_ms=0, max_queue_rows=FLOOD_QUEUE_ROWS
        ),
    )
    assert deployment.state is deployments.DeploymentState.READY, deployment
    await until_v2_ready(app, team, "flood", [1])
    return deployment


# Requests -------------------------------------------------------------------------------------


def wine_rows(count: int) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = (
        wine_table().drop_columns(["cultivar"]).slice(0, count).to_pylist()
    )
    return rows


FEATURES = list(wine_rows(1)[0])


def json_tensors(rows: list[dict[str, float]]) -> list[dict[str, Any]]:
    """One FP32 input of shape [rows] per feature, as the model's signature declares them."""
    return [
        {
            "name": name,
            "datatype": "FP32",
            "shape": [len(rows)],
            "data": [row[name] for row in rows],
        }
        for name in rows[0]
    ]


def binary_request(
    columns: dict[str, np.ndarray], outputs: list[dict[str, Any]] | None = None
) -> tuple[bytes, dict[str, str]]:
    """A request whose inputs travel as binary data after the JSON header, as tritonclient
    sends them: the only way to send a NaN or an infinity, which JSON cannot hold."""
    header: dict[str, Any] = {
        "inputs": [
            {
                "name": name,
                "datatype": "FP32",
                "shape": list(values.shape),
                "parameters": {"binary_data_size": values.astype("<f4").nbytes},
            }
            for name, values in columns.items()
        ]
    }
    if outputs is not None:
        header["outputs"] = outputs
    encoded = json.dumps(header).encode()
    data = b"".join(values.astype("<f4").tobytes() for values in columns.values())
    return encoded + data, {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(encoded)),
    }


def wine_columns(count: int) -> dict[str, np.ndarray]:
    rows = wine_rows(count)
    return {name: np.array([row[name] for row in rows], dtype=np.float32) for name in FEATURES}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def model_path(team: Team, deployment: str, suffix: str = "") -> str:
    return f"/v2/models/{team.slug}.{deployment}{suffix}"


async def infer(
    client: httpx.AsyncClient,
    team: Team,
    path: str,
    body: Any,
    *,
    role: ProjectRole = ProjectRole.DEVELOPER,
) -> httpx.Response:
    return await client.post(path, json=body, headers=bearer(team.token(role)))


class _AsTritonReadsIt:
    """An httpx response with the two members tritonclient's error reader uses."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self._content = response.content

    def read(self) -> bytes:
        return self._content


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The body of a refusal: the protocol's `error` message, with our `code` beside it, which
    tritonclient reads as the message of the exception it raises."""
    assert response.status_code == status, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("code"), str), body
    # The function every tritonclient.http call runs on an answer other than 200.
    raised = triton_errors._get_error(_AsTritonReadsIt(response))
    assert str(raised) == f"[{status}] {body['error']}"
    return body


def outputs_by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {output["name"]: output for output in body["outputs"]}


# Predictions ----------------------------------------------------------------------------------


async def test_json_tensors_get_labels_and_probabilities_of_the_served_version(
    client: httpx.AsyncClient, team: Team, wine: deployments.Deployment
) -> None:
    response = await infer(
        client,
        team,
        model_path(team, "wine", "/infer"),
        {"id": "request-7", "inputs": json_tensors(wine_rows(3))},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == (
        "vrest.wine",
        "1",
        "request-7",
    )
    outputs = outputs_by_name(body)
    assert set(outputs) == {"label", "probabilities"}
    label, probabilities = outputs["label"], outputs["probabilities"]
    assert (label["datatype"], label["shape"]) == ("BYTES", [3])
    assert set(label["data"]) <= CLASSES
    assert (probabilities["datatype"], probabilities["shape"]) == ("FP32", [3, 3])
    rows = np.array(probabilities["data"]).reshape(3, 3)
    np.testing.assert_allclose(rows.sum(axis=1), 1, atol=1e-4)
    # The label is the most probable class: the two outputs belong to the same rows.
    assert label["data"] == [f"c{index}" for index in rows.argmax(axis=1)]


async def test_binary_tensors_in_and_out_give_the_json_answer(
    client: httpx.AsyncClient, team: Team, wine: deployments.Deployment
) -> None:
    json_answer = await infer(
        client, team, model_path(team, "wine", "/infer"), {"inputs": json_tensors(wine_rows(4))}
    )
    body, headers = binary_request(
        wine_columns(4), outputs=[{"name": "probabilities", "parameters": {"binary_data": True}}]
    )

    response = await client.post(
        model_path(team, "wine", "/infer"),
        content=body,
        headers={**headers, **bearer(team.token(ProjectRole.DEVELOPER))},
    )

    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    answer = json.loads(response.content[:length])
    [output] = answer["outputs"]
    assert output["name"] == "probabilities"
    assert output["parameters"]["binary_data_size"] == 4 * 3 * 4
    probabilities = np.frombuffer(response.content[length:], dtype="<f4").reshape(4, 3)
    expected = outputs_by_name(json_answer.json())["probabilities"]["data"]
    np.testing.assert_allclose(probabilities.reshape(-1), expected, rtol=1e-6)


async def test_a_version_in_the_path_pins_it_whatever_the_split(
    client: httpx.AsyncClient, team: Team, split: deployments.Deployment
) -> None:
    for pinned in ("1", "2"):
        answered = set()
        for _ in range(8):
            response = await infer(
                client,
                team,
                model_path(team, "split", f"/versions/{pinned}/infer"),
                {"inputs": json_tensors(wine_rows(1))},
            )
            assert response.status_code == 200, response.text
            answered.add(response.json()["model_version"])
        assert answered == {pinned}


async def test_a_version_the_deployment_does_not_serve_is_not_found(
    client: httpx.AsyncClient,
    team: Team,
    wine: deployments.Deployment,
) -> None:
    body = {"inputs": json_tensors(wine_rows(1))}
    # Version 2 exists (it is the wine model's), but this deployment does not serve it.
    # "²" is a digit to str.isdigit, not to int(): still a version that does not exist.
    for version in ("2", "99", "one", "%C2%B2"):
        response = await infer(
            client, team, model_path(team, "wine", f"/versions/{version}/infer"), body
        )
        error_of(response, 404)
        metadata = await client.get(
            model_path(team, "wine", f"/versions/{version}"),
            headers=bearer(team.token(ProjectRole.VIEWER)),
        )
        error_of(metadata, 404)


async def test_a_large_body_is_parsed_off_the_event_loop_and_still_checked(
    client: httpx.AsyncClient,
    team: Team,
    wine: deployments.Deployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past PARSE_ON_LOOP_BYTES the body is parsed in a thread: the same checks apply. (The
    threshold is lowered here, under this module's small body limit.)"""
    monkeypatch.setattr(inference_rest, "PARSE_ON_LOOP_BYTES", 1024)
    rows = wine_rows(40)  # five times the deployment's batch: split into batches
    body = {"inputs": json_tensors(rows)}
    assert 1024 < len(json.dumps(body)) < 8192

    answered = await infer(client, team, model_path(team, "wine", "/infer"), body)
    refused = await infer(
        client, team, model_path(team, "wine", "/infer"), {"inputs": body["inputs"][1:]}
    )

    assert answered.status_code == 200, answered.text
    assert outputs_by_name(answered.json())["label"]["shape"] == [40]
    assert error_of(refused, 400)["fieldErrors"] == {FEATURES[0]: "missing input"}


# Metadata and readiness -----------------------------------------------------------------------


async def test_model_metadata_describes_the_signature_and_the_served_versions(
    client: httpx.AsyncClient,
    team: Team,
    wine: deployments.Deployment,
    split: deployments.Deployment,
) -> None:
    viewer = bearer(team.token(ProjectRole.VIEWER))
    response = await client.get(model_path(team, "wine"), headers=viewer)

    assert response.status_code == 200, response.text
    metadata = response.json()
    assert metadata["name"] == "vrest.wine"
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "aiaas-jax"
    assert metadata["max_batch_size"] == WINE_MAX_BATCH
    assert metadata["inputs"] == [
        {"name": name, "datatype": "FP32", "shape": [-1]} for name in FEATURES
    ]
    assert metadata["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
    ]
    pinned = await client.get(model_path(team, "wine", "/versions/1"), headers=viewer)
    assert pinned.json() == metadata
    both = await client.get(model_path(team, "split"), headers=viewer)
    assert sorted(both.json()["versions"]) == ["1", "2"]


async def test_ready_is_200_while_serving_and_400_when_the_rollout_failed(
    client: httpx.AsyncClient,
    team: Team,
    wine: deployments.Deployment,
    failed: deployments.Deployment,
) -> None:
    viewer = bearer(team.token(ProjectRole.VIEWER))

    serving = await client.get(model_path(team, "wine", "/ready"), headers=viewer)
    assert (serving.status_code, serving.json()) == (200, {"name": "vrest.wine", "ready": True})
    pinned = await client.get(model_path(team, "wine", "/versions/1/ready"), headers=viewer)
    assert pinned.status_code == 200
    unserved = await client.get(model_path(team, "wine", "/versions/2/ready"), headers=viewer)
    assert (unserved.status_code, unserved.json()["ready"]) == (400, False)

    broken = await client.get(model_path(team, "failed", "/ready"), headers=viewer)
    assert (broken.status_code, broken.json()) == (400, {"name": "vrest.failed", "ready": False})
    # Why, without the runtime's own words (they may name paths or keys: for the log only).
    assert "could not be loaded (RuntimeError)" in (failed.reason or "")
    assert "loads nothing" not in (failed.reason or "")

    async def refused_with_the_reason() -> bool:
        refused = await infer(
            client,
            team,
            model_path(team, "failed", "/infer"),
            {"inputs": json_tensors(wine_rows(1))},
        )
        body = error_of(refused, 409)
        assert body["code"] == "DEPLOYMENT_NOT_READY"
        # Until the process hears that the rollout ended, it may still say WARMING.
        return "FAILED" in body["error"] and "could not be loaded" in body["error"]

    assert await poll_until(refused_with_the_reason, timeout_s=10) is not None


async def test_a_stopped_deployment_is_gone_for_predictions_metadata_and_readiness(
    app: Any,
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    versions: dict[int, models.ModelVersion],
) -> None:
    deployment = await deploy(platform, team, versions[1], "stopping")
    headers = bearer(team.token(ProjectRole.VIEWER))
    body = {"inputs": json_tensors(wine_rows(1))}
    await until_v2_ready(app, team, "stopping", [1])

    await deployments.stop_deployment(
        platform, team.members[ProjectRole.OWNER].principal, deployment.id
    )

    async def predictions_refused() -> bool:
        response = await client.post(
            model_path(team, "stopping", "/infer"), json=body, headers=headers
        )
        return response.status_code == 404

    assert await poll_until(predictions_refused, timeout_s=10) is not None
    # Its name may still be cached: it must not be described, nor called merely not ready.
    for suffix in ("", "/ready", "/versions/1", "/versions/1/ready"):
        response = await client.get(model_path(team, "stopping", suffix), headers=headers)
        assert error_of(response, 404)["code"] == "NOT_FOUND", suffix


# Who may call what ----------------------------------------------------------------------------


async def test_health_answers_without_credentials(client: httpx.AsyncClient) -> None:
    live = await client.get("/v2/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})
    ready = await client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


async def test_server_metadata_names_the_binary_extension(
    client: httpx.AsyncClient, team: Team
) -> None:
    response = await client.get("/v2", headers=bearer(team.token(ProjectRole.VIEWER)))
    assert response.status_code == 200
    assert response.json()["name"] == "aiaas"
    assert "binary_tensor_data" in response.json()["extensions"]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", None),
        ("GET", ""),
        ("GET", "/ready"),
        ("GET", "/config"),
        ("GET", "/versions/1"),
        ("POST", "/infer"),
        ("POST", "/versions/1/infer"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic dXNlcjpwYXNz"])
async def test_everything_but_health_needs_a_valid_token(
    client: httpx.AsyncClient,
    team: Team,
    wine: deployments.Deployment,
    method: str,
    suffix: str | None,
    authorization: str | None,
) -> None:
    path = "/v2" if suffix is None else model_path(team, "wine", suffix)
    headers = {"authorization": authorization} if authorization else {}
    body = {"inputs": json_tensors(wine_rows(1))} if method == "POST" else None

    response = await client.request(method, path, json=body, headers=headers)

    assert error_of(response, 401)["code"] == "UNAUTHENTICATED"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_viewer_may_predict_and_read(
    client: httpx.AsyncClient, team: Team, wine: deployments.Deployment
) -> None:
    response = await infer(
        client,
        team,
        model_path(team, "wine", "/infer"),
        {"inputs": json_tensors(wine_rows(2))},
        role=ProjectRole.VIEWER,
    )
    assert response.status_code == 200, response.text
    assert outputs_by_name(response.json())["label"]["shape"] == [2]


async def test_a_non_member_is_told_the_model_does_not_exist_and_the_attempt_is_audited(
    platform: Platform,
    client: httpx.AsyncClient,
    team: Team,
    outsider: Account,
    wine: deployments.Deployment,
) -> None:
    headers = bearer(outsider.token)
    body = {"inputs": json_tensors(wine_rows(1))}

    denied = await client.post(model_path(team, "wine", "/infer"), json=body, headers=headers)
    missing = await client.post(model_path(team, "nosuch", "/infer"), json=body, headers=headers)

    # Word for word what a model that does not exist gets, but for its name.
    not_found = error_of(missing, 404)
    assert error_of(denied, 404) == {
        **not_found,
        "error": not_found["error"].replace("nosuch", "wine"),
    }
    for suffix in ("", "/ready", "/versions/1"):
        error_of(await client.get(model_path(team, "wine", suffix), headers=headers), 404)
    async with platform.metadata.acquire() as connection:
        audited = await connection.fetch(
            "SELECT outcome, project_id, details FROM audit_events "
            "WHERE action = 'v2.infer' AND actor_id = $1 ORDER BY id",
            outsider.principal.user_id,
        )
    assert [row["outcome"] for row in audited] == ["denied", "failed"]
    assert audited[0]["details"]["model"] == "vrest.wine"
    # Filed under the project, so that its owners see the attempt in its trail.
    assert [row["project_id"] for row in audited] == [team.project_id, None]


# Bad input ------------------------------------------------------------------------------------


def replaced(tensors: list[dict[str, Any]], name: str, **fields: Any) -> list[dict[str, Any]]:
    return [{**tensor, **fields} if tensor["name"] == name else tensor for tensor in tensors]


BAD_JSON_REQUESTS: dict[str, tuple[Any, str]] = {
    "an input the model does not take": (
        {
            "inputs": [
                *json_tensors(wine_rows(1)),
                {"name": "colour", "datatype": "FP32", "shape": [1], "data": [1.0]},
            ]
        },
        "colour",
    ),
    "a missing input": ({"inputs": json_tensors(wine_rows(1))[1:]}, FEATURES[0]),
    "text for a float feature": (
        {
            "inputs": replaced(
                json_tensors(wine_rows(1)), "alcohol", datatype="BYTES", data=["14.2"]
            )
        },
        "alcohol",
    ),
    "a matrix for a vector feature": (
        {"inputs": replaced(json_tensors(wine_rows(1)), "alcohol", shape=[1, 1], data=[[14.2]])},
        "alcohol",
    ),
    "ragged nested data": (
        {
            "inputs": replaced(
                json_tensors(wine_rows(2)), "alcohol", shape=[2, 2], data=[[1.0, 2.0], [3.0]]
            )
        },
        "alcohol",
    ),
    "inputs with different row counts": (
        {"inputs": replaced(json_tensors(wine_rows(1)), "alcohol", shape=[2], data=[14.2, 13.2])},
        "alcohol",
    ),
    "fewer values than the shape": (
        {"inputs": replaced(json_tensors(wine_rows(1)), "alcohol", shape=[2])},
        "alcohol",
    ),
    # Its batches' worth of rows, and one more (one input only: the body's size limit is small).
    "more rows than a request may have": (
        {
            "inputs": [
                {
                    "name": "alcohol",
                    "datatype": "FP32",
                    "shape": [WINE_MAX_REQUEST_ROWS + 1],
                    "data": [13.0] * (WINE_MAX_REQUEST_ROWS + 1),
                }
            ]
        },
        f"more than the {WINE_MAX_REQUEST_ROWS} one request may have (the deployment's "
        "maxQueueRows)",
    ),
    "an empty batch": (
        {"inputs": [{"name": n, "datatype": "FP32", "shape": [0], "data": []} for n in FEATURES]},
        "at least 1 row",
    ),
    "no inputs at all": ({"inputs": []}, "inputs"),
    "a zero-size shape whose other dimensions overflow": (
        {
            "inputs": replaced(
                json_tensors(wine_rows(1)), "alcohol", shape=[2**31 - 1, 2**31 - 1, 0], data=[]
            )
        },
        "alcohol",
    ),
    "an output the model does not have": (
        {"inputs": json_tensors(wine_rows(1)), "outputs": [{"name": "logits"}]},
        "logits",
    ),
}


@pytest.mark.parametrize("case", list(BAD_JSON_REQUESTS))
async def test_bad_json_input_gets_a_400_naming_the_problem(
    client: httpx.AsyncClient, team: Team, wine: deployments.Deployment, case: str
) -> None:
    body, named = BAD_JSON_REQUESTS[case]

    response = await infer(client, team, model_path(team, "wine", "/infer"), body)

    refusal = error_of(response, 400)
    assert refusal["code"] == "BAD_USER_INPUT"
    assert named in refusal["error"], refusal


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
async def test_non_finite_values_are_refused_where_the_signature_needs_finite_ones(
    client: httpx.AsyncClient, team: Team, wine: deployments.Deployment, value: float
) -> None:
    columns = wine_columns(3)
    columns["alcohol"][1] = value
    body, headers = binary_request(columns)

    response = await client.post(
        model_path(team, "wine", "/infer"),
        content=body,
        headers={**headers, **bearer(team.token(ProjectRole.DEVELOPER))},
    )

    refusal = error_of(response, 400)
    assert refusal["fieldErrors"] == {"alcohol": "must be finite: NaN or infinity at row 1"}


async def test_json_has_no_nan_so_its_non_standard_token_is_refused(
    client: httpx.AsyncClient, team: Team, wine: deployments.Deployment
) -> None:
    body = json.dumps({"inputs": json_tensors(wine_rows(1))}).replace("14.23", "NaN")
    assert "NaN" in body
    response = await client.post(
        model_path(team, "wine", "/infer"),
        content=body,
        headers={"content-type": "application/json", **bearer(team.token(ProjectRole.DEVELOPER))},
    )
    error_of(response, 400)


@pytest.mark.parametrize(
    "name",
    [
        "vrest.nosuch",
        "nosuch.wine",
        "wine",
        "vrest.",
        ".wine",
        "vrest.wine.v1",
        # Characters no project or deployment name holds, which the path still carries.
        "vrest.wine%00",
        "vrest%00.wine",
        "vrest.wine%ED%A0%80",
        "VREST.wine",
        "vrest.wine%20",
    ],
)
async def test_an_unknown_or_malformed_model_name_is_not_found(
    client: httpx.AsyncClient, team: Team, wine: deployments.Deployment, name: str
) -> None:
    headers = bearer(team.token(ProjectRole.DEVELOPER))
    body = {"inputs": json_tensors(wine_rows(1))}

    inferred = await client.post(f"/v2/models/{name}/infer", json=body, headers=headers)
    described = await client.get(f"/v2/models/{name}", headers=headers)
    readiness = await client.get(f"/v2/models/{name}/ready", headers=headers)

    for response in (inferred, described, readiness):
        assert error_of(response, 404)["code"] == "NOT_FOUND"


async def test_a_body_over_the_limit_is_413_whether_its_length_is_declared_or_not(
    client: httpx.AsyncClient, team: Team, wine: deployments.Deployment
) -> None:
    headers = {"content-type": "application/json", **bearer(team.token(ProjectRole.DEVELOPER))}
    oversized = json.dumps(
        {"inputs": json_tensors(wine_rows(1)), "parameters": {"padding": "x" * MAX_REQUEST_BYTES}}
    ).encode()

    declared = await client.post(
        model_path(team, "wine", "/infer"), content=oversized, headers=headers
    )

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(oversized), 1024):
            yield oversized[start : start + 1024]

    streamed = await client.post(
        model_path(team, "wine", "/infer"), content=chunks(), headers=headers
    )

    assert "content-length" not in streamed.request.headers
    for response in (declared, streamed):
        assert error_of(response, 413)["code"] == "TOO_LARGE"


async def test_a_compressed_body_is_refused(
    client: httpx.AsyncClient, team: Team, wine: deployments.Deployment
) -> None:
    body = gzip.compress(json.dumps({"inputs": json_tensors(wine_rows(1))}).encode())

    response = await client.post(
        model_path(team, "wine", "/infer"),
        content=body,
        headers={
            "content-type": "application/json",
            "content-encoding": "gzip",
            **bearer(team.token(ProjectRole.DEVELOPER)),
        },
    )

    refusal = error_of(response, 400)
    assert refusal["fieldErrors"] == {"Content-Encoding": "unsupported"}


# A full queue ---------------------------------------------------------------------------------


async def metric_samples(
    client: httpx.AsyncClient, token: str, name: str, deployment: str
) -> dict[str, float]:
    """The values of the series `name` of a deployment, by the labels that tell them apart, as
    a caller holding `metrics:read` scrapes them."""
    response = await client.get("/metrics", headers=bearer(token))
    assert response.status_code == 200, response.text
    text = response.text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("deployment") == deployment:
                labels = {
                    k: v for k, v in sample.labels.items() if k not in {"project", "deployment"}
                }
                found[json.dumps(labels, sort_keys=True)] = sample.value
    return found


async def test_a_full_queue_answers_503_with_retry_after_and_empties_afterwards(
    client: httpx.AsyncClient,
    team: Team,
    flood: deployments.Deployment,
    closed_model_gate: threading.Event,
    admin_token: str,
) -> None:
    path = model_path(team, "flood", "/infer")
    body = {"inputs": json_tensors(wine_rows(1))}
    requests = [asyncio.create_task(infer(client, team, path, body)) for _ in range(12)]
    # While the gate holds one batch (one row) in the model, the queue takes FLOOD_QUEUE_ROWS
    # more; every other request must be refused at once, not queued.
    admitted = 1 + FLOOD_QUEUE_ROWS

    async def only_the_admitted_wait() -> bool:
        depth = await metric_samples(
            client, admin_token, "aiaas_inference_queue_depth_rows", "flood"
        )
        answered = sum(task.done() for task in requests)
        return list(depth.values()) == [FLOOD_QUEUE_ROWS] and answered == len(requests) - admitted

    try:
        assert await poll_until(only_the_admitted_wait, timeout_s=30) is not None
    finally:
        closed_model_gate.set()
    responses = await asyncio.gather(*requests)

    statuses = [response.status_code for response in responses]
    assert sorted(statuses) == [200] * admitted + [503] * (len(requests) - admitted)
    for response in responses:
        if response.status_code == 503:
            assert error_of(response, 503)["code"] == "QUEUE_FULL"
            assert int(response.headers["retry-after"]) >= 1
        else:
            assert outputs_by_name(response.json())["label"]["data"][0] in CLASSES
    depth = await metric_samples(client, admin_token, "aiaas_inference_queue_depth_rows", "flood")
    assert list(depth.values()) == [0]
    counted = await metric_samples(client, admin_token, "aiaas_inference_requests_total", "flood")
    by_outcome = {json.loads(labels)["outcome"]: value for labels, value in counted.items()}
    assert by_outcome == {"ok": admitted, "rejected": len(requests) - admitted}
