"""`TrainingJob.metricColumns`: the same history as `metrics`, as columns, and long enough to
read 20,000 steps whole; `metrics` keeps its bound of 10,000 objects."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from aiaas.core.platform import Platform
from aiaas.core.training.metric_writer import MetricWriter
from aiaas.graphql.relay import to_global_id
from metric_rows import metrics_project, new_job
from support import data_of, error_codes, graphql

READ = """
query($id: ID!, $maxPoints: Int!) {
  node(id: $id) {
    ... on TrainingJob {
      metrics(key: "loss", maxPoints: $maxPoints) { step value min max }
      metricColumns(key: "loss", maxPoints: $maxPoints) { steps values min max }
    }
  }
}
"""

COLUMNS = """
query($id: ID!, $maxPoints: Int!) {
  node(id: $id) { ... on TrainingJob { metricColumns(key: "loss", maxPoints: $maxPoints) {
    steps values } } }
}
"""

STEPS = 20_000


@pytest.fixture(scope="module")
async def job(platform: Platform, admin_token: str) -> str:
    """A job with `STEPS` steps of loss, one of them not finite."""
    job_id = await new_job(platform, await metrics_project(platform))
    async with MetricWriter(platform.metadata, job_id) as writer:
        for step in range(1, STEPS + 1):
            writer.add(step, {"loss": math.inf if step == 7 else 1.0 / step})
    return str(to_global_id("TrainingJob", job_id))


def as_rows(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [
        {"step": step, "value": value, "min": low, "max": high}
        for step, value, low, high in zip(
            columns["steps"], columns["values"], columns["min"], columns["max"], strict=True
        )
    ]


@pytest.mark.parametrize("max_points", [10, 999, 10_000])
async def test_the_columns_hold_the_points_of_metrics(
    module_client: httpx.AsyncClient, admin_token: str, job: str, max_points: int
) -> None:
    read = data_of(
        await graphql(module_client, READ, {"id": job, "maxPoints": max_points}, token=admin_token)
    )["node"]
    assert 0 < len(read["metrics"]) <= max_points
    assert as_rows(read["metricColumns"]) == read["metrics"]


async def test_a_long_history_is_read_whole_as_columns(
    module_client: httpx.AsyncClient, admin_token: str, job: str
) -> None:
    columns = data_of(
        await graphql(module_client, COLUMNS, {"id": job, "maxPoints": STEPS}, token=admin_token)
    )["node"]["metricColumns"]
    assert columns["steps"] == list(range(1, STEPS + 1))
    assert columns["values"][6] is None  # the infinite one: JSON has no infinity
    assert columns["values"][-1] == pytest.approx(1.0 / STEPS)


@pytest.mark.parametrize(
    ("query", "max_points"),
    [(READ, 10_001), (COLUMNS, 100_001), (COLUMNS, 0)],
    ids=["objects-past-10000", "columns-past-100000", "columns-zero"],
)
async def test_too_many_points_are_refused_as_bad_input(
    module_client: httpx.AsyncClient, admin_token: str, job: str, query: str, max_points: int
) -> None:
    status, body = await graphql(
        module_client, query, {"id": job, "maxPoints": max_points}, token=admin_token
    )
    assert status == 200
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["data"]["node"] is None or "metricColumns" not in (body["data"]["node"] or {})
