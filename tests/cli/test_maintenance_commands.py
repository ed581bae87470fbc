"""`aiaas keys` and `aiaas backup` as real processes: making a master key, rotating it without
rewriting an artifact, the master key production cannot start without, and a whole instance
(built through the GraphQL API, validated by a real arq worker) backed up, verified and restored
into an empty database and artifact directory that then answers every query as the original."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from arq.worker import Worker

from aiaas import migrations
from aiaas.app import create_app
from aiaas.core.auth import Principal
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, build_config
from aiaas.core.errors import ConfigError
from aiaas.core.governance.backup import (
    FORMAT,
    MANIFEST,
    MANIFEST_TAG,
    UNSEALED_FORMAT,
    tables_in_load_order,
)
from aiaas.core.governance.crypto import MasterKey
from aiaas.core.governance.vault import VAULT, Vault
from aiaas.core.identity import accounts as identity
from aiaas.core.identity.projects import create_project
from aiaas.core.platform import Platform
from aiaas.graphql.view import CSRF_HEADER
from aiaas.workers.settings import worker_settings
from backup_archives import (
    archive_members,
    first_member,
    member_span,
    reauthenticated,
    unsealed_archive,
    write_archive,
)
from support import (
    Services,
    clean_environment,
    create_database_from_template,
    drop_database,
    new_account,
    with_database,
)

pytestmark = pytest.mark.slow

AIAAS = [sys.executable, "-m", "aiaas"]


def run_cli(
    *arguments: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AIAAS, *arguments], env=env, capture_output=True, text=True, timeout=timeout
    )


def environment_for(config: Config, **variables: str) -> dict[str, str]:
    """An `aiaas` process on the config's database and data directory, in production mode."""
    environment = {
        "AIAAS_DATABASE_URL": str(config.database_url),
        "AIAAS_REDIS_URL": str(config.redis_url),
        "AIAAS_DATA_DIR": str(config.data_dir),
        "AIAAS_DISABLE_PLUGIN_AUTOLOAD": "1",
        "AIAAS_MASTER_KEY": str(config.master_key),
    }
    environment.update(variables)
    return clean_environment(**environment)


def config_for(config: Config, database_url: str, data_dir: Path, **changes: Any) -> Config:
    return build_config(
        {
            **config.model_dump(),
            "database_url": database_url,
            "data_dir": data_dir,
            "artifact_dir": None,
            "queue_name": f"{config.queue_name}:{uuid.uuid4().hex[:6]}",
            **changes,
        }
    )


def object_files(config: Config) -> dict[str, tuple[bytes, int]]:
    """Every object in the filesystem artifact store: its bytes and its mtime (ns), by path."""
    objects = config.resolved_artifact_dir / "objects"
    if not objects.exists():
        return {}
    return {
        str(path.relative_to(objects)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(objects.rglob("*"))
        if path.is_file()
    }


# aiaas keys generate --------------------------------------------------------------------------


def test_keys_generate_prints_a_new_32_byte_base64_key() -> None:
    runs = [run_cli("keys", "generate", env=clean_environment()) for _ in range(2)]

    keys = [run.stdout.strip() for run in runs]
    for run, key in zip(runs, keys, strict=True):
        assert run.returncode == 0, run.stderr
        assert len(base64.b64decode(key, validate=True)) == 32
        assert build_config({"master_key": key}).master_key == key
    assert keys[0] != keys[1]


# The master key in production -----------------------------------------------------------------


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]], ids=" ".join)
def test_production_without_a_master_key_refuses_to_start(
    config: Config, command: list[str]
) -> None:
    env = environment_for(config)
    del env["AIAAS_MASTER_KEY"]

    result = run_cli(*command, env=env)

    assert result.returncode == 2, result.stderr
    assert "AIAAS_MASTER_KEY is required in production" in result.stderr
    assert "aiaas keys generate" in result.stderr
    assert "Traceback" not in result.stderr


MALFORMED_SECRET = "hunter2-is-not-a-base64-master-key"


