"""Backups: one archive with every table from one consistent snapshot, every artifact, and a
manifest of them, sealed by the master key. The archive's format is `backup_archive`'s, its
sealing `backup_sealing`'s.

The tables are read inside one REPEATABLE READ transaction, so they agree with each other, and
sealed as they stream out of PostgreSQL: their plaintext never reaches the disk. The archive is
written to a temporary name, readable by its owner alone (mode 0600), flushed to disk and renamed
into place when complete: an interrupted backup leaves no file that looks like an archive.

A restore goes into an empty instance and is all-or-nothing: the whole archive is verified and
authenticated before anything is written (a restore needs the master key that sealed the
archive, current or previous), the artifacts are written, then every table is decrypted into one
transaction; if anything fails, the transaction rolls back and the artifacts written are removed.
Before that transaction commits, the audit trail it loaded must verify (`verify_audit_trail`): an
archive whose audit events were edited, removed or reordered is refused, even when its manifest
was rewritten to match.
The projects' data keys in the archive (`data_keys`) are wrapped by the master key of the
instance that made it: the restored instance needs that key too.
"""

# Backups run from the CLI, alone on their event loop: small blocking file calls here hold up
# nothing. The bulk of the I/O still goes through threads.
# ruff: noqa: ASYNC240

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from graphlib import TopologicalSorter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiaas import migrations
from aiaas.core.audit import AuditedChange, verify_audit_trail
from aiaas.core.errors import BackupError, ConfigError, ConflictError
from aiaas.core.governance.backup_archive import (
    MANIFEST,
    ArchiveCheck,
    Manifest,
    extract_verified,
    verify_archive,
    verify_for_restore,
)
from aiaas.core.governance.backup_sealing import (
    FORMAT,
    MANIFEST_TAG,
    UNSEALED_FORMAT,
    Sealing,
    manifest_tag,
    seal_table,
    unseal_table,
)
from aiaas.core.governance.crypto import MasterKey
from aiaas.core.governance.vault import file_chunks, master_keys
from aiaas.core.storage import sha256_of

if TYPE_CHECKING:
    from aiaas.core.config import Config
    from aiaas.core.platform import Platform
    from aiaas.core.storage import Connection

_PIPE_DEPTH = 16
"""COPY output chunks waiting to be sealed, at most: the snapshot never runs far ahead."""
_SKIPPED_TABLES = {migrations.VERSION_TABLE}

__all__ = [
    "FORMAT",
    "MANIFEST",
    "MANIFEST_TAG",
    "UNSEALED_FORMAT",
    "ArchiveCheck",
    "Manifest",
    "create_backup",
    "restore_backup",
    "tables_in_load_order",
    "verify_archive",
    "verify_for_restore",
]


# Tables, in an order that loads --------------------------------------------------------------


async def tables_in_load_order(connection: Connection) -> list[str]:
    """The aiaas tables, every table after those it refers to."""
    tables = {
        row["relname"]
        for row in await connection.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        )
    } - _SKIPPED_TABLES
    edges = await connection.fetch(
        "SELECT c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent "
        "FROM pg_constraint c WHERE c.contype = 'f' "
        "AND c.connamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
    )
    graph: dict[str, set[str]] = {table: set() for table in tables}
    for edge in edges:
        if edge["child"] != edge["parent"] and edge["child"] in graph:
            graph[edge["child"]].add(edge["parent"])
    return list(TopologicalSorter(graph).static_order())


# Writing -------------------------------------------------------------------------------------


def _add(archive: tarfile.TarFile, path: Path, member: str) -> dict[str, Any]:
    info = tarfile.TarInfo(member)
    info.size = path.stat().st_size
    info.mtime = int(datetime.now(UTC).timestamp())
    with path.open("rb") as handle:
        archive.addfile(info, handle)
    return {"member": member, "bytes": info.size, "sha256": sha256_of(path)}


def _add_bytes(archive: tarfile.TarFile, member: str, content: bytes) -> None:
    info = tarfile.TarInfo(member)
    info.size = len(content)
    info.mtime = int(datetime.now(UTC).timestamp())
    archive.addfile(info, io.BytesIO(content))


async def _write_file(chunks: AsyncIterator[bytes], path: Path) -> None:
    handle = await asyncio.to_thread(path.open, "wb")
    try:
        async for chunk in chunks:
            await asyncio.to_thread(handle.write, chunk)
    finally:
        handle.close()


