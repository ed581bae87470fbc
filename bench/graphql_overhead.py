"""A page of training jobs through `/graphql` against a plain Starlette JSON endpoint that runs the
same SQL, in the same server process, in the same run.

`aiaas dev` makes a scratch instance (embedded PostgreSQL and Redis, the schema, the first
admin and its token); the bench creates a project and uploads a small dataset through its API,
then stops it. The bench process then runs the API itself, as `aiaas serve` does
(`create_app(config)` under uvicorn, on loopback, on the instance's PostgreSQL and Redis), with
one route added here only:

- `GET /bench/projects/{slug}/training-jobs?first=N`: the bearer token checked by the app's own
  middleware (`RequirePrincipal`, as for every REST route), the same two grants the GraphQL
  fields check (`project:read`, `job:read`), then the resolvers' queries on pooled connections:
  the project by slug, the page of jobs (`list_jobs`) and the dataloader's batched
  `model_versions_by_jobs`; answered as JSON in the GraphQL answer's shape.

Seeding: `--jobs` training jobs, each submitted, claimed and finished with the platform's own
job functions, and a model version registered for it as a finished job registers one (with a
few stored bytes for an artifact, as the tests do): the rows the API reads normally, without
the trainings.

Both sides are asked for the same page (`id state trainer target createdAt modelVersion
{ number }`), checked once to carry the same rows, then timed one request at a time (the client
runs in this process too, in another thread, on one kept-alive connection): a warm-up each, then
`--rounds` rounds that alternate which side goes first, `--requests` requests per side in all.
`graphql_vs_plain_ratio` is GraphQL's p50 over the plain endpoint's; the issue aims for 3.

    python bench/graphql_overhead.py [--jobs 100] [--requests 400] [--rounds 8]

The last line printed is one JSON object; logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import numpy as np
import uvicorn
from dataset_ingest import create_project, start_platform, upload
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.loops.auto import auto_loop_factory

from aiaas.app import create_app
from aiaas.core import global_ids
from aiaas.core.auth import Credentials, Principal
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, load_config
from aiaas.core.errors import AiaasError
from aiaas.core.governance import VAULT
from aiaas.core.identity import members
from aiaas.core.identity.projects import ChangeInProject, projects_by_slugs
from aiaas.core.jobs import Job, JobState, claim_job, finish_job, list_jobs
from aiaas.core.platform import Platform
from aiaas.core.training import TRAINING_JOB, TrainingRequest, submit_training_job
from aiaas.core.training.registry import (
    NewModelVersion,
    model_versions_by_jobs,
    register_model_version,
)
from aiaas.embedded.dev import bind_api_socket
from aiaas.embedded.dev_instance import dev_instance_settings
from aiaas.embedded.postgres import read_or_create_secret
from aiaas.embedded.redis import EmbeddedRedis
from aiaas.graphql.relay import from_global_id

logger = logging.getLogger("graphql_overhead")

PAGE = """
query($slug: String!, $first: Int!) {
  project(slug: $slug) {
    trainingJobs(first: $first) {
      nodes { id state trainer target createdAt modelVersion { number } }
    }
  }
}
"""
PLAIN_PATH = "/bench/projects/{slug}/training-jobs"
SLUG = "bench"
MODEL = "overhead"
WORKER_ID = "bench-graphql-overhead"
AIM = 3


# The baseline: the resolvers' SQL behind a plain route ------------------------------------------


def plain_error(exc: AiaasError) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message}}, status_code=exc.http_status
    )


async def plain_training_jobs(request: Request) -> Response:
    """What `project(slug) { trainingJobs(first) { nodes { ... modelVersion { number } } } }`
    reads, with the same checks, on the same pool, without GraphQL."""
    platform: Platform = request.app.state.platform
    principal: Principal = request.scope["state"]["principal"]  # RequirePrincipal's
    slug = request.path_params["slug"]
    first = int(request.query_params.get("first", "20"))
    async with platform.metadata.acquire() as connection:
        project = (await projects_by_slugs(connection, [slug])).get(slug)
    project_id = project.id if project is not None else None
    try:
        await members.authorize_in_project(platform, principal, project_id, "project", "read")
        await members.authorize_in_project(platform, principal, project_id, "job", "read")
    except AiaasError as exc:
        return plain_error(exc)
    assert project_id is not None
    async with platform.metadata.acquire() as connection:
        page = await list_jobs(connection, project_id, TRAINING_JOB, first=first, after=None)
    async with platform.metadata.acquire() as connection:
        versions = await model_versions_by_jobs(connection, [job.id for job in page.items])
    nodes = []
    for job in page.items:
        version = versions.get(job.id)
        nodes.append(
            {
                "id": global_ids.encode("TrainingJob", job.id),
                "state": job.state.value,
                "trainer": job.payload["trainer"],
                "target": job.payload["target"],
                "createdAt": job.created_at.isoformat(),
                "modelVersion": {"number": version.number} if version is not None else None,
            }
        )
    return JSONResponse({"data": {"project": {"trainingJobs": {"nodes": nodes}}}})


def build_app(config: Config) -> Starlette:
    """The API as `aiaas serve` builds it, plus the bench's route (behind the same middleware)."""
    app = create_app(config)
    # First: the portal's route answers every other GET path with its page.
    app.router.routes.insert(0, Route(PLAIN_PATH, plain_training_jobs, methods=["GET"]))
    return app