@pytest.mark.parametrize("variable", ["AIAAS_MASTER_KEY", "AIAAS_PREVIOUS_MASTER_KEYS"])
@pytest.mark.parametrize(
    "command",
    [["serve"], ["keys", "rotate"], ["backup", "create", "never-written.tar"]],
    ids=" ".join,
)
def test_a_malformed_master_key_is_refused_without_echoing_it(
    config: Config, tmp_path: Path, variable: str, command: list[str]
) -> None:
    env = environment_for(config, **{variable: MALFORMED_SECRET})

    result = subprocess.run(
        [*AIAAS, *command], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )

    assert result.returncode == 2, result.stderr
    assert variable in result.stderr
    assert "32 random bytes, base64 encoded" in result.stderr
    assert MALFORMED_SECRET not in result.stdout + result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "never-written.tar").exists()


# aiaas keys rotate ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyedInstance:
    """A database of its own, two projects with sealed artifacts, under `old_key`."""

    config: Config
    old_key: str
    plaintexts: dict[tuple[uuid.UUID, str], bytes]
    """Each artifact's plaintext, by (project, artifact key)."""

    @property
    def projects(self) -> set[uuid.UUID]:
        return {project for project, _ in self.plaintexts}


async def sealed_chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def keyed(
    services: Services, template_database: str, config: Config, tmp_path: Path
) -> AsyncIterator[KeyedInstance]:
    name = await create_database_from_template(services, template_database, "test_cli_keys")
    old_key = MasterKey.generate().encoded()
    keyed_config = config_for(
        config, with_database(services.server_url, name), tmp_path / "data", master_key=old_key
    )
    platform = create_platform(keyed_config)
    await platform.start(run_startup_hooks=False, with_redis=False)
    try:
        user = await identity.create_user(platform, None, username="owner", is_admin=True)
        owner = Principal(
            user_id=user.id, username=user.username, is_admin=True, authenticated_by="test"
        )
        plaintexts: dict[tuple[uuid.UUID, str], bytes] = {}
        for slug in ("red", "blue"):
            project = await create_project(platform, owner, slug=slug, name=slug)
            for number in range(2):
                data = f"{slug} rows, part {number}\n".encode() * 1000
                stored = await platform.service(VAULT).store(project.id, sealed_chunks(data))
                plaintexts[(project.id, stored.key)] = data
    finally:
        await platform.stop()
    yield KeyedInstance(config=keyed_config, old_key=old_key, plaintexts=plaintexts)
    await drop_database(services, name)


async def data_key_rows(config: Config) -> dict[uuid.UUID, dict[str, Any]]:
    platform = create_platform(config)
    await platform.start(run_startup_hooks=False, with_redis=False)
    try:
        async with platform.metadata.acquire() as connection:
            rows = await connection.fetch("SELECT * FROM data_keys")
    finally:
        await platform.stop()
    return {row["project_id"]: dict(row) for row in rows}


async def opened_plaintexts(config: Config, keyed: KeyedInstance) -> dict[Any, bytes]:
    """Every artifact opened by a platform that has only the config's master key(s)."""
    platform = create_platform(config)
    await platform.start(run_startup_hooks=False, with_redis=False)
    try:
        return {
            (project, key): b"".join(
                [chunk async for chunk in platform.service(VAULT).open(project, key)]
            )
            for project, key in keyed.plaintexts
        }
    finally:
        await platform.stop()


