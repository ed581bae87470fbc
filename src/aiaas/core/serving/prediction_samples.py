"""A sample of what each served version was asked and answered, kept for drift and for shadows.

Sampling happens on the event loop of every prediction, so it must cost next to nothing: a
request is sampled with probability `rate`, and then only one of its rows, converted to JSON
values, is appended to an in-memory buffer. A background task writes the buffer to PostgreSQL
about once a second, in one statement. The buffer is bounded: when the database is slow or down,
the newest samples are dropped (and counted) rather than let memory grow, because a sample is
statistics, never a record anyone relies on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import numpy as np

from aiaas.core.serialization import finite_or_none

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

MAX_BUFFERED_SAMPLES = 10_000
MAX_BUFFERED_BYTES = 32 * 1024**2
"""With the count, bounds the buffer whatever the width of the models' inputs."""
MAX_VALUES_PER_SAMPLED_FIELD = 64
"""Wider fields are not sampled (see `row_as_json`); a probability per class fits."""
FLUSH_EVERY_S = 1.0

_INSERT = """
INSERT INTO prediction_samples (deployment_id, version_id, role, inputs, outputs)
SELECT deployment_id, version_id, role, inputs::jsonb, outputs::jsonb
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[])
    AS sample (deployment_id, version_id, role, inputs, outputs)
"""


@dataclass(frozen=True)
class Sample:
    deployment_id: UUID
    version_id: UUID
    role: str
    inputs: str
    outputs: str | None


def row_as_json(columns: Mapping[str, np.ndarray], row: int) -> str:
    """One row of a batch as a JSON object; NaN and infinity become null (JSON has neither).
    Values wider than `MAX_VALUES_PER_SAMPLED_FIELD` (an image's pixels, an embedding) are left
    out: drift bins one value per feature, and converting a wide row on the event loop would
    cost more than the request it samples."""
    values: dict[str, Any] = {}
    for name, array in columns.items():
        if array.ndim > 1 and array[row].size > MAX_VALUES_PER_SAMPLED_FIELD:
            continue
        value = array[row]
        values[name] = finite_or_none(
            value.tolist()
            if isinstance(value, np.ndarray)
            else value.item()
            if isinstance(value, np.generic)
            else value
        )
    return json.dumps(values, allow_nan=False, default=str)


class PredictionSampler:
    def __init__(self, platform: Platform, *, rate: float) -> None:
        self._platform = platform
        self.rate = rate
        self._buffer: deque[Sample] = deque()
        self._buffered_bytes = 0
        self.dropped = 0
        self.written = 0
        self._task: asyncio.Task[None] | None = None
        # Sampling needs a fair coin, not a secret.
        self._random = random.Random()  # noqa: S311

    def wants_sample(self) -> bool:
        return self.rate > 0 and (self.rate >= 1 or self._random.random() < self.rate)

    def record(
        self,
        deployment_id: UUID,
        version_id: UUID,
        role: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray] | None,
    ) -> None:
        """Keep one random row of this request's inputs (and the outputs of that row)."""
        if len(self._buffer) >= MAX_BUFFERED_SAMPLES:
            self.dropped += 1
            return
        rows = len(next(iter(inputs.values()))) if inputs else 0
        if rows == 0:
            return
        row = self._random.randrange(rows)
        sample = Sample(
            deployment_id,
            version_id,
            role,
            row_as_json(inputs, row),
            None if outputs is None else row_as_json(outputs, row),
        )
        size = len(sample.inputs) + len(sample.outputs or "")
        if self._buffered_bytes + size > MAX_BUFFERED_BYTES:
            self.dropped += 1
            return
        self._buffer.append(sample)
        self._buffered_bytes += size
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._flush_regularly(), name="prediction-samples"
            )

    async def flush(self) -> int:
        """Write what is buffered now; returns how many samples were written."""
        if not self._buffer:
            return 0
        batch = list(self._buffer)
        self._buffer.clear()
        self._buffered_bytes = 0
        try:
            async with self._platform.metadata.acquire() as connection:
                await connection.execute(
                    _INSERT,
                    [sample.deployment_id for sample in batch],
                    [sample.version_id for sample in batch],
                    [sample.role for sample in batch],
                    [sample.inputs for sample in batch],
                    [sample.outputs for sample in batch],
                )
        except asyncio.CancelledError:
            self.dropped += len(batch)  # stopping mid-write: the batch is lost, but counted
            raise
        except Exception:
            self.dropped += len(batch)
            logger.warning("could not write %d prediction samples", len(batch), exc_info=True)
            return 0
        self.written += len(batch)
        return len(batch)

    async def _flush_regularly(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            await self.flush()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None
        await self.flush()
