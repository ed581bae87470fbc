"""Encryption at rest: per-project data keys, wrapped by the master key, sealing artifacts with
AES-256-GCM in authenticated chunks.

Envelope encryption. Each project has its own random 256-bit data key; only its wrapped form (the
data key sealed with the master key, `AIAAS_MASTER_KEY`) is stored, in `data_keys`. Rotating the
master key re-wraps those few rows and rewrites no artifact.

An artifact is sealed as a stream of chunks, so neither sealing nor opening holds a whole file in
memory. The header names the format, the project and a random nonce prefix; each chunk's nonce is
that prefix and the chunk's index. Every chunk is authenticated together with the header, its index
and whether it is the last, so a changed byte, swapped chunks, a chunk from another artifact or a
cut-off tail all fail with `ArtifactIntegrityError` before any of their bytes are returned.

The same primitives serve other holders of a key: `wrap_key` binds a wrapped key to whatever
associated data its holder names, and `derived_key` gives each purpose (a backup's manifest
authentication, say) its own key from the master key by HKDF-SHA256, so that no purpose ever uses
the master key itself for two things.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from uuid import UUID

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aiaas.core.errors import ArtifactIntegrityError, ConfigError

KEY_BYTES = 32
CHUNK_BYTES = 1 << 20
_MAGIC = b"AIAE\x01"
_NONCE_PREFIX_BYTES = 8
_HEADER = struct.Struct(f">{len(_MAGIC)}s16s{_NONCE_PREFIX_BYTES}s")
_CHUNK_LENGTH = struct.Struct(">I")
_LAST_CHUNK = 1 << 31
"""Set in a chunk's length word on the last chunk. It is authenticated too (it is in the AAD), so
flipping it fails like any other change."""
_TAG_BYTES = 16
_WRAP_NONCE_BYTES = 12


@dataclass(frozen=True)
class MasterKey:
    """The key that wraps every data key. Its id (a hash of it) is stored with each wrapped key,
    so that during a rotation the right one of the configured keys unwraps each."""

    secret: bytes

    @property
    def id(self) -> str:
        return hashlib.sha256(b"aiaas-master-key-id" + self.secret).hexdigest()[:16]

    @classmethod
    def parse(cls, encoded: str) -> MasterKey:
        try:
            secret = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("the master key must be base64") from None
        if len(secret) != KEY_BYTES:
            raise ConfigError(f"the master key must be {KEY_BYTES} bytes, base64 encoded")
        return cls(secret)

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(KEY_BYTES))

    def encoded(self) -> str:
        return base64.b64encode(self.secret).decode()


def _wrap_aad(project_id: UUID) -> bytes:
    # Bound to its project: a wrapped key copied to another project's row does not unwrap.
    return b"aiaas-data-key:" + project_id.bytes


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)


def wrap_data_key(master: MasterKey, project_id: UUID, data_key: bytes) -> bytes:
    nonce = os.urandom(_WRAP_NONCE_BYTES)
    return nonce + AESGCM(master.secret).encrypt(nonce, data_key, _wrap_aad(project_id))


def unwrap_data_key(master: MasterKey, project_id: UUID, wrapped: bytes) -> bytes:
    nonce, sealed = wrapped[:_WRAP_NONCE_BYTES], wrapped[_WRAP_NONCE_BYTES:]
    try:
        return AESGCM(master.secret).decrypt(nonce, sealed, _wrap_aad(project_id))
    except InvalidTag:
        raise ConfigError(
            f"the data key of project {project_id} does not open with the master key: "
            "is AIAAS_MASTER_KEY the key it was wrapped with?"
        ) from None


def wrap_key(master: MasterKey, key: bytes, associated_data: bytes) -> bytes:
    """`key` sealed with the master key, bound to `associated_data`: it unwraps only with the
    same associated data, so a wrapped key copied elsewhere does not open."""
    nonce = os.urandom(_WRAP_NONCE_BYTES)
    return nonce + AESGCM(master.secret).encrypt(nonce, key, associated_data)


def unwrap_key(master: MasterKey, wrapped: bytes, associated_data: bytes) -> bytes | None:
    """The key `wrap_key` wrapped; None when it does not open with this master key and
    associated data (another key, or bytes that were altered)."""
    nonce, sealed = wrapped[:_WRAP_NONCE_BYTES], wrapped[_WRAP_NONCE_BYTES:]
    try:
        return AESGCM(master.secret).decrypt(nonce, sealed, associated_data)
    except InvalidTag:
        return None


def derived_key(master: MasterKey, purpose: bytes) -> bytes:
    """A key for one purpose, derived from the master key with HKDF-SHA256. Keys derived for
    different purposes are independent of each other, and none reveals the master key."""
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"aiaas:" + purpose
    ).derive(master.secret)


def authentication_tag(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 of `message` under `key`."""
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(message)
    return mac.finalize()


