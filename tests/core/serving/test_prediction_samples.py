"""The prediction sampler (`aiaas.core.serving.prediction_samples`) against a real PostgreSQL:
what it keeps of a request, how its buffer is bounded, and what a flush writes or, failing, drops.

The samples belong to a real deployment and model version (the table's foreign keys say so).
The version's bundle is no model: nothing here loads it, and no rollout runs.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.serving import deployments, prediction_samples
from aiaas.core.serving.deployments import Deployment, NewDeployment
from aiaas.core.serving.prediction_samples import MAX_BUFFERED_SAMPLES, PredictionSampler
from serving_support import register_bytes_as_version, upload, wine_table
from support import Team, new_team, poll_until


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "samples", (ProjectRole.DEVELOPER,))


@pytest.fixture(scope="module")
async def deployment(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> Deployment:
    """A deployment of a version registered as a finished job registers one."""
    developer = team.members[ProjectRole.DEVELOPER].principal
    directory = tmp_path_factory.mktemp("samples")
    wine = await upload(platform, developer, team.project_id, wine_table(), "wine", directory)
    version = await register_bytes_as_version(
        platform, developer, wine.id, b"never loaded here", model_name="wine"
    )
    return await deployments.create_deployment(
        platform, developer, NewDeployment(name="sampled", version_id=version.id)
    )


@pytest.fixture(autouse=True)
async def no_samples_yet(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an empty table, and flushes only when it says so (unless it
    shortens the interval itself)."""
    monkeypatch.setattr(prediction_samples, "FLUSH_EVERY_S", 3600.0)
    async with platform.metadata.acquire() as connection:
        await connection.execute("DELETE FROM prediction_samples")


@pytest.fixture
async def sampler(platform: Platform) -> AsyncIterator[PredictionSampler]:
    sampler = PredictionSampler(platform, rate=1.0)
    yield sampler
    await sampler.close()


async def stored_samples(platform: Platform, deployment: Deployment) -> list[dict[str, Any]]:
    """The deployment's samples as stored, opened with its project's key."""
    samples = await prediction_samples.stored_samples(
        platform, deployment.project_id, deployment.id
    )
    return [
        {
            "deployment_id": sample.deployment_id,
            "version_id": sample.version_id,
            "role": sample.role,
            "inputs": sample.inputs,
            "outputs": sample.outputs,
        }
        for sample in samples
    ]


