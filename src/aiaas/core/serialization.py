"""How values leave a process: job payloads through Redis as msgpack, never pickle; and
numbers as JSON (streams, jsonb, GraphQL) can hold them.

arq defaults to pickle, which would let anyone able to write to the queue run code in every
worker. msgpack decodes to plain data only; anything else on the queue fails to decode and the
job is refused before any function runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgpack


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def unpack(data: bytes) -> Any:
    # strict_map_key keeps map keys to str/bytes; raw=False decodes strings as str.
    return msgpack.unpackb(data, raw=False, strict_map_key=True)


def finite_or_none(value: Any) -> Any:
    """JSON and GraphQL floats have no NaN or infinity: such values read as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def json_safe(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: finite_or_none(value) for key, value in values.items()}
