"""Job kinds as a hook (`aiaas_job_kinds`): a plugin's kind, with its own payload model, is
submitted through the core submission API and run by a real arq worker; payloads are checked
at submission and again in the worker; the built-in kinds come through the same hook."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from arq.worker import Worker
from pydantic import BaseModel, ConfigDict, Field

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.config import Config
from aiaas.core.data import VALIDATE_JOB
from aiaas.core.errors import DuplicateSpecError, JobPayloadError, UnknownJobKindError
from aiaas.core.hookspecs import hookimpl
from aiaas.core.identity.accounts import BOOTSTRAP_ADMIN
from aiaas.core.identity.projects import create_project
from aiaas.core.job_submission import hand_committed_job_to_queue, record_new_job
from aiaas.core.jobs import Job, JobState, get_job
from aiaas.core.platform import Platform
from aiaas.core.plugin_manager import AiaasPluginManager
from aiaas.core.plugins import create_plugin_manager
from aiaas.core.serving import BATCH_PREDICTION_JOB
from aiaas.core.specs import JobKindSpec
from aiaas.core.training import TRAINING_JOB
from aiaas.plugins.builtin_job_kinds import (
    BatchPredictionPayload,
    TrainingPayload,
    ValidationPayload,
)
from aiaas.workers.settings import worker_settings

SCORING = "acme.batch_scoring"
SUBMIT_ACTION = "acme.scoring.submit"


class ScoringPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(ge=0, le=1)
    columns: list[str] = Field(min_length=1)
    dataset_version_id: uuid.UUID


class BatchScoringPlugin:
    """A plugin adding one kind of job, as a third-party package would; it keeps what its
    handler was given."""

    def __init__(self) -> None:
        self.received: list[tuple[uuid.UUID, object]] = []

    @hookimpl
    def aiaas_job_kinds(self) -> Iterable[JobKindSpec[Any]]:
        return [
            JobKindSpec(
                name=SCORING,
                payload_type=ScoringPayload,
                handler=self.score,
                description="Score columns above a threshold.",
            )
        ]

    async def score(self, platform: Platform, job: Job, payload: ScoringPayload) -> str:
        del platform
        self.received.append((job.id, payload))
        return f"scored {','.join(payload.columns)} above {payload.threshold}"


PLUGIN = BatchScoringPlugin()


def manager_with_plugin(config: Config, plugin: object = PLUGIN) -> AiaasPluginManager:
    """The manager a process builds, plus the plugin, registered as an entry point would be."""
    manager = create_plugin_manager(config)
    manager.register_plugin(plugin, type(plugin).__name__)
    return manager


@pytest.fixture(scope="module")
async def platform(config: Config) -> AsyncIterator[Platform]:
    """The submitting process's platform, with the plugin installed."""
    platform = Platform(config, manager_with_plugin(config))
    await platform.start()
    yield platform
    await platform.stop()


@pytest.fixture(scope="module")
async def admin(platform: Platform, admin_token: str) -> Principal:
    del admin_token  # bootstraps the admin
    async with platform.metadata.acquire() as connection:
        admin_id = await connection.fetchval(
            "SELECT id FROM users WHERE username = $1", BOOTSTRAP_ADMIN
        )
    return Principal(user_id=admin_id, username="admin", is_admin=True, authenticated_by="test")


@pytest.fixture(scope="module")
async def project_id(platform: Platform, admin: Principal) -> uuid.UUID:
    project = await create_project(platform, admin, slug="job-kinds", name="Job kinds")
    return project.id


async def submit(
    platform: Platform,
    actor: Principal,
    project_id: uuid.UUID,
    payload: dict[str, Any] | BaseModel,
    *,
    kind: str = SCORING,
) -> Job:
    """What a plugin's own submission does: record the job in an audited change, then queue."""
    async with AuditedChange(platform, actor, SUBMIT_ACTION, project_id=project_id) as change:
        job = await record_new_job(
            change, project_id=project_id, kind=kind, payload=payload, created_by=actor.user_id
        )
    await hand_committed_job_to_queue(platform, job)
    return job


async def run_worker_until_idle(config: Config) -> None:
    """A real arq worker in burst mode with the registered job kinds (no `job_handlers`)."""
    settings = worker_settings(config, plugin_manager=manager_with_plugin(config))
    settings["cron_jobs"] = []  # keep the burst to the jobs under test
    worker = Worker(**settings, burst=True, handle_signals=False)
    try:
        await asyncio.wait_for(worker.async_run(), timeout=60)
    finally:
        await worker.close()


