"""How fast a training job starts, and how fast its events reach many live subscribers.

Against a whole platform (`aiaas dev` on its embedded PostgreSQL and Redis, with its API and
worker processes), through the public API only:

- start latency: the time from calling `submitTrainingJob` to the job's `startedAt` (the
  worker's claim), for `--jobs` jobs one after the other, each left to finish before the next.
  Measured twice, each on a fresh platform: with the platform's worker poll delay (0.05 s) and
  with arq's own default (0.5 s), the baseline;
- event latency: `--subscribers` graphql-ws connections (each count given, 100 and 1,000 by
  default) subscribe to `jobEvents` of one running job; each event's latency is its arrival
  time at a subscriber minus its emission time, which the event's cursor carries (a Redis Stream
  id is the millisecond Redis stored it at; Redis and the bench share the machine's clock). Only
  the events emitted in the `--event-seconds` after every subscriber is in (and `SETTLING_S`
  more) count; the job is then cancelled, which ends the subscriptions. Each count is measured
  with the platform otherwise idle, and while a real training job (a wider network, in the
  platform's worker process like any job) trains on the same machine (`--trainer both`, the
  default). The baselines, in the same run and mode: as many subscribers that each send a
  document of their own (an operation name no other sends), so that the server shares nothing
  between them, as it shared nothing before issue 18; and one subscriber.

    python bench/job_latency.py [--jobs 20] [--subscribers 100,1000] [--trainer both]
    python bench/job_latency.py --events-only   # the event latencies alone

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
CANCEL = "mutation($id: ID!) { cancelTrainingJob(id: $id) { __typename } }"
SETTLING_S = 2.0
ROWS = 5000
LONGEST_EPOCHS = 10_000
"""The trainers' limit: with `ROWS` rows at 16 a step, a job that outlasts any phase (each
phase cancels its jobs when it is done)."""
TRAINER_HYPERPARAMETERS = {"batch_size": 128, "hidden_size": 1024, "hidden_layers": 4}
"""The concurrent trainer: wide enough that XLA's matrix products take the cores."""
TRAINER_WARMUP_S = 3.0
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

    def submit(
        self, version: str, epochs: int, hyperparameters: dict[str, Any] | None = None
    ) -> tuple[str, float]:
        submitted_at = time.time()
        data = self.query(
            SUBMIT,
            {
                "input": {
                    "datasetVersion": version,
                    "trainer": "tabular-classifier",
                    "target": "label",
                    "hyperparameters": {
                        "epochs": epochs,
                        "batch_size": 16,
                        "patience": 0,  # no early stop: a long job runs until cancelled
                        **(hyperparameters or {}),
                    },
                }
            },
        )
        return data["submitTrainingJob"]["job"]["id"], submitted_at

    def cancel(self, job_id: str) -> None:
        self.query(CANCEL, {"id": job_id})

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
    rows = np.random.default_rng(0).normal(size=(ROWS, 4))
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


@dataclass
class Phase:
    """One measurement: `subscribers` sockets on one job's events, with or without a trainer."""

    subscribers: int
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    job_id: asyncio.Future[str] = field(default_factory=asyncio.Future)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    connected_count: int = 0
    ready_count: int = 0
    arrivals: list[list[tuple[float, str | bytes]]] = field(default_factory=list)

    def acknowledged(self) -> None:
        self.connected_count += 1
        if self.connected_count == self.subscribers:
            self.connected.set()

    def subscribed(self) -> None:
        self.ready_count += 1
        if self.ready_count == self.subscribers:
            self.ready.set()


