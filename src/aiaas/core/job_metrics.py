"""Prometheus series of the job queue and of finished jobs, read from PostgreSQL at scrape time.

PostgreSQL is the source of truth for jobs (DESIGN.md section 2), so every series here is derived
from the `jobs` table rather than counted by the processes that move jobs:

- any API replica exposes the same figures, and a worker's restart loses none of them;
- workers serve no HTTP, and need none for this: they need no scrape target, port or
  service discovery of their own;
- a job resumed by another worker after a crash counts once, with its whole duration (from its
  first start, `started_at`, to its end).

prometheus_client's collectors are synchronous while asyncpg is not, so the `/metrics` handler
awaits `refresh` before it renders, and the collector only yields the snapshot that was read
last. `refresh` reads at most once per `metrics_refresh_s` (concurrent scrapes share one read), so
that scrapes, however many replicas and scrapers, cannot hammer the database. If the read fails
the previous snapshot stays, and the failure is logged: the serving series must not vanish
because PostgreSQL is slow.

The duration histogram counts every job that ever ran to an end. Jobs are never deleted, so its
buckets only grow, as a Prometheus histogram's must; its cost is one aggregate over the finished
jobs per refresh (docs/guides/operations.md, "Metrics", gives the figures).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric

from aiaas.core.platform import ProcessService

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 5.0
"""The longest a scrape waits for the job figures before it shows the last ones read."""

JOB_DURATION_BUCKETS_SECONDS = (
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
)  # fmt: skip

_COUNTS_QUERY = """
SELECT kind, coalesce(payload->>'trainer', '') AS trainer, state, count(*) AS jobs,
       extract(epoch FROM clock_timestamp() - min(updated_at) FILTER (WHERE state = 'QUEUED'))
           ::float8 AS oldest_queued_s
FROM jobs
GROUP BY kind, trainer, state
"""
"""A queued job's `updated_at` is when it (last) entered the queue: a job handed back by a
stopping worker waits from then, not from its first submission."""

_DURATIONS_QUERY = """
SELECT kind, state, $2 - width_bucket(-extract(epoch FROM finished_at - started_at)::float8, $1)
           AS bucket,
       count(*) AS jobs, sum(extract(epoch FROM finished_at - started_at))::float8 AS seconds
