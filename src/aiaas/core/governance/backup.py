"""Backups: one archive with every table from one consistent snapshot, every artifact, and a
manifest holding the sha256 of each member.

    manifest.json            format, aiaas version, schema revision, and for every member its
                             path, size and sha256 (written last, once all are known)
    tables/<table>.copy      the table in PostgreSQL's binary COPY format
    artifacts/<key>          each artifact as stored: sealed, so the archive holds no plaintext

The tables are read inside one REPEATABLE READ transaction, so they agree with each other. The
archive is written to a temporary name, readable by its owner alone (mode 0600: it holds every
row), and renamed into place when complete.

A restore goes into an empty instance and is all-or-nothing: the whole archive is verified
before anything is written, the artifacts are written, then every table is loaded in one
transaction; if anything fails, the transaction rolls back and the artifacts written are removed.
Before that transaction commits, the audit trail it loaded must verify (`verify_audit_trail`): an
archive whose audit events were edited, removed or reordered is refused, even when its manifest
was rewritten to match.
The data keys in the archive are wrapped by the master key of the instance that made it: the
restored instance needs that key.
"""

# Backups run from the CLI, alone on their event loop: small blocking file calls here hold up
# nothing. The bulk of the I/O still goes through threads.
# ruff: noqa: ASYNC240

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from graphlib import TopologicalSorter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiaas import __version__, migrations
from aiaas.core.audit import AuditedChange, verify_audit_trail
from aiaas.core.errors import BackupError, ConflictError
from aiaas.core.governance.vault import file_chunks
from aiaas.core.storage import sha256_of

if TYPE_CHECKING:
    from aiaas.core.platform import Platform
    from aiaas.core.storage import Connection

FORMAT = "aiaas-backup-1"
MANIFEST = "manifest.json"
CHUNK_BYTES = 1 << 20
_SKIPPED_TABLES = {migrations.VERSION_TABLE}
# The only member names an archive holds: extraction writes nowhere else.
_MEMBER_NAME = re.compile(
    r"manifest\.json|tables/[a-z_][a-z0-9_]{0,62}\.copy|artifacts/[0-9a-f]{64}"
)


@dataclass
class Manifest:
    schema_revision: str
    tables: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    aiaas_version: str = __version__
    format: str = FORMAT

    def members(self) -> dict[str, dict[str, Any]]:
        return {entry["member"]: entry for entry in [*self.tables, *self.artifacts]}

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise BackupError(f"the manifest is unreadable: {exc}") from None
        if not isinstance(data, dict):
            raise BackupError("the manifest is unreadable: not a JSON object")
        if data.get("format") != FORMAT:
            raise BackupError(f"not an {FORMAT} archive")
        try:
            manifest = cls(**data)
        except TypeError as exc:
            raise BackupError(f"the manifest is unreadable: {exc}") from None
        manifest._check_entries()
        return manifest

    def _check_entries(self) -> None:
        """Every entry names a member of the form the archive is written with: nothing read
        from an archive chooses a path or a table of its own."""
        if not isinstance(self.tables, list) or not isinstance(self.artifacts, list):
            raise BackupError("the manifest is unreadable: tables and artifacts must be lists")
        for entry in [*self.tables, *self.artifacts]:
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("member"), str)
                and isinstance(entry.get("bytes"), int)
                and isinstance(entry.get("sha256"), str)
            ):
                raise BackupError(f"the manifest is unreadable: bad entry {entry!r:.200}")
        for table in self.tables:
            name = table.get("name")
            if not isinstance(name, str) or table["member"] != f"tables/{name}.copy":
                raise BackupError(f"the manifest is unreadable: bad table entry {table!r:.200}")
        for artifact in self.artifacts:
            key = artifact.get("key")
            if not isinstance(key, str) or artifact["member"] != f"artifacts/{key}":
                raise BackupError(f"the manifest is unreadable: bad artifact {artifact!r:.200}")
        for member in self.members():
            if not _MEMBER_NAME.fullmatch(member):
                raise BackupError(f"unexpected member name {member!r:.200}")


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


async def _write_file(chunks: AsyncIterator[bytes], path: Path) -> None:
    handle = await asyncio.to_thread(path.open, "wb")
    try:
        async for chunk in chunks:
            await asyncio.to_thread(handle.write, chunk)
    finally:
        handle.close()


async def create_backup(platform: Platform, destination: Path) -> Manifest:
    """Write the archive to `destination`."""
    destination = destination.absolute()
    partial = destination.with_name(f".{destination.name}.partial")
    with tempfile.TemporaryDirectory(dir=destination.parent) as work_dir:
        work = Path(work_dir)
        # Created 0600 before a byte is written, rather than narrowed afterwards.
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        os.chmod(partial, 0o600)  # an older partial file keeps its mode through O_CREAT
        archive = await asyncio.to_thread(tarfile.open, partial, "w")
        try:
            manifest = await _snapshot(platform, archive, work)
            manifest_path = work / MANIFEST
            manifest_path.write_bytes(manifest.to_json())
            await asyncio.to_thread(_add, archive, manifest_path, MANIFEST)
            await asyncio.to_thread(archive.close)
            await asyncio.to_thread(os.replace, partial, destination)
        except BaseException:
            archive.close()
            partial.unlink(missing_ok=True)
            raise
    async with AuditedChange(platform, None, "backup.create") as change:
        await change.record(
            object_type="backup",
            object_id=destination.name,
            details={"tables": len(manifest.tables), "artifacts": len(manifest.artifacts)},
        )
    return manifest


