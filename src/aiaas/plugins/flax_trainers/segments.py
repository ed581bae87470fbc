"""Steps run in segments: one dispatch runs every step up to the next point where the host has
something to do, as a loop on the device.

A dispatch costs the host tens of microseconds (flattening the train state, handing its buffers
to the runtime), as much as a small model's whole step: dispatched one at a time, the steps of
such a model leave the device waiting on the host. `looped_train_steps` runs the jitted step
(`train_step`) `count` times in a `fori_loop` whose trip count is an argument, so one
compilation serves segments of any length (an epoch's short last chunk, a segment cut by a
checkpoint) and every step runs the same compiled body, whatever segment it falls in: a run
resumed midway, cut into other segments, computes exactly what an uninterrupted one does.

A segment ends where the host must act (`segment_end`): at the end of a loss block (read back
and reported, `progress_meter`), of an epoch (evaluated, judged by early stopping), of a staged
chunk (the next one is staged), at a checkpoint and at the run's end. Cancellation is checked
between segments, so it takes effect within `LOSS_BLOCK` steps, at an epoch's end when epochs
are judged (`epoch_verdicts`) and at once after a checkpoint.

On a CPU, a step that convolves runs its segments as a host loop over the jitted step instead.
XLA:CPU runs a loop body's convolutions far slower than the same convolutions at a
computation's top level: the image ResNet's test of shapes on noise took 213 s in `fori_loop`
segments against 15 s dispatched step by step (`pytest --durations=5
tests/plugins/flax_trainers/test_image_resnet.py`, idle 2-core machine). Dense steps keep the
loop there, where it pays: `python bench/train_overhead.py` ran the MLP at 1.08x a bare jitted
step in the loop against 0.94x step by step. Segment boundaries, and so cancellation and
reporting, are the same either way; each configuration runs every step through one compiled
body.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding

from aiaas.plugins.flax_trainers.progress_meter import LOSS_BLOCK
from aiaas.plugins.flax_trainers.staging import Schedule, partition


@functools.lru_cache(maxsize=16)
def compiled_train_steps(train_step: Callable[..., Any], mesh: Mesh) -> Callable[..., Any]:
    """`steps(params, optimizer_state, step_count, losses, inputs, targets, class_weights,
    count)`: `train_step`'s arguments and results, after `count` steps instead of one: a loop
    on the device (`looped_train_steps`), or on a CPU for a step that convolves, the jitted
    step `count` times. Kept per train step, with the choice made at its first segment."""
    if all(device.platform == "cpu" for device in mesh.devices.flat):
        return _CpuSegments(train_step, mesh)
    return looped_train_steps(train_step, mesh)


class _CpuSegments:
    """Decides at the first segment, from the step's lowered program, whether to loop on the
    device: only a step without convolutions does (see the module's doc)."""

    def __init__(self, train_step: Callable[..., Any], mesh: Mesh) -> None:
        self._train_step, self._mesh = train_step, mesh
        self._run: Callable[..., Any] | None = None

    def __call__(self, *arguments: Any) -> Any:
        if self._run is None:
            self._run = (
                functools.partial(_step_by_step, self._train_step)
                if convolves(self._train_step, arguments[:7])
                else looped_train_steps(self._train_step, self._mesh)
            )
        return self._run(*arguments)


def convolves(train_step: Callable[..., Any], arguments: tuple[Any, ...]) -> bool:
    """Whether the step's program holds a convolution. Lowering a jitted step traces it once
    more but compiles nothing."""
    lower = getattr(train_step, "lower", None) or jax.jit(train_step).lower
    lowered: str = lower(*arguments).as_text()
    return "stablehlo.convolution" in lowered


@functools.lru_cache(maxsize=16)
def looped_train_steps(train_step: Callable[..., Any], mesh: Mesh) -> Callable[..., Any]:
    """The `count` steps as one `fori_loop` on the device. Kept per train step (itself kept
    per configuration), so a second run compiles nothing."""

    def train_steps(
        params: Any,
        optimizer_state: Any,
        step_count: jax.Array,
        losses: jax.Array,
        inputs: jax.Array,
        targets: jax.Array,
        class_weights: jax.Array,
        count: jax.Array,
    ) -> tuple[Any, Any, jax.Array, jax.Array]:
        def one_step(_: Any, state: tuple[Any, Any, jax.Array, jax.Array]) -> Any:
            return train_step(*state, inputs, targets, class_weights)

        # A traced trip count makes this a while loop: compiled once for every length.
        state: tuple[Any, Any, jax.Array, jax.Array] = jax.lax.fori_loop(
            0, count, one_step, (params, optimizer_state, step_count, losses)
        )
        return state

    replicated = NamedSharding(mesh, partition())
    return jax.jit(train_steps, donate_argnums=(0, 1, 2), out_shardings=replicated)


def _step_by_step(train_step: Callable[..., Any], *arguments: Any) -> Any:
    # The arguments of `train_steps`: the four states, the three batch arrays, the count.
    state, batch, count = arguments[:4], arguments[4:7], arguments[7]
    for _ in range(count):
        state = train_step(*state, *batch)
    return state


def segment_end(step: int, schedule: Schedule, checkpoint_every_steps: int) -> int:
    """The step at which the segment that starts after `step` ends (see the module's doc)."""
    within_epoch = step % schedule.steps_per_epoch
    chunk_end = (
        step
        - within_epoch
        + min(
            schedule.steps_per_epoch,
            (within_epoch // schedule.chunk_steps + 1) * schedule.chunk_steps,
        )
    )
    return min(
        chunk_end,  # never past the epoch's end, which ends its last chunk
        _next_multiple(step, LOSS_BLOCK),
        _next_multiple(step, checkpoint_every_steps),
        schedule.total_steps,
    )


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every
