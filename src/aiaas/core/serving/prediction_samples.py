"""A sample of what each served version was asked and answered, kept for drift and for shadows.

Sampling happens on the event loop of every prediction, so it must cost next to nothing: a
request is sampled with probability `rate`, and then only one of its rows, converted to JSON
values, is appended to an in-memory buffer. A background task writes the buffer to PostgreSQL
about once a second, in one statement. The buffer is bounded: when the database is slow or down,
the newest samples are dropped (and counted) rather than let memory grow, because a sample is
statistics, never a record anyone relies on.

A sample is a real request's row, so its inputs and outputs are sealed with the deployment's
project's data key (`governance.sealed_values`), each bound to the sample's id; the row keeps in
clear only its deployment, model version, role and time. Sealing happens at the flush, in a
thread, never on a prediction's path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import numpy as np

from aiaas.core.governance.sealed_values import SealedColumn
from aiaas.core.governance.vault import VAULT
from aiaas.core.log_records import detached_context
from aiaas.core.serialization import finite_or_none
from aiaas.core.serving.image_statistics import is_image_tensor, sampled_statistics
from aiaas.core.storage import Record

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

MAX_BUFFERED_SAMPLES = 10_000
MAX_BUFFERED_BYTES = 32 * 1024**2
"""With the count, bounds the buffer whatever the width of the models' inputs."""
MAX_VALUES_PER_SAMPLED_FIELD = 64
"""Wider fields are not sampled (see `row_as_json`); a probability per class fits."""
FLUSH_EVERY_S = 1.0

SAMPLE_INPUTS = SealedColumn("prediction_samples", "sealed_inputs")
SAMPLE_OUTPUTS = SealedColumn("prediction_samples", "sealed_outputs")

_INSERT = """
INSERT INTO prediction_samples (id, deployment_id, version_id, role, sealed_inputs, sealed_outputs)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bytea[], $6::bytea[])
"""


@dataclass(frozen=True)
class Sample:
    deployment_id: UUID
    version_id: UUID
    role: str
    inputs: str
    outputs: str | None


def row_as_json(
    columns: Mapping[str, np.ndarray],
    row: int,
    image_sizes: Mapping[str, np.ndarray] | None = None,
) -> str:
    """One row of a batch as a JSON object; NaN and infinity become null (JSON has neither).
    Values wider than `MAX_VALUES_PER_SAMPLED_FIELD` (an embedding) are left out: drift bins
    one value per feature, and converting a wide row on the event loop would cost more than the
    request it samples. An image is kept as its statistics (`image_statistics`), never its
    pixels; `image_sizes` holds the size each encoded image was sent at, by input."""
    values: dict[str, Any] = {}
    for name, array in columns.items():
        if is_image_tensor(array):  # however small: an 8x8 digit is an image too
            values.update(sampled_statistics(name, array, row, image_sizes))
            continue
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


@dataclass(frozen=True)
class SealedSample:
    id: UUID
    deployment_id: UUID
    version_id: UUID
    role: str
    inputs: bytes
    outputs: bytes | None


def seal_samples(
    batch: list[Sample], projects: Mapping[UUID, UUID], keys: Mapping[UUID, bytes]
) -> list[SealedSample]:
    """The samples of deployments whose project is known, sealed with its data key."""
    sealed = []
    for sample in batch:
        project_id = projects.get(sample.deployment_id)
        if project_id is None:
            continue
        key, sample_id = keys[project_id], uuid4()
        sealed.append(
            SealedSample(
                sample_id,
                sample.deployment_id,
                sample.version_id,
                sample.role,
                SAMPLE_INPUTS.seal(key, project_id, sample_id, sample.inputs.encode()),
                None
                if sample.outputs is None
                else SAMPLE_OUTPUTS.seal(key, project_id, sample_id, sample.outputs.encode()),
            )
        )
    return sealed


