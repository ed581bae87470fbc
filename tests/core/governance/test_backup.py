"""Backup and restore through the core functions (`aiaas.core.governance.backup`): what an
archive holds, that a restore into a fresh database and artifact directory answers every GraphQL
query as the original did, and that a corrupt, truncated or foreign archive, or an instance that
is not empty, is refused with nothing written. How the archive is sealed (encryption, the
manifest's authentication, master keys, the unsealed format) is test_backup_sealing.py's."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tarfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aiaas import migrations
from aiaas.app import create_app
from aiaas.core.auth import Principal
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, build_config
from aiaas.core.data.datasets import (
    DatasetVersion,
    delete_version,
    get_version,
    read_version_table,
    set_expectations,
    transform_version,
    upload_version,
)
from aiaas.core.data.quality import run_validation, submit_validation
from aiaas.core.errors import BackupError, ConfigError, ConflictError
from aiaas.core.governance.backup import (
    FORMAT,
    MANIFEST,
    MANIFEST_TAG,
    Manifest,
    create_backup,
    restore_backup,
    tables_in_load_order,
    verify_archive,
)
from aiaas.core.governance.crypto import MasterKey, sealed_project
from aiaas.core.governance.vault import Vault
from aiaas.core.identity import accounts as identity
from aiaas.core.identity.access import ProjectRole
from aiaas.core.identity.accounts import BOOTSTRAP_ADMIN
from aiaas.core.identity.members import add_member
from aiaas.core.identity.projects import archive_project, create_project
from aiaas.core.jobs import JobState, claim_job, finish_job
from aiaas.core.platform import Platform
from aiaas.core.training import models_trained_on
from aiaas.graphql.relay import to_global_id
from backup_archives import (
    archive_members,
    edit_manifest,
    first_member,
    member_span,
    reauthenticated,
    relist,
    resealed_table,
    write_archive,
)
from support import Services, create_database_from_template, drop_database, with_database

BACKUP_ACTIONS = {"backup.create", "backup.restore"}
"""Audit events the backup and the restore write themselves: the only legitimate difference
between the original and the restored instance."""

CUSTOMERS_V1 = "id,name,age,country\n" + "".join(
    f"{n},customer {n},{20 + n % 50},{'FR' if n % 2 else 'DE'}\n" for n in range(1, 61)
)
# The second upload has a missing age and a duplicated row, for the cleaning to remove.
CUSTOMERS_V2 = CUSTOMERS_V1 + "61,late customer,,FR\n" + "7,customer 7,27,FR\n"
EXPECTATIONS: list[dict[str, Any]] = [
    {"kind": "not_null", "column": "age"},
    {"kind": "range", "column": "age", "min": 0, "max": 130},
    {"kind": "unique", "columns": ["id"]},
    {"kind": "allowed_values", "column": "country", "values": ["FR", "DE"], "blocking": False},
]
CLEANING: list[dict[str, Any]] = [
    {"kind": "drop_nulls", "columns": ["age"]},
    {"kind": "drop_duplicates"},
]


# The instance that is backed up --------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    admin_token: str
    member_token: str
    """Alice's: a maintainer of alpha and nothing else."""
    slugs: tuple[str, ...]
    versions: tuple[DatasetVersion, ...]
    """Every dataset version, the deleted one included."""


async def admin_principal(platform: Platform) -> Principal:
    async with platform.metadata.acquire() as connection:
        admin_id = await connection.fetchval(
            "SELECT id FROM users WHERE username = $1", BOOTSTRAP_ADMIN
        )
    return Principal(user_id=admin_id, username="admin", is_admin=True, authenticated_by="test")


async def validate(platform: Platform, admin: Principal, version_id: uuid.UUID) -> None:
    """Run the dataset.validate job the way a worker does: claim it, run it, finish it."""
    job = await submit_validation(platform, admin, version_id)
    claimed = await claim_job(platform, job.id, "backup-test-worker", 60)
    assert claimed is not None
    note = await run_validation(platform, claimed)
    await finish_job(platform, job.id, "backup-test-worker", JobState.SUCCEEDED, note)


