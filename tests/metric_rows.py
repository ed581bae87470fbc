"""What a job's metric history must look like after any number of runs of it (a worker killed,
cut off or stopped mid-training): one point per step of each key, and no gap; and bare jobs to
write such histories for."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from aiaas.core.identity.projects import create_project
from aiaas.core.jobs import insert_job
from aiaas.core.platform import Platform
from aiaas.core.training import TRAINING_JOB
from support import bootstrap_admin_principal

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


async def metrics_project(platform: Platform) -> uuid.UUID:
    """The project, made by the bootstrap admin, that a module's bare jobs go in."""
    admin = await bootstrap_admin_principal(platform)
    project = await create_project(platform, admin, slug="metrics", name="Metrics")
    return project.id


TRAINING_PAYLOAD = {
    "trainer": "tabular-classifier",
    "target": "label",
    "features": ["x"],
    "hyperparameters": {},
    "validation_fraction": 0.2,
    "seed": 0,
    "model_name": "model",
    "dataset_version_id": "00000000-0000-0000-0000-000000000000",
}
"""What the API reads of a training job, for jobs that no worker runs and no dataset backs."""


async def new_job(platform: Platform, project_id: uuid.UUID) -> uuid.UUID:
    """A queued training job, which no worker runs, to write metric points for."""
    async with platform.metadata.transaction() as connection:
        job = await insert_job(
            connection,
            project_id=project_id,
            kind=TRAINING_JOB,
            payload=TRAINING_PAYLOAD,
            created_by=None,
        )
    return job.id