def numbered_rows(count: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Inputs and outputs of `count` rows in which every value says which row it is in."""
    rows = np.arange(count)
    inputs = {
        "number": rows.astype(np.float32),
        "name": np.array([f"row {row}" for row in rows], dtype=object),
        "pair": np.stack([rows, rows * 10]).T.astype(np.int64),
    }
    outputs = {
        "label": np.array([f"label {row}" for row in rows], dtype=object),
        "probabilities": np.stack([rows / 100, 1 - rows / 100]).T.astype(np.float64),
    }
    return inputs, outputs


# Whether to sample ------------------------------------------------------------------------------


def test_rate_zero_never_samples_and_rate_one_always(platform: Platform) -> None:
    assert not any(PredictionSampler(platform, rate=0.0).wants_sample() for _ in range(1000))
    assert all(PredictionSampler(platform, rate=1.0).wants_sample() for _ in range(1000))
    half = [PredictionSampler(platform, rate=0.5).wants_sample() for _ in range(1000)]
    assert any(half) and not all(half)


# What a sample keeps ----------------------------------------------------------------------------


async def test_a_sample_is_one_row_of_inputs_and_the_outputs_of_that_row(
    platform: Platform, deployment: Deployment, sampler: PredictionSampler
) -> None:
    inputs, outputs = numbered_rows(8)
    for _ in range(40):
        sampler.record(deployment.id, deployment.stable_version_id, "canary", inputs, outputs)

    assert await sampler.flush() == 40

    samples = await stored_samples(platform, deployment)
    assert len(samples) == 40
    seen_rows = set()
    for sample in samples:
        assert sample["deployment_id"] == deployment.id
        assert sample["version_id"] == deployment.stable_version_id
        assert sample["role"] == "canary"
        row = int(sample["inputs"]["number"])
        seen_rows.add(row)
        assert sample["inputs"] == {
            "number": float(row),
            "name": f"row {row}",
            "pair": [row, row * 10],
        }
        assert sample["outputs"] == {
            "label": f"label {row}",
            "probabilities": [pytest.approx(row / 100), pytest.approx(1 - row / 100)],
        }
    assert len(seen_rows) > 1, "the row is chosen at random, not always the same one"
    assert (sampler.written, sampler.dropped) == (40, 0)


async def test_a_sample_may_lack_outputs_and_has_null_for_nan_and_infinity(
    platform: Platform, deployment: Deployment, sampler: PredictionSampler
) -> None:
    inputs = {"x": np.array([math.nan], dtype=np.float32), "y": np.array([math.inf])}
    sampler.record(deployment.id, deployment.stable_version_id, "shadow", inputs, None)
    sampler.record(deployment.id, deployment.stable_version_id, "stable", {}, None)

    assert await sampler.flush() == 1, "a request of no rows has nothing to sample"

    [sample] = await stored_samples(platform, deployment)
    assert sample["inputs"] == {"x": None, "y": None}
    assert sample["outputs"] is None


# The buffer -------------------------------------------------------------------------------------


async def test_the_buffer_is_bounded_and_drops_what_does_not_fit(
    platform: Platform, deployment: Deployment, sampler: PredictionSampler
) -> None:
    inputs, outputs = numbered_rows(1)
    for _ in range(MAX_BUFFERED_SAMPLES + 7):
        sampler.record(deployment.id, deployment.stable_version_id, "stable", inputs, outputs)
    assert sampler.dropped == 7

    assert await sampler.flush() == MAX_BUFFERED_SAMPLES, "no more than the bound was kept"
    assert await sampler.flush() == 0
    assert len(await stored_samples(platform, deployment)) == MAX_BUFFERED_SAMPLES
    # Once written, the buffer has room again.
    sampler.record(deployment.id, deployment.stable_version_id, "stable", inputs, outputs)
    assert await sampler.flush() == 1
    assert (sampler.written, sampler.dropped) == (MAX_BUFFERED_SAMPLES + 1, 7)


async def test_wide_fields_are_left_out_and_the_buffer_is_bounded_in_bytes(
    platform: Platform, deployment: Deployment, sampler: PredictionSampler
) -> None:
    pixels = np.zeros((2, 32, 32), dtype=np.float32)  # a field far wider than drift can bin
    scores = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
    inputs = {"age": np.array([31.0, 47.0], dtype=np.float32), "image": pixels}
    sampler.record(
        deployment.id, deployment.stable_version_id, "stable", inputs, {"scores": scores}
    )
    assert await sampler.flush() == 1
    (sample,) = await stored_samples(platform, deployment)
    assert set(sample["inputs"]) == {"age"}, "the image was not sampled"
    assert len(sample["outputs"]["scores"]) == 2, "a probability per class is narrow enough"

    wide_text = {"note": np.array(["x" * 1024**2], dtype=object)}  # 1 MiB per sample
    for _ in range(prediction_samples.MAX_BUFFERED_BYTES // 1024**2 + 3):
        sampler.record(deployment.id, deployment.stable_version_id, "stable", wide_text, None)
    assert sampler.dropped >= 3, "past the byte bound, samples are dropped"
    assert await sampler.flush() <= prediction_samples.MAX_BUFFERED_BYTES // 1024**2


async def test_a_failed_flush_drops_its_batch_without_raising(
    platform: Platform, deployment: Deployment, sampler: PredictionSampler
) -> None:
    inputs, outputs = numbered_rows(2)
    no_such_version = uuid.uuid4()
    sampler.record(deployment.id, deployment.stable_version_id, "stable", inputs, outputs)
    sampler.record(deployment.id, no_such_version, "stable", inputs, outputs)
    sampler.record(deployment.id, deployment.stable_version_id, "stable", inputs, outputs)

    assert await sampler.flush() == 0

    assert (sampler.written, sampler.dropped) == (0, 3), "one statement: all or nothing"
    assert await stored_samples(platform, deployment) == []
    # The sampler goes on working.
    sampler.record(deployment.id, deployment.stable_version_id, "stable", inputs, outputs)
    assert await sampler.flush() == 1
    assert (sampler.written, sampler.dropped) == (1, 3)


async def test_samples_are_written_in_the_background_and_on_close(
    platform: Platform, deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs, outputs = numbered_rows(3)
    monkeypatch.setattr(prediction_samples, "FLUSH_EVERY_S", 0.05)
    sampler = PredictionSampler(platform, rate=1.0)
    try:
        sampler.record(deployment.id, deployment.stable_version_id, "stable", inputs, outputs)

        async def written() -> bool:
            return len(await stored_samples(platform, deployment)) == 1

        assert await poll_until(written, timeout_s=30) is not None
    finally:
        await sampler.close()

    monkeypatch.setattr(prediction_samples, "FLUSH_EVERY_S", 3600.0)
    sampler = PredictionSampler(platform, rate=1.0)
    for _ in range(2):
        sampler.record(deployment.id, deployment.stable_version_id, "stable", inputs, outputs)
    await sampler.close()
    assert len(await stored_samples(platform, deployment)) == 3
    assert sampler.written == 2
