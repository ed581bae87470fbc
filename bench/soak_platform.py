"""The platform that bench/soak.py runs and restarts under load: its own PostgreSQL and Redis
(the embedded ones `aiaas dev` runs, on free loopback ports), `aiaas serve` and `aiaas worker`
processes, and the wine classifier it deploys through the API to predict from."""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
from sklearn.datasets import load_wine  # type: ignore[import-untyped]

from aiaas.embedded.postgres import EmbeddedPostgres
from aiaas.embedded.processes import Child
from aiaas.embedded.redis import EmbeddedRedis

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
TRAINING = {"epochs": 2, "batch_size": 32, "hidden_size": 16, "hidden_layers": 1}

CREATE_PROJECT = 'mutation { createProject(input: {slug: "soak", name: "Soak"}) { __typename } }'
SUBMIT = """
mutation($input: SubmitTrainingJobInput!) {
  submitTrainingJob(input: $input) { __typename ... on TrainingJobSuccess { job { id } } }
}
"""
JOB = "query($id: ID!) { node(id: $id) { ... on TrainingJob { state modelVersion { id } } } }"
CREATE_DEPLOYMENT = """
mutation($input: CreateDeploymentInput!) {
  createDeployment(input: $input) { __typename ... on DeploymentSuccess { deployment { id } } }
}
"""
DEPLOYMENT = "query($id: ID!) { node(id: $id) { ... on Deployment { state reason } } }"

# The platform's processes ---------------------------------------------------------------------


@dataclass
class Services:
    """The embedded PostgreSQL and Redis this soak owns, restartable on the same port and data."""

    data_dir: Path
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    postgres_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    redis_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    postgres_child: Child | None = None
    redis_child: Child | None = None
    database_url: str = ""
    redis_url: str = ""

    @classmethod
    def in_dir(cls, data_dir: Path) -> Services:
        return cls(data_dir, EmbeddedPostgres(data_dir), EmbeddedRedis(data_dir))

    async def start_postgres(self) -> None:
        self.postgres.initialize(self.postgres_password)
        self.postgres_child, self.database_url = await self.postgres.start(self.postgres_password)

    async def start_redis(self) -> None:
        self.redis_child, self.redis_url = await self.redis.start(self.redis_password)

    async def stop_postgres(self) -> None:
        assert self.postgres_child is not None
        await self.postgres_child.stop(30)

    async def stop_redis(self) -> None:
        assert self.redis_child is not None
        await self.redis_child.stop(30)

    async def stop(self) -> None:
        for child in (self.redis_child, self.postgres_child):
            if child is not None and child.process.returncode is None:
                await child.stop(30)


def spawn_aiaas(
    arguments: list[str], environment: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "aiaas", *arguments],
            env=environment,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def until_ready(client: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("aiaas serve exited while starting")
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError("aiaas serve was not ready within 120 s")


# The deployment to predict from ---------------------------------------------------------------


def wine_csv() -> tuple[bytes, list[str]]:
    wine = load_wine()
    features = [name.replace("/", "_") for name in wine.feature_names]
    table = pa.table(
        {
            **{name: wine.data[:, i] for i, name in enumerate(features)},
            "cultivar": [f"c{label}" for label in wine.target],
        }
    )
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue(), features


async def graphql(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}})
    body: dict[str, Any] = response.json()
    if response.status_code != 200 or "errors" in body:
        raise RuntimeError(f"GraphQL answered {response.status_code}: {body}")
    data: dict[str, Any] = body["data"]
    return data


async def until_state(
    client: httpx.AsyncClient, query: str, node_id: str, timeout_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        node: dict[str, Any] = (await graphql(client, query, {"id": node_id}))["node"]
        if node["state"] in TERMINAL | {"READY"}:
            return node
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{node_id} did not settle within {timeout_s:g} s")


@dataclass(frozen=True)
class Deployed:
    dataset_version: str
    model_version: str
    infer_path: str
    infer_body: dict[str, Any]


async def deploy_wine(client: httpx.AsyncClient) -> Deployed:
    await graphql(client, CREATE_PROJECT)
    content, features = wine_csv()
    uploaded = await client.post("/v1/projects/soak/datasets/wine/versions", content=content)
    uploaded.raise_for_status()
    dataset_version = str(uploaded.json()["version"]["id"])
    submitted = await graphql(client, SUBMIT, {"input": training_input(dataset_version)})
    job = await until_state(client, JOB, submitted["submitTrainingJob"]["job"]["id"], 600)
    if job["state"] != "SUCCEEDED":
        raise RuntimeError(f"the first training job ended {job['state']}")
    model_version = job["modelVersion"]["id"]
    created = await graphql(
        client, CREATE_DEPLOYMENT, {"input": {"name": "wine", "modelVersion": model_version}}
    )
    deployment = created["createDeployment"]["deployment"]["id"]
    ready = await until_state(client, DEPLOYMENT, deployment, 600)
    if ready["state"] != "READY":
        raise RuntimeError(f"the deployment is {ready['state']}: {ready['reason']}")
    wine = load_wine()
    body = {
        "inputs": [
            {"name": name, "shape": [1], "datatype": "FP32", "data": [float(wine.data[0, i])]}
            for i, name in enumerate(features)
        ]
    }
    return Deployed(dataset_version, model_version, "/v2/models/soak.wine/infer", body)


def training_input(dataset_version: str) -> dict[str, Any]:
    return {
        "datasetVersion": dataset_version,
        "trainer": "tabular-classifier",
        "target": "cultivar",
        "hyperparameters": TRAINING,
    }