FROM jobs
WHERE finished_at IS NOT NULL AND started_at IS NOT NULL
GROUP BY kind, state, bucket
"""
"""`bucket` is the index of the first upper bound a duration fits under (`le`, inclusive), one
past the last bound for `+Inf`: the number of bounds below the duration. width_bucket counts the
bounds at or below its operand, so it is given the negated duration and the negated bounds in
ascending order. A job cancelled while still queued never started: it has no duration."""

_NEGATED_BOUNDS = [-bound for bound in reversed(JOB_DURATION_BUCKETS_SECONDS)]


@dataclass(frozen=True, slots=True)
class JobCount:
    kind: str
    trainer: str  # "" for a job kind that has no trainer
    state: str  # lower case, as label values are
    jobs: int
    oldest_queued_s: float | None


@dataclass(frozen=True, slots=True)
class DurationBucket:
    kind: str
    outcome: str  # the job's final state, lower case
    bucket: int  # index into JOB_DURATION_BUCKETS_SECONDS, or its length for +Inf
    jobs: int
    seconds: float


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    counts: tuple[JobCount, ...] = ()
    durations: tuple[DurationBucket, ...] = ()


async def read_job_snapshot(platform: Platform) -> JobSnapshot:
    """The job figures as PostgreSQL has them now: two aggregate queries in one snapshot."""
    async with (
        platform.metadata.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        count_rows = await connection.fetch(_COUNTS_QUERY)
        duration_rows = await connection.fetch(
            _DURATIONS_QUERY, _NEGATED_BOUNDS, len(_NEGATED_BOUNDS)
        )
    counts = tuple(
        JobCount(
            kind=row["kind"],
            trainer=row["trainer"],
            state=row["state"].lower(),
            jobs=row["jobs"],
            oldest_queued_s=row["oldest_queued_s"],
        )
        for row in count_rows
    )
    durations = tuple(
        DurationBucket(
            kind=row["kind"],
            outcome=row["state"].lower(),
            bucket=row["bucket"],
            jobs=row["jobs"],
            seconds=row["seconds"],
        )
        for row in duration_rows
    )
    return JobSnapshot(counts, durations)


def _duration_family(durations: Sequence[DurationBucket]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "aiaas_job_duration_seconds",
        "From a job's first start to its end, by kind and final state, over every job that "
        "ran; read from PostgreSQL.",
        labels=("kind", "outcome"),
    )
    bounds = len(JOB_DURATION_BUCKETS_SECONDS)
    per_series: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    for row in durations:
        per_bucket, total = per_series.setdefault((row.kind, row.outcome), ([0] * (bounds + 1), []))
        per_bucket[row.bucket] += row.jobs
        total.append(row.seconds)
    for labels, (per_bucket, total) in sorted(per_series.items()):
        cumulative, buckets = 0, []
        for index, jobs in enumerate(per_bucket):
            cumulative += jobs
            upper = "+Inf" if index == bounds else repr(JOB_DURATION_BUCKETS_SECONDS[index])
            buckets.append((upper, cumulative))
        family.add_metric(labels, buckets, sum(total))
    return family


class JobMetrics:
    """The job series of one process: a prometheus_client collector over the latest snapshot."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.snapshot = JobSnapshot()
        self._read_at: float | None = None
        self._reading = asyncio.Lock()

    async def refresh(self) -> None:
        """Read the figures again if the snapshot is older than `metrics_refresh_s`."""
        max_age_s = self.platform.config.metrics_refresh_s
        async with self._reading:  # a scrape that waited here uses the read just made
            read_at = self._read_at
            if read_at is not None and time.monotonic() - read_at < max_age_s:
                return
            try:
                # Bounded: a scrape must still answer, with the serving series, while the
                # database hangs.
                async with asyncio.timeout(READ_TIMEOUT_S):
                    self.snapshot = await read_job_snapshot(self.platform)
            except Exception:
                logger.warning("reading the job metrics failed; kept the last", exc_info=True)
            # Also after a failure: a database in trouble is not asked again at every scrape.
            self._read_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        # The snapshot is replaced whole, never mutated: a scrape reads one consistent read.
        return job_families(self.snapshot)


def job_families(snapshot: JobSnapshot) -> Iterator[Metric]:
    """The job series of `snapshot`; an empty one still names every family."""
    jobs = GaugeMetricFamily(
        "aiaas_jobs",
        "Jobs by kind, trainer and state, read from PostgreSQL. Jobs are never deleted, so "
        "the ended states (succeeded, failed, cancelled) only grow.",
        labels=("kind", "trainer", "state"),
    )
    depth = GaugeMetricFamily(
        "aiaas_job_queue_depth",
        "Jobs waiting in the queue (state queued), by kind.",
        labels=("kind",),
    )
    age = GaugeMetricFamily(
        "aiaas_job_queue_oldest_age_seconds",
        "How long the longest-waiting queued job of a kind has waited since it (last) "
        "entered the queue; 0 with none queued.",
        labels=("kind",),
    )
    queued: dict[str, tuple[int, float]] = {}
    for count in snapshot.counts:
        jobs.add_metric((count.kind, count.trainer, count.state), count.jobs)
        waiting, oldest = queued.get(count.kind, (0, 0.0))
        if count.state == "queued":
            waiting += count.jobs
            oldest = max(oldest, count.oldest_queued_s or 0.0)
        queued[count.kind] = (waiting, oldest)
    for kind, (waiting, oldest) in sorted(queued.items()):
        depth.add_metric((kind,), waiting)
        age.add_metric((kind,), oldest)
    yield from (jobs, depth, age, _duration_family(snapshot.durations))


JOB_METRICS: ProcessService[JobMetrics] = ProcessService("job metrics", JobMetrics)