async def test_rotate_rewraps_every_data_key_and_rewrites_no_artifact(
    keyed: KeyedInstance,
) -> None:
    new_key = MasterKey.generate().encoded()
    before, objects_before = await data_key_rows(keyed.config), object_files(keyed.config)
    env = environment_for(
        keyed.config, AIAAS_MASTER_KEY=new_key, AIAAS_PREVIOUS_MASTER_KEYS=keyed.old_key
    )

    result = run_cli("keys", "rotate", env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "re-wrapped 2 data key(s)"
    after = await data_key_rows(keyed.config)
    assert after.keys() == before.keys() == keyed.projects
    for project, row in after.items():
        assert before[project]["master_key_id"] == MasterKey.parse(keyed.old_key).id
        assert row["master_key_id"] == MasterKey.parse(new_key).id
        assert row["wrapped_key"] != before[project]["wrapped_key"]
        assert row["rotated_at"] is not None
    # The artifacts are untouched: same files, same bytes, not even rewritten in place.
    assert len(objects_before) == 4
    assert object_files(keyed.config) == objects_before
    # The new key alone opens everything now; the old key alone opens nothing.
    only_new = config_for(
        keyed.config, str(keyed.config.database_url), keyed.config.data_dir, master_key=new_key
    )
    assert await opened_plaintexts(only_new, keyed) == keyed.plaintexts
    with pytest.raises(ConfigError, match="not configured"):
        await opened_plaintexts(keyed.config, keyed)


async def test_rotate_again_has_nothing_to_do_and_is_audited(keyed: KeyedInstance) -> None:
    new_key = MasterKey.generate().encoded()
    env = environment_for(
        keyed.config, AIAAS_MASTER_KEY=new_key, AIAAS_PREVIOUS_MASTER_KEYS=keyed.old_key
    )

    first, second = run_cli("keys", "rotate", env=env), run_cli("keys", "rotate", env=env)

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert second.stdout.strip() == "re-wrapped 0 data key(s)"
    platform = create_platform(keyed.config)
    await platform.start(run_startup_hooks=False, with_redis=False, check_schema=False)
    try:
        async with platform.metadata.acquire() as connection:
            events = await connection.fetch(
                "SELECT actor_id, object_id, details FROM audit_events "
                "WHERE action = 'keys.rotate' AND outcome = 'success' ORDER BY id"
            )
    finally:
        await platform.stop()
    assert [event["details"] for event in events] == [
        {"rewrapped": 2, "total": 2},
        {"rewrapped": 0, "total": 2},
    ]
    assert {event["object_id"] for event in events} == {MasterKey.parse(new_key).id}
    assert all(event["actor_id"] is None for event in events)  # an operator, not a user


async def test_rotate_without_the_old_key_fails_clearly_and_changes_nothing(
    keyed: KeyedInstance,
) -> None:
    before, objects_before = await data_key_rows(keyed.config), object_files(keyed.config)
    env = environment_for(keyed.config, AIAAS_MASTER_KEY=MasterKey.generate().encoded())

    result = run_cli("keys", "rotate", env=env)

    assert result.returncode == 2
    assert "which is not configured" in result.stderr
    assert "AIAAS_PREVIOUS_MASTER_KEYS" in result.stderr
    assert "Traceback" not in result.stderr
    assert await data_key_rows(keyed.config) == before
    assert object_files(keyed.config) == objects_before
    assert await opened_plaintexts(keyed.config, keyed) == keyed.plaintexts


# The instance to back up, built through the API ------------------------------------------------

CUSTOMERS_V1 = "id,name,age\n" + "".join(f"{n},customer {n},{20 + n % 40}\n" for n in range(40))
CUSTOMERS_V2 = CUSTOMERS_V1 + "40,no age,\n3,customer 3,23\n"


@dataclass(frozen=True)
class Instance:
    admin_token: str
    member_token: str
    slugs: tuple[str, ...]
    version_ids: tuple[str, ...]
    """Global ids of every dataset version, the deleted one included."""


async def mutate(
    client: httpx.AsyncClient, token: str, query: str, **variables: Any
) -> dict[str, Any]:
    """The one field a mutation answers; fails the test unless it is a success type."""
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {token}"},
    )
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    (answer,) = body["data"].values()
    assert answer["__typename"].endswith(("Success", "Queued")), answer
    return dict(answer)


UPLOAD = """
mutation($input: UploadDatasetInput!) { uploadDataset(input: $input) {
  __typename ... on DatasetVersionSuccess { version { id } } ... on Error { message }
} }
"""


async def upload(
    client: httpx.AsyncClient, token: str, project: str, name: str, content: str
) -> str:
    """A GraphQL multipart upload, as the portal sends it: the CSRF header included."""
    operations = {
        "query": UPLOAD,
        "variables": {"input": {"project": project, "name": name, "file": None}},
    }
    response = await client.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({"0": ["variables.input.file"]}),
        },
        files={"0": (f"{name}.csv", content.encode(), "text/csv")},
        headers={"authorization": f"Bearer {token}", CSRF_HEADER: "1"},
    )
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    answer = body["data"]["uploadDataset"]
    assert answer["__typename"] == "DatasetVersionSuccess", answer
    return str(answer["version"]["id"])


