"""Artifacts stored ahead of the transaction that records them, and deleted unless it does.

Sealing a file is slow, so an upload, a transformation or a training job stores its artifact
before it opens its transaction: the slow part then holds no lock and no connection. Should the
operation fail or be cancelled after that, or find the same content recorded meanwhile,
`artifacts_kept_on_success` deletes what it stored rather than leave it to the garbage
collector's next pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from aiaas.core.governance.garbage import is_referenced
from aiaas.core.governance.vault import VAULT, file_chunks
from aiaas.core.storage import StoredArtifact

if TYPE_CHECKING:
    from uuid import UUID

    from aiaas.core.platform import Platform

log = logging.getLogger(__name__)


class PendingArtifacts:
    """What one operation stored through the vault, to delete should it fail."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.keys: list[str] = []

    async def store(self, project_id: UUID, plaintext: AsyncIterable[bytes]) -> StoredArtifact:
        stored = await self.platform.service(VAULT).store(project_id, plaintext)
        self.keys.append(stored.key)
        return stored

    async def store_file(self, project_id: UUID, path: Path) -> StoredArtifact:
        return await self.store(project_id, file_chunks(path))

    async def discard_unrecorded(self) -> None:
        # Each key is new (a sealed file starts with a random nonce), so only this operation's
        # rows can refer to it: on failure, none does, unless the failure came after the commit
        # reached the database (a lost connection), and then the row keeps it.
        for key in self.keys:
            try:
                async with self.platform.metadata.acquire() as connection:
                    if await is_referenced(connection, key, or_deleted=True):
                        continue
                await self.platform.artifacts.delete(key)
            except Exception:
                log.exception(
                    "artifact %s of a failed operation is left to the garbage collector", key
                )


@asynccontextmanager
async def artifacts_kept_on_success(platform: Platform) -> AsyncIterator[PendingArtifacts]:
    """What the block stores is kept if a row records it once the block is done; deleted
    otherwise, whether the block failed or found it had no use for it (the same content
    recorded meanwhile by another upload). Enter it outside the block's transaction, so that
    the check sees what was committed."""
    pending = PendingArtifacts(platform)
    try:
        yield pending
    finally:
        # Shielded: a cancelled operation must still clean up after itself.
        await asyncio.shield(pending.discard_unrecorded())
