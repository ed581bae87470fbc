"""Train-loop overhead of the platform's trainer against a bare jitted step, in the same run.

Three loops train the same MLP (the tabular classifier's, default sizes) with the same AdamW,
on the same synthetic data, in batches of the same size:

- platform: `TabularClassifier.fit`, as a worker runs it: batches staged a chunk at a time and
  sharded, steps run in segments of up to a loss block in one dispatch, losses read back late in
  blocks, cancellation checked between segments, and every step's
  `Progress` put on a `queue.SimpleQueue` that another thread drains (the worker's reporter
  does that much on the training thread). Steps/s comes from the times at which progress is
  reported, so table preparation, evaluation and the bundle are left out. Mid-run checkpoints
  are off unless `--checkpoint-every-steps` is given (a checkpoint is disk I/O, not loop
  overhead); the final one lands after the last report. No rows are held out unless
  `--validation-fraction` is given: with a validation split, each epoch also evaluates it
  (one jitted call) and reports `train_loss` and the `val_` metrics, which the steps/s include.
- bare jit: a hand-written functional `jax.jit` step over `nnx.split` state with donated
  buffers, every batch put on the device before timing starts (no reshuffle per epoch), no
  reads at all until the end: the floor.
- nnx.jit: the same step as plain `nnx.jit` over the module and an `nnx.Optimizer`, for
  reference.

Compile time is excluded from all three: each is warmed up first (the platform by a whole
first fit of the same configuration, whose compiled step the second one reuses). Each figure is
the median of `--repeat` runs, and each ratio the median of the runs' ratios.
`platform_vs_bare_jit_cpu_ratio` compares the CPU time of the process (every thread's) per step
instead of the wall time: on a shared machine it is the steadier of the two.

    python bench/train_overhead.py [--rows 32768] [--batch-size 256] [--epochs 8] [--repeat 7]
        [--validation-fraction 0.2]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pyarrow as pa
from flax import nnx

from aiaas.core.trainers import Progress, TrainingReporter, TrainingRun
from aiaas.formats.flax_nnx_models import COMPUTE_DTYPES, MultilayerPerceptron
from aiaas.plugins.flax_trainers import TabularClassifier

HIDDEN_SIZE = 128
HIDDEN_LAYERS = 2
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4


@dataclass(frozen=True)
class ModelSize:
    """The MLP the loops train: the tabular classifier's defaults unless a bench (train_mfu)
    asks for a wider one, or for mixed precision."""

    hidden_size: int = HIDDEN_SIZE
    hidden_layers: int = HIDDEN_LAYERS
    precision: str = "float32"


DEFAULT_SIZE = ModelSize()


class QueueReporter(TrainingReporter):
    """The worker's shape: progress goes on a queue, another thread takes it off."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[float, Progress] | None] = queue.SimpleQueue()
        self.received: list[tuple[float, Progress]] = []
        self.cpu_times: list[float] = []
        """The process's CPU time (every thread's) at each report, in the order received."""
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        while (item := self.queue.get()) is not None:
            self.received.append(item)

    def close(self) -> None:
        self.queue.put(None)
        self._drainer.join()

    def resumed(self, step: int) -> None:
        pass

    def progress(self, progress: Progress) -> None:
        self.queue.put((time.perf_counter(), progress))
        self.cpu_times.append(time.process_time())

    def checkpointed(self, step: int) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def synthetic_data(rows: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    draw = np.random.default_rng(0)
    inputs = draw.normal(size=(rows, features)).astype(np.float32)
    weights = draw.normal(size=features)
    labels = (inputs @ weights + draw.normal(size=rows) > 0).astype(np.int32)
    return inputs, labels


def platform_steps_per_s(
    inputs: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    epochs: int,
    every: int,
    validation_fraction: float,
    size: ModelSize = DEFAULT_SIZE,
    cpu_ms_per_step: list[float] | None = None,
) -> tuple[float, int]:
    table = pa.table(
        {
            **{f"x{index:03d}": inputs[:, index] for index in range(inputs.shape[1])},
            "label": labels,
        }
    )
    with tempfile.TemporaryDirectory() as checkpoints:
        run = TrainingRun(
            table=table,
            target="label",
            features=tuple(name for name in table.column_names if name != "label"),
            hyperparameters={
                "epochs": epochs,
                "batch_size": batch_size,
                **asdict(size),
                "learning_rate": LEARNING_RATE,
                "weight_decay": WEIGHT_DECAY,
            },
            validation_fraction=validation_fraction,
            seed=0,
            checkpoint_dir=Path(checkpoints),
            checkpoint_every_steps=every,
        )
        reporter = QueueReporter()
        model = TabularClassifier().fit(run, reporter)
        reporter.close()
    # From the first report (its step compiled and ran) to the last: steady-state steps only.
    (first_time, first), (last_time, last) = reporter.received[0], reporter.received[-1]
    if cpu_ms_per_step is not None:
        cpu_ms_per_step.append(
            1000 * (reporter.cpu_times[-1] - reporter.cpu_times[0]) / (last.step - first.step)
        )
    assert last.step == model.steps
    return (last.step - first.step) / (last_time - first_time), model.steps


def device_batches(
    inputs: np.ndarray, labels: np.ndarray, batch_size: int, steps: int
) -> list[tuple[jax.Array, jax.Array]]:
    order = np.random.default_rng(1).permutation(inputs.shape[0])
    per_epoch = inputs.shape[0] // batch_size
    batches = []
    for step in range(steps):
        rows = order[(step % per_epoch) * batch_size : (step % per_epoch + 1) * batch_size]
        batches.append((jax.device_put(inputs[rows]), jax.device_put(labels[rows])))
    return batches


def _model(features: int, size: ModelSize = DEFAULT_SIZE) -> MultilayerPerceptron:
    return MultilayerPerceptron(
        features,
        size.hidden_size,
        size.hidden_layers,
        2,
        rngs=nnx.Rngs(0),
        dtype=COMPUTE_DTYPES[size.precision],
    )


def bare_jit_step(features: int, size: ModelSize = DEFAULT_SIZE) -> tuple[Any, Any, Any]:
    """The bare step, jitted, with its initial parameters and optimizer state."""
    graphdef, state = nnx.split(_model(features, size))
    optimizer = optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    params = nnx.to_pure_dict(state)
    optimizer_state = optimizer.init(params)

    def step(params: Any, optimizer_state: Any, inputs: jax.Array, labels: jax.Array) -> Any:
        def loss_fn(params: Any) -> jax.Array:
            logits = nnx.merge(graphdef, params)(inputs)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, gradients = jax.value_and_grad(loss_fn)(params)
        updates, optimizer_state = optimizer.update(gradients, optimizer_state, params)
        return optax.apply_updates(params, updates), optimizer_state, loss

    return jax.jit(step, donate_argnums=(0, 1)), params, optimizer_state


def bare_jit_steps_per_s(
    batches: list[tuple[jax.Array, jax.Array]],
    features: int,
    size: ModelSize = DEFAULT_SIZE,
    cpu_ms_per_step: list[float] | None = None,
) -> float:
    jitted, params, optimizer_state = bare_jit_step(features, size)
    params, optimizer_state, loss = jitted(params, optimizer_state, *batches[0])
    loss.block_until_ready()
    started, cpu_started = time.perf_counter(), time.process_time()
    for inputs, labels in batches[1:]:
        params, optimizer_state, loss = jitted(params, optimizer_state, inputs, labels)
    loss.block_until_ready()
    if cpu_ms_per_step is not None:
        cpu_ms_per_step.append(1000 * (time.process_time() - cpu_started) / (len(batches) - 1))
    return (len(batches) - 1) / (time.perf_counter() - started)


def nnx_jit_steps_per_s(batches: list[tuple[jax.Array, jax.Array]], features: int) -> float:
    model = _model(features)
    optimizer = nnx.Optimizer(
        model, optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY), wrt=nnx.Param
    )

    @nnx.jit
    def step(
        model: MultilayerPerceptron, optimizer: nnx.Optimizer, inputs: jax.Array, labels: jax.Array
    ) -> jax.Array:
        def loss_fn(model: MultilayerPerceptron) -> jax.Array:
            logits = model(inputs)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, gradients = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, gradients)
        return loss

    step(model, optimizer, *batches[0]).block_until_ready()
    started = time.perf_counter()
    loss = jnp.zeros(())
    for inputs, labels in batches[1:]:
        loss = step(model, optimizer, inputs, labels)
    loss.block_until_ready()
    return (len(batches) - 1) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=32_768)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--checkpoint-every-steps", type=int, default=10**9)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--validation-fraction", type=float, default=0.0)
    arguments = parser.parse_args()
    repeat = max(1, arguments.repeat)
    inputs, labels = synthetic_data(arguments.rows, arguments.features)
    every = arguments.checkpoint_every_steps
    held_out = arguments.validation_fraction

    _, steps = platform_steps_per_s(  # warm-up
        inputs, labels, arguments.batch_size, 1, every, held_out
    )
    # Interleaved, and compared run by run: on a shared machine the load drifts between runs,
    # and a ratio of two loops measured back to back is steadier than a ratio of medians.
    platform_runs, bare_runs, nnx_runs = [], [], []
    platform_cpu: list[float] = []
    bare_cpu: list[float] = []
    batches: list[tuple[jax.Array, jax.Array]] = []
    for run in range(repeat):
        if run % 2:  # every other run the bare loops go first, so a drift hits both sides
            bare_runs.append(
                bare_jit_steps_per_s(batches, arguments.features, cpu_ms_per_step=bare_cpu)
            )
            nnx_runs.append(nnx_jit_steps_per_s(batches, arguments.features))
        rate, steps = platform_steps_per_s(
            inputs,
            labels,
            arguments.batch_size,
            arguments.epochs,
            every,
            held_out,
            cpu_ms_per_step=platform_cpu,
        )
        platform_runs.append(rate)
        if not run % 2:
            batches = batches or device_batches(inputs, labels, arguments.batch_size, steps)
            bare_runs.append(
                bare_jit_steps_per_s(batches, arguments.features, cpu_ms_per_step=bare_cpu)
            )
            nnx_runs.append(nnx_jit_steps_per_s(batches, arguments.features))

    platform, bare, plain_nnx = (
        statistics.median(runs) for runs in (platform_runs, bare_runs, nnx_runs)
    )
    platform_ratio = statistics.median(p / b for p, b in zip(platform_runs, bare_runs, strict=True))
    nnx_ratio = statistics.median(n / b for n, b in zip(nnx_runs, bare_runs, strict=True))
    # Steps per CPU second (the whole process's, every thread), platform over bare: the work
    # the platform's loop spends on a step, which the rest of a shared machine's load disturbs
    # far less than it does the wall time.
    cpu_ratio = statistics.median(b / p for p, b in zip(platform_cpu, bare_cpu, strict=True))
    print(
        json.dumps(
            {
                "backend": jax.default_backend(),
                "devices": jax.local_device_count(),
                "rows": arguments.rows,
                "features": arguments.features,
                "batch_size": arguments.batch_size,
                "steps": steps,
                "checkpoint_every_steps": every if every < steps else None,
                "validation_fraction": held_out,
                "repeat": repeat,
                "platform_steps_per_s": round(platform, 1),
                "platform_runs_steps_per_s": [round(run, 1) for run in platform_runs],
                "platform_runs_cpu_ms_per_step": [round(run, 3) for run in platform_cpu],
                "bare_jit_steps_per_s": round(bare, 1),
                "bare_jit_runs_steps_per_s": [round(run, 1) for run in bare_runs],
                "bare_jit_runs_cpu_ms_per_step": [round(run, 3) for run in bare_cpu],
                "nnx_jit_steps_per_s": round(plain_nnx, 1),
                "nnx_jit_runs_steps_per_s": [round(run, 1) for run in nnx_runs],
                "platform_vs_bare_jit_ratio": round(platform_ratio, 3),
                "platform_vs_bare_jit_cpu_ratio": round(cpu_ratio, 3),
                "nnx_jit_vs_bare_jit_ratio": round(nnx_ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
