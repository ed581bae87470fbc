"""Encryption at rest, the primitives alone: master keys, wrapping data keys, and sealing a stream
in authenticated AES-256-GCM chunks (`aiaas.core.governance.crypto`). No database: the vault and
the real artifact store are in test_vault.py."""

from __future__ import annotations

import base64
import random
import re
import struct
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiaas.core.config import load_config
from aiaas.core.errors import ArtifactIntegrityError, ConfigError
from aiaas.core.governance.crypto import (
    CHUNK_BYTES,
    KEY_BYTES,
    MasterKey,
    new_data_key,
    seal,
    sealed_project,
    unseal,
    unwrap_data_key,
    wrap_data_key,
)

PROJECT = uuid.UUID("00000000-0000-4000-8000-000000000001")
OTHER_PROJECT = uuid.UUID("00000000-0000-4000-8000-000000000002")

# The sealed layout, spelt out here rather than imported, so that a change of format shows up.
HEADER_BYTES = 5 + 16 + 8  # magic, project id, nonce prefix
LENGTH_BYTES = 4
TAG_BYTES = 16
CHUNK_OVERHEAD = LENGTH_BYTES + TAG_BYTES


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def stream(data: bytes, cuts: list[int] | None = None) -> AsyncIterator[bytes]:
    """`data` as a stream cut at the given offsets (empty pieces included, as a network may)."""
    start = 0
    for cut in sorted(cuts or []):
        yield data[start:cut]
        start = cut
    yield data[start:]


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


async def collect_into(pieces: list[bytes], chunks: AsyncIterator[bytes]) -> None:
    """Append each chunk as it comes, so that what came before an error is still there."""
    async for chunk in chunks:
        pieces.append(chunk)


async def sealed_bytes(key: bytes, data: bytes, project: uuid.UUID = PROJECT) -> bytes:
    return b"".join(await collect(seal(key, project, stream(data))))


async def open_all(key: bytes, sealed: bytes, project: uuid.UUID = PROJECT) -> bytes:
    return b"".join(await collect(unseal(key, project, stream(sealed))))


def chunk_count(size: int) -> int:
    # An empty plaintext still has one (empty, last) chunk: it is what marks the end.
    return max(1, -(-size // CHUNK_BYTES))


def chunk_offset(index: int) -> int:
    """Where the sealed chunk `index` starts, for chunks before the last (all full)."""
    return HEADER_BYTES + index * (CHUNK_OVERHEAD + CHUNK_BYTES)


# Master keys ---------------------------------------------------------------------------------


def test_a_generated_master_key_is_32_random_bytes_that_round_trip_through_base64() -> None:
    first, second = MasterKey.generate(), MasterKey.generate()

    assert len(first.secret) == KEY_BYTES == 32
    assert first.secret != second.secret
    assert base64.b64decode(first.encoded(), validate=True) == first.secret
    assert MasterKey.parse(first.encoded()) == first


def test_the_master_key_id_names_the_key_without_revealing_it() -> None:
    key = MasterKey.generate()

    assert key.id == MasterKey.parse(key.encoded()).id
    assert key.id != MasterKey.generate().id
    assert key.secret.hex()[:16] != key.id
    assert key.encoded() not in key.id


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param("not base64 at all!", id="not-base64"),
        pytest.param(base64.b64encode(b"k" * 31).decode(), id="31-bytes"),
        pytest.param(base64.b64encode(b"k" * 33).decode(), id="33-bytes"),
        pytest.param(base64.b64encode(b"k" * 32).decode()[:-1], id="cut-short"),
        pytest.param("", id="empty"),
    ],
)
def test_a_malformed_master_key_is_refused_without_echoing_it(encoded: str) -> None:
    with pytest.raises(ConfigError, match="master key must be") as refused:
        MasterKey.parse(encoded)

    if encoded:
        assert encoded not in str(refused.value)


