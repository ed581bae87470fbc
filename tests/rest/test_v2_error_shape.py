"""One V2 error shape, through a real `aiaas serve` and tritonclient: every refusal under /v2, from
authentication, the router or a route, is the protocol's `{"error": "<message>"}` with our `code`
beside it, so that tritonclient raises an `InferenceServerException` whose `str()` names the
problem (an object under `error` made `str()` raise `TypeError`).

Model readiness needs credentials like every V2 route but health: without them it is a 401.
tritonclient's `is_model_ready` reads only the status (any answer but 200 is False), so the 401
itself is checked over plain HTTP. (The 409, 500 and 503 answers, which need a failed rollout, a
broken route or a full queue, go through the same helper: `test_inference_rest` and
`test_audit_gaps` check their shape in process.)"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import tritonclient.http as triton

from aiaas.core.config import Config
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.training import registry as models
from support import RunningServer, Team, new_team
from v2_serving import (
    bearer,
    deployed,
    served_wine_version,
    tensors,
    triton_refusal,
    v2_server,
    wine_columns,
    with_triton,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

MAX_REQUEST_BYTES = 4096
"""Small, so that a request over it is cheap to make; a few rows still fit."""

Call = Callable[[triton.InferenceServerClient], Any]


@pytest.fixture(scope="module")
async def server(
    config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    async with v2_server(
        config, tmp_path_factory, AIAAS_INFERENCE_MAX_REQUEST_BYTES=str(MAX_REQUEST_BYTES)
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "shapes", (ProjectRole.VIEWER, ProjectRole.DEVELOPER))


@pytest.fixture(scope="module")
async def version(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> models.ModelVersion:
    return await served_wine_version(platform, team, tmp_path_factory)


@pytest.fixture(scope="module")
async def model(server: RunningServer, team: Team, version: models.ModelVersion) -> str:
    deployment = await deployed(server, team, version, "wine", maxBatchSize=8)
    name: str = deployment["v2ModelName"]
    return name


def v2_shaped(response: httpx.Response, status: int, code: str) -> str:
    """The message of a refusal in the V2 shape, with `code` beside it."""
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str), body
    assert body["code"] == code, body
    message: str = body["error"]
    return message


# Without valid credentials --------------------------------------------------------------------


def unauthenticated_calls(model: str, headers: dict[str, str] | None) -> dict[str, Call]:
    return {
        "server metadata": lambda client: client.get_server_metadata(headers=headers),
        "model metadata": lambda client: client.get_model_metadata(model, headers=headers),
        "model config": lambda client: client.get_model_config(model, headers=headers),
        "infer": lambda client: client.infer(model, tensors(wine_columns(0, 2)), headers=headers),
    }


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic dXNlcjpwYXNz"])
@pytest.mark.parametrize("call", ["server metadata", "model metadata", "model config", "infer"])
async def test_without_valid_credentials_tritonclient_raises_a_readable_401(
    server: RunningServer, model: str, authorization: str | None, call: str
) -> None:
    headers = {"Authorization": authorization} if authorization else None

    error = await triton_refusal(server, unauthenticated_calls(model, headers)[call])

    assert error.status() == "401"
    assert str(error) == f"[401] {error.message()}"
    assert "`Bearer <API token>`" in str(error)


@pytest.mark.parametrize("suffix", ["/ready", "/versions/1/ready"])
async def test_model_readiness_without_a_token_is_a_401(
    server: RunningServer, team: Team, model: str, suffix: str
) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        refused = await client.get(f"/v2/models/{model}{suffix}")
        served = await client.get(
            f"/v2/models/{model}{suffix}", headers=bearer(team.token(ProjectRole.VIEWER))
        )

    assert "authentication required" in v2_shaped(refused, 401, "UNAUTHENTICATED")
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert served.status_code == 200, served.text
    # tritonclient reduces any answer but 200 to False; with a token, the model is ready.
    ready = await with_triton(
        server,
        lambda client: (
            client.is_model_ready(model),
            client.is_model_ready(model, headers=bearer(team.token(ProjectRole.VIEWER))),
        ),
    )
    assert ready == (False, True)


async def test_server_health_stays_public(server: RunningServer) -> None:
    live, ready = await with_triton(
        server, lambda client: (client.is_server_live(), client.is_server_ready())
    )
    assert (live, ready) == (True, True)


# With credentials -----------------------------------------------------------------------------


def refused_calls(model: str, headers: dict[str, str]) -> dict[str, tuple[Call, str, str]]:
    """case: (the tritonclient call, its status, what the message must name)"""
    columns = wine_columns(0, 2)
    missing_one = dict(list(columns.items())[1:])
    first_input = next(iter(columns))
    return {
        "an unknown model": (
            lambda client: client.get_model_metadata(f"{model}x", headers=headers),
            "404",
            f"{model}x",
        ),
        "an unknown model's config": (
            lambda client: client.get_model_config(f"{model}x", headers=headers),
            "404",
            f"{model}x",
        ),
        "inference on an unknown model": (
            lambda client: client.infer(f"{model}x", tensors(columns), headers=headers),
            "404",
            f"{model}x",
        ),
        "a version it does not serve": (
            lambda client: client.get_model_metadata(model, "7", headers=headers),
            "404",
            "version 7",
        ),
        "a route aiaas does not have": (
            lambda client: client.get_model_repository_index(headers=headers),
            "404",
            "no such V2 route",
        ),
        "a missing input": (
            lambda client: client.infer(model, tensors(missing_one), headers=headers),
            "400",
            first_input,
        ),
        "an output the model does not have": (
            lambda client: client.infer(
                model,
                tensors(columns),
                outputs=[triton.InferRequestedOutput("colour")],
                headers=headers,
            ),
            "400",
            "colour",
        ),
        "a body over the size limit": (
            lambda client: client.infer(model, tensors(wine_columns(0, 100)), headers=headers),
            "413",
            "inference_max_request_bytes",
        ),
    }


CASES = [
    "an unknown model",
    "an unknown model's config",
    "inference on an unknown model",
    "a version it does not serve",
    "a route aiaas does not have",
    "a missing input",
    "an output the model does not have",
    "a body over the size limit",
]


@pytest.mark.parametrize("case", CASES)
async def test_every_refusal_is_a_readable_tritonclient_exception(
    server: RunningServer, team: Team, model: str, case: str
) -> None:
    call, status, named = refused_calls(model, bearer(team.token(ProjectRole.VIEWER)))[case]

    error = await triton_refusal(server, call)

    assert error.status() == status
    assert isinstance(error.message(), str)
    assert str(error) == f"[{status}] {error.message()}"
    assert named in str(error)
    assert "exception occurred in the client" not in str(error)


def test_the_cases_are_the_refusals() -> None:
    assert sorted(CASES) == sorted(refused_calls("m", {}))


async def test_router_refusals_are_in_the_v2_shape_too(
    server: RunningServer, team: Team, model: str
) -> None:
    headers = bearer(team.token(ProjectRole.VIEWER))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        wrong_method = await client.get(f"/v2/models/{model}/infer", headers=headers)
        unknown = await client.get("/v2/repository/models/anything", headers=headers)
        posted_to_root = await client.post("/v2", headers=headers)
        unauthenticated_unknown = await client.get("/v2/nothing/here")

    assert "takes POST" in v2_shaped(wrong_method, 405, "METHOD_NOT_ALLOWED")
    assert wrong_method.headers["allow"] == "POST"
    assert "no such V2 route" in v2_shaped(unknown, 404, "NOT_FOUND")
    assert "takes GET" in v2_shaped(posted_to_root, 405, "METHOD_NOT_ALLOWED")
    # Who is asking is settled first: an unknown route tells a stranger nothing more.
    v2_shaped(unauthenticated_unknown, 401, "UNAUTHENTICATED")