# Seeding ------------------------------------------------------------------------------------------


async def artifact() -> AsyncIterator[bytes]:
    yield b"not a model: the bench never loads it"


async def register_pretend_version(
    platform: Platform,
    job: Job,
    version_id: UUID,
    *,
    metrics: dict[str, float],
    hyperparameters: dict[str, Any] | None = None,
) -> None:
    """Register a model version for `job` as a finished training registers one, with a few
    stored bytes for its artifact: the rows the API reads, without the training."""
    change = ChangeInProject(platform, None, "model.register", None, project_id=job.project_id)
    async with change:
        stored = await platform.service(VAULT).store(job.project_id, artifact())
        await register_model_version(
            change,
            NewModelVersion(
                project_id=job.project_id,
                model_name=MODEL,
                job_id=job.id,
                dataset_version_id=version_id,
                trainer=job.payload["trainer"],
                format="flax-nnx",
                artifact_key=stored.key,
                size_bytes=stored.size_bytes,
                signature={"inputs": [], "outputs": []},
                metrics=metrics,
                hyperparameters=hyperparameters or {},
                created_by=None,
            ),
        )


def upload_small_dataset(base_url: str, token: str, scratch: Path, name: str) -> UUID:
    """A 200-row dataset `name` of three features and a binary label in project `bench`: its
    version's id."""
    rows = np.random.default_rng(0).normal(size=(200, 3))
    lines = ["a,b,c,label"] + [
        ",".join(f"{value:.5f}" for value in row) + f",{int(row[0] > 0)}" for row in rows
    ]
    source = scratch / f"{name}.csv"
    source.write_text("\n".join(lines) + "\n")
    _, body = upload(base_url, token, source, name)
    version = body["version"]
    assert isinstance(version, dict), body
    return from_global_id(str(version["id"]), expected="DatasetVersion")[1]


async def claimed_jobs(platform: Platform, token: str, version_id: UUID, jobs: int) -> list[Job]:
    """`jobs` training jobs submitted by the admin and claimed by a (pretend) worker: running."""
    principal = await platform.authenticate(Credentials(f"Bearer {token}", "127.0.0.1"))
    assert principal is not None
    request = TrainingRequest(
        dataset_version_id=version_id,
        trainer="tabular-classifier",
        target="label",
        hyperparameters={"epochs": 1},
        model_name=MODEL,
    )
    running = []
    for _ in range(jobs):
        job = await submit_training_job(platform, principal, request)
        claimed = await claim_job(platform, job.id, WORKER_ID, stale_after_s=300)
        assert claimed is not None, "no worker may run in the bench"
        running.append(job)
    return running


async def seed_jobs(platform: Platform, token: str, version_id: UUID, jobs: int) -> list[UUID]:
    """`jobs` succeeded training jobs, each with the model version it registered: their ids."""
    ids = []
    for job in await claimed_jobs(platform, token, version_id, jobs):
        await register_pretend_version(platform, job, version_id, metrics={})
        finished = await finish_job(platform, job.id, WORKER_ID, JobState.SUCCEEDED, None)
        assert finished is not None
        ids.append(job.id)
    return ids


# The server, in a thread of this process -------------------------------------------------------


