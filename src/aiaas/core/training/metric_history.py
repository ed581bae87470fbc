"""Metric history: the per-step metrics of training jobs as `metric_points` stores them, and the
reads that chart and compare them.

One row per (job, key, step): the primary key of `metric_points` says so. `MetricWriter`
(`metric_writer.py`) writes the rows. A job resumed from a checkpoint at step c calls
`drop_points_after(connection, job_id, c)` before it writes again, so that the history has
neither a gap nor a duplicate.

Values are stored as PostgreSQL's double precision takes them, NaN and +/-infinity included. In a
downsampled bucket the mean of values that include NaN is NaN, and so is the maximum (PostgreSQL
orders NaN above every number); the minimum is NaN only if every value is.

Reading: `metric_series` returns a key's points, downsampled in SQL into at most `max_points`
equal-width step buckets when there are more; `metric_keys` and `latest_metrics` answer for many
jobs in one query each, walking the primary key index key by key rather than reading every row.
The primary key (job_id, key, step) is the only index any of them needs.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Final, SupportsIndex, cast
from uuid import UUID

from aiaas.core.errors import InputError
from aiaas.core.storage import Connection

MAX_KEY_LENGTH: Final = 100
MAX_SERIES_POINTS: Final = 100_000
MAX_STEP: Final = 2**63 - 1


# Checking keys and steps --------------------------------------------------------------------------


def check_key(key: object) -> str:
    """A metric key is 1 to 100 characters of text (PostgreSQL text cannot hold NUL)."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH or "\x00" in key:
        raise InputError(
            f"a metric key is 1 to {MAX_KEY_LENGTH} characters, without NUL; got {key!r:.120}",
            field_errors={"key": "malformed"},
        )
    return key


def check_step(step: object) -> int:
    """Steps are integers from 0; numpy and JAX integers are accepted."""
    try:
        number = operator.index(cast("SupportsIndex", step))
    except TypeError:
        raise InputError(
            f"a step is an integer; got {step!r:.60}", field_errors={"step": "type"}
        ) from None
    if not 0 <= number <= MAX_STEP:
        raise InputError(
            f"a step is from 0 to 2**63-1; got {number}", field_errors={"step": "range"}
        )
    return number


def check_max_points(max_points: object) -> int:
    if type(max_points) is not int or not 1 <= max_points <= MAX_SERIES_POINTS:
        raise InputError(
            f"max_points is from 1 to {MAX_SERIES_POINTS}",
            field_errors={"max_points": "out of range"},
        )
    return max_points


# Reading and resuming -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricPoint:
    """One point of a chart. A raw point has `min == max == value`. A downsampled one stands for
    a bucket of steps: `step` is the bucket's first stored step, `value` the mean of its values,
    `min` and `max` their extremes."""

    step: int
    value: float
    min: float
    max: float


_FIRST_POINTS = """
SELECT step, value FROM metric_points
WHERE job_id = $1 AND key = $2
ORDER BY step
LIMIT $3
"""

# Equal-width buckets over [first, last] step: width = ceil((last - first + 1) / max_points), so
# there are at most max_points of them, and no product of steps can overflow bigint.
_DOWNSAMPLED = """
WITH bounds AS (
    SELECT first.step AS first_step, (last.step - first.step) / $3 + 1 AS width
    FROM (SELECT step FROM metric_points WHERE job_id = $1 AND key = $2
          ORDER BY step LIMIT 1) AS first,
         (SELECT step FROM metric_points WHERE job_id = $1 AND key = $2
          ORDER BY step DESC LIMIT 1) AS last
)
SELECT min(point.step) AS step, avg(point.value) AS value,
       min(point.value) AS min, max(point.value) AS max
FROM metric_points AS point, bounds
WHERE point.job_id = $1 AND point.key = $2
GROUP BY (point.step - bounds.first_step) / bounds.width
ORDER BY 1
"""

# A loose index scan: for each job, the first key, then the first key after it, and so on. One
# index probe per (job, key) instead of reading every point of every job.
_KEYS_OF_JOBS = """
WITH RECURSIVE found AS (
    SELECT job.id AS job_id,
           (SELECT key FROM metric_points WHERE job_id = job.id ORDER BY key LIMIT 1) AS key
    FROM unnest($1::uuid[]) AS job(id)
    UNION ALL
    SELECT found.job_id,
           (SELECT key FROM metric_points
            WHERE job_id = found.job_id AND key > found.key ORDER BY key LIMIT 1)
    FROM found
    WHERE found.key IS NOT NULL
)
"""

_METRIC_KEYS = _KEYS_OF_JOBS + "SELECT job_id, key FROM found WHERE key IS NOT NULL"

_LATEST_METRICS = (
    _KEYS_OF_JOBS
    + """
SELECT found.job_id, found.key, latest.value
FROM found
CROSS JOIN LATERAL (
    SELECT value FROM metric_points
    WHERE job_id = found.job_id AND key = found.key
    ORDER BY step DESC
    LIMIT 1
) AS latest
WHERE found.key IS NOT NULL
"""
)


async def metric_series(
    connection: Connection, job_id: UUID, key: str, max_points: int
) -> list[MetricPoint]:
    """The points of one metric of one job in step order: all of them when there are at most
    `max_points`, else at most `max_points` buckets of equal step width (see `MetricPoint`).
    Buckets with no stored step are left out rather than invented."""
    check_key(key)
    check_max_points(max_points)
    # Reading one point more than asked tells whether downsampling is needed, without counting
    # a history that may hold millions of them.
    rows = await connection.fetch(_FIRST_POINTS, job_id, key, max_points + 1)
    if len(rows) > max_points:
        rows = await connection.fetch(_DOWNSAMPLED, job_id, key, max_points)
        return [MetricPoint(step=r[0], value=r[1], min=r[2], max=r[3]) for r in rows]
    return [MetricPoint(step=r[0], value=r[1], min=r[1], max=r[1]) for r in rows]


async def metric_keys(connection: Connection, job_ids: list[UUID]) -> dict[UUID, list[str]]:
    """The metric keys of each job, sorted; every job asked for is in the answer, a job with no
    metrics with an empty list."""
    unique_ids = list(dict.fromkeys(job_ids))
    keys: dict[UUID, list[str]] = {job_id: [] for job_id in unique_ids}
    for row in await connection.fetch(_METRIC_KEYS, unique_ids):
        keys[row[0]].append(row[1])
    return {job_id: sorted(found) for job_id, found in keys.items()}


async def latest_metrics(
    connection: Connection, job_ids: list[UUID]
) -> dict[UUID, dict[str, float]]:
    """For each job, each key's value at its highest step: to compare jobs side by side. Every
    job asked for is in the answer, one with no metrics with an empty dict."""
    unique_ids = list(dict.fromkeys(job_ids))
    latest: dict[UUID, dict[str, float]] = {job_id: {} for job_id in unique_ids}
    for row in await connection.fetch(_LATEST_METRICS, unique_ids):
        latest[row[0]][row[1]] = row[2]
    return {job_id: dict(sorted(values.items())) for job_id, values in latest.items()}


async def drop_points_after(connection: Connection, job_id: UUID, step: int) -> int:
    """Delete the job's points after `step` (the step of the checkpoint it resumes from), so that
    they can be written again without a duplicate; how many there were. Any writer of the
    job's previous run must be closed first. -1 drops them all."""
    status: str = await connection.execute(
        "DELETE FROM metric_points WHERE job_id = $1 AND step > $2",
        job_id,
        operator.index(step),
    )
    return int(status.rsplit(" ", 1)[-1])
