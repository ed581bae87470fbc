"""Image models served by a real `aiaas serve`: an ONNX graph taking `image` uint8
[N, 16, 16, 3], uploaded and deployed, answers

- tensors of pixels, V2 `UINT8` (or `FP32`) in binary or in JSON, through tritonclient;
- encoded PNG and JPEG images, one per row: V2 `BYTES` [N] (raw bytes in binary, base64 in
  JSON) and base64 strings in GraphQL's JSON records, decoded and fitted to the model's size,
  with the same answers as the tensor of the pixels the server decoded;

and refuses a corrupt image, a file that is no image, an image over the pixel limit, and a
request over its limits of encoded bytes or decoded pixels with a typed error naming the row,
serving nothing of it. A canary of two image models answers encoded images by either version."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

from aiaas.core.config import Config, build_config
from aiaas.core.identity.access import ProjectRole
from aiaas.core.images import decode_image, fit_pixels
from aiaas.core.platform import Platform
from deployment_calls import TRAFFIC, call, deploy, gid, predict, settled
from image_serving import expected_scores, image_graph, jpeg, png, random_images, upload_image_model
from support import RunningServer, Team, new_team
from v2_serving import bearer, triton_refusal, v2_server, with_triton

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

MAX_IMAGE_BYTES = 16_384
MAX_IMAGE_PIXELS = 4_096
"""A 64-pixel square; the images the tests send are 16-pixel squares, or 32 by 24."""
MAX_BATCH = 4


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """The trees plugin (the `onnx` runtime that serves uploaded graphs) loaded."""
    return build_config(
        {**config.model_dump(), "disable_plugin_autoload": False, "plugins": ["trees"]}
    )


@pytest.fixture(scope="module")
async def server(
    config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    async with v2_server(
        config,
        tmp_path_factory,
        AIAAS_INFERENCE_MAX_IMAGE_BYTES=str(MAX_IMAGE_BYTES),
        AIAAS_INFERENCE_MAX_IMAGE_PIXELS=str(MAX_IMAGE_PIXELS),
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "image-serving", (ProjectRole.VIEWER, ProjectRole.DEVELOPER))


@pytest.fixture(scope="module")
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
async def scorer(platform: Platform, http: httpx.AsyncClient, team: Team) -> dict[str, Any]:
    version = await upload_image_model(platform, http, team, "scorer", image_graph())
    return await deploy(http, team, "scorer", version, maxBatchSize=MAX_BATCH)


def model_name(team: Team, deployment: dict[str, Any]) -> str:
    return f"{team.slug}.{deployment['name']}"


async def v2_scores(
    server: RunningServer,
    team: Team,
    deployment: dict[str, Any],
    values: np.ndarray,
    datatype: str,
    *,
    binary: bool = True,
) -> np.ndarray:
    """The `score` output for one input tensor `image`, through tritonclient."""

    def infer(client: triton.InferenceServerClient) -> np.ndarray:
        tensor = triton.InferInput("image", list(values.shape), datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        result = client.infer(
            model_name(team, deployment),
            [tensor],
            outputs=[triton.InferRequestedOutput("score", binary_data=binary)],
            headers=bearer(team.token(ProjectRole.VIEWER)),
        )
        scores: np.ndarray = result.as_numpy("score")
        return scores

    return await with_triton(server, infer)


def encoded(files: list[bytes], *, as_text: bool) -> np.ndarray:
    """V2 BYTES rows: the files themselves, or their base64 text (what JSON carries)."""
    rows = [base64.b64encode(file).decode() if as_text else file for file in files]
    return np.array(rows, dtype=np.object_)


async def test_pixel_tensors_binary_and_json_are_answered_alike_over_several_batches(
    server: RunningServer, team: Team, scorer: dict[str, Any]
) -> None:
    pixels = random_images(10, seed=1)  # more rows than MAX_BATCH: three batches
    expected = expected_scores(pixels)

    binary = await v2_scores(server, team, scorer, pixels, "UINT8")
    in_json = await v2_scores(server, team, scorer, pixels, "UINT8", binary=False)
    as_floats = await v2_scores(server, team, scorer, pixels.astype(np.float32), "FP32")

    np.testing.assert_allclose(binary, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(in_json, binary)
    np.testing.assert_array_equal(as_floats, binary)


async def test_encoded_png_and_jpeg_rows_equal_the_tensor_of_the_decoded_pixels(
    server: RunningServer, team: Team, scorer: dict[str, Any]
) -> None:
    pixels = random_images(3, seed=2)
    larger = random_images(1, 24, 32, seed=3)[0]
    grey = random_images(1, 16, 16, 1, seed=4)[0]
    files = [png(pixels[0]), jpeg(pixels[1]), png(pixels[2]), png(larger), jpeg(grey)]
    # What the server must have given the model: each file decoded, then fitted to 16x16x3.
    fitted = np.stack(
        [fit_pixels(decode_image(file), height=16, width=16, channels=3) for file in files]
    )
    assert (fitted[0] == pixels[0]).all() and (fitted[2] == pixels[2]).all()  # PNG is lossless
    by_tensor = await v2_scores(server, team, scorer, fitted, "UINT8")

    binary = await v2_scores(server, team, scorer, encoded(files, as_text=False), "BYTES")
    in_json = await v2_scores(
        server, team, scorer, encoded(files, as_text=True), "BYTES", binary=False
    )
    text_in_binary = await v2_scores(server, team, scorer, encoded(files, as_text=True), "BYTES")

    np.testing.assert_array_equal(binary, by_tensor)
    np.testing.assert_array_equal(in_json, by_tensor)
    np.testing.assert_array_equal(text_in_binary, by_tensor)


async def test_graphql_records_take_base64_images_or_nested_pixels(
    http: httpx.AsyncClient, server: RunningServer, team: Team, scorer: dict[str, Any]
) -> None:
    pixels = random_images(2, seed=5)
    files = [png(pixels[0]), jpeg(pixels[1])]
    fitted = np.stack([decode_image(file) for file in files])
    by_tensor = await v2_scores(server, team, scorer, fitted, "UINT8")

    as_images = await predict(
        http, team, scorer["id"], [{"image": base64.b64encode(file).decode()} for file in files]
    )
    as_pixels = await predict(http, team, scorer["id"], [{"image": p.tolist()} for p in fitted])

    for answer in (as_images, as_pixels):
        assert answer["__typename"] == "PredictSuccess", answer
        scores = np.array([row["score"] for row in answer["outputs"]], dtype=np.float32)
        np.testing.assert_array_equal(scores, by_tensor)


async def served_rows(http: httpx.AsyncClient, token: str, deployment: str) -> float:
    """Rows the deployment's model has been called with, as /metrics counts them."""
    response = await http.get("/metrics", headers=bearer(token))
    assert response.status_code == 200, response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "aiaas_inference_batch_size_rows_sum"
        and sample.labels.get("deployment") == deployment
    )


