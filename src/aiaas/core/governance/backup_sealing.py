"""How a backup archive is sealed (format `aiaas-backup-2`): its tables encrypted under a key of
their own, its manifest authenticated, both by the master key. Only the primitives of `crypto`
are used: the chunked AES-256-GCM stream that seals artifacts, AES-GCM key wrapping, HKDF and
HMAC-SHA256.

- **Tables.** Each backup draws a fresh random data key and seals every table's binary COPY with
  it as a `crypto.seal` stream whose header carries the archive's random id. The manifest holds
  the data key wrapped by the master key, bound by associated data to that archive id: it opens
  for this archive alone, and only with that master key (or, after a rotation, with the same key
  kept in `previous_master_keys`).
- **Manifest.** `manifest.hmac`, the archive's last member, holds the HMAC-SHA256 of the exact
  bytes of `manifest.json` under a key derived from the master key by HKDF-SHA256, and the id of
  that master key. The manifest lists the sha256 of every other member, so once its tag checks
  out, every byte of the archive is vouched for, before any table is decrypted. Without the
  master key, the member hashes can still be checked against the manifest; only the manifest's
  own authenticity cannot.

What stays readable without the key: the manifest (table names, row counts, member sizes and
hashes, the schema revision, the time of the backup, the master key's id) and the artifacts'
headers (the project each was sealed for).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiaas.core.errors import ArtifactIntegrityError, BackupError
from aiaas.core.governance.crypto import (
    MasterKey,
    authentication_tag,
    derived_key,
    new_data_key,
    seal,
    tag_matches,
    unseal,
    unwrap_key,
    wrap_key,
)
from aiaas.core.governance.vault import close_stream

FORMAT = "aiaas-backup-2"
UNSEALED_FORMAT = "aiaas-backup-1"
"""The format before archives were sealed: tables in clear, the manifest unauthenticated."""
MANIFEST_TAG = "manifest.hmac"
_MANIFEST_PURPOSE = b"backup-manifest-authentication"
_TABLES_CIPHER = "AES-256-GCM, 1 MiB authenticated chunks, random data key per archive"
_KEY_WRAPPING = "AES-256-GCM under the master key, bound to the archive id"
_MANIFEST_AUTHENTICATION = "HMAC-SHA256, key HKDF-SHA256(master key)"
_NOT_CONFIGURED = "which is not configured (AIAAS_MASTER_KEY or AIAAS_PREVIOUS_MASTER_KEYS)"


def _wrap_aad(archive_id: uuid.UUID) -> bytes:
    # Bound to its archive: a wrapped key copied into another archive's manifest does not open.
    return b"aiaas-backup-data-key:" + archive_id.bytes


@dataclass(frozen=True)
class Sealing:
    """The manifest's `sealing` section: which master key sealed the archive, and the archive's
    data key wrapped by it."""

    archive_id: uuid.UUID
    master_key_id: str
    wrapped_data_key: bytes

    @classmethod
    def new(cls, master: MasterKey) -> tuple[Sealing, bytes]:
        """A new archive's sealing, and its data key (never written unwrapped)."""
        archive_id = uuid.uuid4()
        data_key = new_data_key()
        wrapped = wrap_key(master, data_key, _wrap_aad(archive_id))
        return cls(archive_id, master.id, wrapped), data_key

    def to_json(self) -> dict[str, str]:
        return {
            "archive_id": str(self.archive_id),
            "master_key_id": self.master_key_id,
            "wrapped_data_key": base64.b64encode(self.wrapped_data_key).decode(),
            "tables": _TABLES_CIPHER,
            "data_key": _KEY_WRAPPING,
            "manifest": _MANIFEST_AUTHENTICATION,
        }

    @classmethod
    def from_json(cls, data: Any) -> Sealing:
        try:
            return cls(
                archive_id=uuid.UUID(data["archive_id"]),
                master_key_id=_text(data["master_key_id"]),
                wrapped_data_key=base64.b64decode(data["wrapped_data_key"], validate=True),
            )
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise BackupError(
                f"the manifest is unreadable: bad sealing section {data!r:.200}"
            ) from None

    def data_key(self, master_keys: Mapping[str, MasterKey]) -> bytes:
        """The archive's data key, unwrapped; `BackupError` when no configured key opens it."""
        master = master_key_named(master_keys, self.master_key_id)
        data_key = unwrap_key(master, self.wrapped_data_key, _wrap_aad(self.archive_id))
        if data_key is None:
            raise BackupError(
                f"the archive's data key does not open with master key {master.id}: it was "
                "altered, or wrapped for another archive"
            )
        return data_key


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def master_key_named(master_keys: Mapping[str, MasterKey], key_id: str) -> MasterKey:
    master = master_keys.get(key_id)
    if master is None:
        raise BackupError(
            f"the archive was sealed with master key {key_id:.64}, {_NOT_CONFIGURED}: it "
            "cannot be authenticated or opened without that key"
        )
    return master


# The manifest's tag ---------------------------------------------------------------------------


def manifest_tag(master: MasterKey, manifest: bytes) -> bytes:
    """The content of `manifest.hmac` for these exact manifest bytes."""
    tag = authentication_tag(derived_key(master, _MANIFEST_PURPOSE), manifest)
    return json.dumps(
        {"master_key_id": master.id, "hmac_sha256": tag.hex(), "key": _MANIFEST_AUTHENTICATION},
        indent=2,
        sort_keys=True,
    ).encode()


@dataclass(frozen=True)
class ManifestTag:
    master_key_id: str
    hmac_sha256: bytes

    @classmethod
    def parse(cls, raw: bytes) -> ManifestTag:
        try:
            data = json.loads(raw)
            return cls(_text(data["master_key_id"]), bytes.fromhex(_text(data["hmac_sha256"])))
        except (ValueError, KeyError, TypeError):
            raise BackupError(f"{MANIFEST_TAG} is unreadable") from None

    def authenticate(self, master_keys: Mapping[str, MasterKey], manifest: bytes) -> MasterKey:
        """The master key that made this tag for these manifest bytes; `BackupError` when the
        tag does not match (the manifest was altered) or its key is not configured."""
        master = master_key_named(master_keys, self.master_key_id)
        key = derived_key(master, _MANIFEST_PURPOSE)
        if not tag_matches(key, manifest, self.hmac_sha256):
            raise BackupError(
                f"the manifest failed authentication with master key {master.id}: it was "
                "altered after the backup wrote it"
            )
        return master


# Sealed tables ---------------------------------------------------------------------------------


def seal_table(
    data_key: bytes, sealing: Sealing, plaintext: AsyncIterable[bytes]
) -> AsyncIterator[bytes]:
    return seal(data_key, sealing.archive_id, plaintext)


async def unseal_table(
    data_key: bytes, sealing: Sealing, member: str, sealed: AsyncIterable[bytes]
) -> AsyncIterator[bytes]:
    """The table's binary COPY; `BackupError` at the first chunk that fails authentication."""
    opened = unseal(data_key, sealing.archive_id, sealed)
    try:
        async for chunk in opened:
            yield chunk
    except ArtifactIntegrityError as exc:
        raise BackupError(f"{member} does not decrypt: {exc.message}") from None
    finally:
        await close_stream(opened)
