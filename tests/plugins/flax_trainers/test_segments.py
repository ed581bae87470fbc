"""Steps run in segments, one dispatch each: where the segments end, and that they train
exactly like one dispatch a step, with one compilation for every segment length. The loop on
the device is what accelerators run; a CPU runs the jitted step once per step of a segment, and
that is tested here too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pytest

from aiaas.plugins.flax_trainers import TabularClassifier, segments, staging, train
from aiaas.plugins.flax_trainers.progress_meter import LOSS_BLOCK

# Wine has 142 training rows: 4 steps an epoch in batches of 32, 12 steps in all.
HYPERPARAMETERS = {"epochs": 3, "hidden_size": 8}


def _first_boundary_after(step: int, schedule: staging.Schedule, every: int) -> int:
    """The same boundaries as `segment_end`, found by trying each step in turn."""
    boundary = step + 1
    while not (
        boundary % schedule.steps_per_epoch % schedule.chunk_steps == 0
        or boundary % schedule.steps_per_epoch == 0
        or boundary % LOSS_BLOCK == 0
        or boundary % every == 0
        or boundary == schedule.total_steps
    ):
        boundary += 1
    return boundary


def test_segments_end_at_chunks_epochs_loss_blocks_checkpoints_and_the_run_end() -> None:
    schedule = staging.Schedule(batch_size=32, steps_per_epoch=6, total_steps=18, chunk_steps=4)
    ends, step = [], 0
    while step < schedule.total_steps:
        step = segments.segment_end(step, schedule, checkpoint_every_steps=5)
        ends.append(step)
    assert LOSS_BLOCK == 8
    # Chunks end at 4 and 6 in each epoch, loss blocks at 8 and 16, checkpoints at 5, 10, 15.
    assert ends == [4, 5, 6, 8, 10, 12, 15, 16, 18]
    for every in (1, 3, 7, 1_000_000):
        for chunk_steps in (1, 4, 6):
            for start in range(schedule.total_steps):
                chunked = staging.Schedule(
                    batch_size=32, steps_per_epoch=6, total_steps=18, chunk_steps=chunk_steps
                )
                assert segments.segment_end(start, chunked, every) == _first_boundary_after(
                    start, chunked, every
                )


def _one_dispatch_a_step(train_step: Callable[..., Any], mesh: Any) -> Callable[..., Any]:
    """The loop as it was before segments: the jitted step itself, once per dispatch."""

    def run(*arguments: Any) -> Any:
        assert int(arguments[-1]) == 1
        return train_step(*arguments[:-1])

    return run


def _reported(reporter: Any) -> list[tuple[int, dict[str, float]]]:
    return [(report.step, dict(report.metrics)) for report in reporter.progress_reports]


def test_segments_train_exactly_like_one_dispatch_a_step_and_compile_once(
    wine: tuple[np.ndarray, np.ndarray, pa.Table],
    make_run: Any,
    recording_reporter: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Chunks of 3 steps, so each 4-step epoch is a full chunk and a padded one; with a
    # checkpoint every 5 steps the segments are 3, 1, 1, 2, 1, 2, 1 and 1 steps long.
    monkeypatch.setattr(staging, "STAGED_BYTES", 3 * 32 * (13 * 4 + 4))
    compiled: list[Any] = []

    def recording(train_step: Callable[..., Any], mesh: Any) -> Any:
        # The device loop, run here on the CPU: what an accelerator runs.
        compiled.append(segments.looped_train_steps(train_step, mesh))
        return compiled[-1]

    with monkeypatch.context() as patched:
        patched.setattr(train, "compiled_train_steps", recording)
        in_segments = recording_reporter()
        segmented = TabularClassifier().fit(
            make_run(wine[2], "target", HYPERPARAMETERS, checkpoint_every_steps=5), in_segments
        )
    assert segmented.steps == 12
    # One compilation served every segment length, the padded chunk's included.
    assert len(compiled) == 1
    assert compiled[0]._cache_size() == 1

    with monkeypatch.context() as patched:
        patched.setattr(train, "compiled_train_steps", _one_dispatch_a_step)
        patched.setattr(train, "segment_end", lambda step, schedule, every: step + 1)
        step_by_step = recording_reporter()
        single = TabularClassifier().fit(
            make_run(wine[2], "target", HYPERPARAMETERS, checkpoint_every_steps=5), step_by_step
        )
    assert segmented.bundle == single.bundle
    assert segmented.metrics == single.metrics
    assert _reported(in_segments) == _reported(step_by_step)
    assert [step for step, _ in _reported(in_segments)] == list(range(1, 13))
    assert in_segments.checkpoints == step_by_step.checkpoints == [5, 10, 12]


class _CountingStep:
    """A jitted step that counts its Python calls: a dispatch each, or one trace in a loop."""

    def __init__(self, step: Callable[..., Any]) -> None:
        self.jitted, self.calls = jax.jit(step), 0

    def __call__(self, *arguments: Any) -> Any:
        self.calls += 1
        return self.jitted(*arguments)

    def lower(self, *arguments: Any) -> Any:
        return self.jitted.lower(*arguments)


def _dense(params: Any, optimizer_state: Any, step_count: Any, losses: Any, inputs: Any, *_: Any):
    return params + inputs.sum(), optimizer_state, step_count + 1, losses


def _convolving(
    params: Any, optimizer_state: Any, step_count: Any, losses: Any, inputs: Any, *_: Any
):
    kernel = jnp.ones((1, 1, 3, 3), jnp.float32)
    image = jax.lax.conv(inputs[None, None], kernel, (1, 1), "SAME")
    return params + image.sum(), optimizer_state, step_count + 1, losses


@pytest.mark.parametrize(("step", "calls"), [(_convolving, 5), (_dense, 1)])
def test_a_cpu_dispatches_each_step_of_a_convolving_model_and_loops_a_dense_one(
    step: Callable[..., Any], calls: int
) -> None:
    """XLA:CPU runs convolutions in a loop body an order of magnitude slower (the module's doc
    of `segments`): on a CPU, a convolving step's segment of 5 steps is 5 dispatches; a dense
    one's is one loop, traced once."""
    mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")[:1]), ("data",))
    counting = _CountingStep(step)
    arguments = (jnp.float32(0), jnp.float32(0), jnp.int32(3), jnp.zeros(8), jnp.ones((4, 4)))
    one_step = float(step(*arguments)[0])
    run = segments.compiled_train_steps(counting, mesh)

    params, _, step_count, _ = run(*arguments, jnp.ones(1), jnp.ones(1), 5)

    assert int(step_count) == 8
    assert float(params) == pytest.approx(5 * one_step)
    assert counting.calls == calls
    fresh = (jnp.float32(0), jnp.float32(0), jnp.int32(3), jnp.zeros(8), jnp.ones((4, 4)))
    assert segments.convolves(counting, (*fresh, jnp.ones(1), jnp.ones(1))) is (calls == 5)
