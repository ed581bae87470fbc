"""Batch scoring of a whole dataset version against the same rows sent to a deployment over V2.

Against a whole platform (`aiaas dev` on its embedded PostgreSQL and Redis, with its API and
worker processes), through the public API only. A tabular classifier (one hidden layer of 64
units, one epoch) is trained on 2,000 synthetic rows of `--features` float columns, deployed
with `maxBatchSize` `--request-rows` and `maxQueueRows` as many, and a synthetic version of
`--rows` rows is uploaded. Then, `--repeat` times each:

- batch: `submitBatchPredictionJob(deployment, datasetVersion)`, timed from the call until the
  job is SUCCEEDED (queueing, loading the model, scoring, writing and registering the output
  version included);
- V2: the same rows, as KServe V2 requests of `--request-rows` rows each (FP32 tensors, in
  Triton's binary extension both ways by default, as the SDK sends them, or JSON with
  `--v2-encoding json`), sent by `--callers` concurrent callers over keep-alive connections to
  `/v2/models/<model>/infer`, as a client that splits a table by the deployment's batch size
  would, timed from the first request until every answer is in (read, not decoded). The
  requests are encoded before the clock starts.

`batch_vs_v2_ratio` is the median V2 time over the median batch time. The worker's resident
memory is sampled every 20 ms through the runs: `worker_peak_rss_bytes` is its highest, next to
`worker_rss_before_bytes`, measured once the model deployed and before the first job.

The issue asks for 1M rows, the default: on a shared 2-core machine the whole bench (uploads,
training, deployment and the runs) takes about two minutes.

    python bench/batch_scoring.py [--rows 1000000] [--repeat 3] [--callers 8]
        [--platform-log PATH]

The last line printed is one JSON object. `--platform-log` keeps the platform's logs, where the
worker says where each job's time went (loading the model, reading the input, scoring into the
output file, registering).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
from dataset_ingest import PeakMemory, create_project, start_platform, upload

SUBMIT_TRAINING = """
mutation($input: SubmitTrainingJobInput!) {
  submitTrainingJob(input: $input) {
    __typename ... on TrainingJobSuccess { job { id } } ... on InvalidInputError { message }
  }
}
"""
TRAINING_JOB = """
query($id: ID!) { node(id: $id) { ... on TrainingJob { state reason modelVersion { id } } } }
"""
CREATE_DEPLOYMENT = """
mutation($input: CreateDeploymentInput!) {
  createDeployment(input: $input) {
    __typename ... on DeploymentSuccess { deployment { id v2ModelName } }
    ... on InvalidInputError { message fieldErrors { field message } }
  }
}
"""
DEPLOYMENT_STATE = "query($id: ID!) { node(id: $id) { ... on Deployment { state reason } } }"
SUBMIT_BATCH = """
mutation($input: SubmitBatchPredictionJobInput!) {
  submitBatchPredictionJob(input: $input) {
    __typename ... on BatchPredictionQueued { job { id } }
    ... on InvalidInputError { message fieldErrors { field message } }
  }
}
"""
JOB = "query($id: ID!) { node(id: $id) { ... on Job { state reason } } }"
TRAINING_ROWS = 2_000


def synthetic_table(rows: int, features: int, seed: int) -> pa.Table:
    generator = np.random.default_rng(seed)
    values = generator.normal(size=(rows, features)).astype(np.float32)
    label = np.where(values[:, 0] + values[:, 1] > 0, "yes", "no")
    return pa.table({**{f"f{i}": values[:, i] for i in range(features)}, "label": label})


def write_csv(table: pa.Table, path: Path) -> Path:
    pacsv.write_csv(table, path)
    return path


class Api:
    def __init__(self, base_url: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=base_url, headers={"authorization": f"Bearer {token}"}, timeout=120
        )

    def query(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post("/graphql", json={"query": document, "variables": variables})
        response.raise_for_status()
        body = response.json()
        if "errors" in body:
            raise RuntimeError(body["errors"])
        data: dict[str, Any] = body["data"]
        return data

    def until(self, document: str, node_id: str, done: set[str], timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            node = self.query(document, {"id": node_id})["node"]
            if node["state"] in done:
                return node
            time.sleep(0.05)
        raise TimeoutError(f"{node_id} did not reach {done}")


def global_id_of_upload(body: dict[str, Any]) -> str:
    version = body["version"]
    assert isinstance(version, dict), body
    return str(version["id"])


def worker_process(supervisor: Any) -> int:
    for child in psutil.Process(supervisor.pid).children(recursive=True):
        if "worker" in child.cmdline():
            return int(child.pid)
    raise RuntimeError("no worker process under aiaas dev")


def batch_run(api: Api, deployment: str, dataset_version: str) -> float:
    started = time.perf_counter()
    submitted = api.query(
        SUBMIT_BATCH,
        {"input": {"deployment": deployment, "datasetVersion": dataset_version}},
    )["submitBatchPredictionJob"]
    assert submitted["__typename"] == "BatchPredictionQueued", submitted
    job = api.until(JOB, submitted["job"]["id"], {"SUCCEEDED", "FAILED", "CANCELLED"}, 3600)
    assert job["state"] == "SUCCEEDED", job
    return time.perf_counter() - started


V2Request = tuple[bytes, dict[str, str]]


def v2_requests(table: pa.Table, request_rows: int, encoding: str) -> list[V2Request]:
    """The bodies and headers of the V2 requests: JSON tensors, or Triton's binary extension
    (a JSON header, then each tensor's raw little-endian bytes; outputs asked for in binary)."""
    requests = []
    features = [name for name in table.column_names if name != "label"]
    for start in range(0, table.num_rows, request_rows):
        part = table.slice(start, request_rows)
        arrays = [part[name].to_numpy().astype("<f4") for name in features]
        if encoding == "json":
            inputs = [
                {"name": name, "datatype": "FP32", "shape": [part.num_rows], "data": a.tolist()}
                for name, a in zip(features, arrays, strict=True)
            ]
            body = json.dumps({"inputs": inputs}).encode()
            requests.append((body, {"content-type": "application/json"}))
            continue
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": name,
                        "datatype": "FP32",
                        "shape": [part.num_rows],
                        "parameters": {"binary_data_size": a.nbytes},
                    }
                    for name, a in zip(features, arrays, strict=True)
                ],
                "parameters": {"binary_data_output": True},
            }
        ).encode()
        body = header + b"".join(a.tobytes() for a in arrays)
        headers = {
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(len(header)),
        }
        requests.append((body, headers))
    return requests


