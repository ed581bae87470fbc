"""Predictions of any size, through a real `aiaas serve`: a request with more rows than the
deployment's `maxBatchSize` is split into batches by the server and answered in order, through
tritonclient (V2, binary tensors) and GraphQL's `predict` alike, up to the deployment's
`maxQueueRows`; past it, one error names the limit once. V2 metadata and Triton's model
configuration state `max_batch_size`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from aiaas.core.config import Config
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.training import registry as models
from deployment_calls import predict
from support import RunningServer, Team, new_team
from v2_serving import (
    bearer,
    deployed,
    served_wine_version,
    tensors,
    triton_refusal,
    v2_server,
    wine_columns,
    wine_records,
    with_triton,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

MAX_BATCH = 32
MAX_REQUEST_ROWS = 128
ROWS = 114
"""Four batches: three full ones and one of 18 rows."""


@pytest.fixture(scope="module")
async def server(
    config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    async with v2_server(config, tmp_path_factory) as running:
        yield running


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "anysize", (ProjectRole.VIEWER, ProjectRole.DEVELOPER))


@pytest.fixture(scope="module")
async def version(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> models.ModelVersion:
    return await served_wine_version(platform, team, tmp_path_factory)


@pytest.fixture(scope="module")
async def wine(server: RunningServer, team: Team, version: models.ModelVersion) -> dict[str, Any]:
    return await deployed(
        server, team, version, "wine", maxBatchSize=MAX_BATCH, maxQueueRows=MAX_REQUEST_ROWS
    )


async def v2_answer(
    server: RunningServer, model: str, token: str, start: int, stop: int
) -> tuple[np.ndarray, np.ndarray]:
    """The labels and probabilities of wine rows `start:stop`, through tritonclient."""

    def call(client: Any) -> tuple[np.ndarray, np.ndarray]:
        result = client.infer(model, tensors(wine_columns(start, stop)), headers=bearer(token))
        return result.as_numpy("label"), result.as_numpy("probabilities")

    return await with_triton(server, call)


async def test_a_request_of_more_rows_than_a_batch_equals_its_batches_sent_apart(
    server: RunningServer, team: Team, wine: dict[str, Any]
) -> None:
    model, token = wine["v2ModelName"], team.token(ProjectRole.VIEWER)

    labels, probabilities = await v2_answer(server, model, token, 0, ROWS)
    apart = [
        await v2_answer(server, model, token, start, min(start + MAX_BATCH, ROWS))
        for start in range(0, ROWS, MAX_BATCH)
    ]

    assert len(apart) == 4
    assert labels.shape == (ROWS,)
    assert probabilities.shape == (ROWS, 3)
    np.testing.assert_array_equal(labels, np.concatenate([part[0] for part in apart]))
    np.testing.assert_allclose(
        probabilities, np.concatenate([part[1] for part in apart]), rtol=1e-6, atol=1e-7
    )
    # In order: row by row, the label is the most probable class of the same row.
    assert [label.decode() for label in labels] == [f"c{i}" for i in probabilities.argmax(1)]


async def test_graphql_predict_takes_as_many_records_and_answers_them_in_order(
    server: RunningServer, team: Team, wine: dict[str, Any]
) -> None:
    labels, _ = await v2_answer(
        server, wine["v2ModelName"], team.token(ProjectRole.VIEWER), 0, ROWS
    )
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        answer = await predict(client, team, wine["id"], wine_records(0, ROWS))

    assert answer["__typename"] == "PredictSuccess", answer
    assert [output["label"] for output in answer["outputs"]] == [label.decode() for label in labels]


async def test_over_the_request_limit_one_v2_error_names_it_once(
    server: RunningServer, team: Team, wine: dict[str, Any]
) -> None:
    model, token = wine["v2ModelName"], team.token(ProjectRole.VIEWER)
    rows = MAX_REQUEST_ROWS + 1

    error = await triton_refusal(
        server,
        lambda client: client.infer(model, tensors(wine_columns(0, rows)), headers=bearer(token)),
    )

    assert error.status() == "400"
    text = str(error)
    assert f"{rows} rows" in text
    assert text.count("maxQueueRows") == 1
    assert text.count(str(MAX_REQUEST_ROWS)) == 1
    # The same refusal as JSON: one message and one field error, whatever the number of inputs.
    body = {
        "inputs": [
            {"name": name, "datatype": "FP32", "shape": [rows], "data": values.tolist()}
            for name, values in wine_columns(0, rows).items()
        ]
    }
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        response = await client.post(
            f"/v2/models/{model}/infer", content=json.dumps(body), headers=bearer(token)
        )
    assert response.status_code == 400, response.text
    refusal = response.json()
    assert refusal["code"] == "BAD_USER_INPUT"
    assert refusal["error"] == error.message()
    assert refusal["fieldErrors"] == {"inputs": f"{rows} rows; at most {MAX_REQUEST_ROWS}"}


async def test_over_the_request_limit_graphql_gives_one_field_error(
    server: RunningServer, team: Team, wine: dict[str, Any]
) -> None:
    rows = MAX_REQUEST_ROWS + 1
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        refused = await predict(client, team, wine["id"], wine_records(0, rows))

    assert refused["__typename"] == "InvalidInputError", refused
    assert refused["message"].count("maxQueueRows") == 1
    assert refused["fieldErrors"] == [
        {"field": "inputs", "message": f"{rows} rows; at most {MAX_REQUEST_ROWS}"}
    ]


async def test_metadata_and_config_state_the_batch_size_as_triton_does(
    server: RunningServer, team: Team, wine: dict[str, Any]
) -> None:
    model, headers = wine["v2ModelName"], bearer(team.token(ProjectRole.VIEWER))

    metadata = await with_triton(
        server, lambda client: client.get_model_metadata(model, headers=headers)
    )
    config = await with_triton(
        server, lambda client: client.get_model_config(model, headers=headers)
    )

    assert metadata["max_batch_size"] == MAX_BATCH
    # Any number of rows: the first dimension is -1, as Triton's metadata has it.
    assert {tuple(tensor["shape"]) for tensor in metadata["inputs"]} == {(-1,)}
    assert {output["name"]: output["shape"] for output in metadata["outputs"]} == {
        "label": [-1],
        "probabilities": [-1, 3],
    }
    assert config["max_batch_size"] == MAX_BATCH
    assert config["parameters"] == {"max_request_rows": {"string_value": str(MAX_REQUEST_ROWS)}}
    assert [(tensor["name"], tensor["dims"]) for tensor in config["input"]] == [
        (tensor["name"], []) for tensor in metadata["inputs"]
    ]
    assert {output["name"]: output["dims"] for output in config["output"]} == {
        "label": [],
        "probabilities": [3],
    }
    assert {output["data_type"] for output in config["output"]} == {"TYPE_STRING", "TYPE_FP32"}
