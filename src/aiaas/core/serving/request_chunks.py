"""Requests with more rows than a batch, for the adaptive batcher (`batching`): the bound on their
size, told once, and their chunks' answers joined back into one.

Nothing here imports JAX.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aiaas.core.errors import InputError


def check_request_rows(columns: Mapping[str, Any], max_rows: int) -> None:
    """An `InputError` if some input of the request has more than `max_rows` rows (the
    deployment's `maxQueueRows`). Told once for the request, before any value is read: the
    signature's checks, which come next, would tell it once per input."""
    rows = max(
        (
            len(values)
            for values in columns.values()
            if isinstance(values, list | tuple) or (isinstance(values, np.ndarray) and values.ndim)
        ),
        default=0,
    )
    if rows > max_rows:
        raise InputError(
            f"the request has {rows} rows, more than the {max_rows} one request may have (the "
            "deployment's maxQueueRows); send them in several requests",
            field_errors={"inputs": f"{rows} rows; at most {max_rows}"},
        )


async def joined(
    futures: Sequence[asyncio.Future[dict[str, np.ndarray]]],
) -> dict[str, np.ndarray]:
    """The answers of a request's chunks as one answer, rows in order. A chunk that fails fails
    the request; its chunks still queued are then dropped unrun, and so are all of them when
    the caller gives up."""
    try:
        parts = [await future for future in futures]
    finally:
        for future in futures:
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                # Retrieved, so that the chunks failed with the one raised are not logged as
                # unretrieved exceptions too.
                future.exception()
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
