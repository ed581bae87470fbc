"""The artifact store contract, held by every built-in store: the filesystem one and the s3 one
against a real S3 gateway (SeaweedFS). What only one store does is tested in its own module."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import obstore
import pytest

from aiaas.core.config import build_config
from aiaas.core.errors import ArtifactIntegrityError, ArtifactNotFoundError, InputError
from aiaas.core.storage import ArtifactStore
from aiaas.plugins.filesystem_artifacts import READ_CHUNK_BYTES, FilesystemArtifactStore
from aiaas.plugins.s3_artifacts import OBJECTS, STAGING, S3ArtifactStore
from artifact_streams import MALFORMED_KEYS, StreamBrokenError, chunks_of, stored_keys
from object_store import ObjectStoreServer

SMALLEST_PART_BYTES = 5 * 1024**2

Tamper = Callable[[bytes], bytes]


@dataclass
class StoreUnderTest:
    store: ArtifactStore
    rewrite: Callable[[str, Tamper], Awaitable[None]]
    """Change a stored object's bytes behind the store's back, as bit rot or an intruder would."""
    staged: Callable[[], Awaitable[list[str]]]
    """What uploads in flight hold: empty once every upload has finished or failed."""


def filesystem_store(tmp_path: Path) -> StoreUnderTest:
    store = FilesystemArtifactStore(
        build_config({"artifact_dir": tmp_path / "artifacts", "data_dir": tmp_path / "data"})
    )

    async def rewrite(key: str, tamper: Tamper) -> None:
        path = store.path_of(key)
        path.write_bytes(tamper(path.read_bytes()))

    async def staged() -> list[str]:
        staging = store.root / "tmp"
        return sorted(path.name for path in staging.iterdir()) if staging.exists() else []

    return StoreUnderTest(store, rewrite, staged)


def s3_store(server: ObjectStoreServer) -> StoreUnderTest:
    prefix = f"contract/{uuid.uuid4().hex}"
    config = build_config(server.settings(prefix, s3_part_bytes=SMALLEST_PART_BYTES))
    raw = server.raw(prefix)

    async def rewrite(key: str, tamper: Tamper) -> None:
        stored = await (await obstore.get_async(raw, OBJECTS + key)).bytes_async()
        await obstore.put_async(raw, OBJECTS + key, tamper(bytes(stored)))

    async def staged() -> list[str]:
        return sorted(
            [meta["path"] async for batch in obstore.list(raw, STAGING) for meta in batch]
        )

    return StoreUnderTest(S3ArtifactStore(config), rewrite, staged)


@pytest.fixture(params=["filesystem", "s3"])
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreUnderTest]:
    if request.param == "filesystem":
        under_test = filesystem_store(tmp_path)
    else:
        under_test = s3_store(request.getfixturevalue("object_store"))
    yield under_test
    await under_test.store.close()


async def test_put_bytes_returns_the_sha256_key_and_size(subject: StoreUnderTest) -> None:
    data = b"weights of a very small model"

    stored = await subject.store.put_bytes(data)

    assert stored.key == hashlib.sha256(data).hexdigest()
    assert stored.size_bytes == len(data)
    assert await stored_keys(subject.store) == [stored.key]


async def test_put_stream_hashes_the_concatenated_chunks(subject: StoreUnderTest) -> None:
    chunks = [b"first,", b"", b"second,", b"third"]

    stored = await subject.store.put_stream(chunks_of(*chunks))

    whole = b"".join(chunks)
    assert stored.key == hashlib.sha256(whole).hexdigest()
    assert stored.size_bytes == len(whole)
    assert await subject.store.read_bytes(stored.key) == whole


async def test_read_back_is_identical_across_read_chunks(subject: StoreUnderTest) -> None:
    # Larger than one read chunk, and not a multiple of it, so reading takes several chunks.
    data = os.urandom(2 * READ_CHUNK_BYTES + 12345)

    stored = await subject.store.put_stream(chunks_of(data[:1000], data[1000:]))
    streamed = [chunk async for chunk in subject.store.open(stored.key)]

    assert len(streamed) > 1
    assert b"".join(streamed) == data
    assert await subject.store.read_bytes(stored.key) == data
    assert await subject.store.exists(stored.key)


async def test_empty_content_is_an_artifact_too(subject: StoreUnderTest) -> None:
    stored = await subject.store.put_bytes(b"")

    assert stored.key == hashlib.sha256(b"").hexdigest()
    assert stored.size_bytes == 0
    assert await subject.store.read_bytes(stored.key) == b""


@pytest.mark.parametrize("size", [100, SMALLEST_PART_BYTES + 1], ids=["one-part", "multipart"])
async def test_storing_the_same_content_twice_keeps_one_object(
    subject: StoreUnderTest, size: int
) -> None:
    data = os.urandom(size)
    first = await subject.store.put_bytes(data)
    second = await subject.store.put_stream(chunks_of(data[:10], data[10:]))

    assert first == second
    assert await stored_keys(subject.store) == [first.key]
    # The second write's staging was discarded, not left behind.
    assert await subject.staged() == []


@pytest.mark.parametrize(
    "tamper",
    [
        lambda data: bytes([data[0] ^ 0x01]) + data[1:],
        lambda data: data[:-1],
        lambda data: data + b"appended",
    ],
    ids=["flipped-bit", "truncated", "appended"],
)
async def test_tampered_object_raises_integrity_error_when_read(
    subject: StoreUnderTest, tamper: Tamper
) -> None:
    stored = await subject.store.put_bytes(b"the original content of the artifact")
    await subject.rewrite(stored.key, tamper)

    with pytest.raises(ArtifactIntegrityError, match=stored.key):
        await subject.store.read_bytes(stored.key)


async def test_unknown_key_is_not_found(subject: StoreUnderTest) -> None:
    unknown = hashlib.sha256(b"never stored").hexdigest()

    with pytest.raises(ArtifactNotFoundError):
        await subject.store.read_bytes(unknown)
    assert await subject.store.exists(unknown) is False
    assert await subject.store.age_seconds(unknown) is None


@pytest.mark.parametrize("key", MALFORMED_KEYS)
async def test_malformed_keys_are_refused(subject: StoreUnderTest, key: str) -> None:
    with pytest.raises(InputError) as raised:
        await subject.store.read_bytes(key)
    assert raised.value.field_errors == {"key": "malformed"}
    with pytest.raises(InputError):
        await subject.store.exists(key)
    with pytest.raises(InputError):
        await subject.store.delete(key)
    with pytest.raises(InputError):
        await subject.store.age_seconds(key)


@pytest.mark.parametrize(
    "size", [1000, 3 * SMALLEST_PART_BYTES], ids=["within-one-part", "multipart"]
)
async def test_stream_that_fails_midway_leaves_nothing(subject: StoreUnderTest, size: int) -> None:
    async def breaking_stream() -> AsyncIterator[bytes]:
        yield os.urandom(size // 2)
        yield os.urandom(size // 2)
        raise StreamBrokenError

    with pytest.raises(StreamBrokenError):
        await subject.store.put_stream(breaking_stream())

    assert await subject.staged() == []
    assert await stored_keys(subject.store) == []


async def test_keys_lists_what_is_stored(subject: StoreUnderTest) -> None:
    assert await stored_keys(subject.store) == []

    stored = [await subject.store.put_bytes(f"artifact {index}".encode()) for index in range(5)]

    assert await stored_keys(subject.store) == sorted(item.key for item in stored)


async def test_delete_removes_the_artifact_and_reports_false_the_second_time(
    subject: StoreUnderTest,
) -> None:
    kept = await subject.store.put_bytes(b"kept")
    doomed = await subject.store.put_bytes(b"doomed")

    assert await subject.store.delete(doomed.key) is True
    assert await subject.store.delete(doomed.key) is False

    assert await subject.store.exists(doomed.key) is False
    with pytest.raises(ArtifactNotFoundError):
        await subject.store.read_bytes(doomed.key)
    assert await stored_keys(subject.store) == [kept.key]
    assert await subject.store.read_bytes(kept.key) == b"kept"


async def test_uploading_the_content_again_repairs_a_corrupt_object(
    subject: StoreUnderTest,
) -> None:
    stored = await subject.store.put_bytes(b"weights of a model")
    await subject.rewrite(stored.key, lambda _: b"bit rot")

    again = await subject.store.put_bytes(b"weights of a model")

    assert again.key == stored.key
    assert await subject.store.read_bytes(stored.key) == b"weights of a model"


async def test_a_fresh_artifact_is_young_and_a_stale_staging_one_is_discarded(
    subject: StoreUnderTest,
) -> None:
    stored = await subject.store.put_bytes(b"just written")

    age = await subject.store.age_seconds(stored.key)

    assert age is not None
    assert 0 <= age < 3600
    # Nothing is in flight, so nothing is discarded, and the stored artifact stays.
    assert await subject.store.discard_incomplete(older_than_s=0) == 0
    assert await stored_keys(subject.store) == [stored.key]
