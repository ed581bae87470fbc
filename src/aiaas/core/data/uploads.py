"""Receiving an uploaded file: streamed to disk, never held whole in memory, and refused the
moment it passes the size limit."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiaas.core.errors import InputError

CHUNK_BYTES = 1 << 20


def too_large(limit: int) -> InputError:
    return InputError(
        f"the file is larger than the limit of {limit} bytes",
        field_errors={"file": f"larger than {limit} bytes"},
    )


@dataclass(frozen=True)
class ReceivedFile:
    path: Path
    sha256: str  # of the bytes as received, computed while they were written


async def save_stream(chunks: AsyncIterable[bytes], destination: Path, limit: int) -> ReceivedFile:
    """Write the chunks to `destination`; `InputError` (and nothing left behind) past `limit`."""
    handle = await asyncio.to_thread(destination.open, "wb")
    digest = hashlib.sha256()
    written = 0
    # A server hands the body over in small pieces (64 KiB): they are gathered into writes of
    # about CHUNK_BYTES, so that the hop to a thread is paid per mebibyte, not per piece. The
    # hash is taken there too, off the event loop, instead of reading the file again after.
    pending: list[bytes] = []
    pending_bytes = 0

    def write(blocks: list[bytes]) -> None:
        for block in blocks:
            digest.update(block)
        handle.writelines(blocks)

    try:
        async for chunk in chunks:
            written += len(chunk)
            if written > limit:
                raise too_large(limit)
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= CHUNK_BYTES:
                await asyncio.to_thread(write, pending)
                pending, pending_bytes = [], 0
        await asyncio.to_thread(write, pending)
    except BaseException:
        # Also on cancellation, when awaiting is no longer possible: clean up inline.
        handle.close()
        destination.unlink(missing_ok=True)  # noqa: ASYNC240
        raise
    handle.close()
    return ReceivedFile(destination, digest.hexdigest())


async def _upload_chunks(upload: Any) -> AsyncIterable[bytes]:
    while chunk := await upload.read(CHUNK_BYTES):
        yield chunk


async def copy_upload(upload: Any, destination: Path, limit: int) -> ReceivedFile:
    """A multipart upload (Starlette's `UploadFile`) copied to `destination`, then closed: its
    spooled temporary file is ours to release."""
    try:
        return await save_stream(_upload_chunks(upload), destination, limit)
    finally:
        await upload.close()