class BenchServer:
    """Embedded Redis, the seeding and uvicorn, on an event loop in a thread of its own; the
    instance's PostgreSQL is `dev_instance_settings`'."""

    def __init__(
        self,
        data_dir: Path,
        settings: dict[str, Any],
        token: str,
        seed: Callable[[Platform], Awaitable[None]],
    ) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.token = token
        self.seed = seed
        self.port = 0
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.server: uvicorn.Server | None = None
        self.thread = threading.Thread(target=self._run, name="bench-server")

    def __enter__(self) -> BenchServer:
        self.thread.start()
        self.ready.wait()
        if self.failure is not None:
            self.thread.join()
            raise RuntimeError("the bench server did not start") from self.failure
        return self

    def __exit__(self, *_: object) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join()

    def _run(self) -> None:
        # The loop `aiaas serve` runs on: uvicorn's loop="auto" (uvloop, which uvicorn[standard]
        # brings). On asyncio's own loop, a socket made without a protocol number, as
        # `bind_api_socket` makes it, hands out connections without TCP_NODELAY, and every
        # answer on a kept-alive connection waited 40 ms for a delayed ACK.
        try:
            with asyncio.Runner(loop_factory=auto_loop_factory()) as runner:
                runner.run(self._serve())
        except BaseException as exc:
            self.failure = exc
        finally:
            self.ready.set()

    async def _serve(self) -> None:
        redis = EmbeddedRedis(self.data_dir)
        child, redis_url = await redis.start(
            read_or_create_secret(self.data_dir / "redis.password")
        )
        try:
            # As `aiaas dev` hands its API its configuration: none of this shell's AIAAS_*.
            config = load_config(
                environ={}, overrides={**self.settings, "redis_url": redis_url, "mode": "dev"}
            )
            platform = create_platform(config)
            await platform.start()
            try:
                await self.seed(platform)
            finally:
                await platform.stop()
            sock = bind_api_socket("127.0.0.1", 0)
            self.port = sock.getsockname()[1]
            self.server = uvicorn.Server(
                uvicorn.Config(build_app(config), log_level="warning", lifespan="on")
            )
            serving = asyncio.create_task(self.server.serve(sockets=[sock]))
            while not self.server.started:
                if serving.done():
                    await serving  # raises why it stopped
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.02)
            self.ready.set()
            await serving
        finally:
            await child.stop(10)


# Measuring ---------------------------------------------------------------------------------------