async def run_worker_until_idle(config: Config) -> None:
    """A real arq worker in burst mode: it runs the queued validations, then returns."""
    settings = worker_settings(config)
    settings["cron_jobs"] = []  # keep the burst to the queued jobs
    worker = Worker(**settings, burst=True, handle_signals=False)
    try:
        await asyncio.wait_for(worker.async_run(), timeout=60)
    finally:
        await worker.close()


@pytest.fixture(scope="module")
async def instance(platform: Platform, config: Config, admin_token: str, app: Any) -> Instance:
    member = await new_account(platform, "member")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        admin = admin_token
        projects = {}
        for slug in ("ledger", "archive"):
            created = await mutate(
                client,
                admin,
                "mutation($input: CreateProjectInput!) { createProject(input: $input) { "
                "__typename ... on CreateProjectSuccess { project { id } } } }",
                input={"slug": slug, "name": slug.title(), "description": f"the {slug}"},
            )
            projects[slug] = created["project"]["id"]
        await mutate(
            client,
            admin,
            "mutation($input: ProjectMemberInput!) { addProjectMember(input: $input) { "
            "__typename } }",
            input={"project": projects["ledger"], "username": member.username, "role": "VIEWER"},
        )
        first = await upload(client, admin, projects["ledger"], "customers", CUSTOMERS_V1)
        second = await upload(client, admin, projects["ledger"], "customers", CUSTOMERS_V2)
        cleaned = await mutate(
            client,
            admin,
            "mutation($input: TransformDatasetVersionInput!) { "
            "transformDatasetVersion(input: $input) { "
            "__typename ... on DatasetVersionSuccess { version { id dataset { id } } } } }",
            input={
                "version": second,
                "steps": [
                    {"kind": "DROP_NULLS", "columns": ["age"]},
                    {"kind": "DROP_DUPLICATES"},
                ],
            },
        )
        await mutate(
            client,
            admin,
            "mutation($id: ID!) { deleteDatasetVersion(id: $id) { __typename } }",
            id=first,
        )
        await mutate(
            client,
            admin,
            "mutation($dataset: ID!, $expectations: JSON!) { setDatasetExpectations("
            "dataset: $dataset, expectations: $expectations) { __typename } }",
            dataset=cleaned["version"]["dataset"]["id"],
            expectations=[
                {"kind": "not_null", "column": "age"},
                {"kind": "unique", "columns": ["id"]},
            ],
        )
        for version in (second, cleaned["version"]["id"]):
            await mutate(
                client,
                admin,
                "mutation($id: ID!) { validateDatasetVersion(id: $id) { __typename } }",
                id=version,
            )
        archived = await upload(client, admin, projects["archive"], "events", "at,kind\n1,a\n")
        await mutate(
            client,
            admin,
            "mutation($id: ID!) { archiveProject(id: $id) { __typename } }",
            id=projects["archive"],
        )
    await run_worker_until_idle(config)
    return Instance(
        admin_token=admin_token,
        member_token=member.token,
        slugs=("ledger", "archive"),
        version_ids=(first, second, cleaned["version"]["id"], archived),
    )


# What the API answers -------------------------------------------------------------------------

BACKUP_ACTIONS = {"backup.create", "backup.restore"}
VERSION = """
  id number contentSha256 sourceFormat rowCount sizeBytes columns { name type } columnStats
  preview transformation createdAt deletedAt parent { id } dataset { id name }
  qualityReport { id createdAt passed q qConsistency qCompleteness qAccuracy blockingFailures
    expectations checks { name kind dimension passed blocking failingRows message examples } }
"""
PROJECTS = """{ projects(includeArchived: true) { nodes {
  id slug name description createdAt archivedAt isArchived viewerRole createdBy { username }
  members { nodes { role addedAt user { id username displayName isAdmin createdAt } } }
} } }"""
PROJECT = (
    """query($slug: String!) { project(slug: $slug) {
  id slug
  datasets { nodes { id name description createdAt expectations latestVersion { id }
    versions(includeDeleted: true) { nodes { """
    + VERSION
    + "} } } } } }"
)
AUDIT = """query($slug: String!) { project(slug: $slug) { auditEvents(first: 100) { nodes {
  id occurredAt actor action outcome objectType objectId requestId details } } } }"""