async def build_instance(platform: Platform, admin_token: str, work: Path) -> Instance:
    """Two projects (one archived), three users with members' roles, a dataset with a deleted
    version, a cleaned version and quality reports (one failing), and a Parquet dataset."""
    admin = await admin_principal(platform)
    alice = await identity.create_user(platform, None, username="alice", display_name="Alice")
    bob = await identity.create_user(platform, None, username="bob", display_name="Bob")
    alice_token = await identity.create_api_token(platform, None, user_id=alice.id, name="laptop")
    old_token = await identity.create_api_token(platform, None, user_id=bob.id, name="old")
    await identity.revoke_token(platform, None, old_token.id)

    alpha = await create_project(
        platform, admin, slug="alpha", name="Alpha", description="customer data"
    )
    beta = await create_project(platform, admin, slug="beta", name="Beta")
    await add_member(platform, admin, alpha.id, username="alice", role=ProjectRole.MAINTAINER)
    await add_member(platform, admin, alpha.id, username="bob", role=ProjectRole.VIEWER)
    await add_member(platform, admin, beta.id, username="bob", role=ProjectRole.DEVELOPER)

    (work / "v1.csv").write_text(CUSTOMERS_V1)
    (work / "v2.csv").write_text(CUSTOMERS_V2)
    first = await upload_version(
        platform, admin, alpha.id, dataset_name="customers", source=work / "v1.csv"
    )
    second = await upload_version(
        platform, admin, alpha.id, dataset_name="customers", source=work / "v2.csv"
    )
    cleaned = await transform_version(platform, admin, second.version.id, CLEANING)
    await delete_version(platform, admin, first.version.id, models_using=models_trained_on)
    await set_expectations(platform, admin, second.version.dataset_id, EXPECTATIONS)
    await validate(platform, admin, second.version.id)
    await validate(platform, admin, cleaned.version.id)

    events = pa.table({"at": pa.array([1, 2, 3], pa.int64()), "kind": ["a", "b", "a"]})
    pq.write_table(events, work / "events.parquet")
    beta_events = await upload_version(
        platform, admin, beta.id, dataset_name="events", source=work / "events.parquet"
    )
    await archive_project(platform, admin, beta.id)

    async with platform.metadata.acquire() as connection:
        versions = [
            await get_version(connection, new.version.id)
            for new in (first, second, cleaned, beta_events)
        ]
    assert versions[0].deleted_at is not None
    assert versions[2].parent_version_id == versions[1].id
    return Instance(
        admin_token=admin_token,
        member_token=alice_token.secret,
        slugs=("alpha", "beta"),
        versions=tuple(versions),
    )


# What the API answers ------------------------------------------------------------------------

VERSION_FIELDS = """
  id number contentSha256 sourceFormat rowCount sizeBytes columns { name type } columnStats
  preview transformation createdAt deletedAt parent { id number } dataset { id name }
  qualityReport {
    id createdAt passed qConsistency qCompleteness qAccuracy q blockingFailures expectations
    checks { name kind dimension passed blocking failingRows message examples }
  }
"""
QUERIES: dict[str, str] = {
    "viewer": "{ viewer { id username displayName isAdmin createdAt "
    "apiTokens { id name prefix kind createdAt expiresAt revokedAt } } }",
    "users": "{ users(first: 100) { nodes { id username displayName isAdmin createdAt } } }",
    "projects": """{ projects(first: 100, includeArchived: true) { nodes {
        id slug name description createdAt archivedAt isArchived createdBy { username }
        viewerRole members(first: 100) { nodes { role addedAt user { id username } } }
    } } }""",
    "datasets": """query($slug: String!) { project(slug: $slug) { datasets(first: 100) { nodes {
        id name description createdAt expectations latestVersion { id number }
        versions(first: 100, includeDeleted: true) { nodes { """
    + VERSION_FIELDS
    + "} } } } } }",
    "live-versions": """query($slug: String!) { project(slug: $slug) { datasets { nodes {
        versions { nodes { id number } } } } } }""",
    "audit-events": """query($slug: String!) { project(slug: $slug) {
        auditEvents(first: 100) { nodes {
            id occurredAt actor action outcome objectType objectId requestId details
        } }
    } }""",
}
PROJECT_QUERIES = {"datasets", "live-versions", "audit-events"}
ADMIN_QUERIES = {"users", "audit-events"}
"""Refused to a maintainer: asked as the admin only."""
NODE_QUERY = "query($id: ID!) { node(id: $id) { ... on DatasetVersion { " + VERSION_FIELDS + "} } }"


