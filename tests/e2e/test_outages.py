"""A real `aiaas serve` whose PostgreSQL or Redis goes away mid-flight, and comes back.

The server reaches both through a TCP proxy that the test cuts (every connection closed, new
ones refused, as when the service stops) and restores on the same port. While a service it
needs is gone, every interface answers 503 with `Retry-After` and a typed code: GraphQL queries
and mutations, the REST upload, V2 inference. Never a 500, never a GraphQL 200 that hides an
internal error; a login cut short does not count against its rate limits. What needs only the
other service carries on: without Redis, a training job is still accepted, left QUEUED for the
reconciler. When the service is back, the same requests succeed again without a restart: the
server's pools reconnect by themselves, and `aiaas_ready` follows each service on `/metrics`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiaas.client import Client
from aiaas.client.errors import UnavailableError
from aiaas.core.config import Config
from aiaas.core.identity import accounts as identity
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.graphql.relay import from_global_id, to_global_id
from cuttable_proxy import CuttableProxy, cuttable
from deployment_calls import deploy
from serving_support import train_version, upload_wine
from support import (
    RunningServer,
    Team,
    new_team,
    poll_until,
    running_server,
    server_environment,
    wait_until_ready,
)
from v2_serving import wine_columns

pytestmark = pytest.mark.slow

PROJECTS = "query { projects(first: 5) { edges { node { slug } } } }"
CREATE_PROJECT = """
mutation($input: CreateProjectInput!) {
  createProject(input: $input) { __typename ... on CreateProjectSuccess { project { slug } } }
}
"""
SUBMIT = """
mutation($input: SubmitTrainingJobInput!) {
  submitTrainingJob(input: $input) { __typename ... on TrainingJobSuccess { job { id state } } }
}
"""
LOGIN = """
mutation($username: String!, $password: String!) {
  login(username: $username, password: $password) { __typename }
}
"""
PASSWORD = "a long enough password for the outages"
OUTAGE_CODES = {"SERVICE_UNAVAILABLE", "DATABASE_UNAVAILABLE", "REDIS_UNAVAILABLE"}
RECOVERY_BOUND_S = 30.0
"""How long the server may take to serve again once a service is back before the test fails;
not a speed claim (bench/soak.py measures recovery)."""


@dataclass
class Outages:
    server: RunningServer
    database: CuttableProxy
    redis: CuttableProxy
    team: Team
    deployment: str
    dataset_version: str
    username: str

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.base_url, timeout=30)

    def headers(self, role: ProjectRole = ProjectRole.OWNER) -> dict[str, str]:
        return {"authorization": f"Bearer {self.team.token(role)}"}


@pytest.fixture(scope="module")
async def outages(
    platform: Platform, config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Outages]:
    team = await new_team(platform, "outages", (ProjectRole.DEVELOPER, ProjectRole.VIEWER))
    developer = team.members[ProjectRole.DEVELOPER].principal
    wine = await upload_wine(platform, team, tmp_path_factory.mktemp("wine"))
    version = await train_version(platform, developer, wine, target="cultivar", model_name="wine")
    user = await identity.create_user(
        platform, None, username=f"login-{uuid.uuid4().hex[:8]}", password=PASSWORD
    )
    async with (
        cuttable(str(config.database_url)) as database,
        cuttable(str(config.redis_url)) as redis,
    ):
        environment = {
            **server_environment(config, AIAAS_DATA_DIR=str(config.data_dir)),
            "AIAAS_DATABASE_URL": database.url_through(str(config.database_url)),
            "AIAAS_REDIS_URL": redis.url_through(str(config.redis_url)),
        }
        log_path = tmp_path_factory.mktemp("outages") / "serve.log"
        with running_server(environment, log_path) as server:
            await wait_until_ready(server, timeout_s=60)
            async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
                deployed = await deploy(client, team, "wine", version)
            yield Outages(
                server,
                database,
                redis,
                team,
                deployed["name"],
                str(to_global_id("DatasetVersion", wine.id)),
                user.username,
            )


# The requests ---------------------------------------------------------------------------------


async def query_projects(outages: Outages) -> httpx.Response:
    async with outages.client() as client:
        return await client.post(
            "/graphql", json={"query": PROJECTS}, headers=outages.headers(ProjectRole.VIEWER)
        )


async def create_project(outages: Outages) -> httpx.Response:
    slug = f"p{uuid.uuid4().hex[:10]}"
    async with outages.client() as client:
        return await client.post(
            "/graphql",
            json={"query": CREATE_PROJECT, "variables": {"input": {"slug": slug, "name": slug}}},
            headers=outages.headers(),
        )


async def upload_dataset(outages: Outages) -> httpx.Response:
    content = b"x,y\n" + b"".join(f"{i},{uuid.uuid4().hex}\n".encode() for i in range(20))
    async with outages.client() as client:
        return await client.post(
            f"/v1/projects/{outages.team.slug}/datasets/scores/versions",
            content=content,
            headers=outages.headers(ProjectRole.DEVELOPER),
        )


async def predict(outages: Outages) -> httpx.Response:
    columns = wine_columns(0, 4)
    body = {
        "inputs": [
            {"name": name, "shape": [4], "datatype": "FP32", "data": values.tolist()}
            for name, values in columns.items()
        ]
    }
    async with outages.client() as client:
        return await client.post(
            f"/v2/models/{outages.team.slug}.{outages.deployment}/infer",
            json=body,
            headers=outages.headers(ProjectRole.VIEWER),
        )


REQUESTS = {
    "graphql query": query_projects,
    "graphql mutation": create_project,
    "rest upload": upload_dataset,
    "v2 predict": predict,
}


def succeeded(response: httpx.Response) -> bool:
    if response.status_code not in (200, 201):
        return False
    body: dict[str, Any] = response.json()
    return "errors" not in body


def outage_code(response: httpx.Response) -> str | None:
    body: dict[str, Any] = response.json()
    if "errors" in body:  # GraphQL
        codes = {error.get("extensions", {}).get("code") for error in body["errors"]}
        return codes.pop() if len(codes) == 1 else f"several: {codes}"
    error = body.get("error")
    return error.get("code") if isinstance(error, dict) else body.get("code")


def assert_unavailable(name: str, response: httpx.Response) -> None:
    assert response.status_code == 503, (name, response.status_code, response.text)
    assert int(response.headers["retry-after"]) >= 1, (name, response.headers)
    assert outage_code(response) in OUTAGE_CODES, (name, response.text)


async def assert_serving_again(outages: Outages) -> None:
    async def all_succeed() -> bool:
        for request in REQUESTS.values():
            if not succeeded(await request(outages)):
                return False
        return True

    assert await poll_until(all_succeed, RECOVERY_BOUND_S, interval_s=0.2) is not None, (
        outages.server.log()[-5000:]
    )


# The tests ------------------------------------------------------------------------------------


async def test_every_interface_serves_before_any_outage(outages: Outages) -> None:
    for name, request in REQUESTS.items():
        response = await request(outages)
        assert succeeded(response), (name, response.status_code, response.text)


@pytest.mark.parametrize("name", list(REQUESTS))
async def test_without_postgresql_every_interface_answers_503_then_recovers(
    outages: Outages, name: str
) -> None:
    await outages.database.cut()
    try:
        response = await REQUESTS[name](outages)
        assert_unavailable(name, response)
        assert outage_code(response) == "DATABASE_UNAVAILABLE", response.text
        if name.startswith("graphql"):  # a GraphQL error, as GraphQL clients read them
            assert response.json()["errors"][0]["extensions"]["retryAfter"] >= 1
    finally:
        await outages.database.restore()
    await assert_serving_again(outages)


async def test_the_sdk_raises_unavailable_while_postgresql_is_gone(outages: Outages) -> None:
    client = Client(outages.server.base_url, outages.team.token(ProjectRole.VIEWER))
    await outages.database.cut()
    try:
        with pytest.raises(UnavailableError) as raised:
            await asyncio.to_thread(client.projects)
    finally:
        await outages.database.restore()
        client.close()
    assert raised.value.code == "DATABASE_UNAVAILABLE"


async def test_without_redis_what_needs_no_redis_still_succeeds(outages: Outages) -> None:
    await outages.redis.cut()
    try:
        for name, request in REQUESTS.items():
            response = await request(outages)
            assert succeeded(response), (name, response.status_code, response.text)
    finally:
        await outages.redis.restore()


async def test_without_redis_a_training_job_is_accepted_for_the_reconciler_to_enqueue(
    outages: Outages, platform: Platform
) -> None:
    variables = {
        "input": {
            "datasetVersion": outages.dataset_version,
            "trainer": "tabular-classifier",
            "target": "cultivar",
            "hyperparameters": {"epochs": 1},
        }
    }
    await outages.redis.cut()
    try:
        async with outages.client() as client:
            response = await client.post(
                "/graphql",
                json={"query": SUBMIT, "variables": variables},
                headers=outages.headers(ProjectRole.DEVELOPER),
            )
    finally:
        await outages.redis.restore()
    assert succeeded(response), response.text
    job = response.json()["data"]["submitTrainingJob"]["job"]
    assert job["state"] == "QUEUED"
    # Committed, audited and left QUEUED in PostgreSQL: what the reconciler enqueues.
    async with platform.metadata.acquire() as connection:
        state = await connection.fetchval(
            "SELECT state FROM jobs WHERE id = $1", from_global_id(job["id"])[1]
        )
    assert state == "QUEUED"


async def login(outages: Outages) -> httpx.Response:
    variables = {"username": outages.username, "password": PASSWORD}
    async with outages.client() as client:
        return await client.post("/graphql", json={"query": LOGIN, "variables": variables})


@pytest.mark.parametrize("service", ["database", "redis"])
async def test_a_login_that_a_lost_service_cuts_short_answers_503_and_does_not_count(
    outages: Outages, config: Config, service: str
) -> None:
    """Login needs no credentials, so the outage reaches its resolver (Redis counts the
    attempts, PostgreSQL holds the password): GraphQL answers it, not the middleware."""
    proxy: CuttableProxy = getattr(outages, service)
    await proxy.cut()
    try:
        # More attempts than a user may fail: cut short by the outage, none of them counts.
        responses = [await login(outages) for _ in range(config.login_attempts_per_user + 1)]
    finally:
        await proxy.restore()
    expected = "DATABASE_UNAVAILABLE" if service == "database" else "REDIS_UNAVAILABLE"
    for response in responses:
        assert_unavailable("login", response)
        assert outage_code(response) == expected
        assert response.json()["errors"][0]["path"] == ["login"]

    async def logged_in() -> bool:
        answer = await login(outages)
        return succeeded(answer) and answer.json()["data"]["login"]["__typename"] == "LoginSuccess"

    assert await poll_until(logged_in, RECOVERY_BOUND_S, interval_s=0.5) is not None


async def test_readiness_says_which_service_is_gone(outages: Outages) -> None:
    async with outages.client() as client:
        await outages.redis.cut()
        try:
            response = await client.get("/readyz")
        finally:
            await outages.redis.restore()
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["database"] == "ok" and checks["redis"] != "ok", checks
        assert (
            await poll_until(lambda: _ready(client), RECOVERY_BOUND_S, interval_s=0.2) is not None
        )


async def readiness_series(outages: Outages, token: str) -> dict[str, float]:
    async with outages.client() as client:
        response = await client.get("/metrics", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return {
        sample.labels["check"]: sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "aiaas_ready"
        for sample in family.samples
    }


async def test_the_readiness_series_follows_each_service(
    outages: Outages, admin_token: str
) -> None:
    assert await readiness_series(outages, admin_token) == {
        "database": 1.0,
        "schema": 1.0,
        "redis": 1.0,
    }
    await outages.redis.cut()
    try:
        during = await readiness_series(outages, admin_token)
    finally:
        await outages.redis.restore()
    assert during == {"database": 1.0, "schema": 1.0, "redis": 0.0}

    async def all_ready() -> bool:
        return set((await readiness_series(outages, admin_token)).values()) == {1.0}

    assert await poll_until(all_ready, RECOVERY_BOUND_S, interval_s=0.2) is not None


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200