NODE = "query($id: ID!) { node(id: $id) { ... on DatasetVersion { " + VERSION + "} } }"


def without_backup_events(answer: Any) -> Any:
    if isinstance(answer, dict):
        return {key: without_backup_events(value) for key, value in answer.items()}
    if isinstance(answer, list):
        return [
            without_backup_events(item)
            for item in answer
            if not (isinstance(item, dict) and item.get("action") in BACKUP_ACTIONS)
        ]
    return answer


async def api_answers(platform: Platform, instance: Instance) -> dict[str, Any]:
    """What every query answers, as the admin and as a viewer of one project."""
    admin, member = instance.admin_token, instance.member_token
    asked: list[tuple[str, str, str, dict[str, Any]]] = [
        ("admin projects", admin, PROJECTS, {}),
        ("member projects", member, PROJECTS, {}),
    ]
    for slug in instance.slugs:
        asked += [
            (f"admin project {slug}", admin, PROJECT, {"slug": slug}),
            (f"member project {slug}", member, PROJECT, {"slug": slug}),
            (f"admin audit {slug}", admin, AUDIT, {"slug": slug}),
        ]
    asked += [(f"admin node {id}", admin, NODE, {"id": id}) for id in instance.version_ids]
    answers: dict[str, Any] = {}
    transport = httpx.ASGITransport(app=create_app(platform=platform))
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        for label, token, query, variables in asked:
            response = await client.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"authorization": f"Bearer {token}"},
            )
            body = response.json()
            assert response.status_code == 200 and "errors" not in body, body
            answers[label] = without_backup_events(body["data"])
    return answers


# aiaas backup create | verify | restore -------------------------------------------------------


@dataclass(frozen=True)
class CliBackup:
    path: Path
    stdout: str
    answers: dict[str, Any]


@pytest.fixture(scope="module")
async def cli_backup(
    platform: Platform, config: Config, instance: Instance, tmp_path_factory: Any
) -> CliBackup:
    path = tmp_path_factory.mktemp("cli-backups") / "instance.tar"

    result = run_cli("backup", "create", str(path), env=environment_for(config))

    assert result.returncode == 0, result.stderr
    return CliBackup(path, result.stdout, await api_answers(platform, instance))


@pytest.fixture(scope="module")
async def cli_restored(
    services: Services, config: Config, cli_backup: CliBackup, tmp_path_factory: Any
) -> AsyncIterator[Platform]:
    """`aiaas backup restore` into an empty database (no schema at all: the restore migrates
    it) and an empty data directory; then a platform started on them."""
    name = await create_database_from_template(services, "template1", "test_cli_restored")
    restored_config = config_for(
        config, with_database(services.server_url, name), tmp_path_factory.mktemp("restored")
    )

    result = run_cli(
        "backup", "restore", str(cli_backup.path), env=environment_for(restored_config)
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"restored {cli_backup.path} (made ")
    platform = create_platform(restored_config)
    await platform.start()
    yield platform
    await platform.stop()
    await drop_database(services, name)


async def test_backup_create_writes_every_table_every_artifact_and_their_checksums(
    platform: Platform, cli_backup: CliBackup
) -> None:
    async with platform.metadata.acquire() as connection:
        tables = await tables_in_load_order(connection)
    keys = [key async for key in platform.artifacts.keys()]  # noqa: SIM118 - not a dict
    members = archive_members(cli_backup.path)
    manifest = json.loads(members[MANIFEST])

    assert cli_backup.stdout.strip() == (
        f"wrote {cli_backup.path}: {len(tables)} tables, {len(keys)} artifacts"
    )
    assert len(keys) == 4  # three versions of customers (one deleted) and the archive's events
    assert set(members) == {
        MANIFEST,
        MANIFEST_TAG,
        *(f"tables/{table}.copy.sealed" for table in tables),
        *(f"artifacts/{key}" for key in keys),
    }
    assert manifest["format"] == FORMAT
    assert (
        manifest["sealing"]["master_key_id"] == MasterKey.parse(str(platform.config.master_key)).id
    )
    entries = {entry["member"]: entry for entry in manifest["tables"] + manifest["artifacts"]}
    assert set(entries) == set(members) - {MANIFEST, MANIFEST_TAG}
    for member, entry in entries.items():
        assert entry["bytes"] == len(members[member])
        assert entry["sha256"] == hashlib.sha256(members[member]).hexdigest()


