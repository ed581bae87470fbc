"""Metric history on a real database: points from a training thread written in bulk exactly once,
resuming after a checkpoint, duplicates, failures that surface, and the reads that charts and
job comparisons use (downsampling checked against numpy on the same data)."""

from __future__ import annotations

import asyncio
import math
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import numpy as np
import pytest

from aiaas.core.errors import InputError, MetricWriterError
from aiaas.core.platform import Platform
from aiaas.core.storage import MetadataStore
from aiaas.core.training.metric_history import (
    MetricPoint,
    drop_points_after,
    latest_metrics,
    metric_keys,
    metric_series,
)
from aiaas.core.training.metric_writer import MetricWriter
from metric_rows import new_job


async def stored(platform: Platform, job_id: uuid.UUID) -> list[tuple[str, int, float]]:
    """The job's rows, read on a connection of their own: what is committed."""
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT key, step, value FROM metric_points WHERE job_id = $1 ORDER BY key, step",
            job_id,
        )
    return [(row["key"], row["step"], row["value"]) for row in rows]


def value_of(key: str, step: int, run: int = 0) -> float:
    """Exact in a double, and different for each key, step and run."""
    return step * 10.0 + len(key) + run * 0.5


# Writing -------------------------------------------------------------------------------------


async def test_points_from_a_training_thread_are_written_exactly_once(
    platform: Platform, project_id: uuid.UUID
) -> None:
    job_id = await new_job(platform, project_id)
    keys = ("loss", "accuracy", "learning_rate")
    steps = 20_000
    # Small batches, several in flight and a small buffer: many flushes, overlapping, and a
    # training thread that has to wait for room.
    writer = MetricWriter(
        platform.metadata,
        job_id,
        batch_points=1_000,
        max_batch_points=2_500,
        max_buffered_points=5_000,
        concurrent_flushes=3,
        flush_interval_s=0.05,
    )
    await writer.start()

    def train() -> None:
        for step in range(steps):
            writer.add(step, {key: value_of(key, step) for key in keys})

    await asyncio.to_thread(train)
    await writer.close()

    expected = sorted((key, step, value_of(key, step)) for key in keys for step in range(steps))
    assert await stored(platform, job_id) == expected


async def test_flush_returns_once_the_points_added_are_committed(
    platform: Platform, project_id: uuid.UUID
) -> None:
    job_id = await new_job(platform, project_id)
    # Neither a full batch nor the interval would write these: only flush() does.
    async with MetricWriter(
        platform.metadata, job_id, batch_points=1_000, flush_interval_s=3600
    ) as writer:
        for step in range(10):
            writer.add(step, {"loss": value_of("loss", step)})
        await writer.flush()
        assert await stored(platform, job_id) == [
            ("loss", step, value_of("loss", step)) for step in range(10)
        ]
        writer.add(10, {"loss": value_of("loss", 10)})
        await writer.flush()
        assert len(await stored(platform, job_id)) == 11
        await writer.flush()  # nothing new: returns at once
    with pytest.raises(MetricWriterError):
        writer.add(11, {"loss": 1.0})


async def test_a_resumed_job_has_neither_gap_nor_duplicate(
    platform: Platform, project_id: uuid.UUID
) -> None:
    job_id = await new_job(platform, project_id)
    keys = ("loss", "accuracy")
    async with MetricWriter(platform.metadata, job_id) as first_run:
        for step in range(100):
            first_run.add(step, {key: value_of(key, step, run=1) for key in keys})
    # The worker died; the checkpoint it resumes from is of step 49.
    async with platform.metadata.acquire() as connection:
        assert await drop_points_after(connection, job_id, 49) == 50 * len(keys)
    async with MetricWriter(platform.metadata, job_id) as second_run:
        for step in range(50, 150):
            second_run.add(step, {key: value_of(key, step, run=2) for key in keys})

    assert await stored(platform, job_id) == sorted(
        (key, step, value_of(key, step, run=1 if step <= 49 else 2))
        for key in keys
        for step in range(150)
    )
    async with platform.metadata.acquire() as connection:
        assert await drop_points_after(connection, job_id, 200) == 0
        assert await drop_points_after(connection, job_id, -1) == 150 * len(keys)


