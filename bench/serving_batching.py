"""Adaptive batching against one call per request, in process and over HTTP, on a model where
compute matters.

The model is the tabular classifier's MLP with 4 hidden layers of 1,024 units, trained for one
epoch on synthetic data and served from its real `flax-nnx` bundle by the built-in JAX runtime
(so every request pays for the same preprocessing, padding and post-processing as in
production). `--callers` concurrent callers each send batch-1 requests, one after the other, for
`--seconds` a run; two set-ups alternate for `--repeat` runs each, and a ratio is the median of
the runs' ratios (on a shared machine the load drifts between runs: a ratio of two set-ups
measured back to back is steadier than a ratio of medians). Latency is per request, from the
call to the answer, queueing included.

In process (`--in-process`, the batcher alone, `*_in_process_*` and the unprefixed keys):

- batched: every request goes through `AdaptiveBatcher.submit` (max_batch_size 64, max_wait_ms 5
  by default), which validates it and lets the batcher run it in a batch with its neighbours;
- unbatched: every request is validated the same way, then run on its own by the model, through
  one executor thread, as a server without batching does.

The first `--warm-up-seconds` of each run are left out. The execution time of the largest batch
is the batcher's own measure (the thread's time inside `predict_batch`, with concatenating and
splitting the rows), the median over the batches of that size. The compilation count is the
model's own (traces of its jitted function), read after warm-up and at the end: any difference
is a compile in the steady state.

Over HTTP (`--http`, the `http_*` keys): a real `aiaas serve` (uvicorn, on loopback, in a
process of its own) on a fresh PostgreSQL database of the bench's (dropped at the end) and a
Redis database (`--redis-db`, where the bench deletes only its own keys at the end). A version
of the same MLP is trained and registered there through the training job functions a worker
runs, and deployed three times through GraphQL `createDeployment`; the bench waits until all
are READY (every bucket compiled and run). The callers are a separate load-generator process
(`serving_load.py`: asyncio, a keep-alive connection per caller, KServe V2 JSON
requests of one row to `/v2/models/bench.<deployment>/infer`), started afresh for every run and
measuring after `--http-warm-up-seconds`:

- `batched`: maxBatchSize 64, maxWaitMs 5 (as in process);
- `unbatched`, the same server with batching off: maxBatchSize 1, maxWaitMs 0, so that every
  request is one model call of one row, run as soon as the model is free;
- `direct`: maxBatchSize 64, maxWaitMs 0, for the REST overhead: a lone request never waits.

`batched_vs_unbatched_http_ratio` is the requests/s of `batched` over `unbatched`, 64 callers.
`rest_overhead_p50_ms` is the p50 of one caller over HTTP to `direct`, minus the p50 of one
caller in process through an `AdaptiveBatcher(max_wait_ms=0)` over the same bundle, in the
bench's process: what HTTP, authentication, routing, V2 parsing and encoding add to the path
inside the server. `http_p99_budget_ms` is max_wait_ms + 2 x the execution of the largest batch
+ the REST overhead, where the execution of the largest batch is the worse of the largest batch
the server made (the power-of-two bound from its `aiaas_inference_batch_size_rows` histogram),
timed in the bench's process, and the server's mean batch execution under the load (from
`aiaas_inference_batch_duration_seconds`). `http_compilations_after_warm_up` is the growth of
`aiaas_inference_compilations_total` on `/metrics` between the first request after READY and
the end (it must be 0). The load generator also reports the CPU time it and the server spent
per request (`*_cpu_ms_per_request`): on a machine with few cores, the client's share of them
bounds what the server can show, and the REST overhead, timed by the client, includes the
client's own work. `*_server_cpu_outside_model_ms_per_request` is the CPU time of the server's
main thread alone per request: its event loop does everything a request costs but the model
(HTTP, the middlewares, authentication, V2 parsing and encoding, the batcher's queueing), and
the model runs in other threads (the batcher's executor and XLA's own). The server logs at
`--server-log-level` (warning: no line per request).

The server, the load generator and JAX share the machine's cores (`cpu_cores`), as does any
other work on it: `load_average_1m_at_start`/`_at_end` say how busy it was.

    python bench/serving_batching.py [--seconds 3] [--repeat 3] [--callers 64] [--max-wait-ms 5]
        [--no-http | --no-in-process] [--database-url postgresql://...] [--redis-url redis://...]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from aiaas import migrations
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, build_config, config_environment
from aiaas.core.data import datasets
from aiaas.core.governance.crypto import MasterKey
from aiaas.core.governance.vault import VAULT
from aiaas.core.identity import accounts as identity
from aiaas.core.identity.access import PlatformRole
from aiaas.core.identity.platform_roles import grant_platform_role
from aiaas.core.identity.projects import create_project
from aiaas.core.jobs import JobState, claim_job, finish_job
from aiaas.core.model_inputs import check_inputs
from aiaas.core.platform import Platform
from aiaas.core.runtimes import LoadedModel
from aiaas.core.serving.batching import AdaptiveBatcher, BatchRecord
from aiaas.core.trainers import SilentReporter, TrainingRun
from aiaas.core.training import TrainingRequest, run_training, submit_training_job
from aiaas.core.training import registry as models
from aiaas.core.training.registry import ModelVersion
from aiaas.graphql.relay import to_global_id
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


def in_process(arguments: argparse.Namespace) -> dict[str, Any]:
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
    return {
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
        "batched_mean_batch_rows": round(statistics.fmean(record.rows for record in records), 1),
        "largest_batch_rows": largest,
        "largest_batch_execution_ms": round(largest_ms, 3),
        "in_process_p99_budget_ms": round(budget_ms, 3),
        "batched_p99_within_budget": batched_p99_ms <= budget_ms,
        "compilations_during_warm_up": compiled,
        "compilations_after_warm_up": model.compilations - compiled,
    }


# Over HTTP -------------------------------------------------------------------------------------

LOAD_GENERATOR = Path(__file__).resolve().parent / "serving_load.py"
PROJECT = "bench"

CREATE_DEPLOYMENT = """
mutation($input: CreateDeploymentInput!) {
  createDeployment(input: $input) {
    __typename
    ... on DeploymentSuccess { deployment { id v2ModelName } }
    ... on InvalidInputError { message fieldErrors { field message } }
    ... on ConflictError { message }
    ... on NotFoundError { message }
  }
}
"""
DEPLOYMENT_STATE = "query($id: ID!) { node(id: $id) { ... on Deployment { state reason } } }"


@dataclass(frozen=True)
class HttpDeployment:
    name: str
    max_batch_size: int
    max_wait_ms: float


def http_deployments(arguments: argparse.Namespace) -> tuple[HttpDeployment, ...]:
    return (
        HttpDeployment("batched", arguments.max_batch_size, arguments.max_wait_ms),
        # Batching off: one request per model call, each run as soon as the model is free.
        HttpDeployment("unbatched", 1, 0.0),
        # For the REST overhead at concurrency 1: batches, but never waits for company.
        HttpDeployment("direct", arguments.max_batch_size, 0.0),
    )


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def registered_version(
    platform: Platform,
    scratch: Path,
    features: int,
    *,
    trainer: str = "tabular-classifier",
    hyperparameters: dict[str, Any] | None = None,
) -> tuple[str, ModelVersion]:
    """A user's API token, and a version of the big MLP (or of `trainer` with
    `hyperparameters`) registered in their project: trained here for one epoch, through the same
    job functions a worker runs. The user may also scrape /metrics (`metrics-reader`), as a
    Prometheus would."""
    user = await identity.create_user(platform, None, username="bench")
    await grant_platform_role(
        platform, None, username=user.username, role=PlatformRole.METRICS_READER
    )
    issued = await identity.create_api_token(platform, None, name="bench", user_id=user.id)
    async with platform.metadata.acquire() as connection:
        principal = await identity.verify_token(connection, issued.secret, "bench")
    project = await create_project(platform, principal, slug=PROJECT, name="Bench")
    # The enforcer reloads the policy when PostgreSQL announces the change: wait for it.
    async with asyncio.timeout(10):
        while True:
            if await platform.enforcer.enforce(principal, str(project.id), "training", "submit"):
                break
            await asyncio.sleep(0.02)
    source = scratch / "synthetic.parquet"
    pq.write_table(synthetic_table(TRAINING_ROWS, features), source)
    added = await datasets.upload_version(
        platform, principal, project.id, dataset_name="synthetic", source=source
    )
    job = await submit_training_job(
        platform,
        principal,
        TrainingRequest(
            dataset_version_id=added.version.id,
            trainer=trainer,
            target="label",
            hyperparameters=hyperparameters
            or {
                "epochs": 1,
                "batch_size": 256,
                "hidden_size": HIDDEN_SIZE,
                "hidden_layers": HIDDEN_LAYERS,
            },
            validation_fraction=0.0,
            model_name="mlp",
        ),
    )
    claimed = await claim_job(platform, job.id, "bench", stale_after_s=300)
    assert claimed is not None
    await run_training(platform, claimed)
    await finish_job(platform, job.id, "bench", JobState.SUCCEEDED, None)
    async with platform.metadata.acquire() as connection:
        return issued.secret, (await models.model_versions_by_jobs(connection, [job.id]))[job.id]


@contextlib.contextmanager
def running_server(config: Config, log_path: Path) -> Iterator[tuple[str, int]]:
    """`aiaas serve` (every role: GraphQL to create the deployments, V2 to call them) on a
    loopback port, its log in a file; its base URL and process id. Stopped on the way out,
    whatever happened."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AIAAS_")}
    environment |= config_environment(config)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "aiaas", "serve", "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"aiaas serve exited:\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"aiaas serve was not ready:\n{log_path.read_text()[-4000:]}")
        yield base_url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def deploy(
    client: httpx.AsyncClient, version: ModelVersion, deployment: HttpDeployment, callers: int
) -> str:
    """Create the deployment and wait until it is READY; its V2 model name. Its queue holds the
    default 16 batches, and at least a request of every caller: none is ever refused."""
    queue_rows = max(16 * deployment.max_batch_size, callers)
    response = await client.post(
        "/graphql",
        json={
            "query": CREATE_DEPLOYMENT,
            "variables": {
                "input": {
                    "name": deployment.name,
                    "modelVersion": str(to_global_id("ModelVersion", version.id)),
                    "maxBatchSize": deployment.max_batch_size,
                    "maxWaitMs": deployment.max_wait_ms,
                    "maxQueueRows": queue_rows,
                }
            },
        },
    )
    created = response.json()["data"]["createDeployment"]
    if created["__typename"] != "DeploymentSuccess":
        raise RuntimeError(f"createDeployment {deployment.name}: {created}")
    async with asyncio.timeout(600):
        while True:
            response = await client.post(
                "/graphql",
                json={"query": DEPLOYMENT_STATE, "variables": {"id": created["deployment"]["id"]}},
            )
            node = response.json()["data"]["node"]
            if node["state"] == "READY":
                return str(created["deployment"]["v2ModelName"])
            if node["state"] == "FAILED":
                raise RuntimeError(f"deployment {deployment.name} failed: {node['reason']}")
            await asyncio.sleep(0.2)