async def test_backup_verify_passes_on_the_archive(cli_backup: CliBackup, config: Config) -> None:
    result = run_cli("backup", "verify", str(cli_backup.path), env=environment_for(config))

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        f"{cli_backup.path} is sound: schema {migrations.head_revision()}, "
    )
    assert "4 artifacts" in result.stdout
    master_key_id = MasterKey.parse(str(config.master_key)).id
    assert result.stdout.strip().endswith(
        f"; its manifest is authentic (master key {master_key_id})"
    )


async def test_backup_verify_without_a_master_key_checks_the_members_and_says_so(
    cli_backup: CliBackup, config: Config, tmp_path: Path
) -> None:
    env = environment_for(config)
    del env["AIAAS_MASTER_KEY"]
    tampered = tmp_path / "tampered.tar"
    tampered.write_bytes(relisted_count(cli_backup.path))

    results = [
        run_cli("backup", "verify", str(path), env=env) for path in (cli_backup.path, tampered)
    ]

    for result in results:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith(
            "; its manifest's authenticity was not checked: no master key is configured "
            "(AIAAS_MASTER_KEY)"
        )
    # With the key, the same tampered archive is refused.
    refused = run_cli("backup", "verify", str(tampered), env=environment_for(config))
    assert refused.returncode == 1
    assert "the manifest failed authentication" in refused.stderr


def relisted_count(path: Path) -> bytes:
    """The archive with one table's row count changed in its manifest, the old tag kept."""
    members = archive_members(path)
    manifest = json.loads(members.pop(MANIFEST))
    manifest["tables"][0]["rows"] += 1
    tag = members.pop(MANIFEST_TAG)
    members[MANIFEST], members[MANIFEST_TAG] = json.dumps(manifest).encode(), tag
    target = path.with_name(f"recounted-{uuid.uuid4().hex}.tar")
    write_archive(target, members)
    return target.read_bytes()


async def test_backup_restore_migrates_the_empty_database_to_the_latest_revision(
    cli_restored: Platform,
) -> None:
    async with cli_restored.metadata.acquire() as connection:
        assert await migrations.current_revision(connection) == migrations.head_revision()


async def test_the_restored_instance_answers_every_query_as_the_original(
    cli_restored: Platform, cli_backup: CliBackup, instance: Instance
) -> None:
    answers = await api_answers(cli_restored, instance)

    assert answers.keys() == cli_backup.answers.keys()
    for name, answer in cli_backup.answers.items():
        assert answers[name] == answer, name


async def test_the_answers_compared_hold_what_was_built(cli_backup: CliBackup) -> None:
    # Guards the comparison against two equally empty answers.
    ledger = cli_backup.answers["admin project ledger"]["project"]
    versions = ledger["datasets"]["nodes"][0]["versions"]["nodes"]
    assert [version["number"] for version in versions] == [1, 2, 3]
    assert versions[0]["deletedAt"] is not None
    assert versions[2]["parent"] == {"id": versions[1]["id"]}
    assert versions[1]["qualityReport"]["passed"] is False  # a null age
    assert versions[2]["qualityReport"]["passed"] is True
    assert versions[2]["columnStats"] and versions[2]["preview"]
    member = cli_backup.answers["member projects"]["projects"]["nodes"]
    assert [project["slug"] for project in member] == ["ledger"]
    assert cli_backup.answers["member project archive"] == {"project": None}
    events = cli_backup.answers["admin audit ledger"]["project"]["auditEvents"]["nodes"]
    assert {"dataset.upload", "dataset.validate", "member.add"} <= {e["action"] for e in events}