async def test_a_point_added_twice_is_stored_once_first_value_wins(
    platform: Platform, project_id: uuid.UUID
) -> None:
    job_id = await new_job(platform, project_id)
    async with MetricWriter(platform.metadata, job_id, flush_interval_s=3600) as writer:
        # Twice within one batch.
        writer.add(0, {"loss": 1.0})
        writer.add(1, {"loss": 2.0})
        writer.add(1, {"loss": 20.0})
        await writer.flush()
        # In a later batch: steps 0 and 1 are stored already, step 2 is new.
        writer.add(0, {"loss": 10.0, "accuracy": 0.5})
        writer.add(1, {"loss": 20.0})
        writer.add(2, {"loss": 3.0})
        await writer.flush()
        # Duplicates change nothing for what follows: the next batch takes the fast path.
        writer.add(3, {"loss": 4.0})
    assert await stored(platform, job_id) == [
        ("accuracy", 0, 0.5),
        ("loss", 0, 1.0),
        ("loss", 1, 2.0),
        ("loss", 2, 3.0),
        ("loss", 3, 4.0),
    ]


class _LosesTheAnswer:
    """A connection whose COPY commits, after which the connection is lost: the writer cannot
    know whether the batch was stored."""

    def __init__(self, connection: Any, store: CommitsThenDisconnects) -> None:
        self._connection = connection
        self._store = store

    async def copy_records_to_table(self, *arguments: Any, **options: Any) -> None:
        await self._connection.copy_records_to_table(*arguments, **options)
        self._store.losses -= 1
        raise asyncpg.ConnectionDoesNotExistError("connection lost before the answer")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class CommitsThenDisconnects(MetadataStore):
    def __init__(self, inner: MetadataStore, losses: int) -> None:
        self._inner = inner
        self.losses = losses

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self._inner.acquire() as connection:
            yield _LosesTheAnswer(connection, self) if self.losses > 0 else connection


async def test_a_batch_retried_after_it_had_committed_is_not_stored_twice(
    platform: Platform, project_id: uuid.UUID
) -> None:
    job_id = await new_job(platform, project_id)
    store = CommitsThenDisconnects(platform.metadata, losses=1)
    async with MetricWriter(store, job_id, retry_delay_s=0.01) as writer:
        for step in range(100):
            writer.add(step, {"loss": value_of("loss", step)})
        # Stored, but the writer never heard so: it tries again, and meets the stored rows.
        await writer.flush()
        assert store.losses == 0
        for step in range(100, 200):
            writer.add(step, {"loss": value_of("loss", step)})
    assert await stored(platform, job_id) == [
        ("loss", step, value_of("loss", step)) for step in range(200)
    ]


REFUSED_VALUE = 12345.0


@pytest.fixture
async def refusing_database(database_owner_url: str) -> AsyncIterator[None]:
    """The database refuses one value: a failure that no retry can mend. Only the schema's
    owner may add the constraint that makes it so."""
    owner = await asyncpg.connect(database_owner_url)
    try:
        await owner.execute(
            "ALTER TABLE metric_points "
            f"ADD CONSTRAINT refuse_marker CHECK (value <> {REFUSED_VALUE})"
        )
        yield
        await owner.execute("ALTER TABLE metric_points DROP CONSTRAINT refuse_marker")
    finally:
        await owner.close()


async def test_a_failing_flush_surfaces_from_flush_and_close(
    platform: Platform, project_id: uuid.UUID, refusing_database: None
) -> None:
    writer = MetricWriter(platform.metadata, await new_job(platform, project_id))
    await writer.start()
    writer.add(0, {"loss": REFUSED_VALUE})
    with pytest.raises(asyncpg.CheckViolationError):
        await writer.flush()
    # The training thread hears of it at its next step rather than training on blindly.
    with pytest.raises(MetricWriterError) as refused:
        writer.add(1, {"loss": 1.0})
    assert isinstance(refused.value.__cause__, asyncpg.CheckViolationError)
    with pytest.raises(asyncpg.CheckViolationError):
        await writer.close()


async def test_a_failing_background_flush_surfaces_from_close(
    platform: Platform, project_id: uuid.UUID, refusing_database: None
) -> None:
    writer = MetricWriter(platform.metadata, await new_job(platform, project_id), batch_points=10)
    await writer.start()
    for step in range(10):
        writer.add(step, {"loss": REFUSED_VALUE})  # a full batch: written without any flush()
    with pytest.raises(asyncpg.CheckViolationError):
        await writer.close()