async def subscriber(websocket_url: str, token: str, phase: Phase, document: str) -> None:
    arrivals: list[tuple[float, str | bytes]] = []
    phase.arrivals.append(arrivals)
    async with connect(
        websocket_url,
        subprotocols=[Subprotocol("graphql-transport-ws")],
        proxy=None,
        open_timeout=300,
        ping_interval=None,  # a busy server answers late: the bench must not close on it
        max_queue=None,
    ) as websocket:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await websocket.send(json.dumps(init))
        await websocket.recv()
        phase.acknowledged()
        # Every socket subscribes once all are open, to a job submitted then: the sockets
        # join while the job has sent little, and what is measured is the live fan-out, not
        # each newcomer's replay of what happened while a thousand sockets opened.
        subscribe = {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": document, "variables": {"job": await phase.job_id}},
        }
        await websocket.send(json.dumps(subscribe))
        # The first message is the replayed QUEUED (or RUNNING) state: the socket is in. Only
        # the arrival time and the raw text are kept while the phase runs: decoding a thousand
        # sockets' messages here would take the cores the server is measured on.
        first = await websocket.recv()
        arrivals.append((time.time() * 1000, first))
        phase.subscribed()
        if json.loads(first)["type"] != "next":
            return
        async for raw in websocket:
            arrivals.append((time.time() * 1000, raw))
            if json.loads(raw)["type"] in ("complete", "error"):
                return


def phase_latencies(phase: Phase, window: tuple[float, float]) -> tuple[list[float], int]:
    """Each progress event's latency at each subscriber, for the events emitted in `window`
    (ms since the epoch); and how many subscribers were cut off with an error."""
    latencies, errors = [], 0
    for arrivals in phase.arrivals:
        for arrived_ms, raw in arrivals:
            message = json.loads(raw)
            if message["type"] != "next" or message["payload"].get("errors"):
                errors += message["type"] != "complete"
                continue
            event = message["payload"]["data"]["jobEvents"]
            emitted_ms = int(event["cursor"].split("-")[0])
            if event["type"] == "progress" and window[0] <= emitted_ms < window[1]:
                latencies.append(arrived_ms - emitted_ms)
    return latencies, errors


async def event_latencies(
    api: Api, version: str, subscribers: int, seconds: float, shared: bool
) -> tuple[list[float], int]:
    """Every progress event's latency at every subscriber, for the events emitted in the
    `seconds` that follow `SETTLING_S` after the last subscriber got its first message; the
    job (long enough to outlast them) is then cancelled, which ends every subscription."""
    websocket_url = api.base_url.replace("http", "ws", 1) + "/graphql"
    phase = Phase(subscribers)
    tasks = [
        asyncio.create_task(
            subscriber(websocket_url, api.token, phase, EVENTS if shared else own(index))
        )
        for index in range(subscribers)
    ]
    await asyncio.wait_for(phase.connected.wait(), timeout=600)
    job_id, _ = await asyncio.to_thread(api.submit, version, LONGEST_EPOCHS)
    phase.job_id.set_result(job_id)
    try:
        await asyncio.wait_for(phase.ready.wait(), timeout=600)
        start_ms = time.time() * 1000 + SETTLING_S * 1000
        await asyncio.sleep(SETTLING_S + seconds)
        window = (start_ms, start_ms + seconds * 1000)
    finally:
        await asyncio.to_thread(api.cancel, job_id)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=600)
    return phase_latencies(phase, window)


def own(index: int) -> str:
    """`EVENTS` under an operation name of its own: a document no other subscriber sends, so
    that the server shares nothing (the baseline: each subscription executed and encoded for
    its socket alone, as before issue 18)."""
    return EVENTS.replace("subscription(", f"subscription Alone{index}(", 1)


def measured(
    api: Api, version: str, subscribers: int, seconds: float, shared: bool = True
) -> dict[str, Any]:
    latencies, errors = asyncio.run(event_latencies(api, version, subscribers, seconds, shared))
    figures = {**summary(latencies), "deliveries": len(latencies), "errors": errors}
    # A phase can take minutes on a small machine: each one's figures as it ends, to stderr.
    print(f"{subscribers} {'shared' if shared else 'unshared'}: {figures}", file=sys.stderr)
    return figures


