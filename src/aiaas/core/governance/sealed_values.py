"""Sealed values: a field of a PostgreSQL row kept as ciphertext under its project's data key.

Artifacts are sealed as streams (`crypto.seal`); a few small things that hold row data live in
rows instead (a dataset version's preview, a prediction sample's inputs), and are sealed here one
value at a time, with the same data key the vault gives the project's artifacts. Nothing here
makes or stores a key: `Vault.data_key` does, and `aiaas keys rotate` re-wraps that key without
changing it, so a rotation leaves every sealed value readable.

A sealed value is

    format (1 byte) | salt (24 random bytes) | AES-256-GCM ciphertext and tag (16 bytes)

Each value gets a key of its own, HMAC-SHA256(data key, label | salt), and so a fixed nonce: a
random 96-bit nonce under the data key itself would be safe only up to about 2**32 values, which
a busy deployment's prediction samples could reach in weeks. The associated data binds the value
to its project, its table and column, and its row's id: a value copied to another row, another
column or another project's row does not open, and reading it is an `ArtifactIntegrityError`
naming where it was read, never the other row's data.

JSON values are stored with their objects' keys in the order PostgreSQL's jsonb gives them back
(shorter keys first, then bytewise), so that a field that moved from a jsonb column to a sealed
one reads exactly as it did.
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aiaas.core.errors import ArtifactIntegrityError

FORMAT = b"\x01"
SALT_BYTES = 24
TAG_BYTES = 16
OVERHEAD = len(FORMAT) + SALT_BYTES + TAG_BYTES
"""Bytes a sealed value takes beyond its plaintext."""
_KEY_LABEL = b"aiaas-sealed-value-key\x00"
_AAD_LABEL = b"aiaas-sealed-value\x00"
# Every value has a key of its own, used once: a constant nonce is safe.
_NONCE = bytes(12)


def _value_key(data_key: bytes, salt: bytes) -> bytes:
    return hmac.digest(data_key, _KEY_LABEL + salt, "sha256")


@dataclass(frozen=True)
class SealedColumn:
    """A bytea column whose values are sealed, each bound to its row (by the row's id)."""

    table: str
    column: str

    def _associated_data(self, project_id: UUID, row_id: UUID) -> bytes:
        return (
            _AAD_LABEL
            + FORMAT
            + project_id.bytes
            + row_id.bytes
            + f"{self.table}.{self.column}".encode()
        )

    def seal(self, data_key: bytes, project_id: UUID, row_id: UUID, plaintext: bytes) -> bytes:
        salt = os.urandom(SALT_BYTES)
        cipher = AESGCM(_value_key(data_key, salt))
        sealed = cipher.encrypt(_NONCE, plaintext, self._associated_data(project_id, row_id))
        return FORMAT + salt + sealed

    def open(self, data_key: bytes, project_id: UUID, row_id: UUID, sealed: bytes) -> bytes:
        """The plaintext; `ArtifactIntegrityError` if the value was altered, or belongs to
        another row, column or project."""
        sealed = bytes(sealed)
        if len(sealed) < OVERHEAD or sealed[:1] != FORMAT:
            raise ArtifactIntegrityError(
                f"the sealed {self.column} of {self.table} row {row_id} is not a sealed value"
            )
        salt, body = sealed[1 : 1 + SALT_BYTES], sealed[1 + SALT_BYTES :]
        try:
            return AESGCM(_value_key(data_key, salt)).decrypt(
                _NONCE, body, self._associated_data(project_id, row_id)
            )
        except InvalidTag:
            raise ArtifactIntegrityError(
                f"the sealed {self.column} of {self.table} row {row_id} does not open: it was "
                "altered, or copied from another row"
            ) from None

    def seal_json(self, data_key: bytes, project_id: UUID, row_id: UUID, value: Any) -> bytes:
        return self.seal(data_key, project_id, row_id, json_bytes(value))

    def open_json(self, data_key: bytes, project_id: UUID, row_id: UUID, sealed: bytes) -> Any:
        return json.loads(self.open(data_key, project_id, row_id, sealed))


def jsonb_key_order(key: str) -> tuple[int, bytes]:
    """Where PostgreSQL's jsonb puts an object's key: by length in bytes, then bytewise."""
    encoded = key.encode()
    return len(encoded), encoded


def jsonb_ordered(value: Any) -> Any:
    """`value` with every object's keys in the order PostgreSQL's jsonb keeps them."""
    if isinstance(value, dict):
        ordered = sorted(value.items(), key=lambda item: jsonb_key_order(item[0]))
        return {key: jsonb_ordered(inner) for key, inner in ordered}
    if isinstance(value, list | tuple):
        return [jsonb_ordered(inner) for inner in value]
    return value


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON, objects in jsonb key order; NaN and infinity are refused as jsonb
    refuses them."""
    return json.dumps(
        jsonb_ordered(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode()