async def test_nan_and_infinities_are_stored_as_they_are(
    platform: Platform, project_id: uuid.UUID
) -> None:
    job_id = await new_job(platform, project_id)
    values = [math.nan, math.inf, -math.inf, 1.0, -0.0]
    async with MetricWriter(platform.metadata, job_id) as writer:
        for step, value in enumerate(values):
            writer.add(step, {"loss": value})
    async with platform.metadata.acquire() as connection:
        raw = await metric_series(connection, job_id, "loss", 10)
        bucketed = await metric_series(connection, job_id, "loss", 1)
        latest = await latest_metrics(connection, [job_id])
    assert [point.step for point in raw] == list(range(5))
    assert math.isnan(raw[0].value) and raw[1:4] == [
        MetricPoint(step=1, value=math.inf, min=math.inf, max=math.inf),
        MetricPoint(step=2, value=-math.inf, min=-math.inf, max=-math.inf),
        MetricPoint(step=3, value=1.0, min=1.0, max=1.0),
    ]
    # One bucket of all five: NaN poisons the mean and, ordered above every number, the maximum.
    [bucket] = bucketed
    assert bucket.step == 0 and math.isnan(bucket.value) and math.isnan(bucket.max)
    assert bucket.min == -math.inf
    assert latest == {job_id: {"loss": -0.0}}


async def test_numpy_steps_and_values_are_coerced(
    platform: Platform, project_id: uuid.UUID
) -> None:
    job_id = await new_job(platform, project_id)
    async with MetricWriter(platform.metadata, job_id) as writer:
        writer.add(np.int64(3), {"loss": np.float32(0.5), "accuracy": np.float64(0.25), "n": 7})
    assert await stored(platform, job_id) == [
        ("accuracy", 3, 0.25),
        ("loss", 3, 0.5),
        ("n", 3, 7.0),
    ]


@pytest.mark.parametrize(
    ("step", "metrics"),
    [
        (0, {"": 1.0}),
        (0, {"k" * 101: 1.0}),
        (0, {"nul\x00": 1.0}),
        (0, {7: 1.0}),
        (0, {"loss": 1.0, "accuracy": "0.5"}),
        (0, {"loss": None}),
        (-1, {"loss": 1.0}),
        (2**63, {"loss": 1.0}),
        (1.5, {"loss": 1.0}),
    ],
)
async def test_invalid_points_are_refused_whole(
    platform: Platform, project_id: uuid.UUID, step: Any, metrics: dict[Any, Any]
) -> None:
    job_id = await new_job(platform, project_id)
    async with MetricWriter(platform.metadata, job_id) as writer:
        with pytest.raises(InputError):
            writer.add(step, metrics)
        writer.add(0, {"k" * 100: 1.0})  # the longest key there is
    assert await stored(platform, job_id) == [("k" * 100, 0, 1.0)]


# Reading -------------------------------------------------------------------------------------


def expected_buckets(steps: np.ndarray, values: np.ndarray, max_points: int) -> list[MetricPoint]:
    """Equal-width buckets over [first, last] step, computed with numpy."""
    first, last = int(steps[0]), int(steps[-1])
    width = (last - first) // max_points + 1
    buckets = (steps - first) // width
    expected = []
    for bucket in np.unique(buckets):
        chosen = buckets == bucket
        expected.append(
            MetricPoint(
                step=int(steps[chosen][0]),
                value=float(values[chosen].mean()),
                min=float(values[chosen].min()),
                max=float(values[chosen].max()),
            )
        )
    return expected


@pytest.fixture(scope="module")
async def long_series(
    platform: Platform, project_id: uuid.UUID
) -> tuple[uuid.UUID, np.ndarray, np.ndarray]:
    """30,000 points of `loss` at irregular steps up to 100,000."""
    generator = np.random.default_rng(20261126)
    steps = np.sort(generator.choice(100_000, size=30_000, replace=False))
    values = generator.normal(size=steps.size)
    job_id = await new_job(platform, project_id)
    async with MetricWriter(platform.metadata, job_id) as writer:
        for step, value in zip(steps.tolist(), values.tolist(), strict=True):
            writer.add(step, {"loss": value})
    return job_id, steps, values