async def test_the_restored_artifacts_open_with_the_master_key(
    cli_restored: Platform, platform: Platform
) -> None:
    keys = [key async for key in platform.artifacts.keys()]  # noqa: SIM118 - not a dict
    assert [key async for key in cli_restored.artifacts.keys()] == keys  # noqa: SIM118
    async with platform.metadata.acquire() as connection:
        versions = await connection.fetch("SELECT project_id, artifact_key FROM dataset_versions")
    for version in versions:
        project, key = version["project_id"], version["artifact_key"]
        original = b"".join([chunk async for chunk in platform.service(VAULT).open(project, key)])
        restored = b"".join(
            [chunk async for chunk in cli_restored.service(VAULT).open(project, key)]
        )
        assert restored == original
    # ... with that key only: the data keys came over wrapped by it.
    other = config_for(
        cli_restored.config,
        str(cli_restored.config.database_url),
        cli_restored.config.data_dir,
        master_key=MasterKey.generate().encoded(),
    )
    with pytest.raises(ConfigError):
        await Vault(other, cli_restored.metadata, cli_restored.artifacts).data_key(
            versions[0]["project_id"]
        )


async def test_backup_restore_into_an_instance_with_data_is_refused_and_changes_nothing(
    platform: Platform, config: Config, cli_backup: CliBackup
) -> None:
    async def state() -> tuple[dict[str, int], dict[str, tuple[bytes, int]]]:
        async with platform.metadata.acquire() as connection:
            counts = {
                table: await connection.fetchval(f'SELECT count(*) FROM "{table}"')
                for table in await tables_in_load_order(connection)
            }
        return counts, object_files(config)

    before = await state()

    result = run_cli("backup", "restore", str(cli_backup.path), env=environment_for(config))

    assert result.returncode == 1
    assert "a restore needs an empty instance" in result.stderr
    assert "Traceback" not in result.stderr
    assert await state() == before


# Bad archives, through the CLI ----------------------------------------------------------------


BadArchive = Callable[[Path, MasterKey], bytes]
"""The bytes of a bad archive made from the good one; the master key is there for the edits
that someone holding it could make."""