@pytest.mark.parametrize("variable", ["AIAAS_MASTER_KEY", "AIAAS_PREVIOUS_MASTER_KEYS"])
@pytest.mark.parametrize(
    "secret",
    [
        "correct-horse-battery-staple-but-no-base64",
        base64.b64encode(b"sixteen byte key").decode(),
    ],
    ids=["not-base64", "16-bytes"],
)
def test_a_malformed_master_key_in_the_environment_is_refused_without_echoing_it(
    variable: str, secret: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config({variable: secret})

    message = str(refused.value)
    assert variable in message
    assert "32 random bytes" in message
    assert secret not in message
    assert secret not in repr(refused.value)


# Wrapping data keys --------------------------------------------------------------------------


def test_a_wrapped_data_key_unwraps_with_its_master_key_and_project() -> None:
    master = MasterKey.generate()
    data_key = new_data_key()

    wrapped = wrap_data_key(master, PROJECT, data_key)

    assert len(data_key) == 32
    assert unwrap_data_key(master, PROJECT, wrapped) == data_key
    assert data_key not in wrapped
    # A fresh nonce each time: wrapping twice never gives the same bytes.
    assert wrap_data_key(master, PROJECT, data_key) != wrapped


def test_unwrapping_with_another_master_key_is_a_config_error_saying_so() -> None:
    wrapped = wrap_data_key(MasterKey.generate(), PROJECT, new_data_key())

    with pytest.raises(ConfigError, match="does not open with the master key") as refused:
        unwrap_data_key(MasterKey.generate(), PROJECT, wrapped)

    assert "AIAAS_MASTER_KEY" in str(refused.value)


def test_a_wrapped_key_does_not_unwrap_for_another_project() -> None:
    master = MasterKey.generate()
    wrapped = wrap_data_key(master, PROJECT, new_data_key())

    with pytest.raises(ConfigError, match=str(OTHER_PROJECT)):
        unwrap_data_key(master, OTHER_PROJECT, wrapped)


@pytest.mark.parametrize("position", [0, 11, 12, 40, -1], ids=lambda p: f"byte-{p}")
def test_a_wrapped_key_with_any_byte_changed_does_not_unwrap(position: int) -> None:
    master = MasterKey.generate()
    wrapped = bytearray(wrap_data_key(master, PROJECT, new_data_key()))
    wrapped[position] ^= 0x01

    with pytest.raises(ConfigError):
        unwrap_data_key(master, PROJECT, bytes(wrapped))


# Sealing and opening -------------------------------------------------------------------------

EDGE_SIZES = [
    0,
    1,
    CHUNK_BYTES - 1,
    CHUNK_BYTES,
    CHUNK_BYTES + 1,
    2 * CHUNK_BYTES,
    3 * CHUNK_BYTES + 7,
]


@pytest.mark.parametrize("size", EDGE_SIZES)
async def test_seal_then_unseal_gives_back_the_plaintext(size: int) -> None:
    key = new_data_key()
    data = payload(size, seed=size)

    sealed = await sealed_bytes(key, data)

    assert await open_all(key, sealed) == data
    # Exactly one header and one authenticated chunk per CHUNK_BYTES of plaintext (one chunk
    # for none at all): no empty trailing chunk after a plaintext of whole chunks.
    assert len(sealed) == HEADER_BYTES + chunk_count(size) * CHUNK_OVERHEAD + size
    assert sealed_project(sealed) == PROJECT


async def test_the_same_plaintext_seals_differently_each_time() -> None:
    key = new_data_key()
    data = b"id,name\n1,Ada\n" * 100

    first, second = await sealed_bytes(key, data), await sealed_bytes(key, data)

    assert first != second
    assert data[:14] not in first


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    size_and_cuts=st.one_of(
        st.sampled_from(EDGE_SIZES), st.integers(0, 3 * CHUNK_BYTES + 99)
    ).flatmap(
        lambda size: st.tuples(
            st.just(size),
            st.lists(st.integers(0, size), max_size=12),
            st.lists(st.integers(0, size + HEADER_BYTES + 4 * CHUNK_OVERHEAD), max_size=12),
        )
    ),
    seed=st.integers(0, 2**32 - 1),
)
async def test_any_plaintext_in_any_chunking_round_trips_through_any_sealed_chunking(
    size_and_cuts: tuple[int, list[int], list[int]], seed: int
) -> None:
    size, plaintext_cuts, sealed_cuts = size_and_cuts
    key = new_data_key()
    data = payload(size, seed)

    sealed = b"".join(await collect(seal(key, PROJECT, stream(data, plaintext_cuts))))
    cuts = [cut for cut in sealed_cuts if cut <= len(sealed)]
    opened = await collect(unseal(key, PROJECT, stream(sealed, cuts)))

    assert b"".join(opened) == data
    assert len(sealed) == HEADER_BYTES + chunk_count(size) * CHUNK_OVERHEAD + size
    # Opening hands the plaintext back chunk by chunk, never more than one chunk at a time.
    assert all(len(piece) <= CHUNK_BYTES for piece in opened)


async def test_unseal_refuses_the_wrong_data_key() -> None:
    sealed = await sealed_bytes(new_data_key(), b"secret rows")

    with pytest.raises(ArtifactIntegrityError, match="failed authentication"):
        await open_all(new_data_key(), sealed)


