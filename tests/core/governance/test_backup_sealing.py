"""Sealed backups (`aiaas.core.governance.backup_sealing`): the archive holds no table data in
clear; without the master key its members can still be checked, and with it a manifest altered
to match altered members is refused; a wrong or missing key is refused by name, a key rotated
out still restores; a table that does not decrypt aborts the restore with nothing written; an
archive of the unsealed format restores only when the caller allows it; and a backup that fails
part way leaves no archive behind."""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aiaas.core.audit import verify_audit_trail
from aiaas.core.auth import Principal
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, build_config
from aiaas.core.data.datasets import upload_version
from aiaas.core.errors import ArtifactIntegrityError, BackupError
from aiaas.core.governance.backup import (
    MANIFEST,
    MANIFEST_TAG,
    UNSEALED_FORMAT,
    create_backup,
    restore_backup,
    tables_in_load_order,
    verify_archive,
)
from aiaas.core.governance.backup_sealing import Sealing
from aiaas.core.governance.crypto import MasterKey, new_data_key, seal
from aiaas.core.governance.vault import VAULT
from aiaas.core.identity import accounts as identity
from aiaas.core.identity.projects import create_project
from aiaas.core.platform import Platform
from backup_archives import (
    archive_members,
    edit_manifest,
    reauthenticated,
    relist,
    unsealed_archive,
    write_archive,
)
from support import Services, create_database_from_template, drop_database, with_database

NAMES_IN_CLEAR_IN_THE_DATABASE = [
    b"zebediah.quux",  # a username
    b"Zebediah Quux-Lindqvist",  # a display name
    b"ledger of card payments, EU region",  # a project's description
    b"zebediah's laptop",  # an API token's name
]
"""Values the database keeps in clear (names and descriptions), so that an unsealed archive
shows them: the check that the sealed one does not is not vacuous."""
DATA_VALUES = [b"4111-1111-1111-1111", b"Quux Holdings GmbH"]
"""Values of an uploaded dataset: they reach the tables through its preview and statistics, in
clear or sealed (whichever the data domain does), and must never be readable in an archive."""
UPLOAD = "id,card,holder\n" + "".join(
    f"{n},{'4111-1111-1111-1111' if n == 3 else f'5500-0000-0000-{n:04d}'},"
    f"{'Quux Holdings GmbH' if n == 3 else f'holder {n}'}\n"
    for n in range(1, 31)
)


@dataclass(frozen=True)
class Built:
    project_id: uuid.UUID
    artifact_key: str
    plaintext: bytes
    """The artifact's content, opened through the vault."""


@pytest.fixture(scope="module")
def master(config: Config) -> MasterKey:
    return MasterKey.parse(str(config.master_key))


