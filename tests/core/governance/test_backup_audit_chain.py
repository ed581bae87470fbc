"""Backups and the audit trail's hash chain: the archive carries the chain and is readable by its
owner alone, a restore verifies the chain it loads, and an archive whose audit events were edited
or removed (its manifest rewritten to vouch for them) is refused with nothing written."""

from __future__ import annotations

import io
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from aiaas.core.audit import AuditEvent, verify_audit_trail
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, build_config
from aiaas.core.errors import BackupError
from aiaas.core.governance.backup import (
    create_backup,
    restore_backup,
    tables_in_load_order,
    verify_archive,
)
from aiaas.core.governance.crypto import MasterKey
from aiaas.core.platform import Platform
from audit_tampering import numbered_events
from backup_archives import archive_members, opened_table, resealed_table, write_archive
from support import Services, create_database_from_template, drop_database, with_database


@pytest.fixture(scope="module")
async def events(platform: Platform) -> list[AuditEvent]:
    return await numbered_events(platform, uuid.uuid4(), "test.backup_chain", 4)


@pytest.fixture(scope="module")
async def archive(
    platform: Platform, events: list[AuditEvent], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("backups") / "chained.aiaas-backup"
    await create_backup(platform, path)
    return path


@pytest.fixture
async def empty_instance(
    services: Services, template_database: str, config: Config, tmp_path: Path
) -> AsyncIterator[Platform]:
    """A migrated database with no rows and an artifact directory with no objects, started as
    `aiaas backup restore` starts one: the database alone."""
    name = await create_database_from_template(services, template_database, "test_chain_restore")
    platform = create_platform(
        build_config(
            {
                **config.model_dump(),
                "database_url": with_database(services.server_url, name),
                "data_dir": tmp_path / "data",
                "artifact_dir": None,
            }
        )
    )
    await platform.start(run_startup_hooks=False, with_redis=False)
    yield platform
    await platform.stop()
    await drop_database(services, name)


async def assert_empty(platform: Platform) -> None:
    async with platform.metadata.acquire() as connection:
        counts = {
            table: await connection.fetchval(f'SELECT count(*) FROM "{table}"')
            for table in await tables_in_load_order(connection)
        }
    assert counts and not any(counts.values()), counts
    assert [key async for key in platform.artifacts.keys()] == []  # noqa: SIM118


async def with_audit_member_edited(
    database_url: str,
    master: MasterKey,
    source: Path,
    target: Path,
    statement: str,
    *arguments: Any,
) -> None:
    """`target`: the archive at `source` with `statement` applied to its audit events (as
    `scratch`), sealed again and its manifest rewritten and re-authenticated to match, as
    someone covering their tracks would, even one who holds the master key."""
    members = archive_members(source)
    connection = await asyncpg.connect(database_url)
    try:
        async with connection.transaction():
            await connection.execute("CREATE TEMP TABLE scratch (LIKE audit_events) ON COMMIT DROP")
            await connection.copy_to_table(
                "scratch",
                source=io.BytesIO(await opened_table(members, master, "audit_events")),
                format="binary",
            )
            await connection.execute(statement, *arguments)
            edited = io.BytesIO()
            await connection.copy_from_table("scratch", output=edited, format="binary")
    finally:
        await connection.close()
    await resealed_table(members, master, "audit_events", edited.getvalue())
    write_archive(target, members)


def test_the_archive_is_readable_by_its_owner_alone(archive: Path) -> None:
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600


async def test_a_restore_carries_the_chain_and_it_verifies(
    archive: Path, empty_instance: Platform, events: list[AuditEvent]
) -> None:
    await restore_backup(empty_instance, archive)

    async with empty_instance.metadata.acquire() as connection:
        verification = await verify_audit_trail(connection)
        restored = await connection.fetchval(
            "SELECT count(*) FROM audit_events WHERE project_id = $1", events[0].project_id
        )
    assert verification.intact, verification.breaks
    assert restored == len(events)


@pytest.mark.parametrize(
    ("statement", "tampered", "named", "refusal"),
    [
        (
            "UPDATE scratch SET details = '{\"number\": 41}' WHERE id = $1",
            1,
            1,
            "was changed after it was written",
        ),
        ("DELETE FROM scratch WHERE id = $1", 1, 2, "an event was removed"),
    ],
    ids=["edited", "removed"],
)
async def test_a_restore_refuses_an_archive_whose_audit_trail_was_tampered_with(
    archive: Path,
    empty_instance: Platform,
    events: list[AuditEvent],
    database_url: str,
    tmp_path: Path,
    statement: str,
    tampered: int,
    named: int,
    refusal: str,
) -> None:
    bad = tmp_path / "tampered.aiaas-backup"
    master = MasterKey.parse(str(empty_instance.config.master_key))
    await with_audit_member_edited(
        database_url, master, archive, bad, statement, events[tampered].id
    )
    # Its checksums and its manifest's tag vouch for it: only the chain can tell.
    verify_archive(bad, {master.id: master})

    with pytest.raises(BackupError) as refused:
        await restore_backup(empty_instance, bad)

    message = refused.value.message
    assert message.startswith("the archive's audit trail does not verify, so it was not restored")
    assert f"project {events[0].project_id}, audit event {events[named].id}: " in message
    assert refusal in message
    await assert_empty(empty_instance)