async def test_unseal_refuses_an_artifact_sealed_for_another_project() -> None:
    key = new_data_key()
    sealed = await sealed_bytes(key, b"secret rows", project=OTHER_PROJECT)

    with pytest.raises(ArtifactIntegrityError, match="not sealed for this project"):
        await open_all(key, sealed)


# Tampering, on the sealed bytes alone (the vault and the filesystem are in test_vault.py) -----

THREE_CHUNKS = 2 * CHUNK_BYTES + 1000
"""Two full chunks and a short last one."""


def flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    changed = bytearray(data)
    changed[position] ^= mask
    return bytes(changed)


def swap_first_two_chunks(sealed: bytes, _: bytes) -> bytes:
    first, second, third = chunk_offset(0), chunk_offset(1), chunk_offset(2)
    return sealed[:first] + sealed[second:third] + sealed[first:second] + sealed[third:]


def second_chunk_from(other: bytes) -> Callable[[bytes, bytes], bytes]:
    def replace(sealed: bytes, _: bytes) -> bytes:
        start, end = chunk_offset(1), chunk_offset(2)
        return sealed[:start] + other[start:end] + sealed[end:]

    return replace


TAMPERINGS: dict[str, tuple[Callable[[bytes, bytes], bytes], int, str]] = {
    # name: (tamper(sealed, other sealed artifact), index of the altered chunk, message)
    "flipped-byte-in-chunk-body": (
        lambda sealed, _: flip(sealed, chunk_offset(1) + LENGTH_BYTES + 500),
        1,
        "failed authentication",
    ),
    "flipped-byte-in-tag": (
        lambda sealed, _: flip(sealed, chunk_offset(2) - 1),
        1,
        "failed authentication",
    ),
    # The top bit of a chunk's length word marks the last chunk; it is authenticated too.
    "flipped-last-chunk-flag": (
        lambda sealed, _: flip(sealed, chunk_offset(1), 0x80),
        1,
        "failed authentication",
    ),
    "corrupted-length-word": (
        lambda sealed, _: flip(sealed, chunk_offset(1)),
        1,
        "impossible size",
    ),
    "flipped-byte-in-magic": (lambda sealed, _: flip(sealed, 0), 0, "not a sealed aiaas artifact"),
    "flipped-byte-in-project": (
        lambda sealed, _: flip(sealed, 5),
        0,
        "not sealed for this project",
    ),
    "flipped-byte-in-nonce-prefix": (
        lambda sealed, _: flip(sealed, HEADER_BYTES - 1),
        0,
        "failed authentication",
    ),
    "swapped-chunks": (swap_first_two_chunks, 0, "failed authentication"),
    "dropped-last-chunk": (
        lambda sealed, _: sealed[: chunk_offset(2)],
        2,
        "truncated: its last chunk is missing",
    ),
    "cut-mid-chunk": (lambda sealed, _: sealed[:-10], 2, "truncated mid-chunk"),
    "cut-inside-length-word": (
        lambda sealed, _: sealed[: chunk_offset(2) + 2],
        2,
        "truncated: its last chunk is missing",
    ),
    "cut-inside-header": (lambda sealed, _: sealed[:10], 0, "not sealed for this project"),
}


@pytest.mark.parametrize("name", [*TAMPERINGS, "chunk-from-another-artifact"])
async def test_a_tampered_sealed_stream_fails_before_the_altered_chunk_is_returned(
    name: str,
) -> None:
    key = new_data_key()
    data = payload(THREE_CHUNKS, seed=1)
    other = await sealed_bytes(key, payload(THREE_CHUNKS, seed=2))
    if name == "chunk-from-another-artifact":
        tamper, altered, message = second_chunk_from(other), 1, "failed authentication"
    else:
        tamper, altered, message = TAMPERINGS[name]
    tampered = tamper(await sealed_bytes(key, data), other)

    returned: list[bytes] = []
    with pytest.raises(ArtifactIntegrityError) as refused:
        await collect_into(returned, unseal(key, PROJECT, stream(tampered)))

    assert re.search(message, str(refused.value)), refused.value

    # What came out is the intact chunks before the altered one, and nothing of it or after.
    assert b"".join(returned) == data[: altered * CHUNK_BYTES]


@pytest.mark.parametrize("extra", [b"\x00", b"more data", struct.pack(">I", 0)])
async def test_bytes_after_the_last_chunk_fail_the_stream(extra: bytes) -> None:
    key = new_data_key()
    data = payload(1000)

    with pytest.raises(ArtifactIntegrityError, match="data after its last chunk"):
        await open_all(key, await sealed_bytes(key, data) + extra)


async def test_an_empty_stream_is_not_an_artifact() -> None:
    with pytest.raises(ArtifactIntegrityError):
        await open_all(new_data_key(), b"")
