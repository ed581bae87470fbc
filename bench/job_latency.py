"""How fast a training job starts, and how fast its events reach many live subscribers.

Against a whole platform (`aiaas dev` on its embedded PostgreSQL and Redis, with its API and
worker processes), through the public API only:

- start latency: the time from calling `submitTrainingJob` to the job's `startedAt` (the
  worker's claim), for `--jobs` jobs one after the other, each left to finish before the next.
  Measured twice, each on a fresh platform: with the platform's worker poll delay (0.05 s) and
  with arq's own default (0.5 s), the baseline;
- event latency: `--subscribers` graphql-ws connections subscribe to `jobEvents` of one running
  job; each event's latency is its arrival time at a subscriber minus its emission time, which
  the event's cursor carries (a Redis Stream id is the millisecond Redis stored it at; Redis and
  the bench share the machine's clock). Measured with all the subscribers, and with one, the
  baseline.

    python bench/job_latency.py [--jobs 20] [--subscribers 100]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from dataset_ingest import create_project, start_platform, upload
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

SUBMIT = """
mutation($input: SubmitTrainingJobInput!) {
  submitTrainingJob(input: $input) { __typename ... on TrainingJobSuccess { job { id } } }
}
"""
JOB = """
query($id: ID!) { node(id: $id) { ... on TrainingJob { state startedAt reason } } }
"""
VERSION = """
{ project(slug: "bench") { dataset(name: "latency") { versions(first: 1) { nodes { id } } } } }
"""
SETTLING_S = 2.0
EVENTS = "subscription($job: ID!) { jobEvents(jobId: $job) { cursor type state } }"


def percentile(values: list[float], share: float) -> float:
    return float(np.percentile(np.array(values), share * 100))


class Api:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token
        self.client = httpx.Client(
            base_url=base_url, headers={"authorization": f"Bearer {token}"}, timeout=60
        )

    def query(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.post("/graphql", json={"query": document, "variables": variables})
        body: dict[str, Any] = response.json()
        if body.get("errors"):
            raise RuntimeError(body["errors"])
        data: dict[str, Any] = body["data"]
        return data

    def submit(self, version: str, epochs: int) -> tuple[str, float]:
        submitted_at = time.time()
        data = self.query(
            SUBMIT,
            {
                "input": {
                    "datasetVersion": version,
                    "trainer": "tabular-classifier",
                    "target": "label",
                    "hyperparameters": {"epochs": epochs, "batch_size": 16},
                }
            },
        )
        return data["submitTrainingJob"]["job"]["id"], submitted_at

    def wait(self, job_id: str, states: set[str], timeout_s: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.query(JOB, {"id": job_id})["node"]
            if job["state"] in states:
                return job
            time.sleep(0.02)
        raise TimeoutError(f"job {job_id} never reached {states}")


def prepared_platform(
    scratch: Path, poll_delay_s: float, trainer_threads: int | None = None
) -> tuple[Any, Api, str]:
    settings = {"AIAAS_WORKER_POLL_DELAY_S": str(poll_delay_s)}
    if trainer_threads is not None:
        # XLA's CPU thread pool takes every core by default; on a machine the API shares, a
        # cap leaves it room to answer.
        settings["XLA_FLAGS"] = (
            f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={trainer_threads}"
        )
    supervisor, base_url, token = start_platform(scratch, **settings)
    create_project(base_url, token)
    rows = np.random.default_rng(0).normal(size=(200, 4))
    lines = ["a,b,c,d,label"] + [
        ",".join(f"{value:.5f}" for value in row) + f",{int(row[0] > 0)}" for row in rows
    ]
    source = scratch / "latency.csv"
    source.write_text("\n".join(lines) + "\n")
    upload(base_url, token, source, "latency")
    api = Api(base_url, token)
    version = api.query(VERSION)["project"]["dataset"]["versions"]["nodes"][0]["id"]
    return supervisor, api, version


def stop(supervisor: Any) -> None:
    supervisor.terminate()
    supervisor.wait(60)


def start_latencies(scratch: Path, poll_delay_s: float, jobs: int) -> list[float]:
    supervisor, api, version = prepared_platform(scratch, poll_delay_s)
    try:
        # The first job pays for the compilation; it is not a start latency.
        first, _ = api.submit(version, 1)
        api.wait(first, {"SUCCEEDED", "FAILED"})
        latencies = []
        for _ in range(jobs):
            job_id, submitted_at = api.submit(version, 1)
            job = api.wait(job_id, {"SUCCEEDED", "FAILED"})
            started = datetime.fromisoformat(job["startedAt"]).timestamp()
            latencies.append((started - submitted_at) * 1000)
        return latencies
    finally:
        stop(supervisor)


async def subscriber(
    websocket_url: str,
    token: str,
    job_id: str,
    ready: asyncio.Event,
    latencies: list[tuple[int, float]],
) -> None:
    async with connect(
        websocket_url, subprotocols=[Subprotocol("graphql-transport-ws")], proxy=None
    ) as websocket:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await websocket.send(json.dumps(init))
        await websocket.recv()
        subscribe = {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": EVENTS, "variables": {"job": job_id}},
        }
        await websocket.send(json.dumps(subscribe))
        async for raw in websocket:
            arrived_ms = time.time() * 1000
            message = json.loads(raw)
            if message["type"] != "next":
                return
            event = message["payload"]["data"]["jobEvents"]
            if event["type"] == "state" and event["state"] == "RUNNING":
                ready.set()
            if ready.is_set() and event["type"] == "progress":
                emitted_ms = int(event["cursor"].split("-")[0])
                latencies.append((emitted_ms, arrived_ms - emitted_ms))


async def event_latencies(
    api: Api, version: str, subscribers: int, epochs: int
) -> tuple[list[float], list[float]]:
    """Every event's latency at every subscriber, and those of the events emitted once the
    subscribers have all settled in (`SETTLING_S` after the first one)."""
    job_id, _ = api.submit(version, epochs)
    websocket_url = api.base_url.replace("http", "ws", 1) + "/graphql"
    ready = asyncio.Event()
    latencies: list[tuple[int, float]] = []
    tasks = [
        asyncio.create_task(subscriber(websocket_url, api.token, job_id, ready, latencies))
        for _ in range(subscribers)
    ]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=600)
    first_ms = min(emitted for emitted, _ in latencies)
    settled = [late for emitted, late in latencies if emitted >= first_ms + SETTLING_S * 1000]
    return [late for _, late in latencies], settled


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "mean_ms": round(statistics.fmean(values), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument(
        "--event-epochs", type=int, default=2000, help="length of the job whose events stream"
    )
    parser.add_argument(
        "--trainer-threads",
        type=int,
        default=None,
        help="cap XLA's CPU threads in the worker (default: all cores)",
    )
    parser.add_argument(
        "--events-only", action="store_true", help="skip the start latencies (reported as 0)"
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aiaas-bench-") as directory:
        scratch = Path(directory)
        tuned = default = [0.0, 1.0]
        if not arguments.events_only:
            tuned = start_latencies(scratch / "tuned", 0.05, arguments.jobs)
            default = start_latencies(scratch / "arq-default", 0.5, arguments.jobs)
        supervisor, api, version = prepared_platform(
            scratch / "events", 0.05, arguments.trainer_threads
        )
        try:
            # Compiled once, so that both runs below stream a job that starts at once.
            warm, _ = api.submit(version, 1)
            api.wait(warm, {"SUCCEEDED"})
            many, many_settled = asyncio.run(
                event_latencies(api, version, arguments.subscribers, arguments.event_epochs)
            )
            one, _ = asyncio.run(event_latencies(api, version, 1, arguments.event_epochs))
        finally:
            stop(supervisor)
    start, baseline = summary(tuned), summary(default)
    fanned, single, settled = summary(many), summary(one), summary(many_settled)
    result = {
        "jobs": arguments.jobs,
        "submit_to_running_p50_ms": start["p50_ms"],
        "submit_to_running_p99_ms": start["p99_ms"],
        "arq_default_poll_submit_to_running_p50_ms": baseline["p50_ms"],
        "arq_default_poll_submit_to_running_p99_ms": baseline["p99_ms"],
        "tuned_vs_arq_default_poll_p50_ratio": round(start["p50_ms"] / baseline["p50_ms"], 3),
        "subscribers": arguments.subscribers,
        "trainer_threads": arguments.trainer_threads,
        "events_per_subscriber": len(many) // max(arguments.subscribers, 1),
        "event_to_subscribers_p50_ms": fanned["p50_ms"],
        "event_to_subscribers_p99_ms": fanned["p99_ms"],
        "settled_event_to_subscribers_p50_ms": settled["p50_ms"],
        "settled_event_to_subscribers_p99_ms": settled["p99_ms"],
        "event_to_one_subscriber_p50_ms": single["p50_ms"],
        "event_to_one_subscriber_p99_ms": single["p99_ms"],
        "many_vs_one_subscriber_p99_ratio": round(fanned["p99_ms"] / single["p99_ms"], 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
