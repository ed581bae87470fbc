"""The metric path against MLflow's tracking store on SQLite, on the same machine, in one run.

MLflow is `mlflow-skinny` (the `bench` extra, `pip install -e '.[bench]'`; nothing is installed
at run time): `MlflowClient` on a `sqlite:///` URI in a temporary directory, in this process, as
a user who runs MLflow without a server has it. The platform is an `aiaas dev` instance
(embedded PostgreSQL and Redis) made by `graphql_overhead.prepare_instance`, then served here
as `aiaas serve` serves it (`graphql_overhead.BenchServer`, uvicorn on loopback); seeding runs
on the server's event loop with the platform's own functions before uvicorn starts.

1. Writing `--points` points (`--keys` metrics a step). MLflow: `log_batch` in batches of
   `MAX_METRICS_PER_BATCH` (1000, MLflow's limit) into one run. The platform:
   `metrics_ingest.platform_run`, the path of a trainer's reporter (`MetricWriter.add` from the
   training thread, COPY from the event loop) into a submitted and claimed training job, timed
   until every point is committed. Aim: 20x faster.
2. Reading a history of `--history-steps` (20,000) steps of one key. MLflow:
   `get_metric_history`, every point. The platform: `TrainingJob.metricColumns` through
   `/graphql` over HTTP, every point too (`maxPoints` up to 100,000), answered as columns
   (`history_*`). Also a key of 10,000 steps read whole on both sides (`full_resolution_*`),
   and that key as `TrainingJob.metrics` answers it, one object per point, at most 10,000
   (`objects_*`). The job is running, so each request reads PostgreSQL; a finished job's
   series are kept in Redis (`history_finished_job_*`). Aim: 5x faster.
3. The latest metrics of `--runs` (100) runs. MLflow: the faster of `search_runs` (one page of
   100 runs) and `get_run` once per run. The platform: `project { trainingJobs(first: 100) {
   nodes { id latestMetrics } } }`, and the same page without `latestMetrics`, to tell what
   the metrics cost from what the page costs (`latest_platform_page_without_metrics_ms`).
   Aim: 5x faster.

Both sides are first checked to answer the same values. Reads are timed one at a time, in
`--rounds` rounds that alternate which side goes first, after a warm-up; medians are compared.

    python bench/vs_mlflow.py [--points 100000] [--history-steps 20000] [--runs 100]

MLflow logs about 1,500 points a second on a 2-core machine: the issue's million points
(`--points 1000000`) take it over ten minutes, hence the default.

The last line printed is one JSON object; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from graphql_overhead import BenchServer, claimed_jobs, prepare_instance, seed_jobs
from metrics_ingest import KEYS, Scratch, metrics_of, platform_run
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_METRICS_PER_BATCH

from aiaas.core import global_ids
from aiaas.core.platform import Platform
from aiaas.core.storage import Connection
from aiaas.core.training.metric_writer import MetricWriter
from aiaas.embedded.dev_instance import dev_instance_settings

logger = logging.getLogger("vs_mlflow")

SLUG = "bench"
HISTORY_KEY = "loss"
FULL_KEY = "loss_10k"
FULL_STEPS = 10_000  # the most points `TrainingJob.metrics` answers as objects
RUN_STEPS = 10  # steps of each of the `--runs` runs whose latest metrics are read
AIMS = {"write": 20, "history": 5, "latest": 5}
HISTORY = """
query($id: ID!, $key: String!, $maxPoints: Int!) {
  node(id: $id) { ... on TrainingJob { metricColumns(key: $key, maxPoints: $maxPoints) {
    steps values } } }
}
"""
OBJECTS = """
query($id: ID!, $key: String!, $maxPoints: Int!) {
  node(id: $id) { ... on TrainingJob { metrics(key: $key, maxPoints: $maxPoints) {
    step value min max } } }
}
"""
LATEST = """
query($slug: String!, $first: Int!) {
  project(slug: $slug) { trainingJobs(first: $first) { nodes { id latestMetrics } } }
}
"""
PAGE_ONLY = LATEST.replace(" latestMetrics", "")  # what the page costs without the metrics


def history_value(step: int) -> float:
    return 1.0 / (1.0 + step * 1e-3)


# MLflow ------------------------------------------------------------------------------------------


def mlflow_points(steps: int, values_of: Callable[[int], dict[str, float]]) -> Iterator[Metric]:
    for step in range(steps):
        for key, value in values_of(step).items():
            yield Metric(key, value, 1_700_000_000_000 + step, step)


def history_of(key: str) -> Callable[[int], dict[str, float]]:
    return lambda step: {key: history_value(step)}


def all_of(keys: tuple[str, ...]) -> Callable[[int], dict[str, float]]:
    return lambda step: metrics_of(step, keys)


def mlflow_log(client: MlflowClient, run_id: str, points: Iterator[Metric]) -> None:
    """`log_batch` in MLflow's largest batches."""
    batch: list[Metric] = []
    for point in points:
        batch.append(point)
        if len(batch) == MAX_METRICS_PER_BATCH:
            client.log_batch(run_id, metrics=batch)
            batch = []
    if batch:
        client.log_batch(run_id, metrics=batch)


