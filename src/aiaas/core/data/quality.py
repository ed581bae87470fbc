"""Quality reports: checking a dataset version against its dataset's expectations.

Validation is a background job (`dataset.validate`): the API queues it, a worker reads the
version's table and runs every validator whose expectation kinds the dataset uses, plus each
validator's baseline checks, and stores a `QualityReport` with the per-check results, the three
dimension scores and Q. A version whose latest report failed a blocking check, or that has none
while its dataset declares blocking expectations, cannot be used for training.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.data.datasets import (
    datasets_by_ids,
    get_version,
    lock_live_version,
    read_version_table,
)
from aiaas.core.data.expectations import check_table
from aiaas.core.errors import InputError
from aiaas.core.identity.projects import hold_open_project
from aiaas.core.jobs import Job, enqueue_job, insert_job
from aiaas.core.storage import Connection
from aiaas.core.validation import quality_scores

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

VALIDATE_JOB = "dataset.validate"


@dataclass(frozen=True)
class QualityReport:
    id: UUID
    version_id: UUID
    project_id: UUID
    job_id: UUID | None
    expectations: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    q_consistency: float
    q_completeness: float
    q_accuracy: float
    q: float
    passed: bool
    created_at: datetime

    @property
    def blocking_failures(self) -> list[str]:
        return [check["name"] for check in self.checks if check["blocking"] and not check["passed"]]


_REPORT_COLUMNS = (
    "id, version_id, project_id, job_id, expectations, checks, q_consistency, q_completeness, "
    "q_accuracy, q, passed, created_at"
)


async def submit_validation(
    platform: Platform, actor: Principal, version_id: UUID, *, request_id: str | None = None
) -> Job:
    async with platform.metadata.acquire() as connection:
        version = await get_version(connection, version_id)
    async with AuditedChange(
        platform, actor, "dataset.validate", request_id, project_id=version.project_id
    ) as change:
        # No new job in an archived project, nor one archived while this one is recorded.
        await hold_open_project(change.connection, version.project_id)
        # Locked until the job is recorded, so that a deletion either sees the job as a user
        # of the version or happens first and is seen here.
        await lock_live_version(change.connection, version_id)
        job = await insert_job(
            change.connection,
            project_id=version.project_id,
            kind=VALIDATE_JOB,
            payload={"dataset_version_id": str(version_id)},
            created_by=actor.user_id,
        )
        await change.record(
            object_type="job",
            object_id=str(job.id),
            project_id=version.project_id,
            details={"kind": VALIDATE_JOB, "dataset_version_id": str(version_id)},
        )
    await enqueue_job(platform, job.id)
    return job


async def run_validation(platform: Platform, job: Job) -> str:
    """The job handler: check the version and store its report. Returns the job's note."""
    version_id = UUID(job.payload["dataset_version_id"])
    async with platform.metadata.acquire() as connection:
        version = await get_version(connection, version_id)
        dataset = (await datasets_by_ids(connection, [version.dataset_id]))[version.dataset_id]
    expectations = dataset.expectations
    table = await read_version_table(platform, version)
    results = await asyncio.to_thread(check_table, platform, table, expectations)
    scores = quality_scores(results, table.num_rows)
    passed = not any(result.blocking and not result.passed for result in results)
    async with platform.metadata.transaction() as connection:
        # Results of the same job are stored once, whatever the retries.
        await connection.execute("DELETE FROM quality_reports WHERE job_id = $1", job.id)
        await connection.execute(
            """
            INSERT INTO quality_reports (version_id, project_id, job_id, expectations, checks,
                q_consistency, q_completeness, q_accuracy, q, passed)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            """,
            version.id,
            version.project_id,
            job.id,
            expectations,
            [asdict(result) for result in results],
            scores.consistency,
            scores.completeness,
            scores.accuracy,
            scores.q,
            passed,
        )
    verdict = "passed" if passed else "failed a blocking check"
    return f"Q = {scores.q:.3f}; {verdict}"


async def reports_of(connection: Connection, version_id: UUID) -> list[QualityReport]:
    rows = await connection.fetch(
        f"SELECT {_REPORT_COLUMNS} FROM quality_reports WHERE version_id = $1 "
        "ORDER BY created_at DESC, id",
        version_id,
    )
    return [QualityReport(**dict(row)) for row in rows]


async def latest_reports(
    connection: Connection, version_ids: list[UUID]
) -> dict[UUID, QualityReport]:
    rows = await connection.fetch(
        f"SELECT DISTINCT ON (version_id) {_REPORT_COLUMNS} FROM quality_reports "
        "WHERE version_id = ANY($1::uuid[]) ORDER BY version_id, created_at DESC, id",
        version_ids,
    )
    return {row["version_id"]: QualityReport(**dict(row)) for row in rows}


async def require_usable_for_training(connection: Connection, version_id: UUID) -> None:
    """`InputError` naming what keeps a version from being trained on, or nothing."""
    version = await get_version(connection, version_id)
    if version.deleted_at is not None:
        raise InputError(
            "the dataset version is deleted", field_errors={"datasetVersion": "deleted"}
        )
    report = (await latest_reports(connection, [version_id])).get(version_id)
    dataset = (await datasets_by_ids(connection, [version.dataset_id]))[version.dataset_id]
    if report is not None and report.expectations != dataset.expectations:
        # Checked against expectations that have since changed: it says nothing of the
        # current ones.
        report = None
    if report is None:
        if any(e.get("blocking", True) for e in dataset.expectations):
            raise InputError(
                "the dataset version has not been validated against its blocking expectations",
                field_errors={"datasetVersion": "not validated"},
            )
        return
    if not report.passed:
        failed = ", ".join(report.blocking_failures)
        raise InputError(
            f"the dataset version failed blocking quality checks: {failed}",
            field_errors={"datasetVersion": f"failed: {failed}"},
        )
