"""Images end to end on the real platform: a zip of digit PNGs in folders uploaded over REST
becomes an image dataset version; a real arq worker trains `image-resnet` on it; the version is
deployed and answers PNG files over V2 (BYTES) and GraphQL (base64) as it answers their pixels;
a batch of brighter images is seen by the drift check on the image statistics."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import numpy as np
import pytest
from arq.worker import Worker
from sklearn.datasets import load_digits

from aiaas.core.config import Config, build_config
from aiaas.core.identity.access import ProjectRole
from aiaas.core.jobs import JobState, get_job
from aiaas.core.platform import Platform
from aiaas.core.training import TrainingRequest, submit_training_job
from aiaas.core.training import registry as models
from aiaas.workers.settings import worker_settings
from deployment_calls import PREDICT, call, deploy, drift_report_after
from image_archives import digit_pngs, png_bytes, zip_of
from support import Team, new_team

pytestmark = pytest.mark.slow

IMAGES = 1200
WORKER_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """Every request sampled, so that one drift check has enough samples at once."""
    return build_config(
        {**config.model_dump(), "prediction_sample_rate": 1.0, "drift_min_samples": 40}
    )


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "image-pipeline", (ProjectRole.VIEWER, ProjectRole.DEVELOPER))


@pytest.fixture(scope="module")
async def dataset(module_client: httpx.AsyncClient, team: Team) -> dict[str, Any]:
    archive = zip_of({image.path: image.data for image in digit_pngs(IMAGES)})
    response = await module_client.post(
        f"/v1/projects/{team.slug}/datasets/digits/versions",
        content=archive,
        headers={"authorization": f"Bearer {team.token(ProjectRole.DEVELOPER)}"},
    )
    assert response.status_code == 201, response.text
    version: dict[str, Any] = response.json()["version"]
    return version


@pytest.fixture(scope="module")
async def trained(
    platform: Platform, config: Config, team: Team, dataset: dict[str, Any]
) -> models.ModelVersion:
    import uuid

    job = await submit_training_job(
        platform,
        team.members[ProjectRole.DEVELOPER].principal,
        TrainingRequest(
            dataset_version_id=uuid.UUID(dataset["uuid"]),
            trainer="image-resnet",
            target="label",
            hyperparameters={"epochs": 20, "stages": 2, "augment": False},
            model_name="digits",
        ),
    )
    settings = worker_settings(config)
    settings["cron_jobs"] = []
    worker = Worker(**settings, burst=True, handle_signals=False)
    try:
        await asyncio.wait_for(worker.async_run(), timeout=WORKER_TIMEOUT_S)
    finally:
        await worker.close()
    async with platform.metadata.acquire() as connection:
        finished = await get_job(connection, job.id)
        assert finished is not None and finished.state is JobState.SUCCEEDED, finished
        return (await models.model_versions_by_jobs(connection, [job.id]))[job.id]


def digit_pixels(first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    pixels = (digits.images[first : first + count] * 16).clip(0, 255).astype(np.uint8)
    return pixels[..., np.newaxis], digits.target[first : first + count]


async def test_an_uploaded_archive_trains_a_model_that_answers_png_files(
    module_client: httpx.AsyncClient,
    team: Team,
    dataset: dict[str, Any],
    trained: models.ModelVersion,
) -> None:
    assert dataset["sourceFormat"] == "images" and dataset["rowCount"] == IMAGES
    assert trained.signature["inputs"] == [
        {"name": "image", "dtype": "uint8", "shape": [-1, 8, 8, 1]}
    ]
    assert trained.metrics["accuracy"] >= 0.9, trained.metrics

    deployment = await deploy(module_client, team, "digits", trained)
    pixels, labels = digit_pixels(IMAGES, 32)  # images the model did not see
    headers = {"authorization": f"Bearer {team.token(ProjectRole.VIEWER)}"}
    as_tensor = await module_client.post(
        f"/v2/models/{team.slug}.digits/infer",
        json={
            "inputs": [
                {
                    "name": "image",
                    "datatype": "UINT8",
                    "shape": list(pixels.shape),
                    "data": pixels.ravel().tolist(),
                }
            ]
        },
        headers=headers,
    )
    assert as_tensor.status_code == 200, as_tensor.text
    files = [png_bytes(image[:, :, 0]) for image in pixels]
    as_files = await module_client.post(
        f"/v2/models/{team.slug}.digits/infer",
        json={
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [len(files)],
                    "data": [base64.b64encode(data).decode() for data in files],
                }
            ]
        },
        headers=headers,
    )
    assert as_files.status_code == 200, as_files.text

    def labels_of(answer: httpx.Response) -> list[str]:
        outputs = {output["name"]: output for output in answer.json()["outputs"]}
        return [str(label) for label in outputs["label"]["data"]]

    assert labels_of(as_files) == labels_of(as_tensor)
    correct = sum(a == str(b) for a, b in zip(labels_of(as_files), labels, strict=True))
    assert correct >= 29, (correct, labels_of(as_files), labels.tolist())

    answered = await call(
        module_client,
        PREDICT,
        {
            "id": deployment["id"],
            "inputs": [{"image": base64.b64encode(files[0]).decode()}],
            "version": None,
        },
        team.token(ProjectRole.VIEWER),
    )
    assert answered["__typename"] == "PredictSuccess", answered


async def test_brighter_images_drift_on_the_image_statistics(
    platform: Platform, module_client: httpx.AsyncClient, team: Team, trained: models.ModelVersion
) -> None:
    deployment = await deploy(module_client, team, "brighter", trained)
    pixels, _ = digit_pixels(IMAGES, 48)
    brighter = np.clip(pixels.astype(np.int32) + 120, 0, 255).astype(np.uint8)
    rows = [{"image": base64.b64encode(png_bytes(image[:, :, 0])).decode()} for image in brighter]
    report = await drift_report_after(module_client, platform, team, deployment["id"], rows)
    assert report["sampleCount"] == len(brighter)
    features = {feature["feature"]: feature["psi"] for feature in report["features"]}
    assert report["alert"] is True, report
    assert features["image.brightness"] > 0.25, features