@pytest.fixture(scope="module")
async def built(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Built:
    owner = await identity.create_user(platform, None, username="owner", is_admin=True)
    admin = Principal(user_id=owner.id, username="owner", is_admin=True, authenticated_by="test")
    user = await identity.create_user(
        platform, None, username="zebediah.quux", display_name="Zebediah Quux-Lindqvist"
    )
    await identity.create_api_token(platform, None, user_id=user.id, name="zebediah's laptop")
    project = await create_project(
        platform,
        admin,
        slug="ledger",
        name="Ledger",
        description="ledger of card payments, EU region",
    )
    source = tmp_path_factory.mktemp("uploads") / "cards.csv"
    source.write_text(UPLOAD)
    upload = await upload_version(platform, admin, project.id, dataset_name="cards", source=source)
    key = upload.version.artifact_key
    plaintext = b"".join([chunk async for chunk in platform.service(VAULT).open(project.id, key)])
    return Built(project.id, key, plaintext)


@pytest.fixture(scope="module")
async def archive(
    platform: Platform, built: Built, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("backups") / "sealed.aiaas-backup"
    await create_backup(platform, path)
    return path


def config_for(config: Config, database_url: str, data_dir: Path, **changes: Any) -> Config:
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


@asynccontextmanager
async def new_instance(
    services: Services, template: str, config: Config, data_dir: Path, **changes: Any
) -> AsyncIterator[Platform]:
    """An empty, migrated instance started as `aiaas backup restore` starts one (the database
    alone), on the module's config with `changes` (master keys, say)."""
    name = await create_database_from_template(services, template, "test_sealed_restore")
    platform = create_platform(
        config_for(config, with_database(services.server_url, name), data_dir, **changes)
    )
    await platform.start(run_startup_hooks=False, with_redis=False)
    try:
        yield platform
    finally:
        await platform.stop()
        await drop_database(services, name)


@pytest.fixture
async def empty_instance(
    services: Services, template_database: str, config: Config, tmp_path: Path
) -> AsyncIterator[Platform]:
    async with new_instance(services, template_database, config, tmp_path / "data") as target:
        yield target


async def row_counts(platform: Platform) -> dict[str, int]:
    async with platform.metadata.acquire() as connection:
        return {
            table: await connection.fetchval(f'SELECT count(*) FROM "{table}"')
            for table in await tables_in_load_order(connection)
        }


async def assert_empty(platform: Platform) -> None:
    counts = await row_counts(platform)
    assert counts and not any(counts.values()), counts
    assert [key async for key in platform.artifacts.keys()] == []  # noqa: SIM118 - not a dict


async def restore_details(platform: Platform) -> Any:
    async with platform.metadata.acquire() as connection:
        return await connection.fetchval(
            "SELECT details FROM audit_events WHERE action = 'backup.restore'"
        )


# No plaintext ----------------------------------------------------------------------------------


async def test_the_archive_holds_no_table_data_in_clear(
    archive: Path, master: MasterKey, tmp_path: Path
) -> None:
    sealed = archive.read_bytes()  # noqa: ASYNC240 - a test's small read

    for value in [*NAMES_IN_CLEAR_IN_THE_DATABASE, *DATA_VALUES]:
        assert value not in sealed, value
    # ...although the archive's tables do hold them: opened, they show.
    unsealed_path = tmp_path / "unsealed.aiaas-backup"
    await unsealed_archive(archive, unsealed_path, master)
    unsealed = unsealed_path.read_bytes()
    for value in NAMES_IN_CLEAR_IN_THE_DATABASE:
        assert value in unsealed, value


def test_the_archive_is_private_and_its_tables_sealed(archive: Path) -> None:
    members = archive_members(archive)
    manifest = json.loads(members[MANIFEST])

    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert (
        manifest["sealing"]["master_key_id"] == json.loads(members[MANIFEST_TAG])["master_key_id"]
    )
    for table in manifest["tables"]:
        assert table["member"] == f"tables/{table['name']}.copy.sealed"
        assert members[table["member"]].startswith(b"AIAE\x01")  # a sealed stream, not PGCOPY


# Verifying without the key, and with it ----------------------------------------------------


async def test_without_the_key_verify_checks_the_members_and_says_it_did_not_authenticate(
    archive: Path, master: MasterKey
) -> None:
    unchecked = verify_archive(archive)
    authenticated = verify_archive(archive, {master.id: master})

    assert unchecked.authenticated_by is None
    assert unchecked.manifest.sealed
    assert authenticated.authenticated_by == master.id


Tamper = Callable[[dict[str, bytes], Path], None]


def relisted_table(members: dict[str, bytes], _: Path) -> None:
    """A byte of the users table changed, and the manifest made to vouch for it."""
    member = "tables/users.copy.sealed"
    content = bytearray(members[member])
    content[len(content) // 2] ^= 0x01
    members[member] = bytes(content)
    edit_manifest(members, lambda manifest: relist(manifest, member, members[member]), None)


def recounted(members: dict[str, bytes], _: Path) -> None:
    def change(manifest: dict[str, Any]) -> None:
        manifest["tables"][0]["rows"] += 1

    edit_manifest(members, change, None)


def forged_tag(members: dict[str, bytes], _: Path) -> None:
    tag = json.loads(members[MANIFEST_TAG])
    tag["hmac_sha256"] = "00" * 32
    members[MANIFEST_TAG] = json.dumps(tag).encode()


def renamed_key(members: dict[str, bytes], _: Path) -> None:
    def change(manifest: dict[str, Any]) -> None:
        manifest["sealing"]["master_key_id"] = "0123456789abcdef"

    edit_manifest(members, change, None)


def flipped_field_name(members: dict[str, bytes], _: Path) -> None:
    """ "sha256" becomes "sha257" in the manifest."""
    manifest = members[MANIFEST]
    at = manifest.index(b'"sha256"') + 6
    members[MANIFEST] = manifest[:at] + bytes([manifest[at] ^ 0x01]) + manifest[at + 1 :]


# name: (alter the manifest without the key, how verify refuses it without the key: None when
# only the key can tell)
TAMPERED_MANIFESTS = [
    pytest.param(relisted_table, None, id="table-altered-and-relisted"),
    pytest.param(recounted, None, id="row-count-changed"),
    pytest.param(forged_tag, None, id="tag-forged"),
    pytest.param(
        renamed_key,
        f"{MANIFEST_TAG} names master key [0-9a-f]+, the manifest 0123456789abcdef",
        id="master-key-id-changed",
    ),
    pytest.param(flipped_field_name, "manifest is unreadable", id="field-name-flipped"),
]


@pytest.mark.parametrize(("tamper", "refusal_without_key"), TAMPERED_MANIFESTS)
async def test_a_tampered_manifest_is_refused_with_the_key(
    archive: Path,
    master: MasterKey,
    empty_instance: Platform,
    tmp_path: Path,
    tamper: Tamper,
    refusal_without_key: str | None,
) -> None:
    members = archive_members(archive)
    tamper(members, archive)
    bad = tmp_path / "tampered.aiaas-backup"
    write_archive(bad, members)

    if refusal_without_key is None:
        assert verify_archive(bad).authenticated_by is None  # the members match the manifest
    else:
        with pytest.raises(BackupError, match=refusal_without_key):
            verify_archive(bad)
    refusal = f"the manifest failed authentication with master key {master.id}"
    with pytest.raises(BackupError, match=refusal):
        verify_archive(bad, {master.id: master})
    with pytest.raises(BackupError, match=refusal):
        await restore_backup(empty_instance, bad)
    await assert_empty(empty_instance)


# Master keys -----------------------------------------------------------------------------------


async def test_verify_with_another_master_key_is_refused_by_name(
    archive: Path, master: MasterKey
) -> None:
    other = MasterKey.generate()

    with pytest.raises(BackupError) as refused:
        verify_archive(archive, {other.id: other})

    assert refused.value.message == (
        f"the archive was sealed with master key {master.id}, which is not configured "
        "(AIAAS_MASTER_KEY or AIAAS_PREVIOUS_MASTER_KEYS): it cannot be authenticated or "
        "opened without that key"
    )


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param({"master_key": MasterKey.generate().encoded()}, id="another-key"),
        pytest.param(
            {
                "master_key": MasterKey.generate().encoded(),
                "previous_master_keys": (MasterKey.generate().encoded(),),
            },
            id="other-current-and-previous-keys",
        ),
        pytest.param({"master_key": None}, id="no-key"),
    ],
)
async def test_a_restore_without_the_archives_master_key_is_refused_and_writes_nothing(
    services: Services,
    template_database: str,
    config: Config,
    archive: Path,
    master: MasterKey,
    tmp_path: Path,
    keys: dict[str, Any],
) -> None:
    async with new_instance(
        services, template_database, config, tmp_path / "data", **keys
    ) as target:
        with pytest.raises(BackupError, match=f"sealed with master key {master.id}, which is not"):
            await restore_backup(target, archive)

        await assert_empty(target)


async def test_an_archive_restores_after_its_master_key_was_rotated_out(
    services: Services,
    template_database: str,
    config: Config,
    platform: Platform,
    archive: Path,
    master: MasterKey,
    built: Built,
    tmp_path: Path,
) -> None:
    rotated = {
        "master_key": MasterKey.generate().encoded(),
        "previous_master_keys": (master.encoded(),),
    }
    manifest = verify_archive(archive).manifest
    async with new_instance(
        services, template_database, config, tmp_path / "data", **rotated
    ) as target:
        await restore_backup(target, archive)

        counts = await row_counts(target)
        restored = b"".join(
            [
                chunk
                async for chunk in target.service(VAULT).open(built.project_id, built.artifact_key)
            ]
        )
        details = await restore_details(target)
        async with target.metadata.acquire() as connection:
            verification = await verify_audit_trail(connection)
    for table in manifest.tables:
        # The restore audits itself: one row more than the archive holds.
        extra = 1 if table["name"] == "audit_events" else 0
        assert counts[table["name"]] == table["rows"] + extra, table["name"]
    assert counts["users"] >= 2 and counts["dataset_versions"] == 1
    assert restored == built.plaintext
    assert details["authenticated_by"] == master.id
    assert verification.intact, verification.breaks


async def test_a_data_key_wrapped_for_another_archive_does_not_open(
    platform: Platform, archive: Path, master: MasterKey, tmp_path: Path
) -> None:
    # Someone with the master key moves another archive's wrapped key into this one and
    # re-authenticates: the wrapped key is bound to its own archive's id, and does not open.
    other = tmp_path / "other.aiaas-backup"
    await create_backup(platform, other)
    foreign = json.loads(archive_members(other)[MANIFEST])["sealing"]["wrapped_data_key"]
    members = archive_members(archive)

    def change(manifest: dict[str, Any]) -> None:
        manifest["sealing"]["wrapped_data_key"] = foreign

    edit_manifest(members, change, master)
    bad = tmp_path / "bad.aiaas-backup"
    write_archive(bad, members)

    with pytest.raises(BackupError, match="data key does not open with master key"):
        verify_archive(bad, {master.id: master})
    assert verify_archive(bad).authenticated_by is None  # without the key, nothing to tell


async def test_a_table_that_does_not_decrypt_aborts_the_restore_with_nothing_written(
    archive: Path, master: MasterKey, empty_instance: Platform, tmp_path: Path
) -> None:
    # Listed and authenticated (someone with the master key), but sealed under another data
    # key: only decrypting it tells, in the middle of the load, which must then roll back.
    members = archive_members(archive)
    sealing = Sealing.from_json(json.loads(members[MANIFEST])["sealing"])
    member = "tables/users.copy.sealed"

    async def plaintext() -> AsyncIterator[bytes]:
        yield b"PGCOPY\n\xff\r\n\x00"

    members[member] = b"".join(
        [chunk async for chunk in seal(new_data_key(), sealing.archive_id, plaintext())]
    )
    edit_manifest(members, lambda manifest: relist(manifest, member, members[member]), master)
    bad = tmp_path / "bad.aiaas-backup"
    write_archive(bad, members)
    verify_archive(bad, {master.id: master})

    with pytest.raises(BackupError, match=f"{member} does not decrypt: .*failed authentication"):
        await restore_backup(empty_instance, bad)

    await assert_empty(empty_instance)


# Archives of the unsealed format ---------------------------------------------------------------


async def test_an_unsealed_archive_restores_only_when_allowed(
    archive: Path, master: MasterKey, empty_instance: Platform, tmp_path: Path
) -> None:
    unsealed = tmp_path / "unsealed.aiaas-backup"
    await unsealed_archive(archive, unsealed, master)

    check = verify_archive(unsealed, {master.id: master})
    assert not check.manifest.sealed and check.authenticated_by is None
    with pytest.raises(BackupError, match=f"is an unsealed {UNSEALED_FORMAT} archive"):
        await restore_backup(empty_instance, unsealed)
    await assert_empty(empty_instance)

    await restore_backup(empty_instance, unsealed, allow_unsealed=True)

    details = await restore_details(empty_instance)
    assert details["format"] == UNSEALED_FORMAT and details["authenticated_by"] is None
    async with empty_instance.metadata.acquire() as connection:
        assert (await verify_audit_trail(connection)).intact
        assert await connection.fetchval(
            "SELECT display_name FROM users WHERE username = 'zebediah.quux'"
        ) == ("Zebediah Quux-Lindqvist")


async def test_an_unsealed_archive_cannot_pass_for_a_sealed_one(
    archive: Path, master: MasterKey, empty_instance: Platform, tmp_path: Path
) -> None:
    # The seal stripped but the tag kept, in the hope that verify believes the manifest.
    unsealed = tmp_path / "unsealed.aiaas-backup"
    await unsealed_archive(archive, unsealed, master)
    members = archive_members(unsealed)
    members[MANIFEST_TAG] = archive_members(archive)[MANIFEST_TAG]
    reauthenticated(members, master)  # even with a tag that matches
    bad = tmp_path / "bad.aiaas-backup"
    write_archive(bad, members)

    with pytest.raises(BackupError, match=f"an {UNSEALED_FORMAT} archive holds no {MANIFEST_TAG}"):
        verify_archive(bad)
    with pytest.raises(BackupError, match=f"holds no {MANIFEST_TAG}"):
        await restore_backup(empty_instance, bad, allow_unsealed=True)
    await assert_empty(empty_instance)


# Written whole or not at all -------------------------------------------------------------------


async def test_a_backup_that_fails_part_way_leaves_no_archive(
    empty_instance: Platform, tmp_path: Path
) -> None:
    # An artifact whose stored bytes no longer match their key: reading it fails part way
    # through the backup, after every table was written to the partial archive.
    stored = await empty_instance.artifacts.put_bytes(b"a sealed artifact, as stored" * 100)
    objects = empty_instance.config.resolved_artifact_dir / "objects"
    (path,) = [path for path in objects.rglob("*") if path.is_file()]
    path.chmod(0o600)
    path.write_bytes(b"something else entirely")
    backups = tmp_path / "backups"
    backups.mkdir()

    with pytest.raises(ArtifactIntegrityError):
        await create_backup(empty_instance, backups / "instance.aiaas-backup")

    assert list(backups.iterdir()) == []
    await empty_instance.artifacts.delete(stored.key)
