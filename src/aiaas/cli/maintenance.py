"""The operator's upkeep: `aiaas keys` (master keys), `aiaas gc` (unreferenced artifacts) and
`aiaas backup` (archives of the whole instance, and restoring them)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

from aiaas import migrations
from aiaas.cli.common import current_config, operator_platform, reports_errors, require_services
from aiaas.cli.database import database_revision

if TYPE_CHECKING:
    from aiaas.core.governance.backup import Manifest
    from aiaas.core.governance.garbage import Collection


@click.group()
def keys() -> None:
    """Master keys: make one, or re-wrap every data key with the current one."""


@keys.command("generate")
def generate_key() -> None:
    """Print a new random master key for AIAAS_MASTER_KEY. Keep it safe: without it, no
    artifact can be opened."""
    from aiaas.core.governance.crypto import MasterKey

    click.echo(MasterKey.generate().encoded())


@keys.command("rotate")
@reports_errors
def rotate_keys() -> None:
    """Re-wrap every project's data key with AIAAS_MASTER_KEY. Put the old key in
    AIAAS_PREVIOUS_MASTER_KEYS for this run; no artifact is rewritten."""

    from aiaas.core.governance.vault import VAULT

    async def rotate() -> int:
        async with operator_platform() as platform:
            return await platform.service(VAULT).rotate(platform)

    click.echo(f"re-wrapped {asyncio.run(rotate())} data key(s)")


@click.command()
@click.option("--grace-seconds", type=click.IntRange(min=0), help="Default: gc_grace_s.")
@reports_errors
def gc(grace_seconds: int | None) -> None:
    """Remove artifacts that nothing live refers to (deleted versions' data)."""
    from aiaas.core.governance.garbage import collect_garbage

    async def collect() -> Collection:
        async with operator_platform() as platform:
            return await collect_garbage(platform, grace_s=grace_seconds)

    result = asyncio.run(collect())
    click.echo(
        f"deleted {result.deleted} artifact(s); kept {result.kept_referenced} in use and "
        f"{result.kept_young} too young; discarded {result.discarded_incomplete} incomplete"
    )


@click.group()
def backup() -> None:
    """Back up and restore the whole instance: database and artifacts."""


@backup.command("create")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@reports_errors
def create_backup_command(file: Path) -> None:
    """Write one archive: every table from one snapshot, every artifact, and a manifest."""
    from aiaas.core.governance.backup import create_backup

    async def create() -> Manifest:
        async with operator_platform() as platform:
            return await create_backup(platform, file)

    manifest = asyncio.run(create())
    click.echo(f"wrote {file}: {len(manifest.tables)} tables, {len(manifest.artifacts)} artifacts")


@backup.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@reports_errors
def verify_backup_command(file: Path) -> None:
    """Check every member of the archive against its manifest."""
    from aiaas.core.governance.backup import verify_archive

    manifest = verify_archive(file)
    rows = sum(table["rows"] for table in manifest.tables)
    click.echo(
        f"{file} is sound: schema {manifest.schema_revision}, {rows} rows in "
        f"{len(manifest.tables)} tables, {len(manifest.artifacts)} artifacts, made "
        f"{manifest.created_at}"
    )


@backup.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@reports_errors
def restore_backup_command(file: Path) -> None:
    """Restore an archive into an empty instance; all or nothing."""
    from aiaas.core.governance.backup import restore_backup, verify_archive

    config = current_config()
    require_services(config, "database_url")
    assert config.database_url is not None
    manifest = verify_archive(file)
    if asyncio.run(database_revision(config)) is None:
        asyncio.run(migrations.upgrade(config.database_url, manifest.schema_revision))

    async def restore() -> None:
        async with operator_platform(check_schema=False) as platform:
            await restore_backup(platform, file)

    asyncio.run(restore())
    asyncio.run(migrations.upgrade(config.database_url))
    click.echo(f"restored {file} (made {manifest.created_at})")
