"""What a job's metric history must look like after any number of runs of it (a worker killed,
cut off or stopped mid-training): one point per step of each key, and no gap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

POINTS_PER_KEY = (
    "SELECT key, count(*) AS n, count(DISTINCT step) AS distinct_steps, "
    "min(step) AS first, max(step) AS last FROM metric_points WHERE job_id = $1 GROUP BY key"
)
"""One row per metric key of the job ($1): its points, distinct steps, first and last step."""


def assert_one_point_per_step(rows: Sequence[Any]) -> None:
    """`rows` of `POINTS_PER_KEY`: no step of any key twice, and `loss` at every step."""
    by_key = {row["key"]: row for row in rows}
    loss = by_key["loss"]
    assert loss["n"] == loss["last"] - loss["first"] + 1, dict(loss)
    for row in rows:
        assert row["n"] == row["distinct_steps"], dict(row)
