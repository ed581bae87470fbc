"""The filesystem artifact store: content addressing, integrity, key checks and atomic writes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from aiaas.core.config import build_config
from aiaas.core.errors import ArtifactIntegrityError, ArtifactNotFoundError, InputError
from aiaas.plugins.filesystem_artifacts import READ_CHUNK_BYTES, FilesystemArtifactStore


class StreamBrokenError(Exception):
    """Raised by a test stream halfway through, like a client that disconnects."""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def store(root: Path, tmp_path: Path) -> FilesystemArtifactStore:
    return FilesystemArtifactStore(
        build_config({"artifact_dir": root, "data_dir": tmp_path / "data"})
    )


def files_under(directory: Path) -> list[Path]:
    if not directory.exists():
        return []
    return sorted(path for path in directory.rglob("*") if path.is_file())


def entries_under(directory: Path) -> list[Path]:
    """Every file and directory below `directory`."""
    return sorted(directory.rglob("*"))


async def stored_keys(store: FilesystemArtifactStore) -> list[str]:
    # `keys()` is the store's listing method, not a dict's: SIM118 does not apply.
    return [key async for key in store.keys()]  # noqa: SIM118


async def chunks_of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_put_bytes_returns_the_sha256_key_and_size(
    store: FilesystemArtifactStore, root: Path
) -> None:
    data = b"weights of a very small model"

    stored = await store.put_bytes(data)

    assert stored.key == hashlib.sha256(data).hexdigest()
    assert stored.size_bytes == len(data)
    assert files_under(root / "objects") == [root / "objects" / stored.key[:2] / stored.key]


async def test_put_stream_hashes_the_concatenated_chunks(store: FilesystemArtifactStore) -> None:
    chunks = [b"first,", b"", b"second,", b"third"]

    stored = await store.put_stream(chunks_of(*chunks))

    whole = b"".join(chunks)
    assert stored.key == hashlib.sha256(whole).hexdigest()
    assert stored.size_bytes == len(whole)
    assert await store.read_bytes(stored.key) == whole


async def test_read_back_is_identical_across_read_chunks(store: FilesystemArtifactStore) -> None:
    # Larger than one read chunk, and not a multiple of it, so reading takes several chunks.
    data = os.urandom(2 * READ_CHUNK_BYTES + 12345)

    stored = await store.put_stream(chunks_of(data[:1000], data[1000:]))
    streamed = [chunk async for chunk in store.open(stored.key)]

    assert len(streamed) > 1
    assert b"".join(streamed) == data
    assert await store.read_bytes(stored.key) == data
    assert await store.exists(stored.key)


async def test_empty_content_is_an_artifact_too(store: FilesystemArtifactStore) -> None:
    stored = await store.put_bytes(b"")

    assert stored.key == hashlib.sha256(b"").hexdigest()
    assert stored.size_bytes == 0
    assert await store.read_bytes(stored.key) == b""


async def test_storing_the_same_content_twice_keeps_one_file(
    store: FilesystemArtifactStore, root: Path
) -> None:
    first = await store.put_bytes(b"same bytes")
    second = await store.put_stream(chunks_of(b"same ", b"bytes"))

    assert first == second
    assert len(files_under(root / "objects")) == 1
    # The second write's staging file was discarded, not left behind.
    assert files_under(root / "tmp") == []


@pytest.mark.parametrize(
    "tamper",
    [
        lambda data: bytes([data[0] ^ 0x01]) + data[1:],
        lambda data: data[:-1],
        lambda data: data + b"appended",
    ],
    ids=["flipped-bit", "truncated", "appended"],
)
async def test_tampered_file_raises_integrity_error_when_read(
    store: FilesystemArtifactStore, tamper: Callable[[bytes], bytes]
) -> None:
    stored = await store.put_bytes(b"the original content of the artifact")
    path = store.path_of(stored.key)
    path.write_bytes(tamper(path.read_bytes()))

    with pytest.raises(ArtifactIntegrityError, match=stored.key):
        await store.read_bytes(stored.key)


async def test_unknown_key_is_not_found(store: FilesystemArtifactStore) -> None:
    unknown = hashlib.sha256(b"never stored").hexdigest()

    with pytest.raises(ArtifactNotFoundError):
        await store.read_bytes(unknown)
    assert await store.exists(unknown) is False


MALFORMED_KEYS = [
    "../etc/passwd",
    "../../" + "0" * 58,
    hashlib.sha256(b"x").hexdigest().upper(),
    hashlib.sha256(b"x").hexdigest()[:-1],
    hashlib.sha256(b"x").hexdigest() + "0",
    hashlib.sha256(b"x").hexdigest() + "\n",
    "0" * 62 + "/a",
    "",
]


@pytest.mark.parametrize("key", MALFORMED_KEYS)
async def test_malformed_keys_are_refused_before_touching_the_filesystem(
    store: FilesystemArtifactStore, tmp_path: Path, key: str
) -> None:
    with pytest.raises(InputError) as raised:
        await store.read_bytes(key)
    assert raised.value.field_errors == {"key": "malformed"}
    with pytest.raises(InputError):
        await store.exists(key)
    with pytest.raises(InputError):
        await store.delete(key)
    with pytest.raises(InputError):
        store.path_of(key)

    # Nothing was created, not even the store's root.
    assert entries_under(tmp_path) == []


async def test_stream_that_fails_midway_leaves_no_file(
    store: FilesystemArtifactStore, root: Path
) -> None:
    async def breaking_stream() -> AsyncIterator[bytes]:
        yield b"a first chunk that reaches the staging file"
        yield b"and a second"
        raise StreamBrokenError

    with pytest.raises(StreamBrokenError):
        await store.put_stream(breaking_stream())

    assert files_under(root / "objects") == []
    assert files_under(root / "tmp") == []
    assert await stored_keys(store) == []


async def test_keys_lists_what_is_stored(store: FilesystemArtifactStore) -> None:
    assert await stored_keys(store) == []

    stored = [await store.put_bytes(f"artifact {index}".encode()) for index in range(5)]

    assert await stored_keys(store) == sorted(item.key for item in stored)


async def test_delete_removes_the_artifact_and_reports_false_the_second_time(
    store: FilesystemArtifactStore,
) -> None:
    kept = await store.put_bytes(b"kept")
    doomed = await store.put_bytes(b"doomed")

    assert await store.delete(doomed.key) is True
    assert await store.delete(doomed.key) is False

    assert await store.exists(doomed.key) is False
    with pytest.raises(ArtifactNotFoundError):
        await store.read_bytes(doomed.key)
    assert await stored_keys(store) == [kept.key]
    assert await store.read_bytes(kept.key) == b"kept"


async def test_uploading_the_content_again_repairs_a_corrupt_object(
    store: FilesystemArtifactStore,
) -> None:
    stored = await store.put_bytes(b"weights of a model")
    store.path_of(stored.key).write_bytes(b"bit rot")

    again = await store.put_bytes(b"weights of a model")

    assert again.key == stored.key
    assert await store.read_bytes(stored.key) == b"weights of a model"