def rows_of(body: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    nodes = body["data"]["project"]["trainingJobs"]["nodes"]
    return [
        (
            node["id"],
            node["state"],
            node["modelVersion"]["number"] if node["modelVersion"] else None,
        )
        for node in nodes
    ]


class Sides:
    def __init__(self, base_url: str, token: str, jobs: int) -> None:
        self.client = httpx.Client(
            base_url=base_url, headers={"authorization": f"Bearer {token}"}, timeout=60
        )
        self.graphql_body = {"query": PAGE, "variables": {"slug": SLUG, "first": jobs}}
        self.plain_url = PLAIN_PATH.format(slug=SLUG)
        self.plain_params = {"first": str(jobs)}

    def graphql(self) -> httpx.Response:
        return self.client.post("/graphql", json=self.graphql_body)

    def plain(self) -> httpx.Response:
        return self.client.get(self.plain_url, params=self.plain_params)

    def answers(self) -> tuple[dict[str, Any], dict[str, Any]]:
        graphql, plain = self.graphql(), self.plain()
        graphql.raise_for_status()
        plain.raise_for_status()
        graphql_body, plain_body = graphql.json(), plain.json()
        if graphql_body.get("errors"):
            raise RuntimeError(graphql_body["errors"])
        return graphql_body, plain_body


def timed(call: Callable[[], httpx.Response], count: int) -> tuple[list[float], float]:
    """Each request's latency (ms) and the whole run's time (s), one request at a time."""
    latencies = []
    started = time.perf_counter()
    for _ in range(count):
        before = time.perf_counter()
        response = call()
        latencies.append((time.perf_counter() - before) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
    return latencies, time.perf_counter() - started


def summary(latencies: list[float], elapsed_s: float) -> dict[str, float]:
    values = np.array(latencies)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p95_ms": round(float(np.percentile(values, 95)), 3),
        "mean_ms": round(statistics.fmean(latencies), 3),
        "requests_per_s": round(len(latencies) / elapsed_s, 1),
    }


def measure(sides: Sides, requests: int, rounds: int, warmup: int) -> dict[str, Any]:
    timed(sides.graphql, warmup)
    timed(sides.plain, warmup)
    per_round = max(1, requests // rounds)
    runs: dict[str, tuple[list[float], float]] = {"graphql": ([], 0.0), "plain": ([], 0.0)}
    for round_index in range(rounds):
        order = ["graphql", "plain"] if round_index % 2 == 0 else ["plain", "graphql"]
        for side in order:
            latencies, elapsed = timed(getattr(sides, side), per_round)
            previous, previous_s = runs[side]
            runs[side] = (previous + latencies, previous_s + elapsed)
    return {side: summary(*run) for side, run in runs.items()}


# The run -----------------------------------------------------------------------------------------


def prepare_instance(data_dir: Path, scratch: Path) -> tuple[str, UUID]:
    """An `aiaas dev` instance with project `bench` and a small dataset, stopped again: the
    admin token and the dataset version's id."""
    supervisor, base_url, token = start_platform(data_dir)
    try:
        create_project(base_url, token)
        version_id = upload_small_dataset(base_url, token, scratch, "overhead")
    finally:
        supervisor.send_signal(signal.SIGINT)
        supervisor.wait(timeout=60)
    return token, version_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100, help="jobs seeded, and the page size")
    parser.add_argument("--requests", type=int, default=400, help="timed requests per side")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=30, help="untimed requests per side")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="aiaas-bench-") as directory:
        scratch = Path(directory)
        data_dir = scratch / "data"
        token, version_id = prepare_instance(data_dir, scratch)
        logger.warning("instance ready; seeding %d jobs", arguments.jobs)

        async def seed(platform: Platform) -> None:
            await seed_jobs(platform, token, version_id, arguments.jobs)

        with (
            dev_instance_settings(data_dir, "bench/graphql_overhead.py") as settings,
            BenchServer(data_dir, settings, token, seed) as server,
        ):
            sides = Sides(f"http://127.0.0.1:{server.port}", token, arguments.jobs)
            graphql_body, plain_body = sides.answers()
            graphql_rows, plain_rows = rows_of(graphql_body), rows_of(plain_body)
            assert graphql_rows == plain_rows, "the two sides answer different rows"
            assert len(graphql_rows) == arguments.jobs, len(graphql_rows)
            assert all(number is not None for _, _, number in graphql_rows)
            sizes = {
                "graphql": len(sides.graphql().content),
                "plain": len(sides.plain().content),
            }
            results = measure(sides, arguments.requests, arguments.rounds, arguments.warmup)
            sides.client.close()
    graphql, plain = results["graphql"], results["plain"]
    ratio = graphql["p50_ms"] / plain["p50_ms"]
    print(
        json.dumps(
            {
                "jobs": arguments.jobs,
                "page_rows_checked_equal": len(graphql_rows),
                "requests_per_side": arguments.requests // arguments.rounds * arguments.rounds,
                "rounds": arguments.rounds,
                "concurrency": 1,
                "graphql_p50_ms": graphql["p50_ms"],
                "graphql_p95_ms": graphql["p95_ms"],
                "graphql_mean_ms": graphql["mean_ms"],
                "graphql_requests_per_s": graphql["requests_per_s"],
                "graphql_response_bytes": sizes["graphql"],
                "plain_p50_ms": plain["p50_ms"],
                "plain_p95_ms": plain["p95_ms"],
                "plain_mean_ms": plain["mean_ms"],
                "plain_requests_per_s": plain["requests_per_s"],
                "plain_response_bytes": sizes["plain"],
                "plain_checks": "same bearer check (the app's RequirePrincipal middleware) and "
                "the same project:read and job:read grants; no GraphQL parsing, validation or "
                "execution",
                "graphql_vs_plain_ratio": round(ratio, 3),
                "graphql_vs_plain_p95_ratio": round(graphql["p95_ms"] / plain["p95_ms"], 3),
                "plain_vs_graphql_throughput_ratio": round(
                    plain["requests_per_s"] / graphql["requests_per_s"], 3
                ),
                "aim": AIM,
                "meets_aim": ratio <= AIM,
                "cpu_cores": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
