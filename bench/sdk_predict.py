"""`deployment.predict` of the SDK against a hand-written tritonclient loop, on the same rows.

Against a whole platform (`aiaas dev` on its embedded PostgreSQL and Redis), through the SDK
only: a tabular classifier (one hidden layer of 64 units, one epoch) is trained on 2,000
synthetic rows of `--features` float columns, deployed with `maxBatchSize` `--request-rows`
(and `maxQueueRows` for `--concurrency` requests), then, alternately, `--repeat` times each:

- sdk: `deployment.predict(frame)` of a pandas DataFrame of `--rows` rows, which splits it into
  requests of `maxBatchSize` rows, sends `--concurrency` of them at once over V2 with binary
  tensors, and answers a DataFrame in the frame's order;
- tritonclient: the same rows sliced into requests of the same size, each input an FP32
  `InferInput` with binary data, sent with `async_infer` by a client of `concurrency`
  connections, and every answer's outputs read as numpy arrays, in order.

Each is timed from the frame (or its columns) to the outputs. `sdk_vs_tritonclient_ratio` is the
median tritonclient time over the median SDK time: 1.0 is as fast, above is faster.

    python bench/sdk_predict.py [--rows 100000] [--repeat 3] [--concurrency 8]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas
import pyarrow as pa
import tritonclient.http as triton
from dataset_ingest import create_project, start_platform

from aiaas.client import Client, Deployment

TRAINING_ROWS = 2_000


def synthetic_table(rows: int, features: int, seed: int) -> pa.Table:
    generator = np.random.default_rng(seed)
    values = generator.normal(size=(rows, features)).astype(np.float32)
    label = np.where(values[:, 0] + values[:, 1] > 0, "yes", "no")
    return pa.table({**{f"f{i}": values[:, i] for i in range(features)}, "label": label})


def sdk_run(deployment: Deployment, frame: pandas.DataFrame, concurrency: int) -> float:
    started = time.perf_counter()
    answer = deployment.predict(frame, concurrency=concurrency)
    elapsed = time.perf_counter() - started
    assert len(answer) == len(frame)
    return elapsed


def tritonclient_run(
    address: str,
    token: str,
    model: str,
    columns: dict[str, np.ndarray],
    request_rows: int,
    concurrency: int,
) -> float:
    client = triton.InferenceServerClient(url=address, concurrency=concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    rows = len(next(iter(columns.values())))
    try:
        started = time.perf_counter()
        pending = []
        for start in range(0, rows, request_rows):
            inputs = []
            for name, values in columns.items():
                part = values[start : start + request_rows]
                tensor = triton.InferInput(name, list(part.shape), "FP32")
                tensor.set_data_from_numpy(part)
                inputs.append(tensor)
            pending.append(client.async_infer(model, inputs, headers=headers))
        outputs: list[dict[str, Any]] = []
        for request in pending:
            result = request.get_result()
            outputs.append({name: result.as_numpy(name) for name in ("label", "probabilities")})
        elapsed = time.perf_counter() - started
    finally:
        client.close()
    assert sum(len(output["label"]) for output in outputs) == rows
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=13)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--request-rows", type=int, default=1024)
    arguments = parser.parse_args()
    repeat = max(1, arguments.repeat)
    scored = synthetic_table(arguments.rows, arguments.features, 1).drop_columns(["label"])
    frame = scored.to_pandas()
    columns = {name: frame[name].to_numpy() for name in frame.columns}
    with tempfile.TemporaryDirectory() as scratch_name:
        supervisor, base_url, token = start_platform(Path(scratch_name) / "data")
        try:
            create_project(base_url, token)
            with Client(base_url, token, timeout=120) as client:
                project = client.project("bench")
                training = synthetic_table(TRAINING_ROWS, arguments.features, 0)
                version = project.upload(training, name="training", progress=False)
                job = project.train(
                    version,
                    trainer="tabular-classifier",
                    target="label",
                    epochs=1,
                    hidden_size=64,
                    hidden_layers=1,
                ).wait(progress=False)
                assert job.model_version is not None
                deployment = job.model_version.deploy(
                    "scorer",
                    max_batch_size=arguments.request_rows,
                    max_queue_rows=arguments.request_rows * arguments.concurrency,
                ).wait_ready(timeout=600)
                address = base_url.split("://", 1)[1]
                sdk_runs, triton_runs = [], []
                for _ in range(repeat):
                    sdk_runs.append(sdk_run(deployment, frame, arguments.concurrency))
                    triton_runs.append(
                        tritonclient_run(
                            address,
                            token,
                            deployment.v2_model_name,
                            columns,
                            arguments.request_rows,
                            arguments.concurrency,
                        )
                    )
        finally:
            supervisor.send_signal(signal.SIGINT)
            supervisor.wait(timeout=60)
    sdk_s, triton_s = statistics.median(sdk_runs), statistics.median(triton_runs)
    print(
        json.dumps(
            {
                "rows": arguments.rows,
                "features": arguments.features,
                "repeat": repeat,
                "concurrency": arguments.concurrency,
                "request_rows": arguments.request_rows,
                "sdk_s": round(sdk_s, 3),
                "sdk_runs_s": [round(run, 3) for run in sdk_runs],
                "sdk_rows_per_s": round(arguments.rows / sdk_s),
                "tritonclient_s": round(triton_s, 3),
                "tritonclient_runs_s": [round(run, 3) for run in triton_runs],
                "tritonclient_rows_per_s": round(arguments.rows / triton_s),
                "sdk_vs_tritonclient_ratio": round(triton_s / sdk_s, 2),
                "cpu_cores": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