async def finished(platform: Platform, job_id: uuid.UUID) -> Job:
    async with platform.metadata.acquire() as connection:
        job = await get_job(connection, job_id)
    assert job is not None
    return job


async def jobs_in(platform: Platform, project_id: uuid.UUID) -> int:
    async with platform.metadata.acquire() as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM jobs WHERE project_id = $1", project_id
        )
    return count


async def test_aiaas_job_kinds(
    platform: Platform, config: Config, admin: Principal, project_id: uuid.UUID
) -> None:
    version_id = uuid.uuid4()
    job = await submit(
        platform,
        admin,
        project_id,
        {"threshold": 0.75, "columns": ["amount", "merchant"], "dataset_version_id": version_id},
    )
    assert job.state is JobState.QUEUED

    await run_worker_until_idle(config)

    done = await finished(platform, job.id)
    assert done.state is JobState.SUCCEEDED, done.reason
    assert done.reason == "scored amount,merchant above 0.75"
    [(job_id, payload)] = [entry for entry in PLUGIN.received if entry[0] == job.id]
    assert job_id == job.id
    # Delivered as the plugin's model, its fields typed (the UUID is a UUID again).
    assert isinstance(payload, ScoringPayload)
    assert payload == ScoringPayload(
        threshold=0.75, columns=["amount", "merchant"], dataset_version_id=version_id
    )
    assert isinstance(payload.dataset_version_id, uuid.UUID)


async def test_a_payload_given_as_the_model_is_stored_as_its_json(
    platform: Platform, config: Config, admin: Principal, project_id: uuid.UUID
) -> None:
    version_id = uuid.uuid4()
    given = ScoringPayload(threshold=0.5, columns=["amount"], dataset_version_id=version_id)

    job = await submit(platform, admin, project_id, given)
    await run_worker_until_idle(config)

    assert job.payload == {
        "threshold": 0.5,
        "columns": ["amount"],
        "dataset_version_id": str(version_id),
    }
    assert (await finished(platform, job.id)).state is JobState.SUCCEEDED
    assert (job.id, given) in PLUGIN.received


@pytest.mark.parametrize(
    ("payload", "field", "problem"),
    [
        ({"threshold": 1.5, "columns": ["a"], "dataset_version_id": str(uuid.uuid4())},
         "threshold", "less than or equal to 1"),
        ({"threshold": 0.5, "columns": [], "dataset_version_id": str(uuid.uuid4())},
         "columns", "at least 1 item"),
        ({"threshold": 0.5, "columns": ["a"], "dataset_version_id": "not-a-uuid"},
         "dataset_version_id", "UUID"),
        ({"threshold": 0.5, "columns": ["a"]}, "dataset_version_id", "required"),
        ({"threshold": 0.5, "columns": ["a"], "dataset_version_id": str(uuid.uuid4()),
          "surprise": 1}, "surprise", "not permitted"),
    ],
    ids=["out-of-bounds", "empty-list", "bad-uuid", "missing", "unknown-key"],
)  # fmt: skip
async def test_a_bad_payload_is_refused_at_submission_and_nothing_is_recorded(
    platform: Platform,
    admin: Principal,
    project_id: uuid.UUID,
    payload: dict[str, Any],
    field: str,
    problem: str,
) -> None:
    before = await jobs_in(platform, project_id)

    with pytest.raises(JobPayloadError) as refused:
        await submit(platform, admin, project_id, payload)

    assert list(refused.value.field_errors) == [field]
    assert problem in refused.value.field_errors[field]
    assert SCORING in refused.value.message
    assert refused.value.code == "JOB_PAYLOAD_INVALID"
    assert await jobs_in(platform, project_id) == before
    async with platform.metadata.acquire() as connection:
        outcome = await connection.fetchrow(
            "SELECT outcome, details FROM audit_events WHERE action = $1 "
            "ORDER BY occurred_at DESC LIMIT 1",
            SUBMIT_ACTION,
        )
    assert outcome["outcome"] == "failed"
    assert outcome["details"]["code"] == "JOB_PAYLOAD_INVALID"