async def _snapshot(platform: Platform, archive: tarfile.TarFile, work: Path) -> Manifest:
    async with (
        platform.metadata.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        revision = await migrations.current_revision(connection)
        manifest = Manifest(schema_revision=revision or "")
        for table in await tables_in_load_order(connection):
            path = work / f"{table}.copy"
            # COPY's status ("COPY <rows>") counts the rows of the same snapshot.
            status = await connection.copy_from_table(table, output=str(path), format="binary")
            rows = int(status.rsplit(" ", 1)[1])
            entry = await asyncio.to_thread(_add, archive, path, f"tables/{table}.copy")
            manifest.tables.append({**entry, "name": table, "rows": rows})
            path.unlink()
    async for key in platform.artifacts.keys():
        path = work / key
        # Read through the store, which checks the bytes still hash to their key.
        await _write_file(platform.artifacts.open(key), path)
        entry = await asyncio.to_thread(_add, archive, path, f"artifacts/{key}")
        manifest.artifacts.append({**entry, "key": key})
        path.unlink()
    return manifest


# Verifying -----------------------------------------------------------------------------------


_UNREADABLE = (tarfile.TarError, EOFError, OSError)


def _members(path: Path) -> Iterator[tuple[tarfile.TarInfo, Iterator[bytes]]]:
    """Each member of the archive with its content, chunk by chunk. Any failure to read (a
    member cut short included, which shows only as its content is read) is a `BackupError`."""
    try:
        with tarfile.open(path, "r:") as archive:
            for info in archive:
                if not info.isfile() or not _MEMBER_NAME.fullmatch(info.name):
                    raise BackupError(f"unexpected member {info.name!r:.200}")
                handle = archive.extractfile(info)
                assert handle is not None
                yield info, _chunks(handle)
    except _UNREADABLE as exc:
        raise BackupError(f"the archive is unreadable or truncated: {exc}") from None


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while True:
        try:
            chunk = handle.read(CHUNK_BYTES)
        except _UNREADABLE as exc:
            raise BackupError(f"the archive is unreadable or truncated: {exc}") from None
        if not chunk:
            return
        yield chunk


def verify_archive(path: Path) -> Manifest:
    """Check every member against the manifest; `BackupError` saying what is wrong."""
    seen: dict[str, tuple[int, str]] = {}
    manifest_bytes: bytes | None = None
    for info, chunks in _members(path):
        if info.name == MANIFEST:
            manifest_bytes = b"".join(chunks)
            continue
        digest = hashlib.sha256()
        size = 0
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
        seen[info.name] = (size, digest.hexdigest())
    if manifest_bytes is None:
        raise BackupError("the archive has no manifest: it is incomplete")
    manifest = Manifest.from_json(manifest_bytes)
    expected = manifest.members()
    for member, entry in expected.items():
        if member not in seen:
            raise BackupError(f"{member} is missing from the archive")
        if seen[member] != (entry["bytes"], entry["sha256"]):
            raise BackupError(f"{member} does not match its checksum: the archive is corrupt")
    for artifact in manifest.artifacts:
        if artifact["sha256"] != artifact["key"]:
            raise BackupError(f"artifact {artifact['key']} does not match its key")
    unexpected = sorted(set(seen) - set(expected))
    if unexpected:
        raise BackupError(f"members not in the manifest: {', '.join(unexpected)}")
    return manifest


# Restoring -----------------------------------------------------------------------------------


async def _ensure_empty(platform: Platform, connection: Connection) -> None:
    for table in await tables_in_load_order(connection):
        if await connection.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{table}")'):
            raise ConflictError(f"a restore needs an empty instance: table {table} holds data")
    async for _ in platform.artifacts.keys():
        raise ConflictError("a restore needs an empty instance: the artifact store holds data")


async def restore_backup(platform: Platform, path: Path) -> Manifest:
    """Restore the archive into this (empty) instance; nothing is written if it cannot be."""
    manifest = await asyncio.to_thread(verify_archive, path)
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
            tables = await asyncio.to_thread(_extract, path, Path(work_dir))
            for artifact in manifest.artifacts:
                stored = await platform.artifacts.put_stream(
                    file_chunks(Path(work_dir) / "artifacts" / artifact["key"])
                )
                written.append(stored.key)
            await _load_tables(platform, manifest, tables)
    except BaseException:
        for key in written:
            await platform.artifacts.delete(key)
        raise
    async with AuditedChange(platform, None, "backup.restore") as change:
        await change.record(
            object_type="backup",
            object_id=path.name,
            details={"created_at": manifest.created_at, "artifacts": len(manifest.artifacts)},
        )
    return manifest


def _extract(path: Path, work: Path) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for info, chunks in _members(path):
        if info.name == MANIFEST:
            continue
        # The name passed _MEMBER_NAME: one directory and a file name, without "..".
        target = work / info.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
        paths[info.name] = target
    return paths


async def _load_tables(platform: Platform, manifest: Manifest, files: dict[str, Path]) -> None:
    async with platform.metadata.transaction() as connection:
        for table in manifest.tables:
            await connection.copy_to_table(
                table["name"], source=str(files[table["member"]]), format="binary"
            )
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