def without_backup_events(answer: Any) -> Any:
    """The answer, less the audit events that the backup and the restore wrote."""
    if isinstance(answer, dict):
        return {key: without_backup_events(value) for key, value in answer.items()}
    if isinstance(answer, list):
        return [
            without_backup_events(item)
            for item in answer
            if not (isinstance(item, dict) and item.get("action") in BACKUP_ACTIONS)
        ]
    return answer


async def ask(client: httpx.AsyncClient, token: str, query: str, **variables: Any) -> Any:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {token}"},
    )
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    return without_backup_events(body["data"])


async def everything_the_api_answers(platform: Platform, instance: Instance) -> dict[str, Any]:
    """The answer to every query, as the admin and as a member, keyed by a readable name."""
    answers: dict[str, Any] = {}
    transport = httpx.ASGITransport(app=create_app(platform=platform))
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        for who, token in (("admin", instance.admin_token), ("member", instance.member_token)):
            for name, query in QUERIES.items():
                if who == "member" and name in ADMIN_QUERIES:
                    continue
                if name in PROJECT_QUERIES:
                    for slug in instance.slugs:
                        answers[f"{who}:{name}:{slug}"] = await ask(client, token, query, slug=slug)
                else:
                    answers[f"{who}:{name}"] = await ask(client, token, query)
        for version in instance.versions:
            global_id = to_global_id("DatasetVersion", version.id)
            answers[f"admin:node:{version.id}"] = await ask(
                client, instance.admin_token, NODE_QUERY, id=global_id
            )
    return answers


# Instances to restore into -------------------------------------------------------------------


def config_for(config: Config, database_url: str, data_dir: Path, **changes: Any) -> Config:
    """The module's config on another database and data directory, with the same master key."""
    return build_config(
        {
            **config.model_dump(),
            "database_url": database_url,
            "data_dir": data_dir,
            "artifact_dir": None,
            "queue_name": f"{config.queue_name}:restored:{uuid.uuid4().hex[:6]}",
            **changes,
        }
    )


async def operator_platform(config: Config) -> Platform:
    """A platform as `aiaas backup restore` starts one: the database alone."""
    platform = create_platform(config)
    await platform.start(run_startup_hooks=False, with_redis=False)
    return platform


async def row_counts(platform: Platform) -> dict[str, int]:
    async with platform.metadata.acquire() as connection:
        return {
            table: await connection.fetchval(f'SELECT count(*) FROM "{table}"')
            for table in await tables_in_load_order(connection)
        }


async def artifact_keys(platform: Platform) -> list[str]:
    # `keys()` is the store's listing method, not a dict's: SIM118 does not apply.
    return [key async for key in platform.artifacts.keys()]  # noqa: SIM118


async def assert_empty(platform: Platform) -> None:
    counts = await row_counts(platform)
    assert counts and not any(counts.values()), counts
    assert await artifact_keys(platform) == []


@pytest.fixture(scope="module")
def master(config: Config) -> MasterKey:
    """The master key the module's backups are sealed with."""
    return MasterKey.parse(str(config.master_key))


@pytest.fixture(scope="module")
async def instance(platform: Platform, admin_token: str, tmp_path_factory: Any) -> Instance:
    return await build_instance(platform, admin_token, tmp_path_factory.mktemp("uploads"))


@dataclass(frozen=True)
class Backup:
    path: Path
    manifest: Manifest
    answers: dict[str, Any]
    """What the original instance answered, right after the backup."""


@pytest.fixture(scope="module")
async def backup(platform: Platform, instance: Instance, tmp_path_factory: Any) -> Backup:
    path = tmp_path_factory.mktemp("backups") / "instance.aiaas-backup"
    manifest = await create_backup(platform, path)
    return Backup(path, manifest, await everything_the_api_answers(platform, instance))


