"""The platform on several hosts, each a Linux network namespace with its own IP
(tests/netns_hosts.py, tests/multi_host_cluster.py): a data host (PostgreSQL, Redis, an S3
gateway), two API hosts, two worker hosts and an inference host, running the real processes with
no directory in common. Everything is driven from the root namespace over the hosts' network,
through the public API.

- Replicas agree: a deployment created through API host 1 is served by the inference host, and a
  membership change made on API host 2 is enforced on API host 1 within 5 s.
- A slow network: with 20 ms added to the database link (`tc netem` on the data host's link, or,
  on a kernel without netem, the relay in front of PostgreSQL holding its answers), everything
  still works; the GraphQL latency percentiles with and without the delay are printed.
- A partition: the worker host running a job is cut off (its link down); the other worker host
  reclaims the job, and once the link is back the stale worker does not write over it.
- A host dies: every process of the worker host running a job is killed; the other host resumes
  the job from its last checkpoint, with exactly one metric row per step.

Run with `-s` to see the figures. It needs root and `ip netns`; elsewhere it is skipped, saying
why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import redis

import metric_rows
from aiaas.client import Client, DatasetVersion, Deployment, Project
from aiaas.core.event_streams import job_stream_key
from aiaas.graphql.relay import from_global_id
from multi_host_cluster import WORKER_HOSTS, Cluster, missing_programs, running_cluster
from netns_hosts import unavailable_reason
from serving_support import wine_table

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ENFORCED_WITHIN_S = 5.0
"""The issue's bound on a membership change reaching another API host."""
RECLAIM_TIMEOUT_S = 90.0
"""Claims go stale after 3 s here, a quiet transaction's locks go after 10 s, and the reconciler
runs every 15 s: far below this bound."""
JOB_TIMEOUT_S = 240.0
GRAPHQL_SAMPLES = 200
NETEM_DELAY_MS = 20
LONG_JOB = {"epochs": 400, "batch_size": 16, "patience": 0}
"""Long enough to be cut or killed mid-training, after a few checkpoints."""
SETTINGS = {
    "AIAAS_JOB_HEARTBEAT_INTERVAL_S": "0.5",
    "AIAAS_JOB_STALE_AFTER_S": "3",
    "AIAAS_CHECKPOINT_EVERY_STEPS": "10",
    "AIAAS_DEPLOYMENT_POLL_INTERVAL_S": "0.2",
    # A worker cut off mid-transaction (recording a checkpoint) leaves its job's row locked
    # until the server ends its quiet session; 10 s keeps that well inside the reclaim bound.
    "AIAAS_DATABASE_IDLE_TRANSACTION_TIMEOUT_S": "10",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = unavailable_reason() or missing_programs()
    if reason is not None:
        print(f"\nmulti-host tests skipped: {reason}")
        pytest.skip(reason)
    with running_cluster(tmp_path_factory.mktemp("multi-host"), **SETTINGS) as running:
        yield running


@pytest.fixture(scope="module")
def admin(cluster: Cluster) -> Iterator[Client]:
    with Client(cluster.url("api1"), cluster.admin_token) as client:
        yield client


@pytest.fixture(scope="module")
def project(admin: Client) -> Project:
    return admin.create_project("hosts", "Hosts")


@pytest.fixture(scope="module")
def wine(project: Project) -> DatasetVersion:
    return project.upload(wine_table(), "wine", progress=False)


# Reading the platform's state, to check what the API did -------------------------------------


def fetch(cluster: Cluster, sql: str, *arguments: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(cluster.database_url)
        try:
            return list(await connection.fetch(sql, *arguments))
        finally:
            await connection.close()

    return asyncio.run(run())


def job_row(cluster: Cluster, job_id: uuid.UUID) -> asyncpg.Record:
    rows = fetch(
        cluster, "SELECT state, attempt, claimed_by, reason FROM jobs WHERE id = $1", job_id
    )
    return rows[0]


def job_events(cluster: Cluster, job_id: uuid.UUID) -> list[dict[str, Any]]:
    with redis.Redis.from_url(cluster.redis_url) as client:
        entries = client.xrange(job_stream_key(job_id))
    return [json.loads(next(iter(fields.values()))) for _, fields in entries]


def stored_checkpoint(cluster: Cluster, job_id: uuid.UUID) -> int:
    """The step of the job's newest checkpoint completely in the object store (0: none)."""
    rows = fetch(cluster, "SELECT max(step) AS step FROM job_checkpoints WHERE job_id = $1", job_id)
    return int(rows[0]["step"] or 0)


def resumed_steps(cluster: Cluster, job_id: uuid.UUID) -> list[int]:
    """Where each run of the job started: 0 for the first, a checkpoint's step for a resume."""
    return [e["step"] for e in job_events(cluster, job_id) if e["type"] == "resumed"]


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        if value := check():
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:g} s"
        time.sleep(0.1)


def assert_one_point_per_step(cluster: Cluster, job_id: uuid.UUID) -> None:
    metric_rows.assert_one_point_per_step(fetch(cluster, metric_rows.POINTS_PER_KEY, job_id))


def reclaimed(cluster: Cluster, job_id: uuid.UUID) -> asyncpg.Record:
    """The job's row once a second run of it holds it."""
    return wait_until(
        lambda: (row := job_row(cluster, job_id))["attempt"] == 2 and row["claimed_by"] and row,
        RECLAIM_TIMEOUT_S,
        "the job reclaimed",
    )


def running_long_job(
    cluster: Cluster, project: Project, wine: DatasetVersion
) -> tuple[uuid.UUID, str, str]:
    """A long job, once it runs on a worker host and has stored at least two checkpoints; the
    host running it, and the other worker host."""
    job = project.train(wine, trainer="tabular-classifier", target="cultivar", **LONG_JOB)
    job_id = from_global_id(job.id)[1]
    wait_until(lambda: stored_checkpoint(cluster, job_id) >= 20, 120, "two stored checkpoints")
    running = cluster.worker_host_of(job_row(cluster, job_id)["claimed_by"])
    other = next(name for name in WORKER_HOSTS if name != running)
    return job_id, running, other


# GraphQL over the hosts' network ------------------------------------------------------------


def graphql(cluster: Cluster, host: str, token: str, query: str, **variables: Any) -> Any:
    response = httpx.post(
        f"{cluster.url(host)}/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


CREATE_USER = """mutation($input: CreateUserInput!) { createUser(input: $input) { __typename } }"""
LOGIN = """mutation($u: String!, $p: String!) {
  login(username: $u, password: $p) { __typename ... on LoginSuccess { token } } }"""
ADD_MEMBER = """mutation($input: ProjectMemberInput!) {
  addProjectMember(input: $input) { __typename } }"""
REMOVE_MEMBER = """mutation($input: RemoveProjectMemberInput!) {
  removeProjectMember(input: $input) { __typename } }"""
SEES_PROJECT = """query($slug: String!) { project(slug: $slug) { slug } }"""
JOBS = """query($slug: String!) { project(slug: $slug) {
  trainingJobs(first: 20) { edges { node { id state } } } } }"""


def sees(cluster: Cluster, host: str, token: str, slug: str) -> bool:
    return graphql(cluster, host, token, SEES_PROJECT, slug=slug)["project"] is not None


def v2_predict(cluster: Cluster, model: str, token: str) -> dict[str, Any]:
    """Three wine rows through the inference host's V2 REST, as JSON tensors."""
    rows = wine_table().drop_columns(["cultivar"]).slice(0, 3).to_pydict()
    inputs = [
        {"name": name, "shape": [3], "datatype": "FP64", "data": values}
        for name, values in rows.items()
    ]
    response = httpx.post(
        f"{cluster.url('inference')}/v2/models/{model}/infer",
        json={"inputs": inputs},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def percentiles_ms(cluster: Cluster, host: str, token: str) -> tuple[float, float]:
    """p50 and p99 of `GRAPHQL_SAMPLES` sequential GraphQL queries that read the database."""
    took = []
    with httpx.Client(base_url=cluster.url(host), timeout=30) as client:
        for _ in range(GRAPHQL_SAMPLES):
            started = time.perf_counter()
            response = client.post(
                "/graphql",
                json={"query": JOBS, "variables": {"slug": "hosts"}},
                headers={"authorization": f"Bearer {token}"},
            )
            took.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200 and "errors" not in response.json(), response.text
    cuts = statistics.quantiles(took, n=100)
    return cuts[49], cuts[98]


# The scenarios ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment(project: Project, wine: DatasetVersion) -> Deployment:
    """A model trained on `wine`, deployed through API host 1, once it is READY."""
    job = project.train(wine, trainer="tabular-classifier", target="cultivar", epochs=2).wait(
        progress=False
    )
    assert job.state.value == "SUCCEEDED", job
    assert job.model_version is not None
    return job.model_version.deploy("wine").wait_ready(timeout=120)


def test_replicas_agree_on_deployments_and_membership(
    cluster: Cluster, project: Project, deployment: Deployment
) -> None:
    answer = v2_predict(cluster, deployment.v2_model_name, cluster.admin_token)
    labels = next(output for output in answer["outputs"] if output["name"] == "label")
    assert len(labels["data"]) == 3 and set(labels["data"]) <= {"c0", "c1", "c2"}

    username, password = f"viewer-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    created = graphql(
        cluster,
        "api1",
        cluster.admin_token,
        CREATE_USER,
        input={"username": username, "password": password},
    )
    assert created["createUser"]["__typename"] == "CreateUserSuccess", created
    login = graphql(cluster, "api1", cluster.admin_token, LOGIN, u=username, p=password)["login"]
    assert login["__typename"] == "LoginSuccess", login
    viewer = login["token"]
    assert not sees(cluster, "api1", viewer, "hosts")

    member = {"project": project.id, "username": username}
    added = graphql(
        cluster, "api2", cluster.admin_token, ADD_MEMBER, input={**member, "role": "VIEWER"}
    )
    assert added["addProjectMember"]["__typename"] == "ProjectMemberSuccess", added
    granted_s = measured(lambda: sees(cluster, "api1", viewer, "hosts"))
    removed = graphql(cluster, "api2", cluster.admin_token, REMOVE_MEMBER, input=member)
    assert removed["removeProjectMember"]["__typename"] == "RemoveProjectMemberSuccess", removed
    revoked_s = measured(lambda: not sees(cluster, "api1", viewer, "hosts"))
    print(
        f"\nmembership change on api2 enforced on api1: granted after {granted_s * 1000:.0f} ms, "
        f"revoked after {revoked_s * 1000:.0f} ms"
    )


def measured(check: Callable[[], bool]) -> float:
    """Seconds until `check()` holds, within the issue's `ENFORCED_WITHIN_S`."""
    started = time.monotonic()
    wait_until(check, ENFORCED_WITHIN_S, "a membership change made on api2, seen on api1")
    return time.monotonic() - started


def test_a_slow_database_link_slows_the_api_but_breaks_nothing(
    cluster: Cluster, project: Project, wine: DatasetVersion, deployment: Deployment
) -> None:
    p50, p99 = percentiles_ms(cluster, "api2", cluster.admin_token)
    print(
        f"\nGraphQL, {GRAPHQL_SAMPLES} queries on api2, as is: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    with slow_data_link(cluster) as how:
        slow50, slow99 = percentiles_ms(cluster, "api2", cluster.admin_token)
        print(
            f"GraphQL, {GRAPHQL_SAMPLES} queries on api2, +{NETEM_DELAY_MS} ms ({how}): "
            f"p50 {slow50:.1f} ms, p99 {slow99:.1f} ms"
        )
        job = project.train(wine, trainer="tabular-classifier", target="cultivar", epochs=1)
        assert job.wait(progress=False).state.value == "SUCCEEDED"
        assert v2_predict(cluster, deployment.v2_model_name, cluster.admin_token)["outputs"]
    # Every query reads PostgreSQL at least once: none can answer before the delay is over.
    assert slow50 >= NETEM_DELAY_MS, (p50, slow50)


@contextlib.contextmanager
def slow_data_link(cluster: Cluster) -> Iterator[str]:
    """`NETEM_DELAY_MS` more on the database link: netem on the data host's link where the
    kernel has it, else the relay in front of PostgreSQL (`delay_relay.py`); says which."""
    data = cluster.hosts["data"]
    if data.has_netem():
        data.add_delay(NETEM_DELAY_MS)
        try:
            yield "tc netem on the data host's link"
        finally:
            data.remove_delay()
        return
    cluster.delay_database_link(NETEM_DELAY_MS)
    try:
        yield "no sch_netem in this kernel: the relay in front of PostgreSQL"
    finally:
        cluster.delay_database_link(0)


def test_a_partitioned_worker_loses_its_job_and_does_not_write_over_it(
    cluster: Cluster, project: Project, wine: DatasetVersion
) -> None:
    job_id, cut, heir = running_long_job(cluster, project, wine)

    cluster.hosts[cut].set_link(up=False)
    started = time.monotonic()
    try:
        claimed = reclaimed(cluster, job_id)
        reclaim_s = time.monotonic() - started
    finally:
        cluster.hosts[cut].set_link(up=True)
    assert cluster.worker_host_of(claimed["claimed_by"]) == heir
    wait_until(
        lambda: job_row(cluster, job_id)["state"] != "RUNNING", JOB_TIMEOUT_S, "the job ends"
    )
    # The stale worker, back on the network, learns it lost the job and ends its run of it;
    # whatever outcome it then tried to record (arq logs the one it returned), it changed nothing.
    wait_until(lambda: "claim lost" in cluster.log(cut), 60, f"{cut} notices it lost the job")
    wait_until(lambda: f"← {job_id}:run_job" in cluster.log(cut), 60, f"{cut} ends its run")
    finished = job_row(cluster, job_id)
    versions = fetch(cluster, "SELECT id FROM model_versions WHERE job_id = $1", job_id)
    resumed = resumed_steps(cluster, job_id)
    print(
        f"\npartition: job reclaimed by {heir} {reclaim_s:.1f} s after {cut} was cut off; "
        f"runs started at steps {resumed}"
    )

    assert finished["state"] == "SUCCEEDED", finished
    assert finished["attempt"] == 2
    assert len(versions) == 1
    assert resumed[0] == 0 and resumed[-1] >= 20, resumed
    assert_one_point_per_step(cluster, job_id)


def test_a_job_of_a_dead_host_resumes_on_another_from_its_last_checkpoint(
    cluster: Cluster, project: Project, wine: DatasetVersion
) -> None:
    job_id, doomed, heir = running_long_job(cluster, project, wine)

    killed = cluster.hosts[doomed].kill_everything()
    started = time.monotonic()
    assert killed and cluster.hosts[doomed].pids() == []
    # Dead, the host records nothing more: this is the newest checkpoint there will be.
    checkpointed = stored_checkpoint(cluster, job_id)
    claimed = reclaimed(cluster, job_id)
    print(f"\nhost dies: job reclaimed by {heir} {time.monotonic() - started:.1f} s after the kill")
    finished = wait_until(
        lambda: (row := job_row(cluster, job_id))["state"] != "RUNNING" and row,
        JOB_TIMEOUT_S,
        "the job ends",
    )

    resumed = resumed_steps(cluster, job_id)
    print(f"host dies: newest stored checkpoint at step {checkpointed}, runs started at {resumed}")
    assert cluster.worker_host_of(claimed["claimed_by"]) == heir
    assert finished["state"] == "SUCCEEDED", finished
    assert resumed == [0, checkpointed] and checkpointed >= 20, (resumed, checkpointed)
    assert_one_point_per_step(cluster, job_id)