def with_trainer(api: Api, version: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`work()` while a real training job (a wider network, in the platform's worker
    process, as any job) trains on the same machine; cancelled after."""
    job_id, _ = api.submit(version, LONGEST_EPOCHS, TRAINER_HYPERPARAMETERS)
    try:
        api.wait(job_id, {"RUNNING"})
        time.sleep(TRAINER_WARMUP_S)  # past its compilation: it trains throughout the phase
        return work()
    finally:
        api.cancel(job_id)
        api.wait(job_id, {"CANCELLED", "SUCCEEDED", "FAILED"})


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    return {
        "p50_ms": round(percentile(values, 0.5), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "mean_ms": round(statistics.fmean(values), 2),
    }


def event_phases(
    api: Api,
    version: str,
    counts: list[int],
    seconds: float,
    trainer: str,
    unshared_counts: list[int],
) -> dict[str, Any]:
    """{mode: {subscribers: figures}} for the modes asked, each with the baselines of the
    same mode measured in this run: one subscriber, and, for the counts in `unshared_counts`,
    as many subscribers that share nothing ("<count>_unshared")."""
    modes = {"off": ["idle"], "on": ["trainer"], "both": ["idle", "trainer"]}[trainer]
    results: dict[str, Any] = {}
    for mode in modes:

        def work(mode: str = mode) -> dict[str, Any]:
            figures: dict[str, Any] = {}
            for count in counts:
                figures[str(count)] = shared = measured(api, version, count, seconds)
                if count in unshared_counts:
                    alone = measured(api, version, count, seconds, shared=False)
                    figures[f"{count}_unshared"] = alone
                    shared["vs_unshared_p99_ratio"] = round(shared["p99_ms"] / alone["p99_ms"], 3)
            figures["1"] = one = measured(api, version, 1, seconds)
            for count in counts:
                figures[str(count)]["vs_one_subscriber_p99_ratio"] = round(
                    figures[str(count)]["p99_ms"] / one["p99_ms"], 3
                )
            return figures

        results[mode] = with_trainer(api, version, work) if mode == "trainer" else work()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument(
        "--subscribers",
        default="100,1000",
        help="comma-separated subscriber counts, each measured in each mode",
    )
    parser.add_argument(
        "--event-seconds", type=float, default=8.0, help="how long each phase measures"
    )
    parser.add_argument(
        "--trainer",
        choices=["off", "on", "both"],
        default="both",
        help="measure idle, while a training job runs on the same machine, or both",
    )
    parser.add_argument(
        "--trainer-threads",
        type=int,
        default=None,
        help="cap XLA's CPU threads in the worker (default: all cores)",
    )
    parser.add_argument(
        "--unshared-baseline",
        default="100",
        help="the subscriber counts also measured sharing nothing (comma-separated; '' for "
        "none); not 1,000 by default: unshared, they fall further behind the longer it runs",
    )
    parser.add_argument(
        "--events-only", action="store_true", help="skip the start latencies (reported as 0)"
    )
    arguments = parser.parse_args()
    counts = [int(count) for count in arguments.subscribers.split(",")]
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
            # Compiled once, so that every phase below streams a job that starts at once.
            warm, _ = api.submit(version, 1)
            api.wait(warm, {"SUCCEEDED"})
            events = event_phases(
                api,
                version,
                counts,
                arguments.event_seconds,
                arguments.trainer,
                [int(count) for count in arguments.unshared_baseline.split(",") if count],
            )
        finally:
            stop(supervisor)
    start, baseline = summary(tuned), summary(default)
    result = {
        "jobs": arguments.jobs,
        "submit_to_running_p50_ms": start["p50_ms"],
        "submit_to_running_p99_ms": start["p99_ms"],
        "arq_default_poll_submit_to_running_p50_ms": baseline["p50_ms"],
        "arq_default_poll_submit_to_running_p99_ms": baseline["p99_ms"],
        "tuned_vs_arq_default_poll_p50_ratio": round(start["p50_ms"] / baseline["p50_ms"], 3),
        "trainer_threads": arguments.trainer_threads,
        "event_seconds": arguments.event_seconds,
        # {"idle"|"trainer": {"<subscribers>": {p50_ms, p99_ms, ..., vs_unshared_p99_ratio,
        # vs_one_subscriber_p99_ratio}, "<subscribers>_unshared": {...}, "1": {...}}}
        "event_to_subscribers": events,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