@pytest.fixture(scope="module")
async def restored(
    services: Services, config: Config, backup: Backup, tmp_path_factory: Any
) -> AsyncIterator[Platform]:
    """The backup restored into an empty database (migrated here to the archive's revision) and
    an empty artifact directory; then a platform started afresh on them, as an operator would."""
    name = await create_database_from_template(services, "template1", "test_restored")
    database_url = with_database(services.server_url, name)
    await migrations.upgrade(database_url, backup.manifest.schema_revision)
    restored_config = config_for(config, database_url, tmp_path_factory.mktemp("restored"))
    restoring = await operator_platform(restored_config)
    try:
        await restore_backup(restoring, backup.path)
    finally:
        await restoring.stop()
    platform = create_platform(restored_config)
    await platform.start()
    yield platform
    await platform.stop()
    await drop_database(services, name)


@pytest.fixture
async def empty_instance(
    services: Services, template_database: str, config: Config, tmp_path: Path
) -> AsyncIterator[Platform]:
    """A migrated database with no rows and an artifact directory with no objects."""
    name = await create_database_from_template(services, template_database, "test_restore_into")
    platform = await operator_platform(
        config_for(config, with_database(services.server_url, name), tmp_path / "data")
    )
    yield platform
    await platform.stop()
    await drop_database(services, name)


# What an archive holds -----------------------------------------------------------------------


async def test_the_archive_holds_every_table_every_artifact_and_a_manifest_of_checksums(
    platform: Platform, backup: Backup, instance: Instance
) -> None:
    members = archive_members(backup.path)
    async with platform.metadata.acquire() as connection:
        tables = await tables_in_load_order(connection)
        referenced = {
            row["artifact_key"]
            for row in await connection.fetch("SELECT artifact_key FROM dataset_versions")
        }
    keys = await artifact_keys(platform)
    manifest = json.loads(members[MANIFEST])

    assert set(members) == {
        MANIFEST,
        MANIFEST_TAG,
        *(f"tables/{table}.copy.sealed" for table in tables),
        *(f"artifacts/{key}" for key in keys),
    }
    assert list(members)[-2:] == [MANIFEST, MANIFEST_TAG]
    assert {"users", "projects", "project_members", "api_tokens", "audit_events"} <= set(tables)
    assert {"datasets", "dataset_versions", "quality_reports", "data_keys", "jobs"} <= set(tables)
    assert referenced <= set(keys)  # the deleted version's data too: nothing collected it
    assert manifest["format"] == FORMAT
    assert manifest["schema_revision"] == migrations.head_revision()
    listed = [*manifest["tables"], *manifest["artifacts"]]
    assert sorted(entry["member"] for entry in listed) == sorted(
        set(members) - {MANIFEST, MANIFEST_TAG}
    )
    for entry in listed:
        content = members[entry["member"]]
        assert entry["bytes"] == len(content), entry["member"]
        assert entry["sha256"] == hashlib.sha256(content).hexdigest(), entry["member"]
    for entry in manifest["artifacts"]:
        assert entry["key"] == entry["sha256"]


async def test_the_archive_holds_the_artifacts_sealed_as_stored(
    platform: Platform, backup: Backup, instance: Instance
) -> None:
    members = archive_members(backup.path)

    for version in instance.versions:
        sealed = members[f"artifacts/{version.artifact_key}"]
        assert sealed == await platform.artifacts.read_bytes(version.artifact_key)
        assert sealed_project(sealed) == version.project_id
    assert b"customer 17" not in members[f"artifacts/{instance.versions[1].artifact_key}"]


async def test_the_manifest_counts_the_rows_of_the_snapshot(
    platform: Platform, backup: Backup
) -> None:
    counts = await row_counts(platform)

    for table in backup.manifest.tables:
        if table["name"] != "audit_events":  # the backup itself audits after its snapshot
            assert table["rows"] == counts[table["name"]], table["name"]
    assert {table["name"]: table["rows"] for table in backup.manifest.tables}["users"] == 3


async def test_verify_passes_on_a_sound_archive(backup: Backup, master: MasterKey) -> None:
    unchecked = verify_archive(backup.path)
    authenticated = verify_archive(backup.path, {master.id: master})

    for check in (unchecked, authenticated):
        assert check.manifest.members() == backup.manifest.members()
        assert check.manifest.schema_revision == migrations.head_revision()
    assert unchecked.authenticated_by is None
    assert authenticated.authenticated_by == master.id


