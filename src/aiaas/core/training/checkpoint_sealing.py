"""Checkpoints sealed like every artifact: with the project's data key, in the vault's format.

The trainer writes and reads a job's checkpoints as local files in the worker's scratch
directory, in its training thread, but what is on disk is the sealed form only: AES-256-GCM in
authenticated chunks, bound to the project (`aiaas.core.governance.crypto`), exactly as the vault
seals artifacts. So the worker puts those very bytes into the artifact store, where they are an
artifact like any other (`checkpoint_uploads`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast
from uuid import UUID

from aiaas.core.governance.crypto import seal, unseal


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _joined(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def _drained(chunks: AsyncIterator[bytes]) -> bytes:
    """All of a stream that never waits, read without an event loop. Sealing or opening bytes
    already in memory awaits nothing but its own generators, so the coroutine ends on its first
    step. The caller is a training thread, which has no loop, or may be a thread whose loop is
    running, where no other may start."""
    coroutine = _joined(chunks)
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return cast(bytes, finished.value)
    coroutine.close()
    raise RuntimeError("sealing bytes in memory waited for something")


@dataclass(frozen=True)
class ProjectCheckpointSealer:
    """A `CheckpointSealer` keyed with one project's data key."""

    project_id: UUID
    data_key: bytes = field(repr=False)

    def seal(self, plaintext: bytes) -> bytes:
        return _drained(seal(self.data_key, self.project_id, _once(plaintext)))

    def unseal(self, sealed: bytes) -> bytes:
        return _drained(unseal(self.data_key, self.project_id, _once(sealed)))