@dataclass(frozen=True)
class LoadRun:
    requests_per_s: float
    latencies_ms: list[float]
    failures: int
    failure_samples: list[str]
    client_cpu_ms_per_request: float
    server_cpu_ms_per_request: float
    server_loop_cpu_ms_per_request: float
    wall_s: float


@dataclass(frozen=True)
class Server:
    base_url: str
    pid: int
    token: str


async def generate_load(
    server: Server, model: str, callers: int, warm_up_s: float, seconds: float, client: str
) -> LoadRun:
    """One run of the load generator, a process of its own."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(LOAD_GENERATOR),
        f"--url={server.base_url}",
        f"--model={model}",
        f"--callers={callers}",
        f"--warm-up-seconds={warm_up_s}",
        f"--seconds={seconds}",
        f"--server-pid={server.pid}",
        f"--client={client}",
        env={**os.environ, "SERVING_LOAD_TOKEN": server.token},
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed ({process.returncode})")
    return LoadRun(**json.loads(output.decode().splitlines()[-1]))


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    """Every sample of the server's `/metrics`, by name and labels."""
    response = await client.get("/metrics")
    response.raise_for_status()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def series(samples: Samples, name: str, deployment: str, **labels: str) -> float:
    """The sum of `name`'s samples for the deployment (and `labels`)."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name
        and dict(sample_labels).get("deployment") == deployment
        and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    )


def compilations(samples: Samples) -> dict[str, float]:
    found: dict[str, float] = {}
    for (name, labels), value in samples.items():
        if name == "aiaas_inference_compilations_total":
            deployment = dict(labels)["deployment"]
            found[deployment] = found.get(deployment, 0) + value
    return found


def batches_between(before: Samples, after: Samples, deployment: str) -> dict[str, float]:
    """What the server measured of the deployment's batches between two scrapes: their number,
    mean rows, mean execution time, and the bound on the largest (the smallest power-of-two
    bucket of the batch size histogram that holds them all)."""

    def delta(name: str, **labels: str) -> float:
        return series(after, name, deployment, **labels) - series(
            before, name, deployment, **labels
        )

    count = delta("aiaas_inference_batch_size_rows_count")
    bounds = sorted(
        {
            float(dict(labels)["le"])
            for (name, labels) in after
            if name == "aiaas_inference_batch_size_rows_bucket"
        }
    )
    largest = next(
        bound
        for bound in bounds
        if delta("aiaas_inference_batch_size_rows_bucket", le=str(bound)) >= count
    )
    return {
        "batches": count,
        "mean_rows": delta("aiaas_inference_batch_size_rows_sum") / count,
        "mean_execution_ms": 1000 * delta("aiaas_inference_batch_duration_seconds_sum") / count,
        "largest_rows_at_most": largest,
    }


async def one_caller_in_process(
    model: LoadedModel, requests: list[dict[str, list[float]]], arguments: argparse.Namespace
) -> list[float]:
    """Latencies (s) of one caller through a batcher that never waits: the path a V2 request
    takes inside the server, without HTTP."""
    async with AdaptiveBatcher(
        model,
        max_batch_size=arguments.max_batch_size,
        max_wait_ms=0,
        max_queue_size=arguments.max_batch_size,
    ) as batcher:
        _, latencies = await drive(
            batcher.submit, requests, 1, arguments.warm_up_seconds, arguments.seconds
        )
    return latencies


def batch_execution_ms(model: LoadedModel, request: dict[str, list[float]], rows: int) -> float:
    """A batch of `rows` single-row requests as the batcher runs it: concatenated, predicted,
    split; the median of 50."""
    one = check_inputs(model.signature, request, max_batch=1)

    def run() -> None:
        columns = {name: np.concatenate([values] * rows) for name, values in one.items()}
        outputs = model.predict_batch(columns)
        [{name: values[row : row + 1] for name, values in outputs.items()} for row in range(rows)]

    return median_ms(run, 50)


def add_service_options(parser: argparse.ArgumentParser) -> None:
    """The services a serving bench runs its platform on (`bench_platform`)."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server the bench may create (and drop) a database on",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
    )
    parser.add_argument("--redis-db", type=int, default=14)