async def test_creating_a_backup_is_audited(platform: Platform, backup: Backup) -> None:
    async with platform.metadata.acquire() as connection:
        details = await connection.fetchval(
            "SELECT details FROM audit_events WHERE action = 'backup.create' AND object_id = $1",
            backup.path.name,
        )

    assert details == {
        "tables": len(backup.manifest.tables),
        "artifacts": len(backup.manifest.artifacts),
        "master_key_id": MasterKey.parse(str(platform.config.master_key)).id,
    }


# A restore answers as the original did -------------------------------------------------------


async def test_the_restored_instance_answers_every_query_as_the_original(
    restored: Platform, backup: Backup, instance: Instance
) -> None:
    answers = await everything_the_api_answers(restored, instance)

    assert answers.keys() == backup.answers.keys()
    for name, answer in backup.answers.items():
        assert answers[name] == answer, name


async def test_the_comparison_covers_what_was_built(backup: Backup, instance: Instance) -> None:
    # Guards the test above against comparing two empty answers.
    projects = backup.answers["admin:projects"]["projects"]["nodes"]
    assert [project["slug"] for project in projects] == ["alpha", "beta"]
    assert len(projects[0]["members"]["nodes"]) == 3
    customers = backup.answers["admin:datasets:alpha"]["project"]["datasets"]["nodes"][0]
    versions = customers["versions"]["nodes"]
    assert [version["number"] for version in versions] == [1, 2, 3]
    assert versions[0]["deletedAt"] is not None
    assert versions[2]["transformation"] == CLEANING
    assert versions[1]["qualityReport"]["passed"] is False
    assert versions[2]["qualityReport"]["passed"] is True
    assert customers["expectations"] == EXPECTATIONS
    member_projects = backup.answers["member:projects"]["projects"]["nodes"]
    assert [project["slug"] for project in member_projects] == ["alpha"]
    assert backup.answers["member:datasets:beta"] == {"project": None}
    events = backup.answers["admin:audit-events:alpha"]["project"]["auditEvents"]["nodes"]
    assert {"dataset.upload", "dataset.transform", "member.add"} <= {e["action"] for e in events}


async def test_the_restored_artifacts_open_with_the_same_data(
    restored: Platform, platform: Platform, instance: Instance
) -> None:
    assert sorted(await artifact_keys(restored)) == sorted(await artifact_keys(platform))
    for version in instance.versions:
        original = await read_version_table(platform, version)
        copy = await read_version_table(restored, version)
        assert copy.equals(original), version.number


async def test_the_restore_is_audited_and_identities_carry_on(restored: Platform) -> None:
    async with restored.metadata.acquire() as connection:
        restores = await connection.fetch(
            "SELECT id, details FROM audit_events WHERE action = 'backup.restore'"
        )
        highest_restored = await connection.fetchval(
            "SELECT max(id) FROM audit_events WHERE action <> 'backup.restore'"
        )

    assert len(restores) == 1
    assert restores[0]["details"]["format"] == FORMAT
    assert restores[0]["details"]["authenticated_by"] == (
        MasterKey.parse(str(restored.config.master_key)).id
    )
    # The identity sequence carries on after the restored rows instead of colliding with them.
    assert restores[0]["id"] > highest_restored


async def test_the_restored_data_needs_the_master_key_it_was_wrapped_with(
    restored: Platform, instance: Instance
) -> None:
    other = build_config(
        {**restored.config.model_dump(), "master_key": MasterKey.generate().encoded()}
    )
    vault = Vault(other, restored.metadata, restored.artifacts)

    with pytest.raises(ConfigError, match="not configured"):
        await vault.data_key(instance.versions[0].project_id)


# Corrupt, truncated and foreign archives -----------------------------------------------------


BadArchive = Callable[[Path, Path, MasterKey], None]
"""Write a bad archive (the second path) from the good one; the master key is there for the
edits that someone holding it could make."""


def member_header(path: Path, name: str) -> int:
    with tarfile.open(path) as archive:
        return archive.getmember(name).offset


def first_artifact(path: Path) -> str:
    return first_member(path, "artifacts/")