def flipped_in(prefix: str) -> BadArchive:
    def corrupt(path: Path, _: MasterKey) -> bytes:
        start, size = member_span(path, first_member(path, prefix))
        data = bytearray(path.read_bytes())
        data[start + size // 2] ^= 0x01
        return bytes(data)

    return corrupt


def cut_inside(prefix: str) -> BadArchive:
    def cut(path: Path, _: MasterKey) -> bytes:
        start, size = member_span(path, first_member(path, prefix))
        return path.read_bytes()[: start + size // 2]

    return cut


def cut_before_manifest(path: Path, _: MasterKey) -> bytes:
    with tarfile.open(path) as archive:
        return path.read_bytes()[: archive.getmember(MANIFEST).offset]


def with_unlisted_member(path: Path, master: MasterKey) -> bytes:
    """The users table left out of the manifest, which is re-authenticated with the key."""
    members = archive_members(path)
    manifest = json.loads(members[MANIFEST])
    manifest["tables"] = [entry for entry in manifest["tables"] if entry["name"] != "users"]
    members[MANIFEST] = json.dumps(manifest).encode()
    reauthenticated(members, master)
    target = path.with_name(f"unlisted-{uuid.uuid4().hex}.tar")
    write_archive(target, members)
    return target.read_bytes()


def flipped_manifest_field(path: Path, _: MasterKey) -> bytes:
    """One bit flipped in the manifest: its first "sha256" field becomes "sha257"."""
    start, size = member_span(path, MANIFEST)
    data = bytearray(path.read_bytes())
    data[start + bytes(data[start : start + size]).index(b'"sha256"') + 6] ^= 0x01
    return bytes(data)


BAD_ARCHIVES = [
    pytest.param(
        flipped_in("tables/"), "does not match its checksum", id="byte-flipped-in-a-table"
    ),
    pytest.param(
        flipped_in("artifacts/"), "does not match its checksum", id="byte-flipped-in-an-artifact"
    ),
    pytest.param(cut_before_manifest, "has no manifest", id="truncated-before-the-manifest"),
    pytest.param(
        cut_inside("tables/"),
        "truncated",
        id="truncated-inside-a-table",
    ),
    pytest.param(
        with_unlisted_member,
        "members not in the manifest: tables/users.copy.sealed",
        id="member-missing-from-the-manifest",
    ),
    pytest.param(
        flipped_manifest_field,
        "the manifest failed authentication",
        id="bit-flipped-in-the-manifest",
    ),
    pytest.param(
        lambda _, __: b"name,age\nAda,36\n", "unreadable or truncated", id="not-an-archive"
    ),
]


@pytest.mark.parametrize(("make_bad", "refusal"), BAD_ARCHIVES)
def test_backup_verify_refuses_a_bad_archive(
    cli_backup: CliBackup,
    config: Config,
    tmp_path: Path,
    make_bad: BadArchive,
    refusal: str,
) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(make_bad(cli_backup.path, MasterKey.parse(str(config.master_key))))

    result = run_cli("backup", "verify", str(bad), env=environment_for(config))

    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert refusal in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(("make_bad", "refusal"), BAD_ARCHIVES)
async def test_backup_restore_refuses_a_bad_archive_and_writes_nothing(
    services: Services,
    config: Config,
    cli_backup: CliBackup,
    tmp_path: Path,
    make_bad: BadArchive,
    refusal: str,
) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(make_bad(cli_backup.path, MasterKey.parse(str(config.master_key))))
    name = await create_database_from_template(services, "template1", "test_cli_bad_restore")
    target = config_for(config, with_database(services.server_url, name), tmp_path / "data")
    try:
        result = run_cli("backup", "restore", str(bad), env=environment_for(target))

        assert result.returncode == 1
        assert refusal in result.stderr
        assert "Traceback" not in result.stderr
        # Not even the schema: the archive is checked before the database is migrated.
        assert await public_tables(target) == 0
        assert object_files(target) == {}
    finally:
        await drop_database(services, name)


async def public_tables(config: Config) -> int:
    connection = await asyncpg.connect(str(config.database_url))
    try:
        return int(
            await connection.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        )
    finally:
        await connection.close()


async def test_backup_restore_without_the_archives_master_key_is_refused_untouched(
    services: Services, config: Config, cli_backup: CliBackup, tmp_path: Path
) -> None:
    name = await create_database_from_template(services, "template1", "test_cli_other_key")
    target = config_for(
        config,
        with_database(services.server_url, name),
        tmp_path / "data",
        master_key=MasterKey.generate().encoded(),
    )
    try:
        result = run_cli("backup", "restore", str(cli_backup.path), env=environment_for(target))

        sealed_by = MasterKey.parse(str(config.master_key)).id
        assert result.returncode == 1
        assert result.stderr.startswith(
            f"error: the archive was sealed with master key {sealed_by}, which is not configured"
        )
        assert "Traceback" not in result.stderr
        assert await public_tables(target) == 0
        assert object_files(target) == {}
    finally:
        await drop_database(services, name)


async def test_backup_restore_takes_an_unsealed_archive_only_with_allow_unsealed(
    services: Services, config: Config, cli_backup: CliBackup, tmp_path: Path
) -> None:
    unsealed = tmp_path / "unsealed.tar"
    await unsealed_archive(cli_backup.path, unsealed, MasterKey.parse(str(config.master_key)))
    name = await create_database_from_template(services, "template1", "test_cli_unsealed")
    target = config_for(config, with_database(services.server_url, name), tmp_path / "data")
    try:
        refused = run_cli("backup", "restore", str(unsealed), env=environment_for(target))
        assert refused.returncode == 1
        assert f"is an unsealed {UNSEALED_FORMAT} archive" in refused.stderr
        assert "--allow-unsealed" in refused.stderr
        assert await public_tables(target) == 0

        accepted = run_cli(
            "backup", "restore", "--allow-unsealed", str(unsealed), env=environment_for(target)
        )
        assert accepted.returncode == 0, accepted.stderr
        assert accepted.stderr.startswith(f"warning: {unsealed} is an unsealed {UNSEALED_FORMAT}")
        assert accepted.stdout.startswith(f"restored {unsealed} (made ")
        assert await public_tables(target) > 0
    finally:
        await drop_database(services, name)