def _sealing_key(config: Config) -> MasterKey:
    current, _ = master_keys(config)
    if current is None:
        raise ConfigError(
            "AIAAS_MASTER_KEY is not set: a backup is sealed with it and cannot be made without"
        )
    return current


def _finish(archive: tarfile.TarFile, handle: IO[bytes], partial: Path, destination: Path) -> None:
    """Close the archive, put it on disk, then give it its name: the rename is the moment it
    becomes an archive, and it is whole by then."""
    archive.close()
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    os.replace(partial, destination)
    directory = os.open(destination.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


async def create_backup(platform: Platform, destination: Path) -> Manifest:
    """Write the archive to `destination`, sealed with the current master key."""
    master = _sealing_key(platform.config)
    sealing, data_key = Sealing.new(master)
    destination = destination.absolute()
    partial = destination.with_name(f".{destination.name}.partial")
    # The work directory holds each member once sealed, before it goes into the archive.
    with tempfile.TemporaryDirectory(dir=destination.parent) as work_dir:
        work = Path(work_dir)
        # Created 0600 before a byte is written, rather than narrowed afterwards.
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # an older partial file keeps its mode through O_CREAT
        try:
            with (
                os.fdopen(descriptor, "wb") as handle,
                tarfile.open(fileobj=handle, mode="w") as archive,
            ):
                manifest = await _snapshot(platform, archive, work, data_key, sealing)
                manifest_bytes = manifest.to_json()
                await asyncio.to_thread(_add_bytes, archive, MANIFEST, manifest_bytes)
                tag = manifest_tag(master, manifest_bytes)
                await asyncio.to_thread(_add_bytes, archive, MANIFEST_TAG, tag)
                await asyncio.to_thread(_finish, archive, handle, partial, destination)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    async with AuditedChange(platform, None, "backup.create") as change:
        await change.record(
            object_type="backup",
            object_id=destination.name,
            details={
                "tables": len(manifest.tables),
                "artifacts": len(manifest.artifacts),
                "master_key_id": master.id,
            },
        )
    return manifest


async def _snapshot(
    platform: Platform, archive: tarfile.TarFile, work: Path, data_key: bytes, sealing: Sealing
) -> Manifest:
    manifest = Manifest(schema_revision="", sealing=sealing.to_json())
    async with (
        platform.metadata.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        manifest.schema_revision = await migrations.current_revision(connection) or ""
        for table in await tables_in_load_order(connection):
            path = work / f"{table}.copy.sealed"
            rows = await _copy_out_sealed(connection, table, data_key, sealing, path)
            entry = await asyncio.to_thread(_add, archive, path, manifest.table_member(table))
            manifest.tables.append({**entry, "name": table, "rows": rows})
            path.unlink()
    # The artifacts go in as they are stored, not sealed again: each is already AES-256-GCM
    # under its project's data key, and those keys travel in `data_keys`, wrapped by the master
    # key and sealed again in this archive. A second layer would cost a pass over the bulk of
    # the archive and hide nothing more; the manifest's sha256 (their content address) still
    # vouches for each, and a restore stores them under that address unchanged.
    async for key in platform.artifacts.keys():
        path = work / key
        # Read through the store, which checks the bytes still hash to their key.
        await _write_file(platform.artifacts.open(key), path)
        entry = await asyncio.to_thread(_add, archive, path, f"artifacts/{key}")
        manifest.artifacts.append({**entry, "key": key})
        path.unlink()
    return manifest


async def _copy_out_sealed(
    connection: Connection, table: str, data_key: bytes, sealing: Sealing, path: Path
) -> int:
    """Write the table's binary COPY, sealed as it streams out of PostgreSQL, to `path`; return
    its row count. The COPY pushes its chunks and the seal pulls them: a task bridges the two,
    at most `_PIPE_DEPTH` chunks ahead."""
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
    room = asyncio.Semaphore(_PIPE_DEPTH)

    async def push(chunk: bytes) -> None:
        await room.acquire()
        chunks.put_nowait(chunk)

    async def copy_out() -> str:
        try:
            # COPY's status ("COPY <rows>") counts the rows of the snapshot.
            return str(await connection.copy_from_table(table, output=push, format="binary"))
        finally:
            chunks.put_nowait(None)  # the end, or the failure, reaches the seal either way

    async def plaintext() -> AsyncIterator[bytes]:
        while (chunk := await chunks.get()) is not None:
            room.release()
            yield chunk

    copying = asyncio.create_task(copy_out())
    try:
        await _write_file(seal_table(data_key, sealing, plaintext()), path)
        status = await copying
    except BaseException:
        copying.cancel()
        await asyncio.gather(copying, return_exceptions=True)
        raise
    return int(status.rsplit(" ", 1)[1])


# Restoring -----------------------------------------------------------------------------------


async def _ensure_empty(platform: Platform, connection: Connection) -> None:
    for table in await tables_in_load_order(connection):
        if await connection.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{table}")'):
            raise ConflictError(f"a restore needs an empty instance: table {table} holds data")
    async for _ in platform.artifacts.keys():
        raise ConflictError("a restore needs an empty instance: the artifact store holds data")


async def restore_backup(
    platform: Platform, path: Path, *, allow_unsealed: bool = False
) -> Manifest:
    """Restore the archive into this (empty) instance; nothing is written if it cannot be. A
    sealed archive needs the master key that sealed it, among the configured ones."""
    _, known = master_keys(platform.config)
    check = await asyncio.to_thread(verify_for_restore, path, known, allow_unsealed=allow_unsealed)
    manifest = check.manifest
    data_key = manifest.sealing_section().data_key(known) if manifest.sealed else None
    async with platform.metadata.acquire() as connection:
        current = await migrations.current_revision(connection)
        if current != manifest.schema_revision:
            raise ConflictError(
                f"the archive is at schema revision {manifest.schema_revision}, the database at "
                f"{current}: migrate it to the archive's revision first"
            )
        await _ensure_empty(platform, connection)
        schema_tables = set(await tables_in_load_order(connection))
    archived = {entry["name"] for entry in manifest.tables}
    if archived != schema_tables:
        raise BackupError(
            "the archive's tables are not this schema's: "
            f"missing {sorted(schema_tables - archived)}, "
            f"unknown {sorted(archived - schema_tables)}"
        )
    written: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as work_dir:
            members = await asyncio.to_thread(extract_verified, path, Path(work_dir), manifest)
            for artifact in manifest.artifacts:
                stored = await platform.artifacts.put_stream(
                    file_chunks(members[artifact["member"]])
                )
                written.append(stored.key)
            await _load_tables(platform, manifest, members, data_key)
    except BaseException:
        for key in written:
            await platform.artifacts.delete(key)
        raise
    async with AuditedChange(platform, None, "backup.restore") as change:
        await change.record(
            object_type="backup",
            object_id=path.name,
            details={
                "created_at": manifest.created_at,
                "artifacts": len(manifest.artifacts),
                "format": manifest.format,
                "authenticated_by": check.authenticated_by,
            },
        )
    return manifest


async def _load_tables(
    platform: Platform, manifest: Manifest, files: dict[str, Path], data_key: bytes | None
) -> None:
    async with platform.metadata.transaction() as connection:
        for table in manifest.tables:
            member = table["member"]
            # A sealed table is decrypted as it streams into COPY: its plaintext is never
            # written anywhere but the database. A chunk that fails authentication aborts the
            # COPY, and the transaction with it.
            source: str | AsyncIterator[bytes] = (
                str(files[member])
                if data_key is None
                else unseal_table(
                    data_key, manifest.sealing_section(), member, file_chunks(files[member])
                )
            )
            await connection.copy_to_table(table["name"], source=source, format="binary")
        # Identity columns carry on from the restored rows, not from 1.
        for row in await connection.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND is_identity = 'YES'"
        ):
            await connection.execute(
                "SELECT setval(pg_get_serial_sequence($1, $2), "
                f'coalesce((SELECT max("{row["column_name"]}") FROM "{row["table_name"]}"), 0) '
                "+ 1, false)",
                row["table_name"],
                row["column_name"],
            )
        await _verify_loaded_audit_trail(connection)


async def _verify_loaded_audit_trail(connection: Connection) -> None:
    """Refuse, inside the load's transaction, an audit trail whose chain does not hold. An
    archive from before the chain has none to verify: the migration that adds it chains the
    restored events."""
    chained = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
        "current_schema() AND table_name = 'audit_events' AND column_name = 'row_hash')"
    )
    if not chained:
        return
    verification = await verify_audit_trail(connection)
    if not verification.intact:
        raise BackupError(
            "the archive's audit trail does not verify, so it was not restored: "
            + "; ".join(link.describe() for link in verification.breaks)
        )
