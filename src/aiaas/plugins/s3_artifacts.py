"""The s3 artifact store: content-addressed objects in an S3-compatible bucket, through obstore.

Layout under `s3_prefix`: `objects/<sha256>`, and `staging/<random>` for uploads in flight. The
key is the hash of the whole content, known only at its end. So an artifact of at most one part
(`s3_part_bytes`) is hashed in memory and PUT under its key, and a larger one is streamed as a
multipart upload to a staging object, then copied to its key by the server: no artifact is ever
whole in memory or on a local disk. A PUT, a completed multipart upload and a copy are each
atomic in S3, so a reader never sees a partial object.

Writes carry the sha256 of each request's body, which the server checks. Reads hash what they
stream and raise `ArtifactIntegrityError` at the end when it does not match the key, as the
filesystem store does. The platform seals artifacts before they reach a store, so the bucket
only ever holds ciphertext; and the endpoint comes from the operator's configuration alone,
never from a request.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, NoReturn

import obstore
from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from aiaas.core.config import Config
from aiaas.core.errors import (
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ConfigError,
)
from aiaas.core.hookspecs import hookimpl
from aiaas.core.specs import ArtifactStoreSpec
from aiaas.core.storage import ArtifactStore, StoredArtifact, check_artifact_key

if TYPE_CHECKING:
    from obstore.store import S3Config

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES = 1 << 20
PARTS_IN_FLIGHT = 4
"""Parts of one multipart upload sent at once: with the part being filled, an upload holds at
most five parts in memory."""
OBJECTS = "objects/"
STAGING = "staging/"
_ARTIFACT_KEY = re.compile(r"[0-9a-f]{64}")
_REFUSED_STATUS = re.compile(
    r"status code: 40[13] |<Code>(SignatureDoesNotMatch|InvalidAccessKeyId)<"
)


def _object_path(key: str) -> str:
    return OBJECTS + check_artifact_key(key)


def _first_line(exc: BaseError) -> str:
    # It names the operation, the URL and the status; never a secret. The rest is a debug dump.
    return next(iter(str(exc).splitlines()), type(exc).__name__)


def _refused(exc: BaseError) -> NoReturn:
    raise ArtifactError(
        "the object store refused the s3 artifact store's credentials: check s3_access_key_id "
        f"and s3_secret_access_key ({_first_line(exc)})"
    ) from None


@contextmanager
def _credentials_checked() -> Iterator[None]:
    try:
        yield
    except (PermissionDeniedError, UnauthenticatedError) as exc:
        _refused(exc)
    except BaseError as exc:
        # A refused listing arrives as a generic error: only its status tells.
        if _REFUSED_STATUS.search(str(exc)):
            _refused(exc)
        raise


def _client(config: Config) -> S3Store:
    if not config.s3_bucket:
        raise ConfigError("artifact_store = s3 needs s3_bucket")
    if (config.s3_access_key_id is None) != (config.s3_secret_access_key is None):
        raise ConfigError("set both s3_access_key_id and s3_secret_access_key, or neither")
    # Each request carries its body's sha256, which the server checks before it keeps a PUT or
    # a part: bytes damaged on the way in are refused, not stored.
    settings: S3Config = {"region": config.s3_region, "checksum_algorithm": "SHA256"}
    if config.s3_endpoint:
        settings["endpoint"] = config.s3_endpoint
    # Without keys, obstore takes AWS's usual chain: the environment, a web identity token (an
    # IAM role for a Kubernetes service account), or the instance's metadata.
    if config.s3_access_key_id and config.s3_secret_access_key:
        settings["access_key_id"] = config.s3_access_key_id
        settings["secret_access_key"] = config.s3_secret_access_key.get_secret_value()
    return S3Store(
        config.s3_bucket,
        prefix=config.s3_prefix or None,
        config=settings,
        client_options={
            "allow_http": config.s3_allow_http,
            "connect_timeout": timedelta(seconds=5),
            # A large artifact streams for a long time: bound each read, not the whole request.
            "timeout": timedelta(hours=1),
            "read_timeout": timedelta(seconds=60),
        },
        retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=30)},
    )


class S3ArtifactStore(ArtifactStore):
    def __init__(self, config: Config) -> None:
        # Building the client does no I/O: the first request connects.
        self._store = _client(config)
        self._part_bytes = config.s3_part_bytes

    async def put_stream(self, chunks: AsyncIterable[bytes]) -> StoredArtifact:
        digest = hashlib.sha256()
        size = 0
        first_part: list[bytes] = []
        iterator = aiter(chunks)
        async for chunk in iterator:
            digest.update(chunk)
            size += len(chunk)
            first_part.append(chunk)
            if size > self._part_bytes:
                break
        else:
            key = digest.hexdigest()
            with _credentials_checked():
                await obstore.put_async(
                    self._store, _object_path(key), b"".join(first_part), use_multipart=False
                )
            return StoredArtifact(key=key, size_bytes=size)
        staging = f"{STAGING}{uuid.uuid4().hex}"
        try:
            with _credentials_checked():
                async with obstore.open_writer_async(
                    self._store,
                    staging,
                    buffer_size=self._part_bytes,
                    max_concurrency=PARTS_IN_FLIGHT,
                ) as writer:
                    for chunk in first_part:
                        await writer.write(chunk)
                    first_part.clear()
                    async for chunk in iterator:
                        digest.update(chunk)
                        size += len(chunk)
                        await writer.write(chunk)
                key = digest.hexdigest()
                # Overwrites an object already there: same content, or a corrupt copy repaired.
                await obstore.copy_async(self._store, staging, _object_path(key))
        finally:
            await self._discard_staging(staging)
        return StoredArtifact(key=key, size_bytes=size)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        path = _object_path(key)
        with _credentials_checked():
            try:
                result = await obstore.get_async(self._store, path)
            except FileNotFoundError:
                raise ArtifactNotFoundError(f"no artifact {key}") from None
            digest = hashlib.sha256()
            async for chunk in result.stream(min_chunk_size=READ_CHUNK_BYTES):
                digest.update(chunk)
                yield bytes(chunk)
        if digest.hexdigest() != key:
            raise ArtifactIntegrityError(
                f"artifact {key} is corrupt: its content no longer matches"
            )

    async def exists(self, key: str) -> bool:
        return await self._last_modified(_object_path(key)) is not None

    async def delete(self, key: str) -> bool:
        path = _object_path(key)
        # S3 answers a delete the same whether or not the object was there: ask first.
        if await self._last_modified(path) is None:
            return False
        with _credentials_checked():
            await obstore.delete_async(self._store, path)
        return True

    async def age_seconds(self, key: str) -> float | None:
        modified = await self._last_modified(_object_path(key))
        return None if modified is None else max(0.0, time.time() - modified)

    async def discard_incomplete(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        with _credentials_checked():
            stale = [
                meta["path"]
                async for batch in obstore.list(self._store, STAGING, chunk_size=1000)
                for meta in batch
                if meta["last_modified"].timestamp() < cutoff
            ]
            if stale:
                await obstore.delete_async(self._store, stale)
        return len(stale)

    async def keys(self) -> AsyncIterator[str]:
        with _credentials_checked():
            async for batch in obstore.list(self._store, OBJECTS, chunk_size=1000):
                for meta in batch:
                    name = meta["path"].removeprefix(OBJECTS)
                    # Anything else in the prefix is not ours to list, nor to collect.
                    if _ARTIFACT_KEY.fullmatch(name):
                        yield name

    async def _discard_staging(self, staging: str) -> None:
        # Also after an error or a cancellation, and never in the way of the error that got us
        # here: what is left, discard_incomplete collects (and a bucket lifecycle rule, the
        # parts of an unfinished multipart upload).
        try:
            await obstore.delete_async(self._store, staging)
        except BaseError as exc:
            logger.warning("left %s for discard_incomplete: %s", staging, _first_line(exc))

    async def _last_modified(self, path: str) -> float | None:
        with _credentials_checked():
            try:
                meta = await obstore.head_async(self._store, path)
            except FileNotFoundError:
                return None
        return meta["last_modified"].timestamp()


@hookimpl
def aiaas_artifact_stores() -> Iterable[ArtifactStoreSpec]:
    return [
        ArtifactStoreSpec(
            name="s3",
            factory=S3ArtifactStore,
            description="Content-addressed objects in an S3-compatible bucket (s3_* settings), "
            "streamed, multipart above s3_part_bytes.",
        )
    ]