async def test_a_model_of_another_kind_is_refused_at_submission(
    platform: Platform, admin: Principal, project_id: uuid.UUID
) -> None:
    before = await jobs_in(platform, project_id)
    other = ValidationPayload(dataset_version_id=uuid.uuid4())

    with pytest.raises(JobPayloadError, match="takes a ScoringPayload payload"):
        await submit(platform, admin, project_id, other)

    assert await jobs_in(platform, project_id) == before


async def test_a_job_of_an_unknown_kind_is_refused_at_submission(
    platform: Platform, admin: Principal, project_id: uuid.UUID
) -> None:
    before = await jobs_in(platform, project_id)

    with pytest.raises(UnknownJobKindError) as refused:
        await submit(platform, admin, project_id, {}, kind="acme.nobody-registers-this")

    assert "acme.nobody-registers-this" in refused.value.message
    assert SCORING in refused.value.field_errors["kind"]  # the known kinds are listed
    assert refused.value.code == "UNKNOWN_JOB_KIND"
    assert await jobs_in(platform, project_id) == before


async def test_a_payload_made_invalid_in_the_database_fails_the_job_with_the_reason(
    platform: Platform, config: Config, admin: Principal, project_id: uuid.UUID
) -> None:
    job = await submit(
        platform,
        admin,
        project_id,
        {"threshold": 0.5, "columns": ["amount"], "dataset_version_id": str(uuid.uuid4())},
    )
    # Changed behind the submission's back, as a manual edit or another release might.
    async with platform.metadata.transaction() as connection:
        await connection.execute(
            "UPDATE jobs SET payload = $2 WHERE id = $1",
            job.id,
            {"threshold": "high", "columns": ["amount"], "dataset_version_id": "x"},
        )

    await run_worker_until_idle(config)

    done = await finished(platform, job.id)
    assert done.state is JobState.FAILED
    reason = done.reason or ""
    assert f"the payload of a {SCORING} job does not match ScoringPayload" in reason
    assert "threshold" in reason
    assert "dataset_version_id" in reason
    assert all(job_id != job.id for job_id, _ in PLUGIN.received)  # the handler never ran


class RogueTrainingPlugin:
    @hookimpl
    def aiaas_job_kinds(self) -> Iterable[JobKindSpec[Any]]:
        async def train(platform: Platform, job: Job, payload: ScoringPayload) -> None:
            del platform, job, payload

        return [JobKindSpec(name=TRAINING_JOB, payload_type=ScoringPayload, handler=train)]


async def test_a_plugin_registering_a_built_in_kind_again_is_refused_at_startup(
    config: Config,
) -> None:
    settings = worker_settings(
        config, plugin_manager=manager_with_plugin(config, RogueTrainingPlugin())
    )

    with pytest.raises(DuplicateSpecError) as refused:
        await settings["on_startup"]({})

    assert f"job kind {TRAINING_JOB!r}" in refused.value.message
    assert "aiaas.plugins.builtin_job_kinds" in refused.value.message
    assert "RogueTrainingPlugin" in refused.value.message


class NotAModelPlugin:
    @hookimpl
    def aiaas_job_kinds(self) -> Iterable[JobKindSpec[Any]]:
        async def handle(platform: Platform, job: Job, payload: Any) -> None:
            del platform, job, payload

        return [JobKindSpec(name="acme.untyped", payload_type=dict, handler=handle)]  # type: ignore[type-var]


def test_a_kind_whose_payload_type_is_not_a_pydantic_model_is_left_out(config: Config) -> None:
    manager = manager_with_plugin(config, NotAModelPlugin())

    kinds = Platform(config, manager).registries.job_kinds

    assert "acme.untyped" not in kinds
    [failure] = [f for f in manager.failures if f.name == "NotAModelPlugin"]
    assert failure.stage == "hook aiaas_job_kinds"
    assert "pydantic model" in failure.reason


def test_the_built_in_kinds_come_through_the_hook(config: Config) -> None:
    kinds = Platform(config, create_plugin_manager(config)).registries.job_kinds

    assert {
        spec.name: (spec.payload_type, spec.plugin)
        for spec in kinds
        if spec.plugin == "aiaas.plugins.builtin_job_kinds"
    } == {
        TRAINING_JOB: (TrainingPayload, "aiaas.plugins.builtin_job_kinds"),
        VALIDATE_JOB: (ValidationPayload, "aiaas.plugins.builtin_job_kinds"),
        BATCH_PREDICTION_JOB: (BatchPredictionPayload, "aiaas.plugins.builtin_job_kinds"),
    }
