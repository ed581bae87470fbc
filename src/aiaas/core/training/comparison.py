"""Training jobs side by side: each job's hyperparameters and its final metrics, in one table.

The final metrics of a job are its registered model version's evaluation once there is one,
else the latest value of each metric in its history (a job still running, failed or cancelled).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from aiaas.core.errors import InputError
from aiaas.core.jobs import Job, jobs_by_ids
from aiaas.core.serialization import json_safe
from aiaas.core.storage import Connection
from aiaas.core.training.metric_history import latest_metrics
from aiaas.core.training.registry import model_versions_by_jobs
from aiaas.core.training.submission import TRAINING_JOB

MAX_COMPARED_JOBS = 20


@dataclass(frozen=True)
class ComparedJob:
    job: Job
    hyperparameters: dict[str, Any]
    final_metrics: dict[str, Any]
    model_version_id: UUID | None

    def as_json(self) -> dict[str, Any]:
        return {
            "jobId": str(self.job.id),
            "state": self.job.state.value,
            "trainer": self.job.payload["trainer"],
            "seed": self.job.payload["seed"],
            "hyperparameters": self.hyperparameters,
            "finalMetrics": json_safe(self.final_metrics),
            "modelVersionId": str(self.model_version_id) if self.model_version_id else None,
        }


async def compare_jobs(
    connection: Connection, project_id: UUID, job_ids: Sequence[UUID]
) -> list[ComparedJob]:
    """The project's training jobs among `job_ids`, in the order given: their hyperparameters
    and final metrics (the registered evaluation, else the latest training values)."""
    if len(job_ids) > MAX_COMPARED_JOBS:
        raise InputError(
            f"compare at most {MAX_COMPARED_JOBS} jobs at once",
            field_errors={"ids": f"at most {MAX_COMPARED_JOBS}"},
        )
    found = await jobs_by_ids(connection, list(job_ids))
    mine = [
        found[job_id]
        for job_id in dict.fromkeys(job_ids)
        if job_id in found
        and found[job_id].project_id == project_id
        and found[job_id].kind == TRAINING_JOB
    ]
    ids = [job.id for job in mine]
    registered = await model_versions_by_jobs(connection, ids)
    latest = await latest_metrics(connection, ids)
    return [
        ComparedJob(
            job=job,
            hyperparameters=dict(job.payload["hyperparameters"]),
            final_metrics=(
                dict(registered[job.id].metrics) if job.id in registered else latest.get(job.id, {})
            ),
            model_version_id=registered[job.id].id if job.id in registered else None,
        )
        for job in mine
    ]
