"""How the training batches get onto the devices: the schedule, the mesh and the staging.

Batches are staged a chunk of steps at a time: the host gathers each step's rows in the epoch's
order and sends the chunk in one transfer; the step then takes its batch from the chunk by a step
count that lives on the device, so a step itself sends nothing. (Keeping the whole split on the
device and gathering each batch there was tried: XLA's gather made every step slower on CPU
than one host gather per chunk costs.)

The batch axis is sharded over every local device along the mesh axis `data`; everything else
is replicated. On one device that is plain single-device training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from aiaas.plugins.flax_trainers.input_pipeline import epoch_batches

STAGED_BYTES = 32 * 1024 * 1024
"""Upper bound of the rows staged on the devices at once: a chunk holds this much at most, and
the next chunk is staged when the step count reaches it."""

_PARTITION_SPEC: Any = PartitionSpec
"""`PartitionSpec`'s constructor carries no annotations; calls go through this alias so the
type checker accepts them."""


def partition(*axes: str | None) -> PartitionSpec:
    """Which mesh axis each array axis is split over (None: not split)."""
    spec: PartitionSpec = _PARTITION_SPEC(*axes)
    return spec


def data_mesh() -> Mesh:
    return Mesh(np.array(jax.local_devices()), ("data",))


@dataclass(frozen=True, kw_only=True)
class Schedule:
    batch_size: int
    steps_per_epoch: int
    total_steps: int
    chunk_steps: int
    """Steps staged at once; chunks start afresh with each epoch."""


def plan_schedule(
    train_count: int,
    epochs: int,
    batch_size: int,
    device_count: int,
    row_bytes: int,
    saved_batch_size: int | None = None,
) -> Schedule:
    """The batch is a multiple of the device count (each device gets an equal share) and no
    larger than the training split. A resumed run keeps the batch size it was checkpointed with
    when the devices still divide it, so it sees the same batches as an uninterrupted run."""
    if saved_batch_size is not None and saved_batch_size % device_count == 0:
        batch = saved_batch_size
    else:
        batch = max(device_count, min(batch_size, train_count) // device_count * device_count)
    steps_per_epoch = max(1, train_count // batch)
    chunk_steps = max(1, min(steps_per_epoch, STAGED_BYTES // max(1, batch * row_bytes)))
    return Schedule(
        batch_size=batch,
        steps_per_epoch=steps_per_epoch,
        total_steps=epochs * steps_per_epoch,
        chunk_steps=chunk_steps,
    )


class BatchStager:
    """Chunks of an epoch's batches, [chunk_steps, batch, ...], on the devices."""

    def __init__(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        schedule: Schedule,
        seed: int,
        mesh: Mesh,
    ) -> None:
        self.inputs, self.targets = inputs, targets
        self.schedule, self.seed = schedule, seed
        self.sharding = NamedSharding(mesh, partition(None, "data"))
        # An epoch's order depends on (seed, epoch) alone: drawn once, then cut into chunks.
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def key(self, step: int) -> tuple[int, int]:
        """(epoch, chunk) of the step."""
        epoch, within = divmod(step, self.schedule.steps_per_epoch)
        return epoch, within // self.schedule.chunk_steps

    def stage(self, key: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
        epoch, chunk_index = key
        schedule = self.schedule
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            order = epoch_batches(
                self.inputs.shape[0],
                schedule.batch_size,
                schedule.steps_per_epoch,
                self.seed,
                epoch,
            )
            self._epoch_order = (epoch, order)
        batches = self._epoch_order[1]
        first = chunk_index * schedule.chunk_steps
        rows = batches[first : first + schedule.chunk_steps]
        # The last chunk of an epoch is padded to the same shape (its extra steps never run),
        # so that the step compiles once.
        missing = schedule.chunk_steps - len(rows)
        if missing:
            rows = np.concatenate([rows, np.repeat(rows[-1:], missing, axis=0)])
        # `take` gathers rows several times faster than fancy indexing.
        chunk = (np.take(self.inputs, rows, axis=0), np.take(self.targets, rows, axis=0))
        inputs, targets = jax.device_put(chunk, self.sharding)
        return inputs, targets
