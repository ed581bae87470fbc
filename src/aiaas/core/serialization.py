"""How job payloads cross Redis: msgpack, never pickle.

arq defaults to pickle, which would let anyone able to write to the queue run code in every
worker. msgpack decodes to plain data only; anything else on the queue fails to decode and the
job is refused before any function runs.
"""

from __future__ import annotations

from typing import Any

import msgpack


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def unpack(data: bytes) -> Any:
    # strict_map_key keeps map keys to str/bytes; raw=False decodes strings as str.
    return msgpack.unpackb(data, raw=False, strict_map_key=True)
