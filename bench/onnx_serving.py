"""The `onnx` runtime of the trees extra on a 200-tree model: V2 throughput batched against
unbatched, and ONNX Runtime in process against the native library's `predict_proba`.

The model is the extra's `xgboost-classifier`, 200 trees of depth at most 6 (`--trees`), on
`serving_batching.py`'s synthetic table (16 features, 512 rows).

In process (`onnx_*` and `native_*` keys): the bundle the trainer wrote, loaded by the `onnx`
runtime, against XGBoost's own `XGBClassifier` fitted with the same hyperparameters on the same
rows (the trees extra's tests hold the two to 1e-5; `max_probability_difference` says so here
too). Each side predicts batches of 1, 64 and 1,024 rows drawn afresh, the runtime through
`predict_batch` (the columns stacked, the session run, the labels picked), XGBoost through
`predict_proba` on the stacked matrix; a time is the median of `--repeat-calls` calls, and
`onnx_speedup_vs_native_batch_N` is XGBoost's time over the runtime's.

Over HTTP (`http_*` keys), as `serving_batching.py` does it: a real `aiaas serve` on a
PostgreSQL database of the bench's own (dropped at the end), with the trees plugin allowed, the
version trained and registered through the training job functions a worker runs, deployed twice
through GraphQL (no runtime named: the `onnx` one is picked from the format), `batched`
(maxBatchSize 64, maxWaitMs 5) and `unbatched` (maxBatchSize 1, maxWaitMs 0). `--callers`
callers (64) of `serving_load.py` send batch-1 V2 JSON requests for `--seconds` a run; the two
set-ups alternate for `--repeat` runs and `batched_vs_unbatched_http_ratio` is the median of the
runs' ratios of requests/s.

    python bench/onnx_serving.py [--seconds 3] [--repeat 3] [--callers 64] [--trees 200]
        [--no-http] [--database-url postgresql://...] [--redis-url redis://...]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import xgboost
from aiaas_trees.serving import OnnxServingRuntime
from aiaas_trees.trainers import XGBoostClassifier
from serving_batching import (
    TRAINING_ROWS,
    HttpDeployment,
    LoadRun,
    Server,
    add_service_options,
    bench_platform,
    deploy,
    generate_load,
    registered_version,
    running_server,
    synthetic_table,
)

from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config
from aiaas.core.trainers import SilentReporter, TrainingRun

FEATURES = 16
MAX_DEPTH = 6
BATCH_SIZES = (1, 64, 1024)


def hyperparameters(trees: int) -> dict[str, Any]:
    return {"n_estimators": trees, "max_depth": MAX_DEPTH}


def in_process(arguments: argparse.Namespace) -> dict[str, Any]:
    table = synthetic_table(TRAINING_ROWS, FEATURES)
    features = tuple(name for name in table.column_names if name != "label")
    with tempfile.TemporaryDirectory() as checkpoints:
        run = TrainingRun(
            table=table,
            target="label",
            features=features,
            hyperparameters=hyperparameters(arguments.trees),
            validation_fraction=0.0,
            seed=0,
            checkpoint_dir=Path(checkpoints),
            checkpoint_every_steps=10**9,
        )
        trained = XGBoostClassifier().fit(run, SilentReporter())
    inputs = np.column_stack([table.column(name).to_numpy() for name in features])
    native = xgboost.XGBClassifier(
        n_estimators=arguments.trees, max_depth=MAX_DEPTH, tree_method="hist", random_state=0
    ).fit(inputs.astype(np.float32).astype(np.float64), table.column("label").to_numpy())
    model = OnnxServingRuntime().load(trained.bundle, max_batch_size=max(BATCH_SIZES))
    model.warm_up()

    draw = np.random.default_rng(1)
    result: dict[str, Any] = {"trees": arguments.trees, "max_depth": MAX_DEPTH}
    difference = 0.0
    for rows in BATCH_SIZES:
        batch = draw.normal(size=(rows, FEATURES)).astype(np.float32)
        columns = {name: batch[:, index] for index, name in enumerate(features)}
        matrix = batch.astype(np.float64)
        served = model.predict_batch(columns)["probabilities"]
        difference = max(difference, float(np.abs(served - native.predict_proba(matrix)).max()))
        onnx_ms = median_ms(model.predict_batch, columns, arguments.repeat_calls)
        native_ms = median_ms(native.predict_proba, matrix, arguments.repeat_calls)
        result[f"onnx_batch_{rows}_ms"] = round(onnx_ms, 4)
        result[f"native_batch_{rows}_ms"] = round(native_ms, 4)
        result[f"onnx_speedup_vs_native_batch_{rows}"] = round(native_ms / onnx_ms, 2)
    result["max_probability_difference"] = difference
    return result


def median_ms(call: Callable[[Any], Any], argument: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call(argument)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


async def http_part(arguments: argparse.Namespace) -> dict[str, Any]:
    # The trees extra, loaded from its entry point as an operator's would be.
    trees = {"disable_plugin_autoload": False, "plugins": ["trees"]}
    async with bench_platform(arguments, "onnx", **trees) as (config, scratch):
        return await http_on(config, scratch, arguments)


async def http_on(config: Config, scratch: Path, arguments: argparse.Namespace) -> dict[str, Any]:
    platform = create_platform(config)
    await platform.start()
    try:
        token, version = await registered_version(
            platform,
            scratch,
            FEATURES,
            trainer="xgboost-classifier",
            hyperparameters=hyperparameters(arguments.trees),
        )
    finally:
        await platform.stop()
    setups = (HttpDeployment("batched", 64, 5.0), HttpDeployment("unbatched", 1, 0.0))
    with running_server(config, scratch / "serve.log") as (base_url, pid):
        server = Server(base_url, pid, token)
        async with httpx.AsyncClient(
            base_url=base_url, headers={"authorization": f"Bearer {token}"}, timeout=60
        ) as client:
            names = {
                setup.name: await deploy(client, version, setup, arguments.callers)
                for setup in setups
            }
        for name in names.values():
            await generate_load(server, name, 1, 0.0, 0.2, "raw")

        async def load(name: str) -> LoadRun:
            run = await generate_load(
                server, names[name], arguments.callers, 1.0, arguments.seconds, "raw"
            )
            if run.failures:
                raise RuntimeError(f"{run.failures} requests to {name} failed: {run}")
            return run

        runs: dict[str, list[LoadRun]] = {"batched": [], "unbatched": []}
        ratios = []
        for index in range(max(1, arguments.repeat)):
            for setup in ("unbatched", "batched") if index % 2 else ("batched", "unbatched"):
                runs[setup].append(await load(setup))
            ratios.append(runs["batched"][-1].requests_per_s / runs["unbatched"][-1].requests_per_s)

    def median_of(setup: str) -> float:
        return round(statistics.median(run.requests_per_s for run in runs[setup]), 1)

    def p99_ms(setup: str) -> float:
        latencies = [latency for run in runs[setup] for latency in run.latencies_ms]
        return round(float(np.percentile(latencies, 99)), 3)

    return {
        "http_batched_requests_per_s": median_of("batched"),
        "http_unbatched_requests_per_s": median_of("unbatched"),
        "batched_vs_unbatched_http_ratio": round(statistics.median(ratios), 2),
        "http_batched_p99_ms": p99_ms("batched"),
        "http_unbatched_p99_ms": p99_ms("unbatched"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repeat-calls", type=int, default=200)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--http", action=argparse.BooleanOptionalAction, default=True)
    add_service_options(parser)
    arguments = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    result: dict[str, Any] = {
        "cpu_cores": os.cpu_count(),
        "features": FEATURES,
        "callers": arguments.callers,
        "seconds_per_run": arguments.seconds,
        "repeat": max(1, arguments.repeat),
    }
    result |= in_process(arguments)
    if arguments.http:
        result |= asyncio.run(http_part(arguments))
    # Other work on the machine takes cores from every figure above: its extent, for the reader.
    result["load_average_1m_at_start"] = round(load_at_start, 2)
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
