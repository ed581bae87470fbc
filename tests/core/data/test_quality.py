"""Quality as a service, on a real database: expectations set and vetted, validation runs that
store a report, and the rule that keeps versions failing a blocking check out of training.

The validation handler is called here directly, as a worker would after claiming the job; the
whole path through arq is in tests/graphql/test_quality_api.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from aiaas.core.auth import Principal
from aiaas.core.data import datasets
from aiaas.core.data.datasets import Dataset, DatasetVersion
from aiaas.core.data.quality import (
    VALIDATE_JOB,
    QualityReport,
    opened_checks,
    reports_of,
    require_usable_for_training,
    run_validation,
    submit_validation,
)
from aiaas.core.errors import ConflictError, InputError
from aiaas.core.identity.accounts import verify_token
from aiaas.core.identity.projects import create_project
from aiaas.core.jobs import JobState, claim_job, finish_job
from aiaas.core.platform import Platform
from aiaas.core.training import models_trained_on
from support import audit_mark, events_since

TEST_WORKER = "test-quality-worker"

# Four rows: 3 of 12 cells empty, id 2 twice, one age out of range, countries FR, DE and US.
PEOPLE_CSV = "id,age,country\n1,10,FR\n2,,DE\n2,200,\n,30,US\n"


@dataclass(frozen=True)
class Place:
    platform: Platform
    admin: Principal
    project_id: uuid.UUID


@pytest.fixture(scope="module")
async def place(platform: Platform, admin_token: str) -> Place:
    async with platform.metadata.acquire() as connection:
        admin = await verify_token(connection, admin_token, "test")
    project = await create_project(platform, admin, slug="quality", name="Quality")
    return Place(platform=platform, admin=admin, project_id=project.id)


async def upload(place: Place, tmp_path: Path, content: str = PEOPLE_CSV) -> DatasetVersion:
    """A version of a new dataset of its own, so that tests do not share expectations."""
    source = tmp_path / f"{uuid.uuid4().hex}.csv"
    source.write_text(content)
    added = await datasets.upload_version(
        place.platform,
        place.admin,
        place.project_id,
        dataset_name=f"people-{uuid.uuid4().hex[:8]}",
        source=source,
    )
    return added.version


async def expect(
    place: Place, version: DatasetVersion, expectations: list[dict[str, Any]]
) -> Dataset:
    return await datasets.set_expectations(
        place.platform, place.admin, version.dataset_id, expectations
    )


async def validate_now(place: Place, version: DatasetVersion) -> tuple[str, QualityReport]:
    """Queue a validation and run it the way a worker does: claim, handle, finish."""
    job = await submit_validation(place.platform, place.admin, version.id)
    claimed = await claim_job(place.platform, job.id, TEST_WORKER, stale_after_s=30)
    assert claimed is not None
    note = await run_validation(place.platform, claimed)
    assert await finish_job(place.platform, job.id, TEST_WORKER, JobState.SUCCEEDED, note)
    async with place.platform.metadata.acquire() as connection:
        reports = await reports_of(connection, version.id)
    # With each check whole: its message and examples are stored sealed.
    return note, replace(reports[0], checks=await opened_checks(place.platform, reports[0]))


async def usable(place: Place, version: DatasetVersion) -> None:
    async with place.platform.metadata.acquire() as connection:
        await require_usable_for_training(connection, version.id)


async def stored_expectations(place: Place, dataset_id: uuid.UUID) -> Any:
    async with place.platform.metadata.acquire() as connection:
        return await connection.fetchval(
            "SELECT expectations FROM datasets WHERE id = $1", dataset_id
        )


# Expectations -------------------------------------------------------------------------------

VALID_EXPECTATIONS: list[dict[str, Any]] = [
    {"kind": "column_type", "column": "age", "dtype": "integer"},
    {"kind": "not_null", "column": "id", "blocking": False},
    {"kind": "row_count", "min": 1, "max": 1000},
    {"kind": "unique", "columns": ["id"]},
    {"kind": "no_duplicate_rows"},
    {"kind": "rule", "expression": "age >= 0 or age is null"},
    {"kind": "range", "column": "age", "min": 0, "max": 130},
    {"kind": "allowed_values", "column": "country", "values": ["FR", "DE", "US"]},
    {"kind": "regex", "column": "country", "pattern": "[A-Z]{2}"},
]


async def test_valid_expectations_are_stored_as_given_and_audited_once(
    place: Place, tmp_path: Path
) -> None:
    version = await upload(place, tmp_path)
    mark = await audit_mark(place.platform)

    dataset = await expect(place, version, VALID_EXPECTATIONS)

    assert dataset.expectations == VALID_EXPECTATIONS
    assert await stored_expectations(place, version.dataset_id) == VALID_EXPECTATIONS
    assert await events_since(place.platform, mark) == [("dataset.set_expectations", "success")]


async def test_invalid_expectations_name_each_problem_by_index_and_change_nothing(
    place: Place, tmp_path: Path
) -> None:
    version = await upload(place, tmp_path)
    await expect(place, version, [{"kind": "not_null", "column": "id"}])
    expectations: list[Any] = [
        {"kind": "not_null", "column": "id"},  # fine
        {"kind": "not_null", "column": "salary"},
        {"kind": "sparkle", "column": "id"},
        {"kind": "range", "column": "age", "min": 9, "max": 1},
        {"kind": "range", "column": "country", "min": 0},
        {"kind": "rule", "expression": "age >"},
        {"kind": "unique", "columns": ["id"], "blocking": "yes"},
        "not an object",
    ]

    with pytest.raises(InputError) as raised:
        await expect(place, version, expectations)

    # Each problem is named by the path of what is wrong, counted from 0 as the list is.
    problems = raised.value.field_errors
    assert set(problems) == {
        "expectations.1.column",
        "expectations.2.kind",
        "expectations.3.min",
        "expectations.4.column",
        "expectations.5.expression",
        "expectations.6.blocking",
        "expectations.7",
    }
    assert "salary" in problems["expectations.1.column"]
    assert "unknown kind 'sparkle'" in problems["expectations.2.kind"]
    assert "not_null" in problems["expectations.2.kind"]  # it says which kinds there are
    assert "min (9) is more than max (1)" in problems["expectations.3.min"]
    assert "not numeric" in problems["expectations.4.column"]
    assert "position" in problems["expectations.5.expression"]
    assert problems["expectations.6.blocking"] == "must be true or false"
    assert "object" in problems["expectations.7"]
    assert raised.value.message.startswith("invalid expectations: expectations.1.column: ")
    assert await stored_expectations(place, version.dataset_id) == [
        {"kind": "not_null", "column": "id"}
    ]


async def test_expectations_are_vetted_against_the_latest_version(
    place: Place, tmp_path: Path
) -> None:
    first = await upload(place, tmp_path, "id,age\n1,2\n")
    dataset = (await expect(place, first, [])).name
    source = tmp_path / "renamed.csv"
    source.write_text("id,years\n1,2\n")
    second = await datasets.upload_version(
        place.platform, place.admin, place.project_id, dataset_name=dataset, source=source
    )

    with pytest.raises(InputError) as raised:
        await expect(place, second.version, [{"kind": "not_null", "column": "age"}])
    await expect(place, second.version, [{"kind": "not_null", "column": "years"}])

    assert "years" in raised.value.field_errors["expectations.0.column"]


async def test_a_list_is_required(place: Place, tmp_path: Path) -> None:
    version = await upload(place, tmp_path)

    with pytest.raises(InputError) as raised:
        await expect(place, version, {"kind": "not_null"})  # type: ignore[arg-type]

    assert set(raised.value.field_errors) == {"expectations"}


async def test_refused_expectations_are_audited_as_failed(place: Place, tmp_path: Path) -> None:
    version = await upload(place, tmp_path)
    mark = await audit_mark(place.platform)

    with pytest.raises(InputError):
        await expect(place, version, [{"kind": "not_null", "column": "salary"}])

    assert await events_since(place.platform, mark) == [("dataset.set_expectations", "failed")]


# Validation ---------------------------------------------------------------------------------


async def test_a_validation_is_a_queued_job_about_the_version_audited_once(
    place: Place, tmp_path: Path
) -> None:
    version = await upload(place, tmp_path)
    mark = await audit_mark(place.platform)

    job = await submit_validation(place.platform, place.admin, version.id)

    assert job.state is JobState.QUEUED
    assert job.kind == VALIDATE_JOB
    assert job.payload == {"dataset_version_id": str(version.id)}
    assert job.project_id == place.project_id
    assert await events_since(place.platform, mark) == [("dataset.validate", "success")]


async def test_a_validation_stores_a_report_of_every_check_with_the_scores(
    place: Place, tmp_path: Path
) -> None:
    version = await upload(place, tmp_path)
    expectations: list[dict[str, Any]] = [
        {"kind": "not_null", "column": "age"},
        {"kind": "unique", "columns": ["id"], "blocking": False},
        {"kind": "range", "column": "age", "min": 0, "max": 130},
        {"kind": "allowed_values", "column": "country", "values": ["FR"], "blocking": False},
    ]
    await expect(place, version, expectations)

    note, report = await validate_now(place, version)

    checks = {check["name"]: check for check in report.checks}
    assert {name: check["failing_rows"] for name, check in checks.items()} == {
        "empty_cells": 3,  # every row but the first has an empty cell
        "duplicate_rows": 0,
        "not_null(age)": 1,
        "unique(id)": 1,
        "range(age)": 1,
        "allowed_values(country)": 2,
    }
    assert checks["range(age)"]["examples"] == [200]
    assert checks["unique(id)"]["examples"] == [{"id": 2}]
    assert sorted(checks["allowed_values(country)"]["examples"]) == ["DE", "US"]
    # completeness (1/4 + 3/4) / 2; consistency (1 + 3/4) / 2; accuracy (3/4 + 2/4) / 2
    assert report.q_completeness == pytest.approx(0.5)
    assert report.q_consistency == pytest.approx(0.875)
    assert report.q_accuracy == pytest.approx(0.625)
    assert report.q == pytest.approx(2.0)
    assert note == "Q = 2.000; failed a blocking check"
    assert not report.passed
    assert report.blocking_failures == ["not_null(age)", "range(age)"]
    assert report.expectations == expectations
    assert report.project_id == place.project_id


async def test_a_job_run_again_leaves_one_report(place: Place, tmp_path: Path) -> None:
    version = await upload(place, tmp_path)
    job = await submit_validation(place.platform, place.admin, version.id)
    claimed = await claim_job(place.platform, job.id, TEST_WORKER, stale_after_s=30)
    assert claimed is not None

    # At least once: a worker that died after storing its report runs the job again.
    await run_validation(place.platform, claimed)
    await run_validation(place.platform, claimed)

    async with place.platform.metadata.acquire() as connection:
        reports = await reports_of(connection, version.id)
    assert [report.job_id for report in reports] == [job.id]


async def test_a_deleted_version_cannot_be_validated(place: Place, tmp_path: Path) -> None:
    version = await upload(place, tmp_path)
    await datasets.delete_version(
        place.platform, place.admin, version.id, models_using=models_trained_on
    )

    with pytest.raises(ConflictError, match="deleted"):
        await submit_validation(place.platform, place.admin, version.id)

    async with place.platform.metadata.acquire() as connection:
        jobs = await connection.fetchval(
            "SELECT count(*) FROM jobs WHERE payload ->> 'dataset_version_id' = $1",
            str(version.id),
        )
    assert jobs == 0


async def test_a_refused_validation_is_audited_as_failed(place: Place, tmp_path: Path) -> None:
    version = await upload(place, tmp_path)
    await datasets.delete_version(
        place.platform, place.admin, version.id, models_using=models_trained_on
    )
    mark = await audit_mark(place.platform)

    with pytest.raises(ConflictError):
        await submit_validation(place.platform, place.admin, version.id)

    assert await events_since(place.platform, mark) == [("dataset.validate", "failed")]


# Usable for training ------------------------------------------------------------------------


async def test_a_version_that_passed_is_usable(place: Place, tmp_path: Path) -> None:
    version = await upload(place, tmp_path)
    await expect(place, version, [{"kind": "range", "column": "age", "min": 0, "max": 500}])

    _, report = await validate_now(place, version)

    assert report.passed
    await usable(place, version)


async def test_a_version_that_failed_a_blocking_check_is_refused_naming_the_checks(
    place: Place, tmp_path: Path
) -> None:
    version = await upload(place, tmp_path)
    await expect(
        place,
        version,
        [
            {"kind": "not_null", "column": "age"},
            {"kind": "range", "column": "age", "max": 100},
            {"kind": "unique", "columns": ["id"], "blocking": False},
        ],
    )
    await validate_now(place, version)

    with pytest.raises(InputError) as raised:
        await usable(place, version)

    assert "not_null(age)" in raised.value.message
    assert "range(age)" in raised.value.message
    assert "unique(id)" not in raised.value.message  # it failed, but does not block
    assert raised.value.field_errors == {"datasetVersion": "failed: not_null(age), range(age)"}


async def test_non_blocking_failures_do_not_block(place: Place, tmp_path: Path) -> None:
    version = await upload(place, tmp_path)
    await expect(
        place,
        version,
        [
            {"kind": "not_null", "column": "age", "blocking": False},
            {"kind": "row_count", "min": 1000, "blocking": False},
        ],
    )

    _, report = await validate_now(place, version)

    # Failures everywhere, the baseline's too, yet none of them blocks.
    assert {check["name"] for check in report.checks if not check["passed"]} == {
        "empty_cells",
        "not_null(age)",
        "row_count",
    }
    assert report.passed
    assert report.blocking_failures == []
    await usable(place, version)


async def test_an_unvalidated_version_with_blocking_expectations_is_refused(
    place: Place, tmp_path: Path
) -> None:
    version = await upload(place, tmp_path)
    await expect(place, version, [{"kind": "not_null", "column": "id"}])

    with pytest.raises(InputError, match="not been validated") as raised:
        await usable(place, version)

    # It says what to do about it, naming the mutation.
    assert "run validateDatasetVersion" in raised.value.message
    assert raised.value.field_errors == {
        "datasetVersion": "not validated: run validateDatasetVersion first"
    }


async def test_an_unvalidated_version_without_blocking_expectations_is_usable(
    place: Place, tmp_path: Path
) -> None:
    bare = await upload(place, tmp_path)
    lenient = await upload(place, tmp_path)
    await expect(place, lenient, [{"kind": "not_null", "column": "age", "blocking": False}])

    await usable(place, bare)
    await usable(place, lenient)


async def test_the_latest_report_decides(place: Place, tmp_path: Path) -> None:
    version = await upload(place, tmp_path)
    await expect(place, version, [{"kind": "not_null", "column": "age"}])
    await validate_now(place, version)
    with pytest.raises(InputError):
        await usable(place, version)

    await expect(place, version, [{"kind": "not_null", "column": "country", "blocking": False}])
    _, report = await validate_now(place, version)

    assert report.passed
    await usable(place, version)


async def test_a_deleted_version_is_refused(place: Place, tmp_path: Path) -> None:
    version = await upload(place, tmp_path)
    await validate_now(place, version)
    await usable(place, version)

    await datasets.delete_version(
        place.platform, place.admin, version.id, models_using=models_trained_on
    )

    with pytest.raises(InputError, match="deleted"):
        await usable(place, version)


async def test_a_report_made_before_blocking_expectations_were_set_does_not_count(
    place: Place, tmp_path: Path
) -> None:
    version = await upload(place, tmp_path)
    _, report = await validate_now(place, version)  # nothing declared yet: it passes
    assert report.passed

    await expect(place, version, [{"kind": "not_null", "column": "age"}])

    # The version was never checked against what now blocks: the age column has empty cells.
    with pytest.raises(InputError):
        await usable(place, version)


async def test_a_validation_job_reads_the_expectations_at_run_time(
    place: Place, tmp_path: Path
) -> None:
    version = await upload(place, tmp_path)
    job = await submit_validation(place.platform, place.admin, version.id)
    await expect(place, version, [{"kind": "not_null", "column": "age"}])
    claimed = await claim_job(place.platform, job.id, TEST_WORKER, stale_after_s=30)
    assert claimed is not None

    note = await run_validation(place.platform, claimed)

    async with place.platform.metadata.acquire() as connection:
        (report,) = await reports_of(connection, version.id)
    assert report.expectations == [{"kind": "not_null", "column": "age"}]
    assert "failed a blocking check" in note
