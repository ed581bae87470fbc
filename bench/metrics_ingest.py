"""Metric history ingest through `MetricWriter` against per-row INSERT and asyncpg `executemany`.

On a scratch database that it creates, migrates and drops, each repeat writes the same shape of
points (`--keys` metrics x `--steps` steps) four ways, into an emptied `metric_points`:

- platform: a training thread calls `MetricWriter.add()` once per step while the event loop
  flushes; timed from the thread's start until `close()` returns, so every point is committed;
- executemany: `executemany` of an INSERT over the same points, in batches of `--batch-points`
  rows, each batch committed; the records are built before the clock starts;
- copy: `copy_records_to_table` on one connection in batches of `--copy-batch-points`, the
  records built before the clock starts: COPY alone, without the thread, the buffer or the
  concurrent flushes;
- insert: one INSERT per point, each its own transaction, as one-at-a-time metric logging does;
  on `--insert-points` points only, reported as a rate.

It then times the duplicate path (every batch holds a point stored twice, so every batch is
refused by COPY and goes through INSERT ... ON CONFLICT DO NOTHING), and the reads on a history
of `--series-steps` steps of one key: the downsampled chart and the latest value of every key,
against the DISTINCT ON query that reads every point.

    python bench/metrics_ingest.py [--database-url URL] [--steps 250000] [--repeat 3]

The medians of `--repeat` runs are compared. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from aiaas import migrations
from aiaas.core.config import build_config
from aiaas.core.training.metric_history import latest_metrics, metric_series
from aiaas.core.training.metric_writer import MetricWriter
from aiaas.plugins.postgres_metadata import PostgresMetadataStore

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
KEYS = ("loss", "accuracy", "learning_rate", "grad_norm", "val_loss", "val_accuracy", "tokens_s")
INSERT = "INSERT INTO metric_points (job_id, key, step, value) VALUES ($1, $2, $3, $4)"


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def metrics_of(step: int, keys: tuple[str, ...]) -> dict[str, float]:
    return {key: math.sin(step * 1e-3 + index) for index, key in enumerate(keys)}


def records_of(
    job_id: uuid.UUID, steps: int, keys: tuple[str, ...]
) -> list[tuple[uuid.UUID, str, int, float]]:
    return [
        (job_id, key, step, value)
        for step in range(steps)
        for key, value in metrics_of(step, keys).items()
    ]


class Scratch:
    """The scratch database, a connection to it, and a job to hang points on."""

    def __init__(self, url: str, connection: asyncpg.Connection, project_id: uuid.UUID) -> None:
        self.url = url
        self.connection = connection
        self.project_id = project_id

    async def new_job(self) -> uuid.UUID:
        """A job of its own for each measurement, in an emptied table: each starts equal."""
        await self.connection.execute("TRUNCATE metric_points")
        await self.connection.execute("CHECKPOINT")
        job_id: uuid.UUID = await self.connection.fetchval(
            "INSERT INTO jobs (project_id, kind) VALUES ($1, 'train') RETURNING id",
            self.project_id,
        )
        return job_id

    async def count(self, job_id: uuid.UUID) -> int:
        rows: int = await self.connection.fetchval(
            "SELECT count(*) FROM metric_points WHERE job_id = $1", job_id
        )
        return rows


async def platform_run(
    scratch: Scratch,
    store: PostgresMetadataStore,
    steps: int,
    keys: tuple[str, ...],
    duplicate_every: int = 0,
) -> float:
    """Seconds from the training thread's first `add()` until `close()` has committed it all.
    With `duplicate_every`, the thread reports every that many steps the previous step again."""
    job_id = await scratch.new_job()
    writer = MetricWriter(store, job_id)
    await writer.start()

    def train() -> None:
        for step in range(steps):
            writer.add(step, metrics_of(step, keys))
            if duplicate_every and step and step % duplicate_every == 0:
                writer.add(step - 1, metrics_of(step - 1, keys))

    started = time.perf_counter()
    thread = threading.Thread(target=train)
    thread.start()
    await asyncio.to_thread(thread.join)
    await writer.close()
    elapsed = time.perf_counter() - started
    assert await scratch.count(job_id) == steps * len(keys), "every point, once"
    return elapsed


async def executemany_run(scratch: Scratch, steps: int, keys: tuple[str, ...], batch: int) -> float:
    job_id = await scratch.new_job()
    records = records_of(job_id, steps, keys)
    started = time.perf_counter()
    for offset in range(0, len(records), batch):
        await scratch.connection.executemany(INSERT, records[offset : offset + batch])
    elapsed = time.perf_counter() - started
    assert await scratch.count(job_id) == len(records)
    return elapsed


async def copy_run(scratch: Scratch, steps: int, keys: tuple[str, ...], batch: int) -> float:
    """Raw `copy_records_to_table` on one connection, the records built before the clock starts:
    what the platform path adds to (or saves on) COPY itself."""
    job_id = await scratch.new_job()
    records = records_of(job_id, steps, keys)
    started = time.perf_counter()
    for offset in range(0, len(records), batch):
        await scratch.connection.copy_records_to_table(
            "metric_points",
            records=records[offset : offset + batch],
            columns=("job_id", "key", "step", "value"),
        )
    elapsed = time.perf_counter() - started
    assert await scratch.count(job_id) == len(records)
    return elapsed


async def insert_run(scratch: Scratch, points: int, keys: tuple[str, ...]) -> float:
    job_id = await scratch.new_job()
    records = records_of(job_id, points // len(keys), keys)
    started = time.perf_counter()
    for record in records:
        await scratch.connection.execute(INSERT, *record)
    elapsed = time.perf_counter() - started
    assert await scratch.count(job_id) == len(records)
    return elapsed


async def median_ms(action: Callable[[], Awaitable[object]], times: int = 5) -> float:
    runs = []
    for _ in range(times):
        started = time.perf_counter()
        await action()
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs)


async def read_timings(
    scratch: Scratch, series_steps: int, keys: tuple[str, ...]
) -> dict[str, float]:
    """A chart of one key over `series_steps` steps, and the latest value of every key, on a
    job with that many steps of the first key and a thousand of each other one."""
    job_id = await scratch.new_job()
    for index, key in enumerate(keys):
        key_steps = series_steps if index == 0 else 1000
        records = [(job_id, key, step, math.cos(step)) for step in range(key_steps)]
        for offset in range(0, len(records), 200_000):
            await scratch.connection.copy_records_to_table(
                "metric_points",
                records=records[offset : offset + 200_000],
                columns=("job_id", "key", "step", "value"),
            )
    await scratch.connection.execute("VACUUM ANALYZE metric_points")
    connection = scratch.connection
    points = await metric_series(connection, job_id, keys[0], 1000)
    assert 0 < len(points) <= 1000
    latest = await latest_metrics(connection, [job_id])
    distinct_on = await connection.fetch(
        "SELECT DISTINCT ON (job_id, key) job_id, key, value FROM metric_points "
        "WHERE job_id = ANY($1::uuid[]) ORDER BY job_id, key, step DESC",
        [job_id],
    )
    assert latest[job_id] == {row["key"]: row["value"] for row in distinct_on}
    downsample_ms = await median_ms(lambda: metric_series(connection, job_id, keys[0], 1000))
    fine_ms = await median_ms(lambda: metric_series(connection, job_id, keys[0], 10_000))
    raw_ms = await median_ms(lambda: metric_series(connection, job_id, keys[-1], 1000))
    latest_ms = await median_ms(lambda: latest_metrics(connection, [job_id]))
    distinct_on_ms = await median_ms(
        lambda: connection.fetch(
            "SELECT DISTINCT ON (job_id, key) job_id, key, value FROM metric_points "
            "WHERE job_id = ANY($1::uuid[]) ORDER BY job_id, key, step DESC",
            [job_id],
        )
    )
    return {
        "series_steps": series_steps,
        "series_keys": len(keys),
        "series_downsample_to_1000_ms": round(downsample_ms, 1),
        "series_downsample_to_10000_ms": round(fine_ms, 1),
        "series_raw_1000_points_ms": round(raw_ms, 2),
        "latest_metrics_ms": round(latest_ms, 2),
        "latest_distinct_on_ms": round(distinct_on_ms, 1),
        "latest_metrics_vs_distinct_on_ratio": round(distinct_on_ms / latest_ms, 1),
    }


async def measure(arguments: argparse.Namespace, url: str) -> dict[str, object]:
    keys = KEYS[: arguments.keys]
    steps, repeat = arguments.steps, max(1, arguments.repeat)
    points = steps * len(keys)
    connection = await asyncpg.connect(url)
    store = PostgresMetadataStore(build_config({"database_url": url}))
    await store.connect()
    try:
        project_id = await connection.fetchval(
            "INSERT INTO projects (slug, name) VALUES ('bench', 'Bench') RETURNING id"
        )
        scratch = Scratch(url, connection, project_id)
        platform_s, executemany_s, copy_s, insert_s = [], [], [], []
        for _ in range(repeat):
            platform_s.append(await platform_run(scratch, store, steps, keys))
            executemany_s.append(
                await executemany_run(scratch, steps, keys, arguments.batch_points)
            )
            copy_s.append(await copy_run(scratch, steps, keys, arguments.copy_batch_points))
            insert_s.append(await insert_run(scratch, arguments.insert_points, keys))
        duplicate_steps = min(steps, 50_000)
        duplicated_s = statistics.median(
            [
                await platform_run(scratch, store, duplicate_steps, keys, duplicate_every=1000)
                for _ in range(repeat)
            ]
        )
        reads = await read_timings(scratch, arguments.series_steps, keys)
    finally:
        await store.close()
        await connection.close()
    platform_rate = points / statistics.median(platform_s)
    executemany_rate = points / statistics.median(executemany_s)
    copy_rate = points / statistics.median(copy_s)
    insert_points = arguments.insert_points // len(keys) * len(keys)
    insert_rate = insert_points / statistics.median(insert_s)
    return {
        "points": points,
        "keys": len(keys),
        "steps": steps,
        "insert_points": insert_points,
        "executemany_batch_points": arguments.batch_points,
        "repeat": repeat,
        "cpu_count": os.cpu_count(),
        "platform_points_per_s": round(platform_rate),
        "platform_runs_s": [round(run, 2) for run in platform_s],
        "executemany_points_per_s": round(executemany_rate),
        "executemany_runs_s": [round(run, 2) for run in executemany_s],
        "copy_batch_points": arguments.copy_batch_points,
        "copy_points_per_s": round(copy_rate),
        "copy_runs_s": [round(run, 2) for run in copy_s],
        "insert_points_per_s": round(insert_rate),
        "insert_runs_s": [round(run, 2) for run in insert_s],
        "platform_vs_executemany_ratio": round(platform_rate / executemany_rate, 2),
        "platform_vs_insert_ratio": round(platform_rate / insert_rate, 1),
        "platform_vs_single_connection_copy_ratio": round(platform_rate / copy_rate, 2),
        "duplicated_batches_points": duplicate_steps * len(keys),
        "duplicated_batches_points_per_s": round(duplicate_steps * len(keys) / duplicated_s),
        **reads,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get("AIAAS_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--keys", type=int, default=4, choices=range(1, len(KEYS) + 1))
    parser.add_argument("--steps", type=int, default=250_000)
    parser.add_argument("--insert-points", type=int, default=20_000)
    parser.add_argument("--batch-points", type=int, default=20_000)
    parser.add_argument("--copy-batch-points", type=int, default=100_000)
    parser.add_argument("--series-steps", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    name = f"aiaas_bench_metrics_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(arguments.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(arguments.database_url, name)
        try:
            await migrations.upgrade(url)
            result = await measure(arguments, url)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
