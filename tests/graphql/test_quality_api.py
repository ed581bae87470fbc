"""Dataset quality through GraphQL: `setDatasetExpectations` vets what it is given,
`validateDatasetVersion` queues a job that a real arq worker (burst mode, the default handlers)
runs, and `DatasetVersion.qualityReport` shows what it found.

A throwaway third-party validator (`max_length`) is registered on both sides, as an installed
plugin would be: on this module's API platform (the `platform` fixture is overridden here) and on
the worker's, so the API accepts its kind and the worker runs it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from arq.worker import Worker

from aiaas.core.config import Config
from aiaas.core.data import datasets
from aiaas.core.hookspecs import hookimpl
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.plugin_manager import AiaasPluginManager
from aiaas.core.plugins import create_plugin_manager
from aiaas.core.specs import ValidatorSpec
from aiaas.core.training import models_trained_on
from aiaas.core.validation import MAX_EXAMPLES, CheckResult, Expectation, Validator
from aiaas.graphql.relay import to_global_id
from aiaas.workers.settings import worker_settings
from support import (
    Team,
    audit_mark,
    data_of,
    error_codes,
    events_since,
    graphql,
    new_team,
)

# The third-party plugin -----------------------------------------------------------------------


class MaxLengthValidator(Validator):
    """Text values no longer than `max` characters: {"kind": "max_length", "column", "max"}."""

    def __init__(self, config: Config) -> None:
        del config  # nothing to configure

    def expectation_kinds(self) -> frozenset[str]:
        return frozenset({"max_length"})

    def problems(self, expectation: Expectation, columns: Mapping[str, str]) -> list[str]:
        problems = []
        column = expectation.get("column")
        if not isinstance(column, str) or columns.get(column) != "string":
            problems.append("column must name a text column")
        limit = expectation.get("max")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            problems.append("max must be a whole number of characters, 1 or more")
        return problems

    def validate(self, table: pa.Table, expectations: Sequence[Expectation]) -> list[CheckResult]:
        results = []
        for expectation in expectations:
            values = pc.drop_null(table[expectation["column"]])
            too_long = values.filter(pc.greater(pc.utf8_length(values), expectation["max"]))
            results.append(
                CheckResult(
                    name=f"max_length({expectation['column']})",
                    kind="max_length",
                    dimension="accuracy",
                    passed=len(too_long) == 0,
                    failing_rows=len(too_long),
                    blocking=bool(expectation.get("blocking", True)),
                    message=f"{len(too_long)} values are too long",
                    examples=too_long.slice(0, MAX_EXAMPLES).to_pylist(),
                )
            )
        return results


class MaxLengthPlugin:
    @hookimpl
    def aiaas_validators(self) -> Iterable[ValidatorSpec]:
        return [ValidatorSpec(name="max-length", factory=MaxLengthValidator)]


def manager_with_plugin(config: Config) -> AiaasPluginManager:
    """The manager a process builds, plus the plugin, registered as an entry point would be."""
    manager = create_plugin_manager(config)
    manager.register_plugin(MaxLengthPlugin(), "MaxLengthPlugin")
    return manager


@pytest.fixture(scope="module")
async def platform(config: Config) -> AsyncIterator[Platform]:
    """The API's platform, with the plugin installed."""
    platform = Platform(config, manager_with_plugin(config))
    await platform.start()
    yield platform
    await platform.stop()


async def run_worker_until_idle(config: Config, *, with_plugin: bool = True) -> Worker:
    """A real arq worker in burst mode with the default job handlers, whose platform has the
    plugin installed unless told otherwise."""
    manager = manager_with_plugin(config) if with_plugin else None
    settings = worker_settings(config, plugin_manager=manager)
    settings["cron_jobs"] = []  # keep the burst to the jobs under test
    worker = Worker(**settings, burst=True, handle_signals=False)
    try:
        await asyncio.wait_for(worker.async_run(), timeout=60)
    finally:
        await worker.close()
    return worker


# The project, its people and its data ---------------------------------------------------------


@pytest.fixture(scope="module")
async def team(platform: Platform, admin_token: str) -> Team:
    return await new_team(
        platform, f"quality-{uuid.uuid4().hex[:8]}", (ProjectRole.DEVELOPER, ProjectRole.VIEWER)
    )


# Four rows: 3 of 12 cells empty, id 2 twice, one age out of range, one country name too long.
PEOPLE_CSV = "id,age,country\n1,10,FR\n2,,DE\n2,200,\n,30,Germany\n"