def bad_requests() -> list[tuple[str, list[bytes | str], int, str, str]]:
    """(case, rows, status, field at fault, words of the message)."""
    good = png(random_images(1, seed=6)[0])
    truncated = good[: len(good) // 2]
    cut = jpeg(random_images(1, seed=7)[0])
    cut = cut[: len(cut) // 2]
    # One colour, so that the files are small: it is their pixels that are too many.
    over = png(np.full((80, 80, 3), 120, np.uint8))  # 6,400 pixels: over the limit alone
    near = png(np.full((48, 48, 3), 30, np.uint8))  # 2,304 pixels: two are over it
    return [
        ("truncated png", [good, truncated], 400, "image[1]", "does not decode"),
        ("truncated jpeg", [cut, good], 400, "image[0]", "row 0 of image"),
        ("not an image", [good, good, b"%PDF-1.7 not an image"], 400, "image[2]", "neither"),
        ("not base64", [good, "not base64!"], 400, "image[1]", "not base64"),
        ("one image too large", [good, over], 400, "image[1]", "above the limit of 4096"),
        ("request's pixels", [near, good, near], 413, "image[2]", "inference_max_image_pixels"),
        ("request's bytes", [good] * 40, 413, "image[", "inference_max_image_bytes"),
    ]


@pytest.mark.parametrize("case", bad_requests(), ids=lambda case: case[0])
async def test_a_bad_image_is_a_typed_error_naming_the_row_and_nothing_is_served(
    http: httpx.AsyncClient,
    team: Team,
    scorer: dict[str, Any],
    admin_token: str,
    case: tuple[str, list[bytes | str], int, str, str],
) -> None:
    _, rows, status, field, words = case
    before = await served_rows(http, admin_token, scorer["name"])
    as_text = [row if isinstance(row, str) else base64.b64encode(row).decode() for row in rows]
    tensor = {"name": "image", "datatype": "BYTES", "shape": [len(rows)], "data": as_text}

    response = await http.post(
        f"/v2/models/{model_name(team, scorer)}/infer",
        json={"inputs": [tensor]},
        headers=bearer(team.token(ProjectRole.VIEWER)),
    )
    answer = await predict(http, team, scorer["id"], [{"image": row} for row in as_text])

    assert response.status_code == status, response.text
    error = response.json()
    assert error["code"] == ("PAYLOAD_TOO_LARGE" if status == 413 else "BAD_USER_INPUT")
    [(named, message)] = error["fieldErrors"].items()
    assert named.startswith(field) and words in message, error
    assert words in error["error"]
    assert answer["__typename"] == "InvalidInputError", answer
    assert [item["field"] for item in answer["fieldErrors"]] == [named], answer
    assert await served_rows(http, admin_token, scorer["name"]) == before
    good = base64.b64encode(png(random_images(1, seed=13)[0])).decode()
    served = await predict(http, team, scorer["id"], [{"image": good}])
    assert served["__typename"] == "PredictSuccess", served
    assert await served_rows(http, admin_token, scorer["name"]) == before + 1


async def test_a_float32_model_of_grey_images_gets_the_fitted_pixel_values_as_floats(
    platform: Platform, server: RunningServer, http: httpx.AsyncClient, team: Team
) -> None:
    version = await upload_image_model(
        platform, http, team, "grey", image_graph(8, 8, 1, dtype="float32")
    )
    deployment = await deploy(http, team, "grey", version, maxBatchSize=MAX_BATCH)
    pixels = random_images(3, 16, 16, 3, seed=12)
    files = [png(image) for image in pixels]
    fitted = np.stack([fit_pixels(image, height=8, width=8, channels=1) for image in pixels])

    scores = await v2_scores(server, team, deployment, encoded(files, as_text=False), "BYTES")

    np.testing.assert_allclose(
        scores, expected_scores(fitted.astype(np.float32)), rtol=1e-5, atol=1e-4
    )
    by_tensor = await v2_scores(server, team, deployment, fitted.astype(np.float32), "FP32")
    np.testing.assert_array_equal(scores, by_tensor)


async def test_raw_image_bytes_in_binary_bytes_are_refused_per_row_too(
    server: RunningServer, team: Team, scorer: dict[str, Any]
) -> None:
    good = png(random_images(1, seed=10)[0])
    rows = encoded([good, good[:40]], as_text=False)

    def infer(client: triton.InferenceServerClient) -> None:
        tensor = triton.InferInput("image", [2], "BYTES")
        tensor.set_data_from_numpy(rows)
        client.infer(
            model_name(team, scorer), [tensor], headers=bearer(team.token(ProjectRole.VIEWER))
        )

    refusal = await triton_refusal(server, infer)
    assert refusal.status() == "400" and "row 1 of image" in str(refusal), refusal


async def test_a_canary_of_two_image_models_answers_encoded_images_by_either_version(
    platform: Platform, http: httpx.AsyncClient, team: Team
) -> None:
    stable = await upload_image_model(platform, http, team, "pair", image_graph())
    # A canary takes the stable version's signature: the same size, other weights.
    canary = await upload_image_model(platform, http, team, "pair", image_graph(scale=-2.0))
    deployment = await deploy(http, team, "pair", stable, maxBatchSize=MAX_BATCH)
    changed = await call(
        http,
        TRAFFIC,
        {
            "input": {
                "deployment": deployment["id"],
                "stablePercent": 50,
                "canary": gid("ModelVersion", canary.id),
                "canaryPercent": 50,
            }
        },
        team.token(ProjectRole.DEVELOPER),
    )
    assert changed["__typename"] == "DeploymentSuccess", changed
    assert (await settled(http, team, deployment["id"]))["state"] == "READY"
    pixels = random_images(1, 20, 24, seed=11)[0]  # fitted to 16x16 by either version
    record = {"image": base64.b64encode(png(pixels)).decode()}
    fitted = fit_pixels(pixels, height=16, width=16, channels=3)[None]
    expected = {
        stable.number: expected_scores(fitted),
        canary.number: expected_scores(fitted, scale=-2.0),
    }

    answers = [
        *[await predict(http, team, deployment["id"], [record], version) for version in expected],
        *[await predict(http, team, deployment["id"], [record]) for _ in range(16)],
    ]

    for answer in answers:
        assert answer["__typename"] == "PredictSuccess", answer
        number = answer["modelVersion"]["number"]
        score = np.float32(answer["outputs"][0]["score"])
        np.testing.assert_allclose(score, expected[number][0], rtol=1e-5, atol=1e-4)
    assert {answer["role"] for answer in answers} == {"stable", "canary"}, json.dumps(answers)
