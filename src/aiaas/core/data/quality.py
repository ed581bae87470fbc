"""Quality reports: checking a dataset version against its dataset's expectations.

Validation is a background job (`dataset.validate`): the API queues it, a worker reads the
version's table and runs every validator whose expectation kinds the dataset uses, plus each
validator's baseline checks, and stores a `QualityReport` with the per-check results, the three
dimension scores and Q. A version whose latest report failed a blocking check, or that has none
while its dataset declares blocking expectations, cannot be used for training.

A report keeps in clear what each check is and how it went (name, kind, dimension, passed,
failing rows, blocking), the scores and the expectations; each check's message and examples are
sealed with the project's data key in `sealed_check_details`, because the examples are failing
values or whole rows, and a validator's message may quote a value too. Reports made before
revision 0008 lost their messages and examples in that migration (it cannot seal): they read as
`DETAILS_REMOVED` until the version is validated again.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from aiaas.core.auth import Principal
from aiaas.core.data.datasets import (
    datasets_by_ids,
    get_version,
    lock_live_version,
    read_version_table,
)
from aiaas.core.data.expectations import check_table
from aiaas.core.errors import InputError
from aiaas.core.governance.sealed_values import SealedColumn
from aiaas.core.governance.vault import VAULT
from aiaas.core.identity.projects import ChangeInProject, archived_job_result, hold_project
from aiaas.core.job_submission import hand_committed_job_to_queue, record_new_job
from aiaas.core.jobs import Job
from aiaas.core.storage import Connection
from aiaas.core.validation import quality_scores

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

VALIDATE_JOB = "dataset.validate"
CHECK_DETAILS = SealedColumn("quality_reports", "sealed_check_details")
SEALED_CHECK_FIELDS = ("message", "examples")
DETAILS_REMOVED = (
    "the message and examples of this check were removed by the upgrade to schema revision "
    "0008, which seals them: validate the version again to see them"
)


@dataclass(frozen=True)
class QualityReport:
    id: UUID
    version_id: UUID
    project_id: UUID
    job_id: UUID | None
    expectations: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    """Each check without its message and examples, which are sealed (`opened_checks`)."""
    sealed_check_details: bytes | None
    """Each check's message and examples, in the order of `checks`, sealed; None for a report
    made before revision 0008."""
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
    "id, version_id, project_id, job_id, expectations, checks, sealed_check_details, "
    "q_consistency, q_completeness, q_accuracy, q, passed, created_at"
)


def split_checks(checks: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each check as (what stays in clear, what is sealed)."""
    clear = [{k: v for k, v in check.items() if k not in SEALED_CHECK_FIELDS} for check in checks]
    sealed = [{k: v for k, v in check.items() if k in SEALED_CHECK_FIELDS} for check in checks]
    return clear, sealed


async def opened_checks(platform: Platform, report: QualityReport) -> list[dict[str, Any]]:
    """The report's checks whole, their messages and examples opened. `ArtifactIntegrityError`
    if the sealed details were altered or belong to another report."""
    if report.sealed_check_details is None:
        details = [
            {"message": "passed" if check["passed"] else DETAILS_REMOVED, "examples": []}
            for check in report.checks
        ]
    else:
        key = await platform.service(VAULT).data_key(report.project_id)
        details = CHECK_DETAILS.open_json(
            key, report.project_id, report.id, report.sealed_check_details
        )
    return [{**check, **detail} for check, detail in zip(report.checks, details, strict=True)]


async def submit_validation(
    platform: Platform, actor: Principal, version_id: UUID, *, request_id: str | None = None
) -> Job:
    async with platform.metadata.acquire() as connection:
        version = await get_version(connection, version_id)
    # No new job in an archived project, nor one archived while this one is recorded.
    async with ChangeInProject(
        platform, actor, "dataset.validate", request_id, project_id=version.project_id
    ) as change:
        # Locked until the job is recorded, so that a deletion either sees the job as a user
        # of the version or happens first and is seen here.
        await lock_live_version(change.connection, version_id)
        job = await record_new_job(
            change,
            project_id=version.project_id,
            kind=VALIDATE_JOB,
            payload={"dataset_version_id": str(version_id)},
            created_by=actor.user_id,
        )
    await hand_committed_job_to_queue(platform, job)
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
    checks, details = split_checks([asdict(result) for result in results])
    report_id = uuid4()
    key = await platform.service(VAULT).data_key(version.project_id)
    sealed_details = CHECK_DETAILS.seal_json(key, version.project_id, report_id, details)
    async with platform.metadata.transaction() as connection:
        # A project archived while the job ran takes no report: the job fails saying so.
        project = await hold_project(connection, version.project_id)
        if project.is_archived:
            raise archived_job_result(project.slug, "the validation stores no report")
        # Results of the same job are stored once, whatever the retries.
        await connection.execute("DELETE FROM quality_reports WHERE job_id = $1", job.id)
        await connection.execute(
            """
            INSERT INTO quality_reports (id, version_id, project_id, job_id, expectations, checks,
                sealed_check_details, q_consistency, q_completeness, q_accuracy, q, passed)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            """,
            report_id,
            version.id,
            version.project_id,
            job.id,
            expectations,
            checks,
            sealed_details,
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
                "the dataset version has not been validated against its blocking expectations: "
                "run validateDatasetVersion on it, and submit again once its job has succeeded",
                field_errors={"datasetVersion": "not validated: run validateDatasetVersion first"},
            )
        return
    if not report.passed:
        failed = ", ".join(report.blocking_failures)
        raise InputError(
            f"the dataset version failed blocking quality checks: {failed}",
            field_errors={"datasetVersion": f"failed: {failed}"},
        )
