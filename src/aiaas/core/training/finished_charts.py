"""The charts of finished jobs, kept in Redis.

A finished job's metric history never changes again, yet downsampling a long one reads every
point at each view: about half a second per metric of a million steps, most of a job page's
load. So the series of a job that ended is kept, per metric and number of points, for
`CHART_TTL_S` after it was last computed; a training job computes its default charts as it
finishes (`keep_default_charts`), so that even its first view is fast. Redis is only a cache
here: without it, or once a chart expired, the series is read from PostgreSQL as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
from uuid import UUID

from redis.exceptions import RedisError

from aiaas.core.platform import Platform
from aiaas.core.training.metric_history import (
    MetricPoint,
    check_key,
    check_max_points,
    metric_keys,
    metric_series,
)

CHART_TTL_S = 7 * 24 * 3600
DEFAULT_CHART_POINTS = 1000
"""The points a chart asks for unless it says otherwise (GraphQL's `maxPoints` default)."""
logger = logging.getLogger(__name__)


def _cache_key(job_id: UUID, key: str, max_points: int) -> str:
    # A metric key is the trainer's text: hashed, so that the Redis key has a bounded size.
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"aiaas:chart:{job_id}:{max_points}:{digest}"


async def chart_series(
    platform: Platform, job_id: UUID, key: str, max_points: int, *, finished: bool
) -> list[MetricPoint]:
    """`metric_series`, from the cache when the job has `finished` (its history is final)."""
    check_key(key)
    check_max_points(max_points)
    if not finished:
        return await _read(platform, job_id, key, max_points)
    cache_key = _cache_key(job_id, key, max_points)
    try:
        cached = await platform.redis.get(cache_key)
    except RedisError:
        cached = None
    if cached is not None:
        return [MetricPoint(*point) for point in json.loads(cached)]
    points = await _read(platform, job_id, key, max_points)
    await _keep(platform, cache_key, points)
    return points


async def keep_default_charts(platform: Platform, job_id: UUID) -> None:
    """Compute and keep the default chart of each metric of a job whose history is final."""
    async with platform.metadata.acquire() as connection:
        keys = (await metric_keys(connection, [job_id]))[job_id]
    for key in keys:
        points = await _read(platform, job_id, key, DEFAULT_CHART_POINTS)
        await _keep(platform, _cache_key(job_id, key, DEFAULT_CHART_POINTS), points)


async def _read(platform: Platform, job_id: UUID, key: str, max_points: int) -> list[MetricPoint]:
    async with platform.metadata.acquire() as connection:
        return await metric_series(connection, job_id, key, max_points)


async def _keep(platform: Platform, cache_key: str, points: list[MetricPoint]) -> None:
    encoded = json.dumps([[p.step, p.value, p.min, p.max] for p in points])
    try:
        await platform.redis.set(cache_key, encoded, ex=CHART_TTL_S)
    except RedisError:
        logger.warning("a finished job's chart could not be kept in Redis")
