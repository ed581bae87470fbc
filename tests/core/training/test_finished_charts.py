"""The charts of finished jobs kept in Redis (`finished_charts`): a finished job's series comes
from the cache once computed, a running job's always from PostgreSQL, and a training job keeps
its default charts as it finishes."""

from __future__ import annotations

import uuid

import pytest

from aiaas.core.errors import InputError
from aiaas.core.platform import Platform
from aiaas.core.training.finished_charts import (
    DEFAULT_CHART_POINTS,
    chart_series,
    keep_default_charts,
)
from aiaas.core.training.metric_history import MetricPoint, metric_series
from aiaas.core.training.metric_writer import MetricWriter
from metric_rows import new_job

STEPS = 3_000


async def job_with_history(platform: Platform, project_id: uuid.UUID) -> uuid.UUID:
    """A job with `STEPS` steps of loss and a few of val_loss: long enough to be downsampled."""
    job_id = await new_job(platform, project_id)
    async with MetricWriter(platform.metadata, job_id) as writer:
        for step in range(1, STEPS + 1):
            writer.add(step, {"loss": 1.0 / step})
        writer.add(STEPS, {"val_loss": 0.5})
    return job_id


async def forget_history(platform: Platform, job_id: uuid.UUID) -> None:
    """Remove the points from PostgreSQL: what is answered after this came from the cache."""
    async with platform.metadata.acquire() as connection:
        await connection.execute("DELETE FROM metric_points WHERE job_id = $1", job_id)


async def from_database(platform: Platform, job_id: uuid.UUID, key: str) -> list[MetricPoint]:
    async with platform.metadata.acquire() as connection:
        return await metric_series(connection, job_id, key, DEFAULT_CHART_POINTS)


async def test_a_finished_jobs_chart_is_kept_once_computed(
    platform: Platform, project_id: uuid.UUID
) -> None:
    job_id = await job_with_history(platform, project_id)
    expected = await from_database(platform, job_id, "loss")

    first = await chart_series(platform, job_id, "loss", DEFAULT_CHART_POINTS, finished=True)
    await forget_history(platform, job_id)
    again = await chart_series(platform, job_id, "loss", DEFAULT_CHART_POINTS, finished=True)
    other_size = await chart_series(platform, job_id, "loss", 10, finished=True)

    assert len(expected) == DEFAULT_CHART_POINTS
    assert first == expected and again == expected
    assert other_size == [], "each number of points is a chart of its own"


async def test_a_running_jobs_chart_is_always_read_afresh(
    platform: Platform, project_id: uuid.UUID
) -> None:
    job_id = await job_with_history(platform, project_id)
    assert await chart_series(platform, job_id, "loss", DEFAULT_CHART_POINTS, finished=False)

    await forget_history(platform, job_id)

    assert await chart_series(platform, job_id, "loss", DEFAULT_CHART_POINTS, finished=False) == []


async def test_a_job_keeps_the_default_chart_of_each_metric_as_it_finishes(
    platform: Platform, project_id: uuid.UUID
) -> None:
    job_id = await job_with_history(platform, project_id)
    expected = {key: await from_database(platform, job_id, key) for key in ("loss", "val_loss")}

    await keep_default_charts(platform, job_id)
    await forget_history(platform, job_id)

    for key, points in expected.items():
        assert (
            await chart_series(platform, job_id, key, DEFAULT_CHART_POINTS, finished=True) == points
        )


@pytest.mark.parametrize(("key", "max_points"), [("", 10), ("loss", 0), ("loss", 100_001)])
async def test_bad_arguments_are_refused_before_redis_is_asked(
    platform: Platform, project_id: uuid.UUID, key: str, max_points: int
) -> None:
    with pytest.raises(InputError):
        await chart_series(platform, uuid.uuid4(), key, max_points, finished=True)
