"""Receiving an upload: written whole, hashed as it is written, refused past the limit."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiaas.core.data.uploads import CHUNK_BYTES, save_stream
from aiaas.core.errors import InputError


async def pieces(content: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


@pytest.mark.parametrize(
    ("length", "piece"),
    [(0, 1), (1, 1), (CHUNK_BYTES - 1, 65536), (CHUNK_BYTES, 65536), (3 * CHUNK_BYTES + 7, 9999)],
    ids=["empty", "one-byte", "under-a-write", "one-write", "several-writes"],
)
async def test_the_file_and_its_hash_are_the_bytes_received(
    tmp_path: Path, length: int, piece: int
) -> None:
    content = os.urandom(length)

    received = await save_stream(pieces(content, piece), tmp_path / "upload", limit=length)

    assert received.path.read_bytes() == content
    assert received.sha256 == hashlib.sha256(content).hexdigest()


async def test_past_the_limit_nothing_is_left(tmp_path: Path) -> None:
    content = os.urandom(2 * CHUNK_BYTES)

    with pytest.raises(InputError, match="larger than the limit of"):
        await save_stream(pieces(content, 65536), tmp_path / "upload", limit=CHUNK_BYTES)

    assert not (tmp_path / "upload").exists()