def tag_matches(key: bytes, message: bytes, tag: bytes) -> bool:
    """Whether `tag` is `message`'s HMAC-SHA256 under `key`, compared in constant time."""
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(message)
    try:
        mac.verify(tag)
    except InvalidSignature:
        return False
    return True


def _chunk_nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def _chunk_aad(header: bytes, index: int, last: bool) -> bytes:
    return header + struct.pack(">I?", index, last)


async def _rechunk(chunks: AsyncIterable[bytes], size: int) -> AsyncIterator[tuple[bytes, bool]]:
    """Fixed-size pieces of the stream, each flagged whether it is the last."""
    buffer = bytearray()
    pending: bytes | None = None
    async for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            if pending is not None:
                yield pending, False
            pending = bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        if pending is not None:
            yield pending, False
        yield bytes(buffer), True
    else:
        yield pending or b"", True


async def seal(
    data_key: bytes, project_id: UUID, plaintext: AsyncIterable[bytes]
) -> AsyncIterator[bytes]:
    """The sealed form of `plaintext`, chunk by chunk."""
    header = _HEADER.pack(_MAGIC, project_id.bytes, os.urandom(_NONCE_PREFIX_BYTES))
    prefix = header[-_NONCE_PREFIX_BYTES:]
    cipher = AESGCM(data_key)
    yield header
    index = 0
    async for piece, last in _rechunk(plaintext, CHUNK_BYTES):
        sealed = cipher.encrypt(_chunk_nonce(prefix, index), piece, _chunk_aad(header, index, last))
        yield _CHUNK_LENGTH.pack(len(sealed) | (_LAST_CHUNK if last else 0)) + sealed
        index += 1


class _Reader:
    """Exact reads from a stream of arbitrary chunks."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks.__aiter__()
        self._buffer = bytearray()

    async def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            try:
                self._buffer += await self._chunks.__anext__()
            except StopAsyncIteration:
                break
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


def sealed_project(header: bytes) -> UUID:
    magic, project, _ = _HEADER.unpack(header[: _HEADER.size])
    if magic != _MAGIC:
        raise ArtifactIntegrityError("not a sealed aiaas artifact")
    return UUID(bytes=project)


async def unseal(
    data_key: bytes, project_id: UUID, sealed: AsyncIterable[bytes]
) -> AsyncIterator[bytes]:
    """The plaintext of a sealed stream; `ArtifactIntegrityError` at the first chunk that fails
    authentication, and at a stream that ends before its last chunk."""
    reader = _Reader(sealed)
    header = await reader.read(_HEADER.size)
    if len(header) < _HEADER.size or sealed_project(header) != project_id:
        raise ArtifactIntegrityError("the artifact is not sealed for this project")
    prefix = header[-_NONCE_PREFIX_BYTES:]
    cipher = AESGCM(data_key)
    index = 0
    while True:
        length_bytes = await reader.read(_CHUNK_LENGTH.size)
        if len(length_bytes) < _CHUNK_LENGTH.size:
            raise ArtifactIntegrityError("the artifact is truncated: its last chunk is missing")
        (word,) = _CHUNK_LENGTH.unpack(length_bytes)
        last = bool(word & _LAST_CHUNK)
        length = word & ~_LAST_CHUNK
        if length < _TAG_BYTES or length > CHUNK_BYTES + _TAG_BYTES:
            raise ArtifactIntegrityError("the artifact is corrupt: a chunk has an impossible size")
        body = await reader.read(length)
        if len(body) < length:
            raise ArtifactIntegrityError("the artifact is truncated mid-chunk")
        try:
            plaintext = cipher.decrypt(
                _chunk_nonce(prefix, index), body, _chunk_aad(header, index, last)
            )
        except InvalidTag:
            raise ArtifactIntegrityError(
                "the artifact failed authentication: it was altered after it was written"
            ) from None
        yield plaintext
        if last:
            if await reader.read(1):
                raise ArtifactIntegrityError("the artifact has data after its last chunk")
            return
        index += 1
