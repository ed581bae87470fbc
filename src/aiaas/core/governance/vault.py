"""The vault: every artifact of a project, sealed with that project's data key.

Services never write plaintext to the artifact store: they go through `Vault.store` and
`Vault.open`, which seal and unseal with the project's data key (`aiaas.core.governance.crypto`).
Data keys are made on first use, kept wrapped in `data_keys`, and held unwrapped in this
process's memory once opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from aiaas.core.config import Config
from aiaas.core.errors import ConfigError, NotFoundError
from aiaas.core.governance.crypto import (
    CHUNK_BYTES,
    MasterKey,
    new_data_key,
    seal,
    unseal,
    unwrap_data_key,
    wrap_data_key,
)
from aiaas.core.platform import ProcessService
from aiaas.core.storage import ArtifactStore, Connection, MetadataStore, StoredArtifact

if TYPE_CHECKING:
    from aiaas.core.platform import Platform


def master_keys(config: Config) -> tuple[MasterKey | None, dict[str, MasterKey]]:
    """The current master key, and every configured key (current and previous) by id."""
    current = MasterKey.parse(config.master_key) if config.master_key else None
    known = [MasterKey.parse(encoded) for encoded in config.previous_master_keys]
    if current is not None:
        known.append(current)
    return current, {key.id: key for key in known}


async def close_stream(stream: AsyncIterator[bytes]) -> None:
    """Close an async generator (a store's stream, typed as the iterator it is used as)."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


async def file_chunks(path: Path, size: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, size):
            yield chunk
    finally:
        handle.close()


class Vault:
    def __init__(self, config: Config, metadata: MetadataStore, artifacts: ArtifactStore) -> None:
        self._current, self._known = master_keys(config)
        self._metadata = metadata
        self._artifacts = artifacts
        self._data_keys: dict[UUID, bytes] = {}
        self._lock = asyncio.Lock()

    def _require_master(self) -> MasterKey:
        if self._current is None:
            raise ConfigError("AIAAS_MASTER_KEY is not set: artifacts cannot be sealed")
        return self._current

    def _unwrap(self, project_id: UUID, wrapped: bytes, key_id: str) -> bytes:
        master = self._known.get(key_id)
        if master is None:
            raise ConfigError(
                f"project {project_id}'s data key is wrapped by master key {key_id}, which is not "
                "configured (AIAAS_MASTER_KEY or AIAAS_PREVIOUS_MASTER_KEYS)"
            )
        return unwrap_data_key(master, project_id, wrapped)

    async def data_key(self, project_id: UUID) -> bytes:
        """The project's data key, made and stored (wrapped) on first use."""
        if project_id in self._data_keys:
            return self._data_keys[project_id]
        async with self._lock, self._metadata.acquire() as connection:
            row = await connection.fetchrow(
                "SELECT wrapped_key, master_key_id FROM data_keys WHERE project_id = $1",
                project_id,
            )
            if row is None:
                master = self._require_master()
                key = new_data_key()
                inserted = await connection.fetchval(
                    "INSERT INTO data_keys (project_id, wrapped_key, master_key_id) "
                    "VALUES ($1, $2, $3) ON CONFLICT (project_id) DO NOTHING RETURNING true",
                    project_id,
                    wrap_data_key(master, project_id, key),
                    master.id,
                )
                if not inserted:
                    # Another process made it first: use theirs.
                    return await self._reload(connection, project_id)
            else:
                key = self._unwrap(project_id, row["wrapped_key"], row["master_key_id"])
            self._data_keys[project_id] = key
            return key

    async def _reload(self, connection: Connection, project_id: UUID) -> bytes:
        row = await connection.fetchrow(
            "SELECT wrapped_key, master_key_id FROM data_keys WHERE project_id = $1", project_id
        )
        if row is None:
            # The insert that beat ours made a key; only the project's deletion removes it.
            raise NotFoundError("no such project")
        key = self._unwrap(project_id, row["wrapped_key"], row["master_key_id"])
        self._data_keys[project_id] = key
        return key

    async def store(self, project_id: UUID, plaintext: AsyncIterable[bytes]) -> StoredArtifact:
        key = await self.data_key(project_id)
        return await self._artifacts.put_stream(seal(key, project_id, plaintext))

    async def store_file(self, project_id: UUID, path: Path) -> StoredArtifact:
        return await self.store(project_id, file_chunks(path))

    async def open(self, project_id: UUID, artifact_key: str) -> AsyncIterator[bytes]:
        key = await self.data_key(project_id)
        sealed = self._artifacts.open(artifact_key)
        plaintext = unseal(key, project_id, sealed)
        try:
            async for chunk in plaintext:
                yield chunk
        finally:
            # A refused or abandoned read closes the store's stream now, not whenever the
            # garbage collector gets to it: the object's file stays open until then.
            await close_stream(plaintext)
            await close_stream(sealed)

    async def read_to_file(self, project_id: UUID, artifact_key: str, path: Path) -> None:
        handle = await asyncio.to_thread(path.open, "wb")
        try:
            async for chunk in self.open(project_id, artifact_key):
                await asyncio.to_thread(handle.write, chunk)
        finally:
            handle.close()

    async def rotate(self, platform: Platform) -> int:
        """Re-wrap every data key with the current master key. Returns how many changed; the
        artifacts themselves are not touched."""
        from aiaas.core.audit import AuditedChange

        master = self._require_master()
        async with AuditedChange(platform, None, "keys.rotate") as change:
            rows = await change.connection.fetch(
                "SELECT project_id, wrapped_key, master_key_id FROM data_keys FOR UPDATE"
            )
            rotated = 0
            for row in rows:
                if row["master_key_id"] == master.id:
                    continue
                key = self._unwrap(row["project_id"], row["wrapped_key"], row["master_key_id"])
                await change.connection.execute(
                    "UPDATE data_keys SET wrapped_key = $2, master_key_id = $3, "
                    "rotated_at = clock_timestamp() WHERE project_id = $1",
                    row["project_id"],
                    wrap_data_key(master, row["project_id"], key),
                    master.id,
                )
                rotated += 1
            await change.record(
                object_type="master_key",
                object_id=master.id,
                details={"rewrapped": rotated, "total": len(rows)},
            )
        return rotated


VAULT: ProcessService[Vault] = ProcessService(
    "vault", lambda platform: Vault(platform.config, platform.metadata, platform.artifacts)
)
"""This process's vault: `platform.service(VAULT)`. It keeps opened data keys in memory."""
