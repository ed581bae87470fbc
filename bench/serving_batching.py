"""Adaptive batching against one call per request, in process, on a model where compute matters.

The model is the tabular classifier's MLP with 4 hidden layers of 1,024 units, trained for one
epoch on synthetic data and served from its real `flax-nnx` bundle by the built-in JAX runtime
(so every request pays for the same preprocessing, padding and post-processing as in
production). `--callers` concurrent callers each send batch-1 requests, one after the other, for
`--seconds`, in two set-ups:

- batched: every request goes through `AdaptiveBatcher.submit` (max_batch_size 64, max_wait_ms 5
  by default), which validates it and lets the batcher run it in a batch with its neighbours;
- unbatched: every request is validated the same way, then run on its own by the model, through
  one executor thread, as a server without batching does.

The first `--warm-up-seconds` of each run are left out of the figures, so that both set-ups
are measured in their steady state; the two alternate for `--repeat` runs each, and the ratio is
the median of the runs' ratios. Latency is per request, from the call to the answer, queueing
included. The execution time of the largest batch is the batcher's own measure (the thread's
time inside `predict_batch`, with concatenating and splitting the rows), the median over the
batches of that size. The compilation count is the model's own (traces of its jitted function),
read after warm-up and at the end: any difference is a compile in the steady state.

    python bench/serving_batching.py [--seconds 3] [--repeat 3] [--callers 64] [--max-wait-ms 5]

The last line printed is one JSON object. The HTTP part of the benchmark is still to come.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pyarrow as pa

from aiaas.core.batching import AdaptiveBatcher, BatchRecord
from aiaas.core.serving import LoadedModel, check_inputs
from aiaas.core.training import SilentReporter, TrainingRun
from aiaas.plugins.flax_trainers import TabularClassifier
from aiaas.plugins.jax_serving import JaxLoadedModel, JaxServingRuntime

HIDDEN_SIZE = 1024
HIDDEN_LAYERS = 4
TRAINING_ROWS = 512


def synthetic_table(rows: int, features: int) -> pa.Table:
    draw = np.random.default_rng(0)
    inputs = draw.normal(size=(rows, features))
    labels = (inputs @ draw.normal(size=features) > 0).astype(np.int64)
    columns: dict[str, Any] = {f"x{index:02d}": inputs[:, index] for index in range(features)}
    return pa.table({**columns, "label": labels})


def trained_bundle(features: int) -> bytes:
    table = synthetic_table(TRAINING_ROWS, features)
    with tempfile.TemporaryDirectory() as checkpoints:
        run = TrainingRun(
            table=table,
            target="label",
            features=tuple(name for name in table.column_names if name != "label"),
            hyperparameters={
                "epochs": 1,
                "batch_size": 256,
                "hidden_size": HIDDEN_SIZE,
                "hidden_layers": HIDDEN_LAYERS,
            },
            validation_fraction=0.0,
            seed=0,
            checkpoint_dir=Path(checkpoints),
            checkpoint_every_steps=10**9,
        )
        return TabularClassifier().fit(run, SilentReporter()).bundle


def request_rows(count: int, features: int) -> list[dict[str, list[float]]]:
    """Batch-1 requests as JSON would bring them: one Python list per input."""
    draw = np.random.default_rng(1)
    values = draw.normal(size=(count, features))
    return [{f"x{index:02d}": [float(row[index])] for index in range(features)} for row in values]


def median_ms(call: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def execution_times(model: JaxLoadedModel, request: dict[str, list[float]]) -> dict[str, float]:
    """Calls alone: the bare jitted function at batch 1 and at the largest batch (the bound that
    compute alone sets on batching's gain: 64 rows cost far more than one on a CPU), and the
    model's whole `predict_batch` at batch 1 (preprocessing, padding, the call, copying back)."""
    one = check_inputs(model.signature, request, max_batch=1)
    inputs = model.predictor.preprocess(one)["inputs"]
    largest = np.repeat(inputs, model.max_batch_size, axis=0)
    params = model.predictor.params

    def jit(batch: np.ndarray) -> None:
        jax.block_until_ready(model._apply(params, batch))

    return {
        "jit_batch_1_ms": median_ms(lambda: jit(inputs), 200),
        "jit_largest_batch_ms": median_ms(lambda: jit(largest), 50),
        "predict_batch_1_ms": median_ms(lambda: model.predict_batch(one), 200),
    }


async def drive(
    call: Callable[[dict[str, list[float]]], Awaitable[Any]],
    requests: list[dict[str, list[float]]],
    callers: int,
    warm_up_s: float,
    seconds: float,
) -> tuple[float, list[float]]:
    """`callers` loops, each sending one request after another; the requests per second and
    the latencies (s) of those that started after the warm-up and ended before the stop."""
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + warm_up_s
    stop_at = measure_from + seconds
    latencies: list[float] = []

    async def caller(offset: int) -> None:
        index = offset
        while (started := loop.time()) < stop_at:
            await call(requests[index % len(requests)])
            ended = loop.time()
            if started >= measure_from and ended <= stop_at:
                latencies.append(ended - started)
            index += callers

    await asyncio.gather(*(caller(offset) for offset in range(callers)))
    return len(latencies) / seconds, latencies


async def batched(
    model: LoadedModel, requests: list[dict[str, list[float]]], arguments: argparse.Namespace
) -> tuple[float, list[float], list[BatchRecord]]:
    records: list[BatchRecord] = []
    batcher = AdaptiveBatcher(
        model,
        max_batch_size=arguments.max_batch_size,
        max_wait_ms=arguments.max_wait_ms,
        max_queue_size=arguments.max_batch_size * arguments.callers,
        on_batch=records.append,
    )
    async with batcher:
        rate, latencies = await drive(
            batcher.submit,
            requests,
            arguments.callers,
            arguments.warm_up_seconds,
            arguments.seconds,
        )
    return rate, latencies, records


async def unbatched(
    model: LoadedModel, requests: list[dict[str, list[float]]], arguments: argparse.Namespace
) -> tuple[float, list[float]]:
    executor = ThreadPoolExecutor(1, thread_name_prefix="unbatched")
    loop = asyncio.get_running_loop()

    async def call(request: dict[str, list[float]]) -> dict[str, np.ndarray]:
        columns = check_inputs(model.signature, request, max_batch=model.max_batch_size)
        return await loop.run_in_executor(executor, model.predict_batch, columns)

    try:
        return await drive(
            call, requests, arguments.callers, arguments.warm_up_seconds, arguments.seconds
        )
    finally:
        executor.shutdown()


def percentile_ms(latencies: list[float], percentile: float) -> float:
    return float(np.percentile(np.asarray(latencies), percentile) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warm-up-seconds", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    arguments = parser.parse_args()

    model = JaxServingRuntime().load(
        trained_bundle(arguments.features), max_batch_size=arguments.max_batch_size
    )
    assert isinstance(model, JaxLoadedModel)
    model.warm_up()
    compiled = model.compilations
    requests = request_rows(4096, arguments.features)
    executions = execution_times(model, requests[0])

    # Interleaved, and compared run by run: on a shared machine the load drifts between runs,
    # and a ratio of two set-ups measured back to back is steadier than a ratio of medians.
    batched_runs, unbatched_runs, ratios = [], [], []
    batched_latencies: list[float] = []
    unbatched_latencies: list[float] = []
    records: list[BatchRecord] = []
    for run in range(max(1, arguments.repeat)):
        for setup in ("unbatched", "batched") if run % 2 else ("batched", "unbatched"):
            if setup == "batched":
                rate, latencies, batches = asyncio.run(batched(model, requests, arguments))
                batched_runs.append(rate)
                batched_latencies += latencies
                records += batches
            else:
                rate, latencies = asyncio.run(unbatched(model, requests, arguments))
                unbatched_runs.append(rate)
                unbatched_latencies += latencies
        ratios.append(batched_runs[-1] / unbatched_runs[-1])

    largest = max(record.rows for record in records)
    largest_ms = 1000 * statistics.median(
        record.execution_s for record in records if record.rows == largest
    )
    budget_ms = arguments.max_wait_ms + 2 * largest_ms
    batched_p99_ms = percentile_ms(batched_latencies, 99)
    print(
        json.dumps(
            {
                "backend": jax.default_backend(),
                "devices": jax.local_device_count(),
                "hidden_size": HIDDEN_SIZE,
                "hidden_layers": HIDDEN_LAYERS,
                "features": arguments.features,
                "callers": arguments.callers,
                "seconds_per_run": arguments.seconds,
                "repeat": len(ratios),
                "max_batch_size": arguments.max_batch_size,
                "max_wait_ms": arguments.max_wait_ms,
                **{name: round(value, 3) for name, value in executions.items()},
                "batched_in_process_requests_per_s": round(statistics.median(batched_runs), 1),
                "batched_in_process_runs_requests_per_s": [round(r, 1) for r in batched_runs],
                "unbatched_in_process_requests_per_s": round(statistics.median(unbatched_runs), 1),
                "unbatched_in_process_runs_requests_per_s": [round(r, 1) for r in unbatched_runs],
                "batched_vs_unbatched_in_process_ratio": round(statistics.median(ratios), 2),
                "batched_p50_ms": round(percentile_ms(batched_latencies, 50), 3),
                "batched_p99_ms": round(batched_p99_ms, 3),
                "unbatched_p50_ms": round(percentile_ms(unbatched_latencies, 50), 3),
                "unbatched_p99_ms": round(percentile_ms(unbatched_latencies, 99), 3),
                "batched_mean_batch_rows": round(
                    statistics.fmean(record.rows for record in records), 1
                ),
                "largest_batch_rows": largest,
                "largest_batch_execution_ms": round(largest_ms, 3),
                "in_process_p99_budget_ms": round(budget_ms, 3),
                "batched_p99_within_budget": batched_p99_ms <= budget_ms,
                "compilations_during_warm_up": compiled,
                "compilations_after_warm_up": model.compilations - compiled,
            }
        )
    )


if __name__ == "__main__":
    main()