class MlflowSide:
    """MLflow's tracking store on SQLite: the write timed, the runs the reads read."""

    def __init__(self, directory: Path) -> None:
        self.client = MlflowClient(tracking_uri=f"sqlite:///{directory / 'mlflow.db'}")
        self.experiment_id = self.client.create_experiment("vs-aiaas")

    def write(self, steps: int, keys: tuple[str, ...]) -> float:
        run_id = self.client.create_run(self.experiment_id).info.run_id
        started = time.perf_counter()
        mlflow_log(self.client, run_id, mlflow_points(steps, all_of(keys)))
        elapsed = time.perf_counter() - started
        stored = self.client.get_metric_history(run_id, keys[0])
        assert len(stored) == steps, "every point of the first key, once"
        return elapsed

    def seed_reads(self, history_steps: int, runs: int, keys: tuple[str, ...]) -> None:
        history_experiment = self.client.create_experiment("vs-aiaas-history")
        self.history_run = self.client.create_run(history_experiment).info.run_id
        mlflow_log(
            self.client, self.history_run, mlflow_points(history_steps, history_of(HISTORY_KEY))
        )
        mlflow_log(self.client, self.history_run, mlflow_points(FULL_STEPS, history_of(FULL_KEY)))
        self.latest_experiment = self.client.create_experiment("vs-aiaas-latest")
        self.run_ids = []
        for _ in range(runs):
            run_id = self.client.create_run(self.latest_experiment).info.run_id
            mlflow_log(self.client, run_id, mlflow_points(RUN_STEPS, all_of(keys)))
            self.run_ids.append(run_id)

    def history(self, key: str) -> list[Metric]:
        return self.client.get_metric_history(self.history_run, key)

    def search_runs(self) -> list[dict[str, float]]:
        found = self.client.search_runs([self.latest_experiment], max_results=len(self.run_ids))
        return [run.data.metrics for run in found]

    def get_runs(self) -> list[dict[str, float]]:
        return [self.client.get_run(run_id).data.metrics for run_id in self.run_ids]


# The platform ------------------------------------------------------------------------------------


class JobScratch(Scratch):
    """`metrics_ingest`'s scratch on the served instance: each `new_job` is a training job
    submitted and claimed as a worker claims it, so that its points go where a trainer's go."""

    def __init__(self, connection: Connection, job_ids: list[UUID]) -> None:
        super().__init__("", connection, UUID(int=0))
        self.job_ids = iter(job_ids)

    async def new_job(self) -> UUID:
        return next(self.job_ids)


async def write_points(
    platform: Platform, job_id: UUID, points: dict[int, dict[str, float]]
) -> None:
    async with MetricWriter(platform.metadata, job_id) as writer:
        for step, metrics in points.items():
            writer.add(step, metrics)


class PlatformSeed:
    """What the server's event loop does before uvicorn starts: the timed writes, then the jobs
    the reads read (older than the page of `runs` jobs, which is the newest)."""

    def __init__(self, arguments: argparse.Namespace, token: str, version_id: UUID) -> None:
        self.arguments = arguments
        self.token = token
        self.version_id = version_id
        self.write_s: list[float] = []
        self.history_job = self.finished_job = UUID(int=0)

    async def __call__(self, platform: Platform) -> None:
        arguments, keys = self.arguments, KEYS[: self.arguments.keys]
        write_jobs = await claimed_jobs(platform, self.token, self.version_id, arguments.repeat)
        store: Any = platform.metadata  # platform_run's PostgresMetadataStore, as a MetadataStore
        async with store.acquire() as connection:
            scratch = JobScratch(connection, [job.id for job in write_jobs])
            for _ in range(arguments.repeat):
                steps = arguments.points // len(keys)
                self.write_s.append(await platform_run(scratch, store, steps, keys))
        history = {step: history_of(HISTORY_KEY)(step) for step in range(arguments.history_steps)}
        for step in range(FULL_STEPS):
            history.setdefault(step, {}).update(history_of(FULL_KEY)(step))
        (history_job,) = await claimed_jobs(platform, self.token, self.version_id, 1)
        self.history_job = history_job.id
        await write_points(platform, self.history_job, history)
        (self.finished_job,) = await seed_jobs(platform, self.token, self.version_id, 1)
        await write_points(platform, self.finished_job, history)
        for job_id in await seed_jobs(platform, self.token, self.version_id, arguments.runs):
            await write_points(platform, job_id, {s: all_of(keys)(s) for s in range(RUN_STEPS)})
        async with platform.metadata.acquire() as connection:
            await connection.execute("VACUUM ANALYZE metric_points")


