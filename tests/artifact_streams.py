"""What the artifact store tests feed the stores: streams of chunks and keys no store may take."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from aiaas.core.storage import ArtifactStore


class StreamBrokenError(Exception):
    """Raised by a test stream partway through, like a client that disconnects."""


async def chunks_of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def stored_keys(store: ArtifactStore) -> list[str]:
    # `keys()` is the store's listing method, not a dict's: SIM118 does not apply.
    return [key async for key in store.keys()]  # noqa: SIM118


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