async def upload(
    platform: Platform, team: Team, tmp_path: Path, content: str = PEOPLE_CSV
) -> datasets.DatasetVersion:
    """A version of a new dataset of its own, so that tests do not share expectations."""
    source = tmp_path / f"{uuid.uuid4().hex}.csv"
    source.write_text(content)
    added = await datasets.upload_version(
        platform,
        team.members[ProjectRole.OWNER].principal,
        team.project_id,
        dataset_name=f"people-{uuid.uuid4().hex[:8]}",
        source=source,
    )
    return added.version


def dataset_id_of(version: datasets.DatasetVersion) -> str:
    return to_global_id("Dataset", version.dataset_id)


def version_id_of(version: datasets.DatasetVersion) -> str:
    return to_global_id("DatasetVersion", version.id)


async def stored_expectations(platform: Platform, version: datasets.DatasetVersion) -> Any:
    async with platform.metadata.acquire() as connection:
        return await connection.fetchval(
            "SELECT expectations FROM datasets WHERE id = $1", version.dataset_id
        )


# Operations -----------------------------------------------------------------------------------

SET_EXPECTATIONS = """
mutation Expect($dataset: ID!, $expectations: JSON!) {
  setDatasetExpectations(dataset: $dataset, expectations: $expectations) {
    __typename
    ... on SetDatasetExpectationsSuccess { dataset { id expectations } }
    ... on InvalidInputError { fieldErrors { field message } }
    ... on Error { message code }
  }
}
"""
VALIDATE = """
mutation Validate($id: ID!) {
  validateDatasetVersion(id: $id) {
    __typename
    ... on ValidationQueued { job { id kind state reason } }
    ... on Error { message code }
  }
}
"""
VERSION = """
query Version($id: ID!) {
  node(id: $id) {
    ... on DatasetVersion {
      qualityReport {
        passed q qConsistency qCompleteness qAccuracy blockingFailures expectations
        checks { name kind dimension passed blocking failingRows message examples }
      }
    }
  }
}
"""
JOB = "query Job($id: ID!) { node(id: $id) { ... on Job { kind state reason } } }"


async def set_expectations(
    client: httpx.AsyncClient, token: str, version: datasets.DatasetVersion, expectations: Any
) -> dict[str, Any]:
    variables = {"dataset": dataset_id_of(version), "expectations": expectations}
    result: dict[str, Any] = data_of(
        await graphql(client, SET_EXPECTATIONS, variables, token=token)
    )["setDatasetExpectations"]
    return result


async def validate(
    client: httpx.AsyncClient, token: str, version: datasets.DatasetVersion
) -> dict[str, Any]:
    result: dict[str, Any] = data_of(
        await graphql(client, VALIDATE, {"id": version_id_of(version)}, token=token)
    )["validateDatasetVersion"]
    return result


async def quality_report(
    client: httpx.AsyncClient, token: str, version: datasets.DatasetVersion
) -> dict[str, Any] | None:
    node = data_of(await graphql(client, VERSION, {"id": version_id_of(version)}, token=token))[
        "node"
    ]
    report: dict[str, Any] | None = node["qualityReport"]
    return report