def flip_byte_in(name: Callable[[Path], str]) -> BadArchive:
    def corrupt(source: Path, target: Path, _: MasterKey) -> None:
        start, size = member_span(source, name(source))
        data = bytearray(source.read_bytes())
        data[start + size // 2] ^= 0x01
        target.write_bytes(bytes(data))

    return corrupt


def cut_at(where: Callable[[Path], int]) -> BadArchive:
    def cut(source: Path, target: Path, _: MasterKey) -> None:
        target.write_bytes(source.read_bytes()[: where(source)])

    return cut


def middle_of(name: Callable[[Path], str]) -> Callable[[Path], int]:
    def position(path: Path) -> int:
        start, size = member_span(path, name(path))
        return start + size // 2

    return position


def rewritten(edit: Callable[[dict[str, bytes], MasterKey], None]) -> BadArchive:
    """An archive rebuilt from the source's members after `edit` changed them."""

    def rewrite(source: Path, target: Path, master: MasterKey) -> None:
        members = archive_members(source)
        edit(members, master)
        write_archive(target, members)

    return rewrite


def authentic_manifest_edit(
    change: Callable[[dict[str, Any]], None],
) -> Callable[[dict[str, bytes], MasterKey], None]:
    """`change` made to the manifest, which is then re-authenticated with the master key: the
    checks behind the manifest's authentication must hold on their own."""

    def edit(members: dict[str, bytes], master: MasterKey) -> None:
        edit_manifest(members, change, master)

    return edit


def unlist_table(table: str) -> Callable[[dict[str, Any]], None]:
    def change(manifest: dict[str, Any]) -> None:
        manifest["tables"] = [entry for entry in manifest["tables"] if entry["name"] != table]

    return change


def add_unlisted_member(members: dict[str, bytes], _: MasterKey) -> None:
    manifest, tag = members.pop(MANIFEST), members.pop(MANIFEST_TAG)
    members["tables/extra.copy.sealed"] = b"AIAE"
    members[MANIFEST], members[MANIFEST_TAG] = manifest, tag


def drop_member(name: str) -> Callable[[dict[str, bytes], MasterKey], None]:
    def edit(members: dict[str, bytes], _: MasterKey) -> None:
        del members[name]

    return edit


def write(content: bytes) -> BadArchive:
    def replace(_: Path, target: Path, __: MasterKey) -> None:
        target.write_bytes(content)

    return replace


def gzipped(source: Path, target: Path, _: MasterKey) -> None:
    with tarfile.open(target, "w:gz") as archive:
        archive.add(source, arcname="inside.tar")


USERS = "tables/users.copy.sealed"


def users_table(_: Path) -> str:
    return USERS


def manifest_member(_: Path) -> str:
    return MANIFEST


def replace_manifest(content: bytes) -> Callable[[dict[str, bytes], MasterKey], None]:
    def edit(members: dict[str, bytes], master: MasterKey) -> None:
        members[MANIFEST] = content
        reauthenticated(members, master)

    return edit


# name: (make a bad archive from the good one, what the refusal says). Each is refused alike by
# `verify_archive` with and without the master key, and by a restore.
BAD_ARCHIVES: list[Any] = [
    pytest.param(
        flip_byte_in(users_table),
        f"{USERS} does not match its checksum",
        id="byte-flipped-in-a-table",
    ),
    pytest.param(
        flip_byte_in(first_artifact),
        r"artifacts/[0-9a-f]{64} does not match its checksum",
        id="byte-flipped-in-an-artifact",
    ),
    pytest.param(
        cut_at(lambda path: member_header(path, MANIFEST)),
        "no manifest",
        id="truncated-before-the-manifest",
    ),
    pytest.param(
        cut_at(lambda path: member_header(path, MANIFEST_TAG)),
        f"has no {MANIFEST_TAG}: it is incomplete",
        id="truncated-before-the-manifest-tag",
    ),
    pytest.param(
        cut_at(middle_of(users_table)),
        "truncated",
        id="truncated-inside-a-table",
    ),
    pytest.param(
        cut_at(middle_of(first_artifact)),
        "truncated",
        id="truncated-inside-an-artifact",
    ),
    pytest.param(
        cut_at(middle_of(manifest_member)),
        "truncated",
        id="truncated-inside-the-manifest",
    ),
    pytest.param(
        cut_at(lambda path: 100), "unreadable or truncated", id="truncated-inside-the-first-header"
    ),
    pytest.param(
        rewritten(authentic_manifest_edit(unlist_table("users"))),
        f"members not in the manifest: {USERS}",
        id="member-missing-from-the-manifest",
    ),
    pytest.param(
        rewritten(add_unlisted_member),
        "members not in the manifest: tables/extra.copy.sealed",
        id="extra-member",
    ),
    pytest.param(
        rewritten(drop_member("tables/projects.copy.sealed")),
        "tables/projects.copy.sealed is missing from the archive",
        id="member-missing-from-the-archive",
    ),
    pytest.param(rewritten(drop_member(MANIFEST)), "has no manifest", id="no-manifest"),
    pytest.param(
        rewritten(drop_member(MANIFEST_TAG)), f"has no {MANIFEST_TAG}", id="no-manifest-tag"
    ),
    pytest.param(
        rewritten(authentic_manifest_edit(lambda manifest: manifest.update(format="other"))),
        "not an aiaas backup archive: unknown format 'other'",
        id="another-format",
    ),
    pytest.param(
        rewritten(replace_manifest(b"{not json")), "manifest is unreadable", id="manifest-not-json"
    ),
    pytest.param(
        rewritten(replace_manifest(b"[]")),
        "manifest is unreadable",
        id="manifest-not-an-object",
    ),
    pytest.param(
        rewritten(authentic_manifest_edit(lambda manifest: manifest.pop("sealing"))),
        "manifest is unreadable: bad sealing section",
        id="manifest-without-its-sealing",
    ),
    pytest.param(write(b"id,name\n1,Ada\n" * 100), "unreadable or truncated", id="not-an-archive"),
    pytest.param(write(b""), "unreadable or truncated", id="empty-file"),
    pytest.param(gzipped, "unreadable or truncated", id="compressed-archive"),
]


@pytest.mark.parametrize("with_key", [False, True], ids=["without-the-key", "with-the-key"])
@pytest.mark.parametrize(("make_bad", "refusal"), BAD_ARCHIVES)
async def test_verify_refuses_a_bad_archive(
    backup: Backup,
    master: MasterKey,
    tmp_path: Path,
    make_bad: BadArchive,
    refusal: str,
    with_key: bool,
) -> None:
    bad = tmp_path / "bad.aiaas-backup"
    make_bad(backup.path, bad, master)

    with pytest.raises(BackupError, match=refusal):
        verify_archive(bad, {master.id: master} if with_key else None)


@pytest.mark.parametrize(("make_bad", "refusal"), BAD_ARCHIVES)
async def test_restore_refuses_a_bad_archive_and_writes_nothing(
    backup: Backup,
    master: MasterKey,
    empty_instance: Platform,
    tmp_path: Path,
    make_bad: BadArchive,
    refusal: str,
) -> None:
    bad = tmp_path / "bad.aiaas-backup"
    make_bad(backup.path, bad, master)

    with pytest.raises(BackupError, match=refusal):
        await restore_backup(empty_instance, bad)

    await assert_empty(empty_instance)


async def test_a_restore_that_fails_to_load_a_table_leaves_nothing_behind(
    backup: Backup, master: MasterKey, empty_instance: Platform, tmp_path: Path
) -> None:
    # Sealed, listed and authenticated, yet content PostgreSQL refuses: the artifacts are
    # written before the tables load, and must be removed again when the load fails.
    members = archive_members(backup.path)
    await resealed_table(members, master, "users", b"PGCOPY\n\xff\r\n\x00 not binary COPY data")
    bad = tmp_path / "bad.aiaas-backup"
    write_archive(bad, members)
    verify_archive(bad, {master.id: master})

    with pytest.raises(asyncpg.PostgresError):
        await restore_backup(empty_instance, bad)

    await assert_empty(empty_instance)


async def test_a_restore_never_writes_outside_its_work_directory(
    backup: Backup,
    master: MasterKey,
    empty_instance: Platform,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Even an authentic manifest (someone with the key) vouches only for member names of the
    # archive's form: a name that climbs out of the extraction directory must be refused.
    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(work))
    escape = "tables/../../../escaped.copy.sealed"  # from <work>/<tmpdir>/tables to tmp_path
    content = b"AIAE"

    members = archive_members(backup.path)
    members = {escape: content, **members}
    edit_manifest(
        members,
        lambda manifest: manifest["tables"].append(
            {"member": escape, "name": "escaped", "rows": 0, "bytes": 0, "sha256": ""}
        ),
        master,
    )
    edit_manifest(members, lambda manifest: relist(manifest, escape, content), master)
    bad = tmp_path / "bad.aiaas-backup"
    write_archive(bad, members)

    refusal: Exception | None = None
    try:
        await restore_backup(empty_instance, bad)
    except (BackupError, asyncpg.PostgresError) as error:
        refusal = error
    escaped = tmp_path / "escaped.copy.sealed"
    written_outside = escaped.exists()
    escaped.unlink(missing_ok=True)

    assert not written_outside, "the restore wrote a file outside its work directory"
    assert isinstance(refusal, BackupError), refusal
    await assert_empty(empty_instance)


# Only into an empty instance -----------------------------------------------------------------


async def test_a_restore_into_an_instance_with_data_is_refused_and_changes_nothing(
    platform: Platform, backup: Backup
) -> None:
    counts, keys = await row_counts(platform), await artifact_keys(platform)

    with pytest.raises(ConflictError, match=r"needs an empty instance: table \w+ holds data"):
        await restore_backup(platform, backup.path)

    assert await row_counts(platform) == counts
    assert await artifact_keys(platform) == keys


async def test_a_restore_into_an_artifact_store_with_objects_is_refused(
    backup: Backup, empty_instance: Platform
) -> None:
    stray = await empty_instance.artifacts.put_bytes(b"left over from another instance")

    with pytest.raises(ConflictError, match="the artifact store holds data"):
        await restore_backup(empty_instance, backup.path)

    assert await artifact_keys(empty_instance) == [stray.key]
    counts = await row_counts(empty_instance)
    assert not any(counts.values()), counts


async def test_a_restore_into_a_database_at_another_revision_is_refused(
    services: Services, config: Config, backup: Backup, tmp_path: Path
) -> None:
    name = await create_database_from_template(services, "template1", "test_restore_older")
    database_url = with_database(services.server_url, name)
    try:
        await migrations.upgrade(database_url, "0002")
        target = create_platform(config_for(config, database_url, tmp_path / "data"))
        await target.start(run_startup_hooks=False, with_redis=False, check_schema=False)
        try:
            with pytest.raises(ConflictError, match="migrate it to the archive's revision"):
                await restore_backup(target, backup.path)
            assert await artifact_keys(target) == []
        finally:
            await target.stop()
    finally:
        await drop_database(services, name)


async def test_a_backup_of_an_empty_instance_restores(
    empty_instance: Platform, services: Services, template_database: str, tmp_path: Path
) -> None:
    path = tmp_path / "empty.aiaas-backup"
    manifest = await create_backup(empty_instance, path)
    # The backup audited itself: restoring needs a target without that event.
    name = await create_database_from_template(services, template_database, "test_restore_empty")
    target = await operator_platform(
        config_for(
            empty_instance.config, with_database(services.server_url, name), tmp_path / "target"
        )
    )
    try:
        await restore_backup(target, path)
        assert manifest.artifacts == []
        assert await row_counts(target) == {
            **dict.fromkeys(await row_counts(empty_instance), 0),
            "audit_events": 1,
        }
    finally:
        await target.stop()
        await drop_database(services, name)


def leftovers(directory: Path) -> list[Path]:
    """Partial archives or work directories a backup left behind."""
    return [path for path in directory.iterdir() if path.name.startswith((".", "tmp"))]


async def test_concurrent_backups_each_write_a_whole_archive(
    platform: Platform, instance: Instance, tmp_path: Path
) -> None:
    paths = [tmp_path / f"backup-{n}.aiaas-backup" for n in range(2)]

    manifests = await asyncio.gather(*(create_backup(platform, path) for path in paths))

    for path, manifest in zip(paths, manifests, strict=True):
        assert verify_archive(path).manifest.members() == manifest.members()
    assert leftovers(tmp_path) == []