@pytest.mark.parametrize("max_points", [1, 7, 1_000, 10_000])
async def test_a_long_series_is_downsampled_in_buckets(
    platform: Platform,
    long_series: tuple[uuid.UUID, np.ndarray, np.ndarray],
    max_points: int,
) -> None:
    job_id, steps, values = long_series
    async with platform.metadata.acquire() as connection:
        points = await metric_series(connection, job_id, "loss", max_points)
    expected = expected_buckets(steps, values, max_points)
    assert 0 < len(points) <= max_points
    assert [point.step for point in points] == [point.step for point in expected]
    for point, want in zip(points, expected, strict=True):
        assert point.value == pytest.approx(want.value, rel=1e-9, abs=1e-12)
        assert (point.min, point.max) == (want.min, want.max)


async def test_a_series_of_at_most_max_points_comes_back_whole(
    platform: Platform,
    project_id: uuid.UUID,
    long_series: tuple[uuid.UUID, np.ndarray, np.ndarray],
) -> None:
    _, steps, values = long_series
    job_steps, job_values = steps[:10_000], values[:10_000]
    short = await new_job(platform, project_id)
    async with MetricWriter(platform.metadata, short) as writer:
        for step, value in zip(job_steps.tolist(), job_values.tolist(), strict=True):
            writer.add(step, {"loss": value})
    async with platform.metadata.acquire() as connection:
        whole = await metric_series(connection, short, "loss", 10_000)
        downsampled = await metric_series(connection, short, "loss", 9_999)
        missing = await metric_series(connection, short, "accuracy", 10)
    assert whole == [
        MetricPoint(step=step, value=value, min=value, max=value)
        for step, value in zip(job_steps.tolist(), job_values.tolist(), strict=True)
    ]
    assert 0 < len(downsampled) <= 9_999
    assert downsampled == pytest.approx(expected_buckets(job_steps, job_values, 9_999))
    assert missing == []


async def test_keys_and_latest_values_of_several_jobs(
    platform: Platform, project_id: uuid.UUID
) -> None:
    alpha, beta, silent = [await new_job(platform, project_id) for _ in range(3)]
    async with MetricWriter(platform.metadata, alpha, flush_interval_s=3600) as writer:
        # The highest step wins, not the last one written.
        writer.add(9, {"loss": 0.1, "accuracy": 0.9})
        await writer.flush()
        for step in range(9):
            writer.add(step, {"loss": 1.0 - step / 10, "accuracy": step / 10})
        writer.add(10, {"zeta": 5.0})
    async with MetricWriter(platform.metadata, beta) as writer:
        for step in range(5):
            writer.add(step, {"loss": float(step)})

    # Asked with plain uuid.UUID objects, twice for one job.
    asked = [uuid.UUID(str(job)) for job in (beta, silent, alpha, beta)]
    async with platform.metadata.acquire() as connection:
        keys = await metric_keys(connection, asked)
        latest = await latest_metrics(connection, asked)
        assert await metric_keys(connection, []) == {}
    assert keys == {alpha: ["accuracy", "loss", "zeta"], beta: ["loss"], silent: []}
    assert latest == {
        alpha: {"accuracy": 0.9, "loss": 0.1, "zeta": 5.0},
        beta: {"loss": 4.0},
        silent: {},
    }


@pytest.mark.parametrize("max_points", [0, 100_001, -5, True, 2.5])
async def test_max_points_out_of_bounds_is_refused(platform: Platform, max_points: Any) -> None:
    async with platform.metadata.acquire() as connection:
        with pytest.raises(InputError) as refused:
            await metric_series(connection, uuid.uuid4(), "loss", max_points)
    assert refused.value.field_errors == {"max_points": "out of range"}


async def test_an_invalid_key_is_refused_when_reading(platform: Platform) -> None:
    async with platform.metadata.acquire() as connection:
        with pytest.raises(InputError):
            await metric_series(connection, uuid.uuid4(), "", 10)
        with pytest.raises(InputError):
            await metric_series(connection, uuid.uuid4(), "k" * 101, 10)


async def test_add_is_safe_from_several_threads(platform: Platform, project_id: uuid.UUID) -> None:
    job_id = await new_job(platform, project_id)
    writer = MetricWriter(platform.metadata, job_id, batch_points=500, flush_interval_s=0.01)
    await writer.start()

    def report(key: str) -> None:
        for step in range(5_000):
            writer.add(step, {key: value_of(key, step)})

    threads = [threading.Thread(target=report, args=(f"key{index}",)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        await asyncio.to_thread(thread.join)
    await writer.close()
    assert await stored(platform, job_id) == sorted(
        (f"key{index}", step, value_of(f"key{index}", step))
        for index in range(4)
        for step in range(5_000)
    )