class PredictionSampler:
    def __init__(self, platform: Platform, *, rate: float) -> None:
        self._platform = platform
        self.rate = rate
        self._projects: dict[UUID, UUID] = {}
        """Each sampled deployment's project (it never changes), for its data key."""
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
        image_sizes: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Keep one random row of this request's inputs (and the outputs of that row); an
        image input is kept as its statistics, with the size it was sent at from
        `image_sizes` where the request sent encoded images."""
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
            row_as_json(inputs, row, image_sizes),
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
                self._flush_regularly(), name="prediction-samples", context=detached_context()
            )

    async def flush(self) -> int:
        """Write what is buffered now; returns how many samples were written."""
        if not self._buffer:
            return 0
        batch = list(self._buffer)
        self._buffer.clear()
        self._buffered_bytes = 0
        try:
            sealed = await self._sealed(batch)
            if sealed:
                async with self._platform.metadata.acquire() as connection:
                    await connection.execute(
                        _INSERT,
                        [sample.id for sample in sealed],
                        [sample.deployment_id for sample in sealed],
                        [sample.version_id for sample in sealed],
                        [sample.role for sample in sealed],
                        [sample.inputs for sample in sealed],
                        [sample.outputs for sample in sealed],
                    )
        except asyncio.CancelledError:
            self.dropped += len(batch)  # stopping mid-write: the batch is lost, but counted
            raise
        except Exception:
            self.dropped += len(batch)
            logger.warning("could not write %d prediction samples", len(batch), exc_info=True)
            return 0
        # A deployment that is not there (the foreign key would refuse it) has no project to
        # seal for: its samples were dropped.
        self.dropped += len(batch) - len(sealed)
        self.written += len(sealed)
        return len(sealed)

    async def _sealed(self, batch: list[Sample]) -> list[SealedSample]:
        unknown = list({sample.deployment_id for sample in batch} - self._projects.keys())
        if unknown:
            async with self._platform.metadata.acquire() as connection:
                rows = await connection.fetch(
                    "SELECT id, project_id FROM deployments WHERE id = ANY($1::uuid[])", unknown
                )
            self._projects.update({row["id"]: row["project_id"] for row in rows})
        vault = self._platform.service(VAULT)
        wanted = {
            self._projects[s.deployment_id] for s in batch if s.deployment_id in self._projects
        }
        keys = {project_id: await vault.data_key(project_id) for project_id in wanted}
        return await asyncio.to_thread(seal_samples, batch, self._projects.copy(), keys)

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


# Reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredSample:
    id: UUID
    deployment_id: UUID
    version_id: UUID
    role: str
    sampled_at: datetime
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None


def open_samples(
    key: bytes, project_id: UUID, rows: list[Record], *, with_outputs: bool = True
) -> list[StoredSample]:
    """Samples as stored, opened (in a thread: there may be thousands). `ArtifactIntegrityError`
    at the first one altered, or copied from another sample."""
    opened = []
    for row in rows:
        outputs = row["sealed_outputs"] if with_outputs else None
        opened.append(
            StoredSample(
                id=row["id"],
                deployment_id=row["deployment_id"],
                version_id=row["version_id"],
                role=row["role"],
                sampled_at=row["sampled_at"],
                inputs=json.loads(
                    SAMPLE_INPUTS.open(key, project_id, row["id"], row["sealed_inputs"])
                ),
                outputs=None
                if outputs is None
                else json.loads(SAMPLE_OUTPUTS.open(key, project_id, row["id"], outputs)),
            )
        )
    return opened


async def stored_samples(
    platform: Platform,
    project_id: UUID,
    deployment_id: UUID,
    *,
    version_id: UUID | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    with_outputs: bool = True,
) -> list[StoredSample]:
    """A deployment's samples, newest first: of one version, since a time, at most `limit`,
    when asked. `project_id` is the deployment's: its key opens them."""
    key = await platform.service(VAULT).data_key(project_id)
    conditions: list[str] = ["deployment_id = $1"]
    arguments: list[Any] = [deployment_id]
    # Only the conditions asked for, so that each combination gets a plan of its own that uses
    # the index on (deployment, version, time).
    if version_id is not None:
        arguments.append(version_id)
        conditions.append(f"version_id = ${len(arguments)}")
    if since is not None:
        arguments.append(since)
        conditions.append(f"sampled_at >= ${len(arguments)}")
    outputs = "sealed_outputs" if with_outputs else "NULL AS sealed_outputs"
    query = (
        f"SELECT id, deployment_id, version_id, role, sampled_at, sealed_inputs, {outputs} "
        f"FROM prediction_samples WHERE {' AND '.join(conditions)} ORDER BY sampled_at DESC"
    )
    if limit is not None:
        arguments.append(limit)
        query += f" LIMIT ${len(arguments)}"
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(query, *arguments)
    return await asyncio.to_thread(
        open_samples, key, project_id, list(rows), with_outputs=with_outputs
    )
