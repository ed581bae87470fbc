"""The filesystem artifact store: content-addressed files under one directory.

Layout: `<root>/objects/<first two hex digits>/<sha256>`. A write goes to `<root>/tmp/` while it
is hashed, is fsynced, then renamed into place, so a crash never leaves a partial object under a
valid key. Keys come only from the hash: no caller-supplied name ever becomes a path.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import IO

from aiaas.core.config import Config
from aiaas.core.errors import ArtifactIntegrityError, ArtifactNotFoundError
from aiaas.core.hookspecs import hookimpl
from aiaas.core.specs import ArtifactStoreSpec
from aiaas.core.storage import ArtifactStore, StoredArtifact, check_artifact_key

READ_CHUNK_BYTES = 1 << 20


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _staging_file(directory: Path) -> IO[bytes]:
    return tempfile.NamedTemporaryFile(dir=directory, delete=False)


def _finish_file(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


class FilesystemArtifactStore(ArtifactStore):
    def __init__(self, config: Config) -> None:
        self.root = config.resolved_artifact_dir
        self._objects = self.root / "objects"
        self._staging = self.root / "tmp"

    def path_of(self, key: str) -> Path:
        key = check_artifact_key(key)
        return self._objects / key[:2] / key

    async def put_stream(self, chunks: AsyncIterable[bytes]) -> StoredArtifact:
        await asyncio.to_thread(self._staging.mkdir, mode=0o700, parents=True, exist_ok=True)
        handle = await asyncio.to_thread(_staging_file, self._staging)
        staged = Path(handle.name)
        try:
            digest = hashlib.sha256()
            size = 0
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(_finish_file, handle)
            key = digest.hexdigest()
            await asyncio.to_thread(self._install, staged, self.path_of(key))
        except BaseException:
            # Also on cancellation, when awaiting is no longer possible: clean up inline.
            handle.close()
            staged.unlink(missing_ok=True)  # noqa: ASYNC240
            raise
        return StoredArtifact(key=key, size_bytes=size)

    @staticmethod
    def _install(staged: Path, final: Path) -> None:
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if final.exists() and _sha256_of(final) == final.name:
            # Same key, same content: keep the object that is already there.
            staged.unlink()
            return
        # New, or a stored copy that went corrupt: the fresh upload repairs it.
        os.replace(staged, final)
        _fsync_directory(final.parent)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        path = self.path_of(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"no artifact {key}") from None
        digest = hashlib.sha256()
        try:
            while chunk := await asyncio.to_thread(handle.read, READ_CHUNK_BYTES):
                digest.update(chunk)
                yield chunk
        finally:
            handle.close()
        if digest.hexdigest() != key:
            raise ArtifactIntegrityError(
                f"artifact {key} is corrupt: its content no longer matches"
            )

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_of(key).is_file)

    async def delete(self, key: str) -> bool:
        path = self.path_of(key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        return True

    async def age_seconds(self, key: str) -> float | None:
        try:
            modified = (await asyncio.to_thread(self.path_of(key).stat)).st_mtime
        except FileNotFoundError:
            return None
        return max(0.0, time.time() - modified)

    async def discard_incomplete(self, older_than_s: float) -> int:
        def sweep() -> int:
            if not self._staging.exists():
                return 0
            cutoff = time.time() - older_than_s
            stale = [path for path in self._staging.iterdir() if path.stat().st_mtime < cutoff]
            for path in stale:
                path.unlink(missing_ok=True)
            return len(stale)

        return await asyncio.to_thread(sweep)

    async def keys(self) -> AsyncIterator[str]:
        paths = await asyncio.to_thread(sorted, self._objects.glob("*/*"))
        for path in paths:
            yield path.name


@hookimpl
def aiaas_artifact_stores() -> Iterable[ArtifactStoreSpec]:
    return [
        ArtifactStoreSpec(
            name="filesystem",
            factory=FilesystemArtifactStore,
            description="Content-addressed files under artifact_dir, written atomically.",
        )
    ]
