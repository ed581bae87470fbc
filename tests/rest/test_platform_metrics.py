"""`/metrics` beyond serving: the job series (read from PostgreSQL), GraphQL operations and HTTP
requests, scraped with a `metrics-reader` token and parsed as Prometheus parses them.

Jobs run through a real arq worker in this process; GraphQL and REST requests go through the
ASGI app. The module reads the job series at every scrape (`metrics_refresh_s = 0`) and labels
at most `OPERATIONS_MAX` operation names.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config
from aiaas.core.data import datasets
from aiaas.core.errors import DatabaseUnavailableError, PermissionDeniedError
from aiaas.core.identity.access import PlatformRole, ProjectRole
from aiaas.core.identity.platform_roles import grant_platform_role
from aiaas.core.job_metrics import JOB_DURATION_BUCKETS_SECONDS, JobMetrics, read_job_snapshot
from aiaas.core.jobs import TERMINAL_STATES, JobState, enqueue_job, insert_job, jobs_by_ids
from aiaas.core.platform import Platform
from aiaas.core.training import TrainingRequest, submit_training_job
from aiaas.graphql.operation_metrics import result_outcome
from graphql import GraphQLError
from serving_support import FAST, upload_wine
from support import Team, graphql, new_account, new_team, poll_until
from sweep_support import running_worker

OPERATIONS_MAX = 6
JOB_WAIT_S = 240
"""A bound on waiting for a job to end, so that a failing test ends; not a measurement."""
POLICY_WAIT_S = 10
PROBE_KIND = "metrics-probe"
"""A job kind no worker handles: the worker fails it at once, after claiming it."""


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    return config.model_copy(
        update={"metrics_refresh_s": 0.0, "metrics_graphql_operations_max": OPERATIONS_MAX}
    )


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "platform-metrics", (ProjectRole.DEVELOPER,))


@pytest.fixture(scope="module")
async def scraper_token(platform: Platform, app: object) -> str:
    scraper = await new_account(platform, "scraper")
    await grant_platform_role(
        platform, None, username=scraper.principal.username, role=PlatformRole.METRICS_READER
    )
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:

        async def scrapes() -> bool:
            response = await client.get("/metrics", headers=_bearer(scraper.token))
            return response.status_code == 200

        assert await poll_until(scrapes, POLICY_WAIT_S) is not None
    return scraper.token


@pytest.fixture(scope="module")
async def wine(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> datasets.DatasetVersion:
    return await upload_wine(platform, team, tmp_path_factory.mktemp("wine"))


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class Scrape:
    """One parsed exposition."""

    def __init__(self, text: str) -> None:
        self.samples: list[Sample] = [
            sample for family in text_string_to_metric_families(text) for sample in family.samples
        ]

    def matching(self, name: str, **labels: str) -> Iterator[Sample]:
        for sample in self.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                yield sample

    def value(self, name: str, **labels: str) -> float:
        """The one sample of `name` with these labels (others may exist); 0 when absent."""
        found = [sample.value for sample in self.matching(name, **labels)]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else 0.0

    def label_values(self, name: str, label: str) -> set[str]:
        return {sample.labels[label] for sample in self.matching(name)}


async def scrape(client: httpx.AsyncClient, token: str) -> Scrape:
    response = await client.get("/metrics", headers=_bearer(token))
    assert response.status_code == 200, response.text
    return Scrape(response.text)


async def until_ended(platform: Platform, job_id: uuid.UUID) -> JobState:
    async def ended() -> bool:
        async with platform.metadata.acquire() as connection:
            job = (await jobs_by_ids(connection, [job_id]))[job_id]
        return job.state in TERMINAL_STATES

    assert await poll_until(ended, JOB_WAIT_S, 0.2) is not None, "the job did not end"
    async with platform.metadata.acquire() as connection:
        return (await jobs_by_ids(connection, [job_id]))[job_id].state


def assert_histogram(scrape: Scrape, name: str, count: float, **labels: str) -> None:
    """`count` observations, in buckets that only grow up to `+Inf`."""
    buckets = sorted(
        (float(sample.labels["le"]), sample.value)
        for sample in scrape.matching(f"{name}_bucket", **labels)
    )
    assert buckets, (name, labels)
    assert [value for _, value in buckets] == sorted(value for _, value in buckets)
    assert buckets[-1] == (math.inf, count)
    assert scrape.value(f"{name}_count", **labels) == count
    assert scrape.value(f"{name}_sum", **labels) > 0


# Jobs -----------------------------------------------------------------------------------------


async def test_a_training_job_shows_queued_then_in_the_counts_and_durations(
    client: httpx.AsyncClient,
    platform: Platform,
    config: Config,
    team: Team,
    wine: datasets.DatasetVersion,
    scraper_token: str,
) -> None:
    labels = {"kind": "training", "trainer": "tabular-classifier"}
    before = await scrape(client, scraper_token)
    assert before.value("aiaas_jobs", **labels, state="queued") == 0
    job = await submit_training_job(
        platform,
        team.members[ProjectRole.DEVELOPER].principal,
        TrainingRequest(
            dataset_version_id=wine.id,
            trainer="tabular-classifier",
            target="cultivar",
            hyperparameters=FAST,
            model_name=f"metrics-{uuid.uuid4().hex[:8]}",
        ),
    )

    queued = await scrape(client, scraper_token)

    assert queued.value("aiaas_jobs", **labels, state="queued") == 1
    assert queued.value("aiaas_job_queue_depth", kind="training") == 1
    assert queued.value("aiaas_job_queue_oldest_age_seconds", kind="training") > 0

    async with running_worker(config):
        assert await until_ended(platform, job.id) is JobState.SUCCEEDED
    ended = await scrape(client, scraper_token)

    assert ended.value("aiaas_jobs", **labels, state="queued") == 0
    assert ended.value("aiaas_jobs", **labels, state="succeeded") == 1
    assert ended.value("aiaas_job_queue_depth", kind="training") == 0
    assert ended.value("aiaas_job_queue_oldest_age_seconds", kind="training") == 0
    assert_histogram(ended, "aiaas_job_duration_seconds", 1, kind="training", outcome="succeeded")


async def test_a_failed_job_is_counted_and_timed_as_failed(
    client: httpx.AsyncClient, platform: Platform, config: Config, team: Team, scraper_token: str
) -> None:
    async with platform.metadata.transaction() as connection:
        job = await insert_job(
            connection, project_id=team.project_id, kind=PROBE_KIND, payload={}, created_by=None
        )
    await enqueue_job(platform, job.id)

    async with running_worker(config):
        assert await until_ended(platform, job.id) is JobState.FAILED
    ended = await scrape(client, scraper_token)

    assert ended.value("aiaas_jobs", kind=PROBE_KIND, trainer="", state="failed") == 1
    assert_histogram(ended, "aiaas_job_duration_seconds", 1, kind=PROBE_KIND, outcome="failed")
    # A failure lasting under a second sits in the first bucket already.
    first = repr(JOB_DURATION_BUCKETS_SECONDS[0])
    assert (
        ended.value(
            "aiaas_job_duration_seconds_bucket", kind=PROBE_KIND, outcome="failed", le=first
        )
        == 1
    )


async def test_the_job_series_are_read_at_most_once_per_refresh_interval(
    config: Config, platform: Platform, team: Team
) -> None:
    cached = create_platform(config.model_copy(update={"metrics_refresh_s": 300.0}))
    await cached.start(run_startup_hooks=False)
    try:
        metrics = JobMetrics(cached)
        await metrics.refresh()
        first = metrics.snapshot
        async with platform.metadata.transaction() as connection:
            job = await insert_job(
                connection, project_id=team.project_id, kind=PROBE_KIND, payload={}, created_by=None
            )
            await connection.execute(
                "UPDATE jobs SET state = 'CANCELLED', finished_at = clock_timestamp() "
                "WHERE id = $1",
                job.id,
            )

        await metrics.refresh()

        assert metrics.snapshot is first
        assert await read_job_snapshot(cached) != first  # what a read would have shown
    finally:
        await cached.stop()


# GraphQL operations and HTTP requests ----------------------------------------------------------


async def test_a_named_query_counts_under_its_name_and_an_anonymous_one_as_anonymous(
    client: httpx.AsyncClient, admin_token: str, scraper_token: str
) -> None:
    named = {"operation": "WhoAmI", "type": "query", "outcome": "ok"}
    anonymous = {"operation": "anonymous", "type": "query", "outcome": "ok"}
    before = await scrape(client, scraper_token)

    await graphql(client, "query WhoAmI { viewer { username } }", token=admin_token)
    await graphql(client, "query WhoAmI { viewer { username } }", token=admin_token)
    await graphql(client, "{ health { status } }")
    after = await scrape(client, scraper_token)

    total = "aiaas_graphql_requests_total"
    assert after.value(total, **named) - before.value(total, **named) == 2
    assert after.value(total, **anonymous) - before.value(total, **anonymous) == 1
    duration = "aiaas_graphql_request_duration_seconds_count"
    assert (
        after.value(duration, operation="WhoAmI", type="query")
        == before.value(duration, operation="WhoAmI", type="query") + 2
    )
    assert_histogram(
        after,
        "aiaas_graphql_request_duration_seconds",
        after.value(duration, operation="WhoAmI", type="query"),
        operation="WhoAmI",
        type="query",
    )


@pytest.mark.parametrize(
    ("document", "token_of", "outcome"),
    [
        ("query NoToken { viewer { username } }", None, "unauthenticated"),
        ("query NotAdmin { users { edges { node { username } } } }", "member", "forbidden"),
        ("query Broken { viewer { username ", "member", "invalid"),
        ("query Unknown { noSuchField }", "member", "invalid"),
    ],
)
async def test_an_operation_that_fails_is_labelled_with_why(
    client: httpx.AsyncClient,
    team: Team,
    scraper_token: str,
    document: str,
    token_of: str | None,
    outcome: str,
) -> None:
    token = team.token(ProjectRole.DEVELOPER) if token_of == "member" else None
    total = "aiaas_graphql_requests_total"
    before = await scrape(client, scraper_token)

    await graphql(client, document, token=token)
    after = await scrape(client, scraper_token)

    assert (
        sum(s.value for s in after.matching(total, outcome=outcome))
        - sum(s.value for s in before.matching(total, outcome=outcome))
        == 1
    )
    if outcome in ("unauthenticated", "invalid"):
        # Anyone may send these: their names never become label values.
        assert document.split()[1] not in after.label_values(total, "operation")


async def test_operation_names_beyond_the_cap_count_as_other(
    client: httpx.AsyncClient, admin_token: str, scraper_token: str
) -> None:
    total = "aiaas_graphql_requests_total"
    before = await scrape(client, scraper_token)
    named_before = before.label_values(total, "operation") - {"anonymous", "other"}
    assert len(named_before) < OPERATIONS_MAX
    new_names = [f"Probe{index}" for index in range(OPERATIONS_MAX + 2)]

    for name in [*new_names, "x" * 65]:
        await graphql(client, f"query {name} {{ health {{ status }} }}", token=admin_token)
    after = await scrape(client, scraper_token)

    named_after = after.label_values(total, "operation") - {"anonymous", "other"}
    assert len(named_after) == OPERATIONS_MAX
    admitted = OPERATIONS_MAX - len(named_before)
    assert named_after - named_before == set(new_names[:admitted])
    other = {"operation": "other", "type": "query", "outcome": "ok"}
    folded = len(new_names) - admitted + 1  # and the name too long to be a label
    assert after.value(total, **other) - before.value(total, **other) == folded


async def test_http_requests_count_by_route_template_and_status_class(
    client: httpx.AsyncClient, scraper_token: str
) -> None:
    total = "aiaas_http_requests_total"
    unauthenticated = {"route": "/metrics", "method": "GET", "status_class": "4xx"}
    unmatched = {"route": "unmatched", "method": "GET", "status_class": "4xx"}
    graphql_ok = {"route": "/graphql", "method": "POST", "status_class": "2xx"}
    before = await scrape(client, scraper_token)

    assert (await client.get("/metrics")).status_code == 401
    # Under /v1: a GET of any path outside the API's is the web portal's shell.
    unknown_path = f"/v1/no/such/{uuid.uuid4().hex}"
    assert (await client.get(unknown_path, headers=_bearer(scraper_token))).status_code == 404
    await graphql(client, "{ health { status } }")
    after = await scrape(client, scraper_token)

    for labels in (unauthenticated, unmatched, graphql_ok):
        assert after.value(total, **labels) - before.value(total, **labels) == 1, labels
    assert not any("/no/such" in route for route in after.label_values(total, "route"))


async def test_a_duration_on_a_bucket_bound_counts_in_that_bucket(
    platform: Platform, team: Team
) -> None:
    kind = f"bound-probe-{uuid.uuid4().hex[:6]}"
    durations_s = {1.0: 0, 1.000001: 1, 86400.0: 12, 86400.5: 13}  # duration: bucket index
    async with platform.metadata.transaction() as connection:
        for duration_s in durations_s:
            job = await insert_job(
                connection, project_id=team.project_id, kind=kind, payload={}, created_by=None
            )
            # now(), the transaction's time, twice: the duration is exactly the one given.
            await connection.execute(
                "UPDATE jobs SET state = 'SUCCEEDED', started_at = now(), "
                "finished_at = now() + make_interval(secs => $2) WHERE id = $1",
                job.id,
                duration_s,
            )

    snapshot = await read_job_snapshot(platform)

    buckets = sorted(row.bucket for row in snapshot.durations if row.kind == kind)
    assert buckets == sorted(durations_s.values())
    assert len(JOB_DURATION_BUCKETS_SECONDS) == 13


def test_an_unexpected_error_outweighs_every_other_in_the_outcome() -> None:
    def raised(exc: Exception) -> GraphQLError:
        return GraphQLError(str(exc), original_error=exc)

    refused = raised(PermissionDeniedError("no"))
    masked = GraphQLError("internal error", extensions={"code": "INTERNAL"})

    assert result_outcome([refused, raised(RuntimeError("bug"))]) == "error"
    assert result_outcome([masked]) == "error"  # as ProductionErrors leaves it
    assert result_outcome([raised(DatabaseUnavailableError("down")), refused]) == "unavailable"
    assert result_outcome([GraphQLError("Syntax Error")]) == "invalid"
    assert result_outcome([]) == "ok"


async def test_an_openmetrics_scrape_holds_every_family_once(
    client: httpx.AsyncClient, scraper_token: str
) -> None:
    response = await client.get(
        "/metrics",
        headers={**_bearer(scraper_token), "accept": "application/openmetrics-text; version=1.0.0"},
    )

    assert response.headers["content-type"].startswith("application/openmetrics-text")
    names = [family.name for family in openmetrics_families(response.text)]
    assert len(names) == len(set(names))
    assert {"aiaas_jobs", "aiaas_job_duration_seconds", "aiaas_graphql_requests"} <= set(names)
    assert response.text.endswith("# EOF\n")