class PlatformReads:
    """The platform's answers through `/graphql`, on one kept-alive connection."""

    def __init__(self, base_url: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=base_url, headers={"authorization": f"Bearer {token}"}, timeout=60
        )

    def query(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.client.post("/graphql", json={"query": query, "variables": variables})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if body.get("errors"):
            raise RuntimeError(body["errors"])
        return body["data"]

    def history(self, job_id: UUID, key: str, max_points: int) -> list[tuple[int, float]]:
        """The (step, value) points of the key, read as columns."""
        node_id = global_ids.encode("TrainingJob", job_id)
        answer = self.query(HISTORY, id=node_id, key=key, maxPoints=max_points)
        columns = answer["node"]["metricColumns"]
        return list(zip(columns["steps"], columns["values"], strict=True))

    def objects(self, job_id: UUID, key: str, max_points: int) -> list[tuple[int, float]]:
        """The same, read as `TrainingJob.metrics` answers it: one object per point."""
        node_id = global_ids.encode("TrainingJob", job_id)
        points = self.query(OBJECTS, id=node_id, key=key, maxPoints=max_points)["node"]["metrics"]
        return [(point["step"], point["value"]) for point in points]

    def latest(self, runs: int, query: str = LATEST) -> list[Any]:
        data = self.query(query, slug=SLUG, first=runs)
        return [node.get("latestMetrics") for node in data["project"]["trainingJobs"]["nodes"]]


# Measuring ---------------------------------------------------------------------------------------


def median_ms(
    sides: dict[str, Callable[[], object]], requests: int, rounds: int, warmup: int
) -> dict[str, float]:
    """Each side's median latency: `requests` calls each, one at a time, in `rounds` rounds
    that alternate which side goes first, after `warmup` untimed calls each."""
    for call in sides.values():
        for _ in range(warmup):
            call()
    names = list(sides)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            for _ in range(max(1, requests // rounds)):
                started = time.perf_counter()
                sides[name]()
                latencies[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in latencies.items()}


def check_answers(
    mlflow: MlflowSide, platform: PlatformReads, seed: PlatformSeed, arguments: argparse.Namespace
) -> None:
    """Both sides answer the same points and the same latest values."""
    full = sorted((point.step, point.value) for point in mlflow.history(FULL_KEY))
    assert platform.history(seed.history_job, FULL_KEY, FULL_STEPS) == full, "the same history"
    assert platform.objects(seed.history_job, FULL_KEY, FULL_STEPS) == full, "the same history"
    whole = sorted((point.step, point.value) for point in mlflow.history(HISTORY_KEY))
    assert len(whole) == arguments.history_steps
    served = platform.history(seed.history_job, HISTORY_KEY, arguments.history_steps)
    assert served == whole, "the same long history, every point"
    expected = metrics_of(RUN_STEPS - 1, KEYS[: arguments.keys])
    for answer in (mlflow.search_runs(), mlflow.get_runs(), platform.latest(arguments.runs)):
        assert len(answer) == arguments.runs, len(answer)
        assert all(metrics == expected for metrics in answer), "the same latest metrics"


def reads(
    mlflow: MlflowSide, platform: PlatformReads, seed: PlatformSeed, arguments: argparse.Namespace
) -> dict[str, float]:
    timing = {"requests": arguments.requests, "rounds": arguments.rounds, "warmup": 2}
    runs = arguments.runs
    steps = arguments.history_steps
    history = median_ms(
        {
            "mlflow": lambda: mlflow.history(HISTORY_KEY),
            "platform": lambda: platform.history(seed.history_job, HISTORY_KEY, steps),
            "finished": lambda: platform.history(seed.finished_job, HISTORY_KEY, steps),
        },
        **timing,
    )
    full = median_ms(
        {
            "mlflow": lambda: mlflow.history(FULL_KEY),
            "platform": lambda: platform.history(seed.history_job, FULL_KEY, FULL_STEPS),
            "objects": lambda: platform.objects(seed.history_job, FULL_KEY, FULL_STEPS),
        },
        **timing,
    )
    latest = median_ms(
        {
            "search_runs": mlflow.search_runs,
            "get_run": mlflow.get_runs,
            "platform": lambda: platform.latest(runs),
            "page_only": lambda: platform.latest(runs, PAGE_ONLY),
        },
        **timing,
    )
    return {
        "history_steps": steps,
        **compared("history", history["mlflow"], history["platform"]),
        **compared("history_finished_job", history["mlflow"], history["finished"]),
        "full_resolution_points": FULL_STEPS,
        **compared("full_resolution", full["mlflow"], full["platform"]),
        **compared("objects", full["mlflow"], full["objects"]),
        "latest_runs": runs,
        "latest_mlflow_search_runs_ms": round(latest["search_runs"], 2),
        "latest_mlflow_get_run_each_ms": round(latest["get_run"], 2),
        **compared("latest", min(latest["search_runs"], latest["get_run"]), latest["platform"]),
        "latest_platform_page_without_metrics_ms": round(latest["page_only"], 2),
    }


def compared(name: str, mlflow_ms: float, platform_ms: float) -> dict[str, float]:
    """Both medians, and how many times faster the platform answered."""
    return {
        f"{name}_mlflow_ms": round(mlflow_ms, 2),
        f"{name}_platform_ms": round(platform_ms, 2),
        f"{name}_ratio": round(mlflow_ms / platform_ms, 2),
    }


def measure(arguments: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    keys = KEYS[: arguments.keys]
    steps = arguments.points // len(keys)
    data_dir = scratch / "data"
    token, version_id = prepare_instance(data_dir, scratch)
    mlflow = MlflowSide(scratch)
    mlflow_write_s = [mlflow.write(steps, keys) for _ in range(arguments.repeat)]
    logger.warning("MLflow wrote %d points in %s s", steps * len(keys), mlflow_write_s)
    mlflow.seed_reads(arguments.history_steps, arguments.runs, keys)
    seed = PlatformSeed(arguments, token, version_id)
    with (
        dev_instance_settings(data_dir, "bench/vs_mlflow.py") as settings,
        BenchServer(data_dir, settings, token, seed) as server,
    ):
        platform = PlatformReads(f"http://127.0.0.1:{server.port}", token)
        check_answers(mlflow, platform, seed, arguments)
        read_figures = reads(mlflow, platform, seed, arguments)
        platform.client.close()
    points = steps * len(keys)
    mlflow_s, platform_s = statistics.median(mlflow_write_s), statistics.median(seed.write_s)
    return {
        "write_points": points,
        "write_keys": len(keys),
        "write_mlflow_batch_metrics": MAX_METRICS_PER_BATCH,
        "write_mlflow_runs_s": [round(run, 2) for run in mlflow_write_s],
        "write_platform_runs_s": [round(run, 2) for run in seed.write_s],
        "write_mlflow_points_per_s": round(points / mlflow_s),
        "write_platform_points_per_s": round(points / platform_s),
        "write_ratio": round(mlflow_s / platform_s, 2),
        **read_figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=100_000, help="metric points written")
    parser.add_argument("--keys", type=int, default=4, choices=range(1, len(KEYS) + 1))
    parser.add_argument("--history-steps", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=100, choices=range(1, 101))
    parser.add_argument("--repeat", type=int, default=1, help="writes per side")
    parser.add_argument("--requests", type=int, default=10, help="timed reads per side")
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    if arguments.points < arguments.keys or arguments.history_steps < 1:
        parser.error("--points must be at least --keys, --history-steps at least 1")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aiaas-bench-") as directory:
        result = measure(arguments, Path(directory))
    result |= {
        "aims": AIMS,
        "meets_aims": {name: result[f"{name}_ratio"] >= aim for name, aim in AIMS.items()},
        "mlflow": "mlflow-skinny, MlflowClient on sqlite:/// in a temporary directory, in process",
        "platform": "aiaas under uvicorn on loopback, embedded PostgreSQL and Redis; reads over "
        "HTTP through /graphql with the admin's bearer token",
        "cpu_count": os.cpu_count(),
        "bench_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