async def job_of(client: httpx.AsyncClient, token: str, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = data_of(await graphql(client, JOB, {"id": job_id}, token=token))["node"]
    return job


# Setting expectations -------------------------------------------------------------------------

EXPECTATIONS: list[dict[str, Any]] = [
    {"kind": "column_type", "column": "age", "dtype": "integer"},
    {"kind": "not_null", "column": "age"},
    {"kind": "row_count", "min": 1, "max": 100},
    {"kind": "unique", "columns": ["id"], "blocking": False},
    {"kind": "no_duplicate_rows"},
    {"kind": "rule", "expression": "id <= age"},
    {"kind": "range", "column": "age", "min": 0, "max": 130},
    {"kind": "allowed_values", "column": "country", "values": ["FR", "DE"], "blocking": False},
    {"kind": "regex", "column": "country", "pattern": "[A-Z][a-zA-Z]+"},
    {"kind": "max_length", "column": "country", "max": 2},
]


async def test_a_developer_declares_expectations_and_one_event_is_written(
    platform: Platform, team: Team, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    version = await upload(platform, team, tmp_path)
    mark = await audit_mark(platform)

    result = await set_expectations(
        client, team.token(ProjectRole.DEVELOPER), version, EXPECTATIONS
    )

    assert result["__typename"] == "SetDatasetExpectationsSuccess"
    assert result["dataset"] == {"id": dataset_id_of(version), "expectations": EXPECTATIONS}
    assert await stored_expectations(platform, version) == EXPECTATIONS
    assert await events_since(platform, mark) == [("dataset.set_expectations", "success")]


async def test_a_viewer_may_not_declare_expectations(
    platform: Platform, team: Team, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    version = await upload(platform, team, tmp_path)
    mark = await audit_mark(platform)

    status, body = await graphql(
        client,
        SET_EXPECTATIONS,
        {"dataset": dataset_id_of(version), "expectations": EXPECTATIONS},
        token=team.token(ProjectRole.VIEWER),
    )

    assert status == 200
    assert error_codes(body) == ["FORBIDDEN"]
    assert await stored_expectations(platform, version) == []
    assert await events_since(platform, mark) == [("graphql.setDatasetExpectations", "denied")]


INVALID: list[Any] = [
    pytest.param({"kind": "not_null", "column": "salary"}, "column", "salary", id="missing-column"),
    pytest.param(
        {"kind": "range", "column": "salary", "min": 0}, "column", "salary", id="range-missing"
    ),
    pytest.param(
        {"kind": "sparkle", "column": "id"}, "kind", "unknown kind 'sparkle'", id="unknown-kind"
    ),
    pytest.param({"column": "id"}, "kind", "required; known kinds", id="no-kind"),
    pytest.param(
        {"kind": "range", "column": "age", "min": 9, "max": 1},
        "min",
        "more than max",
        id="min>max",
    ),
    pytest.param(
        {"kind": "row_count", "min": 9, "max": 1}, "min", "more than max", id="rows-min>max"
    ),
    pytest.param(
        {"kind": "range", "column": "country", "min": 0},
        "column",
        "not numeric",
        id="range-on-text",
    ),
    pytest.param(
        {"kind": "range", "column": "age", "min": "zero"},
        "min",
        "finite number",
        id="range-text-bound",
    ),
    pytest.param({"kind": "range", "column": "age"}, "", "min, max or both", id="range-no-bound"),
    pytest.param(
        {"kind": "rule", "expression": "id <= "}, "expression", "position", id="rule-syntax"
    ),
    pytest.param(
        {"kind": "rule", "expression": "id <= salary"}, "expression", "salary", id="rule-column"
    ),
    pytest.param(
        {"kind": "column_type", "column": "age", "dtype": "int8"}, "dtype", "one of", id="dtype"
    ),
    pytest.param(
        {"kind": "allowed_values", "column": "country", "values": []},
        "values",
        "list",
        id="values",
    ),
    pytest.param(
        {"kind": "not_null", "column": "id", "blocking": 1},
        "blocking",
        "true or false",
        id="blocking",
    ),
    pytest.param(
        {"kind": "unique", "column": "id"},
        "column",
        "unique works on a set of columns: give them as 'columns'",
        id="unique-given-column",
    ),
    pytest.param(
        {"kind": "not_null", "columns": ["id"]},
        "columns",
        "not_null works on one column: name it in 'column'",
        id="not-null-given-columns",
    ),
    pytest.param(
        {"kind": "not_null", "column": "id", "severity": "high"},
        "severity",
        "unknown field 'severity'; known fields: kind, column, blocking",
        id="unknown-field",
    ),
    # A plugin's kind without a shape: its own messages, at the expectation's path.
    pytest.param({"kind": "max_length", "column": "age", "max": 2}, "", "text column", id="plugin"),
    pytest.param(
        {"kind": "regex", "column": "country", "pattern": "[A-Z"},
        "pattern",
        "regular expression",
        id="regex",
    ),
]


@pytest.mark.parametrize(("expectation", "argument", "problem"), INVALID)
async def test_an_invalid_expectation_is_named_by_its_path_and_nothing_changes(
    platform: Platform,
    team: Team,
    client: httpx.AsyncClient,
    tmp_path: Path,
    expectation: dict[str, Any],
    argument: str,
    problem: str,
) -> None:
    version = await upload(platform, team, tmp_path)
    token = team.token(ProjectRole.DEVELOPER)
    before = [{"kind": "not_null", "column": "id"}]
    await set_expectations(client, token, version, before)

    result = await set_expectations(
        client, token, version, [{"kind": "no_duplicate_rows"}, expectation]
    )

    # The path as the schema names it, counted from 0: the second expectation is number 1.
    field = f"expectations.1.{argument}" if argument else "expectations.1"
    assert result["__typename"] == "InvalidInputError"
    assert result["code"] == "BAD_USER_INPUT"
    fields = {error["field"]: error["message"] for error in result["fieldErrors"]}
    assert problem in fields[field]
    assert all(named.startswith("expectations.1") for named in fields), fields
    assert await stored_expectations(platform, version) == before


async def test_every_problem_is_named_at_once(
    platform: Platform, team: Team, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    version = await upload(platform, team, tmp_path)

    result = await set_expectations(
        client,
        team.token(ProjectRole.DEVELOPER),
        version,
        [
            {"kind": "not_null", "column": "nope"},
            {"kind": "not_null", "column": "id"},
            {"kind": "range", "column": "age", "min": 5, "max": 4},
            {"kind": "rule", "expression": "(id"},
        ],
    )

    fields = {error["field"]: error["message"] for error in result["fieldErrors"]}
    assert set(fields) == {
        "expectations.0.column",
        "expectations.2.min",
        "expectations.3.expression",
    }
    assert "nope" in fields["expectations.0.column"]
    assert await stored_expectations(platform, version) == []


async def test_expectations_must_be_a_list(
    platform: Platform, team: Team, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    version = await upload(platform, team, tmp_path)

    result = await set_expectations(
        client, team.token(ProjectRole.DEVELOPER), version, {"kind": "no_duplicate_rows"}
    )

    assert result["__typename"] == "InvalidInputError"
    assert [error["field"] for error in result["fieldErrors"]] == ["expectations"]


@pytest.mark.parametrize(
    ("expectation", "field"),
    [
        pytest.param({"kind": ["not_null"], "column": "id"}, "expectations.0.kind", id="kind"),
        pytest.param(
            {"kind": "column_type", "column": "age", "dtype": ["integer"]},
            "expectations.0.dtype",
            id="dtype",
        ),
    ],
)
async def test_a_kind_or_dtype_that_is_not_text_is_invalid_input(
    platform: Platform,
    team: Team,
    client: httpx.AsyncClient,
    tmp_path: Path,
    expectation: dict[str, Any],
    field: str,
) -> None:
    version = await upload(platform, team, tmp_path)

    result = await set_expectations(
        client, team.token(ProjectRole.DEVELOPER), version, [expectation]
    )

    assert result["__typename"] == "InvalidInputError"
    assert [error["field"] for error in result["fieldErrors"]] == [field]


async def test_refused_expectations_write_one_failed_event(
    platform: Platform, team: Team, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    version = await upload(platform, team, tmp_path)
    mark = await audit_mark(platform)

    result = await set_expectations(
        client, team.token(ProjectRole.DEVELOPER), version, [{"kind": "sparkle"}]
    )

    assert result["__typename"] == "InvalidInputError"
    assert await events_since(platform, mark) == [("dataset.set_expectations", "failed")]


# Validation in a worker -----------------------------------------------------------------------


async def test_a_validation_runs_in_a_worker_and_its_report_is_readable(
    platform: Platform,
    config: Config,
    team: Team,
    client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    version = await upload(platform, team, tmp_path)
    token = team.token(ProjectRole.DEVELOPER)
    expectations: list[dict[str, Any]] = [
        {"kind": "not_null", "column": "age"},
        {"kind": "unique", "columns": ["id"], "blocking": False},
        {"kind": "range", "column": "age", "min": 0, "max": 130},
        {"kind": "max_length", "column": "country", "max": 2, "blocking": False},
    ]
    await set_expectations(client, token, version, expectations)
    assert await quality_report(client, token, version) is None
    mark = await audit_mark(platform)

    queued = await validate(client, token, version)

    assert queued["__typename"] == "ValidationQueued"
    assert queued["job"]["kind"] == "dataset.validate"
    assert queued["job"]["state"] == "QUEUED"
    assert await events_since(platform, mark) == [("dataset.validate", "success")]

    await run_worker_until_idle(config)

    # completeness: empty_cells 1/4 (3 rows have an empty cell), not_null 3/4 → 0.5
    # consistency: duplicate_rows 1, unique 3/4 → 0.875
    # accuracy: range 3/4, max_length 3/4 (Germany) → 0.75
    job = await job_of(client, token, queued["job"]["id"])
    assert job["state"] == "SUCCEEDED"
    assert job["reason"] == "Q = 2.125; failed a blocking check"
    report = await quality_report(client, token, version)
    assert report is not None
    checks = {check["name"]: check for check in report["checks"]}
    assert {name: check["failingRows"] for name, check in checks.items()} == {
        "empty_cells": 3,
        "duplicate_rows": 0,
        "not_null(age)": 1,
        "unique(id)": 1,
        "range(age)": 1,
        "max_length(country)": 1,
    }
    assert checks["range(age)"] == {
        "name": "range(age)",
        "kind": "range",
        "dimension": "accuracy",
        "passed": False,
        "blocking": True,
        "failingRows": 1,
        "message": "1 values of age fail range",
        "examples": [200],
    }
    # The plugin's own check, run by the worker beside the built-in ones.
    assert checks["max_length(country)"]["examples"] == ["Germany"]
    assert checks["max_length(country)"]["kind"] == "max_length"
    assert not checks["max_length(country)"]["blocking"]
    assert checks["unique(id)"]["examples"] == [{"id": 2}]
    assert not checks["empty_cells"]["blocking"]
    assert report["qCompleteness"] == pytest.approx(0.5)
    assert report["qConsistency"] == pytest.approx(0.875)
    assert report["qAccuracy"] == pytest.approx(0.75)
    assert report["q"] == pytest.approx(2.125)
    assert report["passed"] is False
    assert report["blockingFailures"] == ["not_null(age)", "range(age)"]
    assert report["expectations"] == expectations


async def test_a_version_meeting_its_expectations_gets_a_passing_report(
    platform: Platform,
    config: Config,
    team: Team,
    client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    version = await upload(platform, team, tmp_path, "id,name\n1,ada\n2,bob\n")
    token = team.token(ProjectRole.DEVELOPER)
    await set_expectations(
        client,
        token,
        version,
        [
            {"kind": "unique", "columns": ["id"]},
            {"kind": "max_length", "column": "name", "max": 3},
            {"kind": "regex", "column": "name", "pattern": "[a-z]+"},
        ],
    )

    queued = await validate(client, token, version)
    await run_worker_until_idle(config)

    assert (await job_of(client, token, queued["job"]["id"]))["reason"] == "Q = 3.000; passed"
    report = await quality_report(client, token, version)
    assert report is not None
    assert report["passed"] is True
    assert report["blockingFailures"] == []
    assert report["q"] == 3.0
    assert all(check["passed"] for check in report["checks"])
    assert "max_length(name)" in {check["name"] for check in report["checks"]}


async def test_a_viewer_may_not_validate(
    platform: Platform, team: Team, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    version = await upload(platform, team, tmp_path)
    mark = await audit_mark(platform)

    status, body = await graphql(
        client, VALIDATE, {"id": version_id_of(version)}, token=team.token(ProjectRole.VIEWER)
    )

    assert status == 200
    assert error_codes(body) == ["FORBIDDEN"]
    assert await events_since(platform, mark) == [("graphql.validateDatasetVersion", "denied")]
    async with platform.metadata.acquire() as connection:
        assert not await connection.fetchval(
            "SELECT exists (SELECT 1 FROM jobs WHERE payload ->> 'dataset_version_id' = $1)",
            str(version.id),
        )


async def test_a_deleted_version_is_not_validated(
    platform: Platform, team: Team, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    version = await upload(platform, team, tmp_path)
    await datasets.delete_version(
        platform,
        team.members[ProjectRole.OWNER].principal,
        version.id,
        models_using=models_trained_on,
    )

    result = await validate(client, team.token(ProjectRole.DEVELOPER), version)

    assert result["__typename"] == "ConflictError"
    assert "deleted" in result["message"]


async def test_a_refused_validation_writes_one_failed_event(
    platform: Platform, team: Team, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    version = await upload(platform, team, tmp_path)
    await datasets.delete_version(
        platform,
        team.members[ProjectRole.OWNER].principal,
        version.id,
        models_using=models_trained_on,
    )
    mark = await audit_mark(platform)

    result = await validate(client, team.token(ProjectRole.DEVELOPER), version)

    assert result["__typename"] == "ConflictError"
    assert await events_since(platform, mark) == [("dataset.validate", "failed")]


async def test_an_expectation_the_worker_cannot_check_does_not_pass_silently(
    platform: Platform,
    config: Config,
    team: Team,
    client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    version = await upload(platform, team, tmp_path, "id,name\n1,ada\n2,bartholomew\n")
    token = team.token(ProjectRole.DEVELOPER)
    # The API knows the plugin's kind; the worker below runs without the plugin.
    await set_expectations(
        client, token, version, [{"kind": "max_length", "column": "name", "max": 3}]
    )

    queued = await validate(client, token, version)
    await run_worker_until_idle(config, with_plugin=False)

    job = await job_of(client, token, queued["job"]["id"])
    report = await quality_report(client, token, version)
    assert job["state"] == "FAILED" or (report is not None and not report["passed"]), (
        job,
        report,
    )
