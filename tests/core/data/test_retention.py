"""Retention: deleting dataset versions (`deleteDatasetVersion`), and garbage collection of the
artifacts nothing live refers to any more (`collect_garbage`, `aiaas gc`).

A delete only marks the version; it is refused while an unfinished job refers to it, since that
job will read the version's data. Its sealed artifact goes at the next collection, unless it is
younger than the grace period.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiaas.core.config import Config, config_environment
from aiaas.core.data.datasets import changes as datasets  # a test replaces its version_users
from aiaas.core.data.quality import submit_validation
from aiaas.core.errors import ConflictError
from aiaas.core.governance.garbage import collect_garbage
from aiaas.core.identity.access import ProjectRole
from aiaas.core.jobs import JobState, claim_job, finish_job, insert_job
from aiaas.core.platform import Platform
from aiaas.core.training import models_trained_on
from aiaas.graphql.relay import to_global_id
from aiaas.plugins.filesystem_artifacts import FilesystemArtifactStore
from support import (
    Team,
    audit_mark,
    clean_environment,
    data_of,
    error_codes,
    events_since,
    graphql,
    new_team,
    poll_until,
)

TEST_WORKER = "test-retention-worker"
HOUR_S = 3600


@pytest.fixture(scope="module")
async def team(platform: Platform, admin_token: str) -> Team:
    return await new_team(
        platform,
        f"retention-{uuid.uuid4().hex[:8]}",
        (ProjectRole.MAINTAINER, ProjectRole.DEVELOPER),
    )


@pytest.fixture
def store(platform: Platform) -> FilesystemArtifactStore:
    assert isinstance(platform.artifacts, FilesystemArtifactStore)
    return platform.artifacts


def new_dataset_name() -> str:
    return f"retained-{uuid.uuid4().hex[:8]}"


async def upload(
    platform: Platform,
    team: Team,
    tmp_path: Path,
    *,
    dataset: str | None = None,
    content: str | None = None,
) -> datasets.NewVersion:
    """Upload `content` (fresh content by default) as a version of `dataset` (a new one by
    default)."""
    source = tmp_path / f"{uuid.uuid4().hex}.csv"
    source.write_text(content or f"id,label\n1,{uuid.uuid4().hex}\n2,b\n")
    return await datasets.upload_version(
        platform,
        team.members[ProjectRole.OWNER].principal,
        team.project_id,
        dataset_name=dataset or new_dataset_name(),
        source=source,
    )


async def version_row(platform: Platform, version_id: uuid.UUID) -> datasets.DatasetVersion:
    async with platform.metadata.acquire() as connection:
        return await datasets.get_version(connection, version_id)


def make_old(path: Path, seconds: float = 2 * HOUR_S) -> None:
    """Set a file's modification time `seconds` in the past, as if written that long ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


# Deleting through GraphQL ---------------------------------------------------------------------

DELETE = """
mutation Delete($id: ID!) {
  deleteDatasetVersion(id: $id) {
    __typename
    ... on DeleteDatasetVersionSuccess { version { id number deletedAt } }
    ... on Error { message code }
  }
}
"""
VERSIONS = """
query Versions($slug: String!, $name: String!, $includeDeleted: Boolean!) {
  project(slug: $slug) {
    dataset(name: $name) {
      versions(includeDeleted: $includeDeleted) { nodes { id number deletedAt } }
      latestVersion { id }
    }
  }
}
"""
NODE = "query Node($id: ID!) { node(id: $id) { ... on DatasetVersion { id number deletedAt } } }"


def global_id(version: datasets.DatasetVersion) -> str:
    return to_global_id("DatasetVersion", version.id)


async def delete(
    client: httpx.AsyncClient, token: str, version: datasets.DatasetVersion
) -> dict[str, Any]:
    result: dict[str, Any] = data_of(
        await graphql(client, DELETE, {"id": global_id(version)}, token=token)
    )["deleteDatasetVersion"]
    return result


async def listed_versions(
    client: httpx.AsyncClient, team: Team, dataset: str, *, include_deleted: bool
) -> dict[str, Any]:
    variables = {"slug": team.slug, "name": dataset, "includeDeleted": include_deleted}
    found: dict[str, Any] = data_of(
        await graphql(client, VERSIONS, variables, token=team.token(ProjectRole.DEVELOPER))
    )["project"]["dataset"]
    return found