@contextlib.asynccontextmanager
async def bench_platform(
    arguments: argparse.Namespace, name: str, **settings: Any
) -> AsyncIterator[tuple[Config, Path]]:
    """A dev config on a database of the bench's own (dropped at the end) and a Redis database
    shared with whoever else uses it (the bench deletes only the keys it made), with a scratch
    directory; `settings` add to or replace the config's. Plugins load from their entry points
    only where `settings` allow them."""
    database = f"aiaas_bench_{name}_{uuid.uuid4().hex[:8]}"
    database_url = with_database(arguments.database_url, database)
    redis_url = urlunsplit(urlsplit(arguments.redis_url)._replace(path=f"/{arguments.redis_db}"))
    queue_name = f"aiaas:bench:{database}"
    admin = await asyncpg.connect(arguments.database_url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    try:
        await migrations.upgrade(database_url)
        with tempfile.TemporaryDirectory(prefix=f"aiaas-bench-{name}-") as directory:
            scratch = Path(directory)
            yield (
                build_config(
                    {
                        "mode": "dev",
                        "database_url": database_url,
                        "redis_url": redis_url,
                        "data_dir": scratch / "data",
                        "disable_plugin_autoload": True,
                        "queue_name": queue_name,
                        "master_key": MasterKey.generate().encoded(),
                        "log_level": "warning",
                        **settings,
                    }
                ),
                scratch,
            )
    finally:
        await forget_redis_keys(database_url, redis_url, queue_name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def http_part(arguments: argparse.Namespace) -> dict[str, Any]:
    """The HTTP figures, on a platform of the bench's own (`bench_platform`)."""
    async with bench_platform(
        arguments,
        "serving",
        log_level=arguments.server_log_level,
        token_cache_s=arguments.token_cache_s,
    ) as (
        config,
        scratch,
    ):
        return await http_on(config, scratch, arguments)


async def forget_redis_keys(database_url: str, redis_url: str, queue_name: str) -> None:
    """Delete the Redis keys of the bench's queue, jobs and deployments (each named after its
    id), and no others."""
    ids: list[str] = []
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT id FROM jobs UNION SELECT id FROM deployments")
        ids = [str(row["id"]) for row in rows]
    except asyncpg.UndefinedTableError:
        pass  # the schema never got there: neither did any job or deployment
    finally:
        await connection.close()
    redis = Redis.from_url(redis_url)
    try:
        keys = [queue_name.encode()]
        for found in ids:
            keys += [key async for key in redis.scan_iter(match=f"*{found}*")]
        await redis.delete(*keys)
    finally:
        await redis.aclose()


async def http_on(config: Config, scratch: Path, arguments: argparse.Namespace) -> dict[str, Any]:
    platform = create_platform(config)
    await platform.start()
    try:
        token, version = await registered_version(platform, scratch, arguments.features)
        chunks = platform.service(VAULT).open(version.project_id, version.artifact_key)
        bundle = b"".join([chunk async for chunk in chunks])
    finally:
        await platform.stop()
    requests = request_rows(4096, arguments.features)
    with running_server(config, scratch / "serve.log") as (base_url, pid):
        server = Server(base_url, pid, token)
        async with httpx.AsyncClient(
            base_url=base_url, headers={"authorization": f"Bearer {token}"}, timeout=60
        ) as client:
            names = {
                deployment.name: await deploy(client, version, deployment, arguments.callers)
                for deployment in http_deployments(arguments)
            }
            # The bench's own copy of the model, for the in-process side of the REST overhead.
            model = JaxServingRuntime().load(bundle, max_batch_size=arguments.max_batch_size)
            model.warm_up()
            # A first request creates each deployment's queue (and its compilation series).
            for name in names.values():
                await generate_load(server, name, 1, 0.0, 0.2, arguments.load_client)
            warm = await scrape(client)

            async def load(name: str, callers: int) -> LoadRun:
                run = await generate_load(
                    server,
                    names[name],
                    callers,
                    arguments.http_warm_up_seconds,
                    arguments.seconds,
                    arguments.load_client,
                )
                if run.failures:
                    raise RuntimeError(f"{run.failures} requests to {name} failed: {run}")
                return run

            runs: dict[str, list[LoadRun]] = {"batched": [], "unbatched": []}
            ratios = []
            for run in range(max(1, arguments.repeat)):
                for setup in ("unbatched", "batched") if run % 2 else ("batched", "unbatched"):
                    runs[setup].append(await load(setup, arguments.callers))
                ratios.append(
                    runs["batched"][-1].requests_per_s / runs["unbatched"][-1].requests_per_s
                )
            # The batches of the batched runs: that deployment served nothing else since `warm`.
            server_batches = batches_between(warm, await scrape(client), "batched")

            one_caller = await load("direct", 1)
            one_in_process = [
                1000 * latency
                for latency in await one_caller_in_process(model, requests, arguments)
            ]
            final = await scrape(client)

    largest_rows = int(server_batches["largest_rows_at_most"])
    largest_idle_ms = batch_execution_ms(model, requests[0], largest_rows)
    # The worse of the two: the largest batch alone on a quiet machine, and the server's mean
    # batch under the load (when the load generator takes its share of the cores).
    execution_ms = max(largest_idle_ms, server_batches["mean_execution_ms"])
    http_p50 = statistics.median(one_caller.latencies_ms)
    in_process_p50 = statistics.median(one_in_process)
    overhead_ms = http_p50 - in_process_p50
    budget_ms = arguments.max_wait_ms + 2 * execution_ms + overhead_ms
    # `direct` shares `batched`'s model (the same version and batch size): counted once.
    at_warm_up, at_end = compilations(warm), compilations(final)

    def latency_ms(setup: str, share: float) -> float:
        latencies = [latency for run in runs[setup] for latency in run.latencies_ms]
        return round(float(np.percentile(latencies, share)), 3)

    def median_of(setup: str, field: str) -> float:
        return round(float(statistics.median(getattr(run, field) for run in runs[setup])), 3)

    return {
        "http_batched_requests_per_s": round(median_of("batched", "requests_per_s"), 1),
        "http_batched_runs_requests_per_s": [
            round(run.requests_per_s, 1) for run in runs["batched"]
        ],
        "http_unbatched_requests_per_s": round(median_of("unbatched", "requests_per_s"), 1),
        "http_unbatched_runs_requests_per_s": [
            round(run.requests_per_s, 1) for run in runs["unbatched"]
        ],
        "batched_vs_unbatched_http_ratio": round(statistics.median(ratios), 2),
        "http_batched_p50_ms": latency_ms("batched", 50),
        "http_batched_p99_ms": latency_ms("batched", 99),
        "http_unbatched_p50_ms": latency_ms("unbatched", 50),
        "http_unbatched_p99_ms": latency_ms("unbatched", 99),
        "http_batched_server_cpu_ms_per_request": median_of("batched", "server_cpu_ms_per_request"),
        "http_unbatched_server_cpu_ms_per_request": median_of(
            "unbatched", "server_cpu_ms_per_request"
        ),
        "http_batched_client_cpu_ms_per_request": median_of("batched", "client_cpu_ms_per_request"),
        # The server's event loop alone: the CPU a request costs outside the model.
        "http_batched_server_cpu_outside_model_ms_per_request": median_of(
            "batched", "server_loop_cpu_ms_per_request"
        ),
        "http_unbatched_server_cpu_outside_model_ms_per_request": median_of(
            "unbatched", "server_loop_cpu_ms_per_request"
        ),
        "http_batched_mean_batch_rows": round(server_batches["mean_rows"], 1),
        "http_batched_largest_batch_rows_at_most": largest_rows,
        "http_batched_mean_batch_execution_ms": round(server_batches["mean_execution_ms"], 3),
        "http_largest_batch_execution_idle_ms": round(largest_idle_ms, 3),
        "http_p99_budget_ms": round(budget_ms, 3),
        "http_batched_p99_within_budget": latency_ms("batched", 99) <= budget_ms,
        "http_one_caller_p50_ms": round(http_p50, 3),
        "http_one_caller_p99_ms": round(float(np.percentile(one_caller.latencies_ms, 99)), 3),
        "http_one_caller_server_cpu_ms_per_request": round(one_caller.server_cpu_ms_per_request, 3),
        "http_one_caller_client_cpu_ms_per_request": round(one_caller.client_cpu_ms_per_request, 3),
        "http_one_caller_server_cpu_outside_model_ms_per_request": round(
            one_caller.server_loop_cpu_ms_per_request, 3
        ),
        "in_process_one_caller_p50_ms": round(in_process_p50, 3),
        "rest_overhead_p50_ms": round(overhead_ms, 3),
        "http_compilations_during_warm_up": int(at_warm_up["batched"] + at_warm_up["unbatched"]),
        "http_compilations_after_warm_up": int(
            sum(at_end[name] - at_warm_up[name] for name in ("batched", "unbatched"))
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warm-up-seconds", type=float, default=0.5)
    parser.add_argument("--http-warm-up-seconds", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--in-process", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--http", action=argparse.BooleanOptionalAction, default=True)
    add_service_options(parser)
    parser.add_argument(
        "--load-client",
        choices=["raw", "httpx"],
        default="raw",
        help="the load generator's HTTP client (see serving_load.py)",
    )
    parser.add_argument("--server-log-level", default="warning")
    parser.add_argument(
        "--token-cache-s",
        type=float,
        default=30.0,
        help="the server's token_cache_s (0: every request checks its token in PostgreSQL)",
    )
    arguments = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    result: dict[str, Any] = {
        "backend": jax.default_backend(),
        "devices": jax.local_device_count(),
        "cpu_cores": os.cpu_count(),
        "hidden_size": HIDDEN_SIZE,
        "hidden_layers": HIDDEN_LAYERS,
        "features": arguments.features,
        "callers": arguments.callers,
        "seconds_per_run": arguments.seconds,
        "repeat": max(1, arguments.repeat),
        "max_batch_size": arguments.max_batch_size,
        "max_wait_ms": arguments.max_wait_ms,
        "token_cache_s": arguments.token_cache_s,
        "load_client": arguments.load_client,
    }
    if arguments.in_process:
        result |= in_process(arguments)
    if arguments.http:
        result |= asyncio.run(http_part(arguments))
    # Other work on the machine takes cores from every figure above: its extent, for the reader.
    result["load_average_1m_at_start"] = round(load_at_start, 2)
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
