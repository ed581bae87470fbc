"""Drift of an image model: its requests are sampled as per-image statistics (brightness,
contrast, and the size each image was sent at), never as pixels, and checked against the same
statistics of its reference data's encoded images. Images much brighter than the reference's
raise the alert on `image.brightness`; images like the reference's do not."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest

from aiaas.core.config import Config
from aiaas.core.data import datasets
from aiaas.core.identity.access import ProjectRole
from aiaas.core.images import encode_png
from aiaas.core.platform import Platform
from aiaas.core.serving.drift_checks import DriftReport, check_drift
from aiaas.core.serving.image_requests import ImageInput
from aiaas.core.serving.image_statistics import image_baselines
from aiaas.core.serving.inference import INFERENCE_SERVER
from aiaas.core.serving.prediction_samples import stored_samples
from aiaas.core.training import registry as models
from deployment_calls import deploy as deployed
from deployment_calls import predict
from image_serving import image_graph, upload_image_model
from serving_support import upload
from support import EVERY_REQUEST_SAMPLED, Team, new_team, with_trees

STATISTICS = {"image.brightness", "image.contrast", "image.width", "image.height"}
REQUESTS = 80


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """The trees plugin loaded (it serves uploaded graphs), and every request sampled."""
    return with_trees(config, **EVERY_REQUEST_SAMPLED)


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "image-drift", (ProjectRole.VIEWER, ProjectRole.DEVELOPER))


def images_around(count: int, brightness: float, *, seed: int) -> np.ndarray:
    """uint8 images [count, 16, 16, 3] whose mean pixel varies around `brightness`."""
    rng = np.random.default_rng(seed)
    means = rng.normal(brightness, 12.0, size=(count, 1, 1, 1))
    noise = rng.normal(0.0, 30.0, size=(count, 16, 16, 3))
    return np.clip(means + noise, 0, 255).astype(np.uint8)


def image_table(pixels: np.ndarray) -> pa.Table:
    """A table as the contract's image dataset holds it: one encoded image per row."""
    files = [encode_png(image) for image in pixels]
    return pa.table(
        {
            "path": [f"scans/{index}.png" for index in range(len(files))],
            "image": pa.array(files, pa.binary()),
            "label": ["a" if index % 2 else "b" for index in range(len(files))],
        }
    )


@pytest.fixture(scope="module")
async def reference(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> datasets.DatasetVersion:
    developer = team.members[ProjectRole.DEVELOPER].principal
    table = image_table(images_around(400, 100.0, seed=1))
    return await upload(
        platform, developer, team.project_id, table, "scans", tmp_path_factory.mktemp("scans")
    )


@pytest.fixture(scope="module")
async def version(
    platform: Platform,
    module_client: httpx.AsyncClient,
    team: Team,
    reference: datasets.DatasetVersion,
) -> models.ModelVersion:
    return await upload_image_model(
        platform,
        module_client,
        team,
        "scanner",
        image_graph(),
        dataset="scans",
        datasetVersion=str(reference.number),
    )


async def send(
    module_client: httpx.AsyncClient, team: Team, deployment: dict[str, Any], pixels: np.ndarray
) -> None:
    """One GraphQL request per image, each a base64 PNG."""
    for image in pixels:
        record = {"image": base64.b64encode(encode_png(image)).decode()}
        answer = await predict(module_client, team, deployment["id"], [record])
        assert answer["__typename"] == "PredictSuccess", answer


async def report_of(platform: Platform, deployment: dict[str, Any]) -> DriftReport:
    await platform.service(INFERENCE_SERVER).samples.flush()
    reports = await check_drift(platform)
    [report] = [r for r in reports if str(r.deployment_id) in _uuid_text(deployment["id"])]
    return report


def _uuid_text(global_id: str) -> str:
    padded = global_id + "=" * (-len(global_id) % 4)
    return base64.b64decode(padded).decode()


async def test_brighter_images_than_the_reference_raise_the_alert_on_brightness(
    platform: Platform, module_client: httpx.AsyncClient, team: Team, version: models.ModelVersion
) -> None:
    deployment = await deployed(module_client, team, "bright", version)
    await send(module_client, team, deployment, images_around(REQUESTS, 190.0, seed=2))

    report = await report_of(platform, deployment)

    assert report.sample_count == REQUESTS
    assert set(report.features) == STATISTICS, report.features
    assert report.features["image.brightness"]["psi"] > report.threshold, report.features
    assert report.features["image.width"]["psi"] == 0.0  # sent at the reference's size
    assert report.alert is True


async def test_images_like_the_reference_raise_no_alert(
    platform: Platform, module_client: httpx.AsyncClient, team: Team, version: models.ModelVersion
) -> None:
    deployment = await deployed(module_client, team, "alike", version)
    await send(module_client, team, deployment, images_around(REQUESTS, 100.0, seed=3))

    report = await report_of(platform, deployment)

    assert report.sample_count == REQUESTS
    assert set(report.features) == STATISTICS, report.features
    assert report.features["image.brightness"]["psi"] < report.threshold, report.features
    assert report.alert is False


async def test_a_sample_keeps_an_images_statistics_and_the_size_it_was_sent_at_not_pixels(
    platform: Platform, module_client: httpx.AsyncClient, team: Team, version: models.ModelVersion
) -> None:
    deployment = await deployed(module_client, team, "sampled", version)
    wide = np.full((20, 40, 3), 200, np.uint8)  # fitted to 16x16 for the model
    await send(module_client, team, deployment, wide[None])
    await platform.service(INFERENCE_SERVER).samples.flush()

    [sample] = await stored_samples(
        platform, team.project_id, _deployment_uuid(deployment), limit=10
    )

    assert sample.inputs == {
        "image.brightness": 200.0,
        "image.contrast": 0.0,
        "image.width": 40.0,
        "image.height": 20.0,
    }


def _deployment_uuid(deployment: dict[str, Any]) -> Any:
    import uuid

    return uuid.UUID(_uuid_text(deployment["id"]).split(":", 1)[1])


def test_reference_statistics_come_from_the_encoded_images_fitted_to_the_model() -> None:
    dark = np.full((4, 8, 8, 3), 10, np.uint8)
    table = image_table(dark)
    image = ImageInput("image", 16, 16, 3, "uint8")

    baselines = image_baselines(table, [image])
    not_images = image_baselines(table.drop_columns(["image"]), [image])

    assert set(baselines) == STATISTICS
    assert baselines["image.brightness"].rows == 4
    assert baselines["image.width"].edges[-1] == 8.0  # sizes as stored, not as fitted
    assert not_images == {}


def test_a_tensor_row_samples_no_size_and_an_encoded_one_its_size_as_sent() -> None:
    """A tensor has the model's size, whatever the image's size was before the client fitted
    it: sampling that size would drift from the reference's for no reason."""
    from aiaas.core.serving.prediction_samples import row_as_json

    pixels = np.full((2, 16, 16, 3), 100, np.uint8)
    as_tensor = json.loads(row_as_json({"image": pixels}, 0))
    assert set(as_tensor) == {"image.brightness", "image.contrast"}
    assert as_tensor["image.brightness"] == 100.0
    as_files = json.loads(
        row_as_json({"image": pixels}, 1, {"image": np.array([[640, 480], [320, 200]])})
    )
    assert (as_files["image.width"], as_files["image.height"]) == (320.0, 200.0)
