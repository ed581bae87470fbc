"""Quality reports: checking a dataset version against its dataset's expectations.

Validation is a background job (`dataset.validate`): the API queues it, a worker reads the
version's table and runs every validator whose expectation kinds the dataset uses, plus each
validator's baseline checks, and stores a `QualityReport` with the per-check results, the three
dimension scores and Q. A version whose latest report failed a blocking check, or that has none
while its dataset declares blocking expectations, cannot be used for training.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pyarrow as pa

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.data.datasets import (
    datasets_by_ids,
    get_version,
    lock_live_version,
    read_version_table,
)
from aiaas.core.errors import InputError
from aiaas.core.jobs import Job, enqueue_job, insert_job
from aiaas.core.validation import CheckResult, Validator, quality_scores

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

VALIDATE_JOB = "dataset.validate"
MAX_EXPECTATIONS = 200


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


def dataset_validators(
    platform: Platform, subject: str = "dataset-version"
) -> dict[str, Validator]:
    """Every registered validator of `subject` (dataset versions by default), by name."""
    validators = {
        spec.name: platform.validator(spec.name) for spec in platform.registries.validators
    }
    return {
        name: validator for name, validator in validators.items() if subject in validator.subjects()
    }


def validators_by_kind(
    platform: Platform, subject: str = "dataset-version"
) -> dict[str, tuple[str, Validator]]:
    """Every expectation kind, with the (name of the) validator that checks it."""
    kinds: dict[str, tuple[str, Validator]] = {}
    for name, validator in dataset_validators(platform, subject).items():
        for kind in validator.expectation_kinds():
            kinds.setdefault(kind, (name, validator))
    return kinds


def vet_expectations(platform: Platform, expectations: Any, columns: Mapping[str, str]) -> None:
    """`InputError` listing every problem of every expectation, or nothing."""
    if not isinstance(expectations, list) or len(expectations) > MAX_EXPECTATIONS:
        raise InputError(
            f"expectations must be a list of at most {MAX_EXPECTATIONS} objects",
            field_errors={"expectations": "not a list"},
        )
    kinds = validators_by_kind(platform)
    problems: dict[str, str] = {}
    for index, expectation in enumerate(expectations):
        if not isinstance(expectation, dict):
            problems[f"expectations.{index}"] = "must be an object"
            continue
        kind = expectation.get("kind")
        if not isinstance(kind, str) or kind not in kinds:
            problems[f"expectations.{index}"] = (
                f"unknown kind {kind!r}; known: {', '.join(sorted(kinds))}"
            )
            continue
        if not isinstance(expectation.get("blocking", True), bool):
            problems[f"expectations.{index}"] = "blocking must be true or false"
            continue
        found = kinds[kind][1].problems(expectation, columns)
        if found:
            problems[f"expectations.{index}"] = "; ".join(found)
    if problems:
        raise InputError("invalid expectations", field_errors=problems)


def check_table(
    platform: Platform, table: pa.Table, expectations: list[dict[str, Any]]
) -> list[CheckResult]:
    """Run every validator over the table: its baseline checks, and the expectations of the
    kinds it claims. Runs in a worker thread."""
    kinds = validators_by_kind(platform)
    results: list[CheckResult] = []
    for name, validator in dataset_validators(platform).items():
        results += validator.baseline_checks(table)
        mine = [e for e in expectations if kinds.get(str(e.get("kind")), ("",))[0] == name]
        if mine:
            results += validator.validate(table, mine)
    # A kind nobody here can check (its plugin is missing on this worker) fails rather than
    # passing unseen: the dataset's owners declared it, so it must hold.
    for expectation in expectations:
        kind = str(expectation.get("kind"))
        if kind not in kinds:
            results.append(
                CheckResult(
                    name=kind,
                    kind=kind,
                    dimension="consistency",
                    passed=False,
                    failing_rows=max(table.num_rows, 1),
                    blocking=bool(expectation.get("blocking", True)),
                    message=f"no validator here checks expectations of kind {kind!r}",
                    examples=[],
                )
            )
    return results


async def submit_validation(
    platform: Platform, actor: Principal, version_id: UUID, *, request_id: str | None = None
) -> Job:
    async with platform.metadata.acquire() as connection:
        version = await get_version(connection, version_id)
    async with AuditedChange(
        platform, actor, "dataset.validate", request_id, project_id=version.project_id
    ) as change:
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


async def reports_of(connection: Any, version_id: UUID) -> list[QualityReport]:
    rows = await connection.fetch(
        f"SELECT {_REPORT_COLUMNS} FROM quality_reports WHERE version_id = $1 "
        "ORDER BY created_at DESC, id",
        version_id,
    )
    return [QualityReport(**dict(row)) for row in rows]


async def latest_reports(connection: Any, version_ids: list[UUID]) -> dict[UUID, QualityReport]:
    rows = await connection.fetch(
        f"SELECT DISTINCT ON (version_id) {_REPORT_COLUMNS} FROM quality_reports "
        "WHERE version_id = ANY($1::uuid[]) ORDER BY version_id, created_at DESC, id",
        version_ids,
    )
    return {row["version_id"]: QualityReport(**dict(row)) for row in rows}


async def require_usable_for_training(connection: Any, version_id: UUID) -> None:
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
