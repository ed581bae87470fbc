"""Receiving an uploaded file: streamed to disk, never held whole in memory, and refused the
moment it passes the size limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

from aiaas.core.errors import InputError

CHUNK_BYTES = 1 << 20


def too_large(limit: int) -> InputError:
    return InputError(
        f"the file is larger than the limit of {limit} bytes",
        field_errors={"file": f"larger than {limit} bytes"},
    )


async def save_stream(chunks: AsyncIterable[bytes], destination: Path, limit: int) -> Path:
    """Write the chunks to `destination`; `InputError` (and nothing left behind) past `limit`."""
    handle = await asyncio.to_thread(destination.open, "wb")
    written = 0
    try:
        async for chunk in chunks:
            written += len(chunk)
            if written > limit:
                raise too_large(limit)
            await asyncio.to_thread(handle.write, chunk)
    except BaseException:
        # Also on cancellation, when awaiting is no longer possible: clean up inline.
        handle.close()
        destination.unlink(missing_ok=True)  # noqa: ASYNC240
        raise
    handle.close()
    return destination


async def _upload_chunks(upload: Any) -> AsyncIterable[bytes]:
    while chunk := await upload.read(CHUNK_BYTES):
        yield chunk


async def copy_upload(upload: Any, destination: Path, limit: int) -> Path:
    """A multipart upload (Starlette's `UploadFile`) copied to `destination`, then closed: its
    spooled temporary file is ours to release."""
    try:
        return await save_stream(_upload_chunks(upload), destination, limit)
    finally:
        await upload.close()