async def v2_run(
    base_url: str, token: str, model: str, requests: list[V2Request], callers: int
) -> float:
    queue: asyncio.Queue[V2Request] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)

    async def caller() -> None:
        headers = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=300) as client:
            while not queue.empty():
                body, more = queue.get_nowait()
                response = await client.post(
                    f"/v2/models/{model}/infer", content=body, headers=more
                )
                response.raise_for_status()
                response.read()

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=13)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--request-rows", type=int, default=1024)
    parser.add_argument("--v2-encoding", choices=("binary", "json"), default="binary")
    parser.add_argument(
        "--platform-log",
        type=Path,
        help="append the platform's logs here (the worker's phase breakdown of each job is one)",
    )
    arguments = parser.parse_args()
    repeat = max(1, arguments.repeat)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        training = write_csv(
            synthetic_table(TRAINING_ROWS, arguments.features, 0), scratch / "training.csv"
        )
        scored = synthetic_table(arguments.rows, arguments.features, 1)
        scored_csv = write_csv(scored, scratch / "scored.csv")
        supervisor, base_url, token = start_platform(scratch / "data", arguments.platform_log)
        try:
            api = Api(base_url, token)
            create_project(base_url, token)
            _, training_body = upload(base_url, token, training, "training")
            _, scored_body = upload(base_url, token, scored_csv, "scored")
            job = api.query(
                SUBMIT_TRAINING,
                {
                    "input": {
                        "datasetVersion": global_id_of_upload(training_body),
                        "trainer": "tabular-classifier",
                        "target": "label",
                        "hyperparameters": {"epochs": 1, "hidden_size": 64, "hidden_layers": 1},
                    }
                },
            )["submitTrainingJob"]["job"]
            trained = api.until(TRAINING_JOB, job["id"], {"SUCCEEDED", "FAILED"}, 600)
            assert trained["state"] == "SUCCEEDED", trained
            created = api.query(
                CREATE_DEPLOYMENT,
                {
                    "input": {
                        "name": "scorer",
                        "modelVersion": trained["modelVersion"]["id"],
                        "maxBatchSize": arguments.request_rows,
                        "maxQueueRows": arguments.request_rows * arguments.callers,
                    }
                },
            )["createDeployment"]
            assert created["__typename"] == "DeploymentSuccess", created
            deployment = created["deployment"]
            ready = api.until(DEPLOYMENT_STATE, deployment["id"], {"READY", "FAILED"}, 600)
            assert ready["state"] == "READY", ready
            requests = v2_requests(scored, arguments.request_rows, arguments.v2_encoding)
            worker = worker_process(supervisor)
            rss_before = psutil.Process(worker).memory_info().rss
            batch_runs, v2_runs = [], []
            with PeakMemory(worker) as memory:
                for _ in range(repeat):
                    v2_runs.append(
                        asyncio.run(
                            v2_run(
                                base_url,
                                token,
                                deployment["v2ModelName"],
                                requests,
                                arguments.callers,
                            )
                        )
                    )
                    batch_runs.append(
                        batch_run(api, deployment["id"], global_id_of_upload(scored_body))
                    )
        finally:
            supervisor.send_signal(signal.SIGINT)
            supervisor.wait(timeout=60)
    batch_s, v2_s = statistics.median(batch_runs), statistics.median(v2_runs)
    print(
        json.dumps(
            {
                "rows": arguments.rows,
                "features": arguments.features,
                "repeat": repeat,
                "callers": arguments.callers,
                "request_rows": arguments.request_rows,
                "v2_encoding": arguments.v2_encoding,
                "batch_s": round(batch_s, 2),
                "batch_runs_s": [round(run, 2) for run in batch_runs],
                "batch_rows_per_s": round(arguments.rows / batch_s),
                "v2_s": round(v2_s, 2),
                "v2_runs_s": [round(run, 2) for run in v2_runs],
                "v2_rows_per_s": round(arguments.rows / v2_s),
                "batch_vs_v2_ratio": round(v2_s / batch_s, 2),
                "worker_rss_before_bytes": rss_before,
                "worker_peak_rss_bytes": memory.peak,
                "cpu_cores": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
