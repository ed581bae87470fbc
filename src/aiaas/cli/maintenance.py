"""The operator's upkeep: `aiaas keys` (master keys), `aiaas gc` (unreferenced artifacts) and
`aiaas backup` (archives of the whole instance, and restoring them)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

from aiaas import migrations
from aiaas.cli.common import (
    current_config,
    on_dev_data_dir,
    operator_platform,
    reports_errors,
    require_services,
)
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
@on_dev_data_dir()
def gc(grace_seconds: int | None) -> None:
    """Remove artifacts that nothing live refers to (deleted versions' data, the checkpoints of
    jobs that failed longer ago than checkpoint_retention_s)."""
    from aiaas.core.governance.garbage import collect_garbage
    from aiaas.core.training import expire_checkpoints

    async def collect() -> Collection:
        async with operator_platform() as platform:
            await expire_checkpoints(platform)
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
@on_dev_data_dir()
def create_backup_command(file: Path) -> None:
    """Write one archive: every table from one snapshot, encrypted, every artifact (sealed
    already), and a manifest authenticated with AIAAS_MASTER_KEY."""
    from aiaas.core.governance.backup import create_backup

    async def create() -> Manifest:
        async with operator_platform() as platform:
            return await create_backup(platform, file)

    manifest = asyncio.run(create())
    click.echo(f"wrote {file}: {len(manifest.tables)} tables, {len(manifest.artifacts)} artifacts")


@backup.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@reports_errors
@on_dev_data_dir(database=False)
def verify_backup_command(file: Path) -> None:
    """Check every member of the archive against its manifest, decrypting nothing. With a
    master key configured, the manifest must also prove it was sealed with one of them; without
    one, only the members are checked, and the output says so."""
    from aiaas.core.governance.backup import verify_archive
    from aiaas.core.governance.vault import master_keys

    _, known = master_keys(current_config())
    check = verify_archive(file, known or None)
    manifest = check.manifest
    rows = sum(table["rows"] for table in manifest.tables)
    if check.authenticated_by is not None:
        seal = f"its manifest is authentic (master key {check.authenticated_by})"
    elif manifest.sealed:
        seal = (
            "its manifest's authenticity was not checked: no master key is configured "
            "(AIAAS_MASTER_KEY)"
        )
    else:
        seal = (
            f"it is an unsealed {manifest.format} archive: its tables are in clear and its "
            "manifest cannot be authenticated"
        )
    click.echo(
        f"{file} is sound: schema {manifest.schema_revision}, {rows} rows in "
        f"{len(manifest.tables)} tables, {len(manifest.artifacts)} artifacts, made "
        f"{manifest.created_at}; {seal}"
    )


@backup.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--allow-unsealed",
    is_flag=True,
    help="Accept an archive of the unsealed format (aiaas-backup-1), which nothing authenticates.",
)
@reports_errors
@on_dev_data_dir()
def restore_backup_command(file: Path, allow_unsealed: bool) -> None:
    """Restore an archive into an empty instance; all or nothing. It needs the master key the
    archive was sealed with, as AIAAS_MASTER_KEY or in AIAAS_PREVIOUS_MASTER_KEYS."""
    from aiaas.core.governance.backup import restore_backup, verify_for_restore
    from aiaas.core.governance.vault import master_keys

    config = current_config()
    require_services(config, "database_url")
    # The whole archive is verified and authenticated before the database is touched.
    _, known = master_keys(config)
    manifest = verify_for_restore(file, known, allow_unsealed=allow_unsealed).manifest
    if not manifest.sealed:
        click.echo(
            f"warning: {file} is an unsealed {manifest.format} archive; nothing authenticates it",
            err=True,
        )
    if asyncio.run(database_revision(config)) is None:
        asyncio.run(migrations.upgrade_schema(config, manifest.schema_revision))

    async def restore() -> None:
        # As the owner: the load renumbers sequences, which the application role may not.
        async with operator_platform(check_schema=False, as_schema_owner=True) as platform:
            await restore_backup(platform, file, allow_unsealed=allow_unsealed)

    asyncio.run(restore())
    asyncio.run(migrations.upgrade_schema(config))
    click.echo(f"restored {file} (made {manifest.created_at})")