async def test_a_maintainer_deletes_an_unused_version_which_is_then_hidden_but_readable(
    platform: Platform, team: Team, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    dataset = new_dataset_name()
    first = (await upload(platform, team, tmp_path, dataset=dataset)).version
    second = (await upload(platform, team, tmp_path, dataset=dataset)).version
    mark = await audit_mark(platform)

    result = await delete(client, team.token(ProjectRole.MAINTAINER), second)

    assert result["__typename"] == "DeleteDatasetVersionSuccess"
    assert result["version"]["id"] == global_id(second)
    assert result["version"]["deletedAt"] is not None
    assert await events_since(platform, mark) == [("dataset.delete_version", "success")]
    assert (await version_row(platform, second.id)).deleted_at is not None
    shown = await listed_versions(client, team, dataset, include_deleted=False)
    assert [node["id"] for node in shown["versions"]["nodes"]] == [global_id(first)]
    assert shown["latestVersion"] == {"id": global_id(first)}
    everything = await listed_versions(client, team, dataset, include_deleted=True)
    assert [node["id"] for node in everything["versions"]["nodes"]] == [
        global_id(first),
        global_id(second),
    ]
    node = data_of(
        await graphql(
            client, NODE, {"id": global_id(second)}, token=team.token(ProjectRole.DEVELOPER)
        )
    )["node"]
    assert node == {
        "id": global_id(second),
        "number": 2,
        "deletedAt": result["version"]["deletedAt"],
    }


async def test_a_developer_may_not_delete_a_version(
    platform: Platform, team: Team, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    version = (await upload(platform, team, tmp_path)).version
    mark = await audit_mark(platform)

    status, body = await graphql(
        client, DELETE, {"id": global_id(version)}, token=team.token(ProjectRole.DEVELOPER)
    )

    assert status == 200
    assert error_codes(body) == ["FORBIDDEN"]
    assert (await version_row(platform, version.id)).deleted_at is None
    assert await events_since(platform, mark) == [("graphql.deleteDatasetVersion", "denied")]


async def test_a_version_cannot_be_deleted_twice(
    platform: Platform, team: Team, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    version = (await upload(platform, team, tmp_path)).version
    token = team.token(ProjectRole.MAINTAINER)
    first = await delete(client, token, version)
    deleted_at = (await version_row(platform, version.id)).deleted_at
    mark = await audit_mark(platform)

    second = await delete(client, token, version)

    assert first["__typename"] == "DeleteDatasetVersionSuccess"
    assert second["__typename"] == "ConflictError"
    assert "already deleted" in second["message"]
    # The first deletion's time stands.
    assert (await version_row(platform, version.id)).deleted_at == deleted_at
    assert await events_since(platform, mark) == [("dataset.delete_version", "failed")]


async def test_a_queued_or_running_job_keeps_its_version_from_being_deleted(
    platform: Platform, team: Team, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    version = (await upload(platform, team, tmp_path)).version
    token = team.token(ProjectRole.MAINTAINER)
    job = await submit_validation(
        platform, team.members[ProjectRole.DEVELOPER].principal, version.id
    )

    mark = await audit_mark(platform)
    while_queued = await delete(client, token, version)
    assert await claim_job(platform, job.id, TEST_WORKER, stale_after_s=30) is not None
    while_running = await delete(client, token, version)
    assert await finish_job(platform, job.id, TEST_WORKER, JobState.SUCCEEDED, "done")
    once_finished = await delete(client, token, version)

    for refused in (while_queued, while_running):
        assert refused["__typename"] == "ConflictError"
        assert refused["code"] == "CONFLICT"
        # It names what holds the version, so that the caller knows what to wait for.
        assert str(job.id) in refused["message"]
        assert "dataset.validate" in refused["message"]
    assert once_finished["__typename"] == "DeleteDatasetVersionSuccess"
    assert await events_since(platform, mark) == [
        ("dataset.delete_version", "failed"),
        ("dataset.delete_version", "failed"),
        ("dataset.delete_version", "success"),
    ]


@pytest.mark.parametrize(
    ("state", "blocks"),
    [
        (JobState.QUEUED, True),
        (JobState.RUNNING, True),
        (JobState.SUCCEEDED, False),
        (JobState.FAILED, False),
        (JobState.CANCELLED, False),
    ],
)
async def test_any_unfinished_job_that_names_the_version_keeps_it(
    platform: Platform, team: Team, tmp_path: Path, state: JobState, blocks: bool
) -> None:
    version = (await upload(platform, team, tmp_path)).version
    async with platform.metadata.transaction() as connection:
        # A job of another kind (a training run, say) that reads the version.
        job = await insert_job(
            connection,
            project_id=team.project_id,
            kind="model.train",
            payload={"dataset_version_id": str(version.id), "epochs": 3},
            created_by=None,
        )
        await connection.execute("UPDATE jobs SET state = $2 WHERE id = $1", job.id, state.value)
    maintainer = team.members[ProjectRole.MAINTAINER].principal

    if blocks:
        with pytest.raises(ConflictError, match=str(job.id)):
            await datasets.delete_version(
                platform, maintainer, version.id, models_using=models_trained_on
            )
        assert (await version_row(platform, version.id)).deleted_at is None
    else:
        deleted = await datasets.delete_version(
            platform, maintainer, version.id, models_using=models_trained_on
        )
        assert deleted.deleted_at is not None


async def test_a_job_about_another_version_does_not_keep_this_one(
    platform: Platform, team: Team, tmp_path: Path
) -> None:
    dataset = new_dataset_name()
    busy = (await upload(platform, team, tmp_path, dataset=dataset)).version
    idle = (await upload(platform, team, tmp_path, dataset=dataset)).version
    await submit_validation(platform, team.members[ProjectRole.OWNER].principal, busy.id)

    deleted = await datasets.delete_version(
        platform,
        team.members[ProjectRole.MAINTAINER].principal,
        idle.id,
        models_using=models_trained_on,
    )

    assert deleted.deleted_at is not None


async def test_the_same_content_uploaded_after_a_delete_makes_a_new_version(
    platform: Platform, team: Team, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    dataset, content = new_dataset_name(), "id,label\n1,a\n2,b\n"
    original = await upload(platform, team, tmp_path, dataset=dataset, content=content)
    again = await upload(platform, team, tmp_path, dataset=dataset, content=content)
    assert (again.created, again.version.id) == (False, original.version.id)

    await delete(client, team.token(ProjectRole.MAINTAINER), original.version)
    after = await upload(platform, team, tmp_path, dataset=dataset, content=content)

    assert after.created
    assert after.version.id != original.version.id
    assert after.version.number == original.version.number + 1
    assert after.version.content_sha256 == original.version.content_sha256
    assert after.version.deleted_at is None
    assert (await version_row(platform, original.version.id)).deleted_at is not None
    shown = await listed_versions(client, team, dataset, include_deleted=False)
    assert [node["id"] for node in shown["versions"]["nodes"]] == [global_id(after.version)]


async def finished_or_waiting_on_a_lock(platform: Platform, task: asyncio.Task[Any]) -> bool:
    if task.done():
        return True
    async with platform.metadata.acquire() as connection:
        return bool(
            await connection.fetchval(
                "SELECT exists (SELECT 1 FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock')"
            )
        )


async def test_a_validation_asked_for_while_a_delete_commits_is_not_left_dangling(
    platform: Platform, team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = (await upload(platform, team, tmp_path)).version
    developer = team.members[ProjectRole.DEVELOPER].principal
    check_users = datasets.version_users
    submitted: list[asyncio.Task[Any]] = []

    async def users_then_a_validation(connection: Any, version_id: uuid.UUID) -> list[str]:
        users = await check_users(connection, version_id)
        # The delete has found no user and not committed yet: a validation is asked for now.
        # Let it run until it is done, or until it waits for the delete's row lock.
        task = asyncio.create_task(submit_validation(platform, developer, version_id))
        submitted.append(task)
        settled = await poll_until(
            lambda: finished_or_waiting_on_a_lock(platform, task), timeout_s=10
        )
        assert settled is not None, "the validation neither finished nor waited on a lock"
        return users

    monkeypatch.setattr(datasets, "version_users", users_then_a_validation)
    await datasets.delete_version(
        platform,
        team.members[ProjectRole.MAINTAINER].principal,
        version.id,
        models_using=models_trained_on,
    )
    outcome = (await asyncio.gather(*submitted, return_exceptions=True))[0]

    # Either may win, but not both: a deleted version with a job waiting to read it is what
    # the refusal to delete exists to prevent.
    if isinstance(outcome, ConflictError):
        return
    assert not isinstance(outcome, BaseException), outcome
    async with platform.metadata.acquire() as connection:
        state = await connection.fetchval("SELECT state FROM jobs WHERE id = $1", outcome.id)
    deleted_at = (await version_row(platform, version.id)).deleted_at
    assert deleted_at is None or state not in {"QUEUED", "RUNNING"}, (
        f"the version was deleted while job {outcome.id} ({state}) still needs it"
    )


# Garbage collection ---------------------------------------------------------------------------


async def test_collection_removes_a_deleted_versions_artifact_and_keeps_live_ones(
    platform: Platform, team: Team, tmp_path: Path, store: FilesystemArtifactStore
) -> None:
    dataset = new_dataset_name()
    kept = (await upload(platform, team, tmp_path, dataset=dataset)).version
    gone = (await upload(platform, team, tmp_path, dataset=dataset)).version
    await datasets.delete_version(
        platform, team.members[ProjectRole.OWNER].principal, gone.id, models_using=models_trained_on
    )
    # However old, an artifact that a live version refers to stays.
    make_old(store.path_of(kept.artifact_key))
    mark = await audit_mark(platform)

    collection = await collect_garbage(platform, grace_s=0)

    assert not await store.exists(gone.artifact_key)
    assert await store.exists(kept.artifact_key)
    assert collection.deleted >= 1
    assert collection.kept_referenced >= 1
    assert await events_since(platform, mark) == [("artifacts.collect_garbage", "success")]
    # The kept version is whole: its data still reads back.
    table = await datasets.read_version_table(platform, kept)
    assert table.num_rows == 2


async def test_collection_spares_unreferenced_artifacts_younger_than_the_grace_period(
    platform: Platform, team: Team, tmp_path: Path, store: FilesystemArtifactStore
) -> None:
    # What an upload stores before it inserts the row that refers to it.
    in_flight = await store.put_bytes(uuid.uuid4().bytes)
    gone = (await upload(platform, team, tmp_path)).version
    await datasets.delete_version(
        platform, team.members[ProjectRole.OWNER].principal, gone.id, models_using=models_trained_on
    )

    young = await collect_garbage(platform, grace_s=HOUR_S)
    assert await store.exists(in_flight.key)
    assert await store.exists(gone.artifact_key)
    assert young.kept_young >= 2

    make_old(store.path_of(in_flight.key))
    make_old(store.path_of(gone.artifact_key))
    old = await collect_garbage(platform, grace_s=HOUR_S)

    assert not await store.exists(in_flight.key)
    assert not await store.exists(gone.artifact_key)
    assert old.deleted >= 2


async def test_collection_discards_stale_temporary_files_only(
    platform: Platform, store: FilesystemArtifactStore
) -> None:
    staging = store.root / "tmp"
    staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    stale = staging / f"interrupted-{uuid.uuid4().hex}"
    fresh = staging / f"writing-{uuid.uuid4().hex}"
    stale.write_bytes(b"half an upload from a crashed process")
    fresh.write_bytes(b"an upload being written now")
    make_old(stale)

    collection = await collect_garbage(platform, grace_s=HOUR_S)

    assert not stale.exists()
    assert fresh.exists()
    assert collection.discarded_incomplete == 1


async def test_collection_uses_the_configured_grace_period_by_default(
    platform: Platform, config: Config, store: FilesystemArtifactStore
) -> None:
    assert config.gc_grace_s > 0
    in_flight = await store.put_bytes(uuid.uuid4().bytes)

    collection = await collect_garbage(platform)

    assert await store.exists(in_flight.key)
    assert collection.kept_young >= 1
    make_old(store.path_of(in_flight.key), config.gc_grace_s + 60)
    await collect_garbage(platform)
    assert not await store.exists(in_flight.key)


@pytest.fixture
def gc_environment(config: Config) -> dict[str, str]:
    """The environment of an `aiaas gc` pointed at this module's database and artifact store."""
    return clean_environment(**config_environment(config))


async def test_the_gc_command_collects_and_reports(
    platform: Platform,
    team: Team,
    tmp_path: Path,
    store: FilesystemArtifactStore,
    gc_environment: dict[str, str],
) -> None:
    kept = (await upload(platform, team, tmp_path)).version
    gone = (await upload(platform, team, tmp_path)).version
    await datasets.delete_version(
        platform, team.members[ProjectRole.OWNER].principal, gone.id, models_using=models_trained_on
    )
    mark = await audit_mark(platform)

    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "aiaas", "gc", "--grace-seconds", "0"],
        env=gc_environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deleted ")
    assert "artifact(s); kept " in result.stdout
    assert not await store.exists(gone.artifact_key)
    assert await store.exists(kept.artifact_key)
    assert await events_since(platform, mark) == [("artifacts.collect_garbage", "success")]
