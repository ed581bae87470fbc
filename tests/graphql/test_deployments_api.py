"""Deployments through GraphQL, on real trained models: the lifecycle and its events, creation
(by version or alias) and what it refuses, `predict` and what it refuses, draining on delete,
compilations, and drift. (Canaries, shadows, promotion and rollback: `test_deployments_traffic`.)
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiaas.core.config import Config, build_config
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.serving.batching import AdaptiveBatcher
from aiaas.core.serving.drift_checks import check_drift
from aiaas.core.serving.inference import INFERENCE_SERVER
from aiaas.core.training import registry as models
from aiaas.graphql.schema import build_schema
from aiaas.plugins.jax_serving import JaxLoadedModel
from deployment_calls import (
    DELETE,
    PREDICT,
    TRAFFIC,
    call,
    create,
    current,
    deploy,
    gid,
    predict,
    settled,
    trained_versions,
    wine_records,
)
from serving_support import register_bytes_as_version, wine_table
from support import (
    Team,
    audit_mark,
    data_of,
    events_since,
    graphql,
    new_team,
    poll_until,
    subscription_context,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """Every request sampled, so that the sampling is seen at once; a drift check needs fewer
    samples than in production, so that the tests send few requests."""
    return build_config(
        {**config.model_dump(), "prediction_sample_rate": 1.0, "drift_min_samples": 50}
    )


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(
        platform, "serving", (ProjectRole.VIEWER, ProjectRole.DEVELOPER, ProjectRole.MAINTAINER)
    )


@pytest.fixture(scope="module")
async def versions(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, models.ModelVersion]:
    return await trained_versions(platform, team, tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="module")
async def wine_deployment(
    app: Any, team: Team, versions: dict[str, models.ModelVersion]
) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        created = await create(
            client, team, "wine", modelVersion=gid("ModelVersion", versions["v1"].id)
        )
        assert created["__typename"] == "DeploymentSuccess", created
        return await settled(client, team, created["deployment"]["id"])


async def test_a_deployment_becomes_ready_and_predicts(
    client: httpx.AsyncClient, team: Team, wine_deployment: dict[str, Any]
) -> None:
    assert wine_deployment["state"] == "READY"
    assert wine_deployment["v2ModelName"] == "serving.wine"
    records = wine_records(5)
    answer = await call(
        client,
        PREDICT,
        {"id": wine_deployment["id"], "inputs": records},
        team.token(ProjectRole.VIEWER),
    )
    assert answer["__typename"] == "PredictSuccess", answer
    assert answer["role"] == "stable"
    assert answer["modelVersion"]["number"] == 1
    assert len(answer["outputs"]) == 5
    for output in answer["outputs"]:
        assert output["label"] in {"c0", "c1", "c2"}
        assert sum(output["probabilities"]) == pytest.approx(1, abs=1e-4)


async def test_deployment_events_replay_the_lifecycle(
    platform: Platform, team: Team, wine_deployment: dict[str, Any]
) -> None:
    schema = build_schema(platform)
    context = await subscription_context(platform, team.token(ProjectRole.VIEWER), "events")
    subscription = await schema.subscribe(
        "subscription($id: ID!) { deploymentEvents(deploymentId: $id) { cursor type state } }",
        variable_values={"id": wine_deployment["id"]},
        context_value=context,
    )
    assert isinstance(subscription, AsyncIterator)
    states = []
    async for result in subscription:
        assert result.errors is None, result.errors
        states.append(result.data["deploymentEvents"]["state"])
        if states[-1] == "READY":
            break
    await subscription.aclose()
    assert states == ["CREATING", "WARMING", "READY"]


# Helpers of the tests below ------------------------------------------------------------------


async def deployment_count(platform: Platform, project_id: uuid.UUID) -> int:
    async with platform.metadata.acquire() as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM deployments WHERE project_id = $1", project_id
        )
    return count


Scraped = dict[str, dict[tuple[tuple[str, str], ...], float]]
"""{sample name: {its labels, sorted: value}}"""


async def scrape(app: Any, client: httpx.AsyncClient, token: str) -> Scraped:
    """`GET /metrics` as {sample name: {sorted labels: value}}, drift re-read at once, scraped
    with the token of a caller holding `metrics:read`."""
    app.state.drift_refreshed_at = 0.0
    response = await client.get("/metrics", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    found: Scraped = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


def series_of(
    scraped: Scraped, name: str, **labels: str
) -> dict[tuple[tuple[str, str], ...], float]:
    """The series of `name` whose labels include `labels`."""
    return {
        key: value
        for key, value in scraped.get(name, {}).items()
        if set(labels.items()) <= set(key)
    }


async def user_events_since(platform: Platform, mark: int) -> list[tuple[str, str]]:
    """`events_since`, less those of the rollouts that run beside the test."""
    return [
        event for event in await events_since(platform, mark) if event[0] != "deployment.rollout"
    ]


# Creating, and what creation refuses -------------------------------------------------------


async def test_a_deployment_from_a_model_alias_serves_the_aliased_version(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    versions: dict[str, models.ModelVersion],
) -> None:
    moved = await call(
        client,
        """mutation($input: SetModelAliasInput!) { setModelAlias(input: $input) { __typename } }""",
        {"input": {"version": gid("ModelVersion", versions["v2"].id), "alias": "production"}},
        team.token(ProjectRole.MAINTAINER),
    )
    assert moved["__typename"] == "SetModelAliasSuccess", moved
    mark = await audit_mark(platform)
    created = await create(
        client,
        team,
        "aliased",
        model=gid("Model", versions["v2"].model_id),
        alias="production",
    )
    assert created["__typename"] == "DeploymentSuccess", created
    deployment = created["deployment"]
    assert deployment["state"] == "CREATING"
    assert deployment["sourceAlias"] == "production"
    assert deployment["traffic"]["stableVersion"] == {"number": versions["v2"].number}
    assert await events_since(platform, mark) == [("deployment.create", "success")]
    # Moving the alias afterwards does not move the deployment: it keeps the version it got.
    await models.set_model_alias(
        platform, team.members[ProjectRole.MAINTAINER].principal, versions["v1"].id, "production"
    )
    rolled_out = await settled(client, team, deployment["id"])
    assert rolled_out["state"] == "READY", rolled_out
    assert rolled_out["traffic"]["stableVersion"] == {"number": versions["v2"].number}
    answer = await predict(client, team, deployment["id"], wine_records(2))
    assert answer["__typename"] == "PredictSuccess", answer
    assert answer["modelVersion"] == {"number": versions["v2"].number}
    stopped = await call(
        client, DELETE, {"id": deployment["id"]}, team.token(ProjectRole.MAINTAINER)
    )
    assert stopped["deployment"]["state"] == "STOPPED", stopped


REFUSED_CREATIONS: dict[str, tuple[dict[str, Any], str]] = {
    # case: (the input besides the name, "v1" and "model" standing for their ids; the field
    # that the refusal names)
    "invalid name": ({"name": "Not_A_Name", "modelVersion": "v1"}, "name"),
    "name too long": ({"name": "a" * 64, "modelVersion": "v1"}, "name"),
    "unknown runtime": ({"modelVersion": "v1", "runtime": "tensorrt"}, "runtime"),
    "batch size 0": ({"modelVersion": "v1", "maxBatchSize": 0}, "maxBatchSize"),
    "batch size 5000": ({"modelVersion": "v1", "maxBatchSize": 5000}, "maxBatchSize"),
    "negative wait": ({"modelVersion": "v1", "maxWaitMs": -1}, "maxWaitMs"),
    "queue below a batch": (
        {"modelVersion": "v1", "maxBatchSize": 32, "maxQueueRows": 31},
        "maxQueueRows",
    ),
    "model without alias": ({"model": "model"}, "modelVersion"),
    "version and alias both": (
        {"modelVersion": "v1", "model": "model", "alias": "production"},
        "modelVersion",
    ),
    "unknown alias": ({"model": "model", "alias": "nowhere"}, "alias"),
}


@pytest.mark.parametrize("case", list(REFUSED_CREATIONS))
async def test_invalid_creations_are_refused_and_create_nothing(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    versions: dict[str, models.ModelVersion],
    case: str,
) -> None:
    given, field = REFUSED_CREATIONS[case]
    references = {
        "v1": gid("ModelVersion", versions["v1"].id),
        "model": gid("Model", versions["v1"].model_id),
    }
    fields = {key: references.get(value, value) for key, value in given.items()}
    name = fields.pop("name", f"refused-{uuid.uuid4().hex[:8]}")
    before = await deployment_count(platform, team.project_id)
    mark = await audit_mark(platform)
    refused = await create(client, team, name, **fields)
    assert refused["__typename"] == "InvalidInputError", refused
    assert field in {error["field"] for error in refused["fieldErrors"]}, refused
    assert await deployment_count(platform, team.project_id) == before
    assert await user_events_since(platform, mark) == [("deployment.create", "failed")]


async def test_a_deployment_naming_no_model_is_refused(
    client: httpx.AsyncClient, platform: Platform, team: Team
) -> None:
    """Naming no version and no model leaves no project to authorize in: the answer is the one
    for an object the caller cannot see, and nothing is created."""
    before = await deployment_count(platform, team.project_id)
    mark = await audit_mark(platform)
    refused = await create(client, team, "nothing")
    assert refused["__typename"] == "NotFoundError", refused
    assert await deployment_count(platform, team.project_id) == before
    assert await events_since(platform, mark) == [("graphql.createDeployment", "failed")]


async def test_a_version_of_another_project_is_not_found_and_the_attempt_audited(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    versions: dict[str, models.ModelVersion],
) -> None:
    foreign = versions["foreign"]
    async with platform.metadata.acquire() as connection:
        before = await connection.fetchval("SELECT count(*) FROM deployments")
    mark = await audit_mark(platform)
    refused = await create(client, team, "stolen", modelVersion=gid("ModelVersion", foreign.id))
    assert refused["__typename"] == "NotFoundError", refused
    async with platform.metadata.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM deployments") == before
        project_of_event = await connection.fetchval(
            "SELECT project_id FROM audit_events WHERE id > $1", mark
        )
    assert await events_since(platform, mark) == [("graphql.createDeployment", "denied")]
    # Filed under the project it was aimed at, for that project's owners to see.
    assert project_of_event == foreign.project_id


async def test_a_live_name_is_taken_and_a_stopped_one_free(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    versions: dict[str, models.ModelVersion],
) -> None:
    version = gid("ModelVersion", versions["v1"].id)
    first = await create(client, team, "twice", modelVersion=version)
    assert first["__typename"] == "DeploymentSuccess", first
    before = await deployment_count(platform, team.project_id)
    mark = await audit_mark(platform)
    again = await create(client, team, "twice", modelVersion=version)
    assert again["__typename"] == "ConflictError", again
    assert await deployment_count(platform, team.project_id) == before
    # The first one's rollout may be writing its own event meanwhile.
    assert await user_events_since(platform, mark) == [("deployment.create", "failed")]
    stopped = await call(
        client, DELETE, {"id": first["deployment"]["id"]}, team.token(ProjectRole.MAINTAINER)
    )
    assert stopped["deployment"]["state"] == "STOPPED", stopped
    reused = await create(client, team, "twice", modelVersion=version)
    assert reused["__typename"] == "DeploymentSuccess", reused
    assert reused["deployment"]["id"] != first["deployment"]["id"]
    assert (await settled(client, team, reused["deployment"]["id"]))["state"] == "READY"
    # The stopped one stayed stopped: its rollout, if it was under way, did not revive it.
    assert (await current(client, team, first["deployment"]["id"]))["state"] == "STOPPED"
    await call(
        client, DELETE, {"id": reused["deployment"]["id"]}, team.token(ProjectRole.MAINTAINER)
    )


# What predict refuses -----------------------------------------------------------------------


def refused_records() -> dict[str, tuple[list[dict[str, Any]], str]]:
    """case: (records, a field the refusal must name)"""
    good = wine_records(3)
    return {
        "unknown input": ([{**good[0], "vintage": 1999}], "vintage"),
        "missing input": ([{k: v for k, v in good[0].items() if k != "alcohol"}], "alcohol"),
        "string for a float": ([{**good[0], "alcohol": "strong"}], "alcohol"),
        "overflows float32": ([good[0], {**good[1], "alcohol": 1e39}], "alcohol"),
        "records unlike each other": ([good[0], {"alcohol": 13.0}], "inputs.1"),
        # More than the default maxQueueRows, 16 batches of 32: one error for the request.
        "more rows than a request may have": (wine_records(178) * 3, "inputs"),
    }


@pytest.mark.parametrize("case", list(refused_records()))
async def test_predict_refuses_inputs_that_do_not_fit_the_signature(
    client: httpx.AsyncClient, team: Team, wine_deployment: dict[str, Any], case: str
) -> None:
    records, field = refused_records()[case]
    refused = await predict(client, team, wine_deployment["id"], records)
    assert refused["__typename"] == "InvalidInputError", refused
    assert field in {error["field"] for error in refused["fieldErrors"]}, refused


async def test_predict_on_an_unknown_deployment_is_not_found(
    client: httpx.AsyncClient, team: Team
) -> None:
    refused = await predict(client, team, gid("Deployment", uuid.uuid4()), wine_records(1))
    assert refused["__typename"] == "NotFoundError", refused


async def junk_version(
    platform: Platform, team: Team, like: models.ModelVersion
) -> models.ModelVersion:
    """A version registered as a finished job registers one, whose bundle is no model: its
    rollout fails."""
    return await register_bytes_as_version(
        platform,
        team.members[ProjectRole.DEVELOPER].principal,
        like.dataset_version_id,
        b"not a model bundle",
        model_name="junk",
        like=like,
    )


async def test_a_failed_rollout_leaves_a_deployment_that_refuses_predictions(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    versions: dict[str, models.ModelVersion],
) -> None:
    junk = await junk_version(platform, team, versions["v1"])
    mark = await audit_mark(platform)
    created = await create(client, team, "junk", modelVersion=gid("ModelVersion", junk.id))
    assert created["__typename"] == "DeploymentSuccess", created
    failed = await settled(client, team, created["deployment"]["id"])
    assert failed["state"] == "FAILED", failed
    assert failed["reason"], failed
    assert await events_since(platform, mark) == [
        ("deployment.create", "success"),
        ("deployment.rollout", "success"),
    ]
    refused = await predict(client, team, failed["id"], wine_records(1))
    assert refused["__typename"] == "ConflictError", refused
    assert refused["code"] == "DEPLOYMENT_NOT_READY", refused
    assert "FAILED" in refused["message"], refused
    not_now = await call(
        client,
        TRAFFIC,
        {"input": {"deployment": failed["id"], "stablePercent": 100}},
        team.token(ProjectRole.DEVELOPER),
    )
    assert not_now["__typename"] == "ConflictError", not_now
    stopped = await call(client, DELETE, {"id": failed["id"]}, team.token(ProjectRole.MAINTAINER))
    assert stopped["deployment"]["state"] == "STOPPED", stopped


# Deleting drains ------------------------------------------------------------------------------


async def test_deleting_answers_every_accepted_prediction_then_no_more(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    versions: dict[str, models.ModelVersion],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Batches of 4 rows, and a model held back until the deletion has begun: 16 of the 20
    # requests are still queued when their queue closes. Those are what draining is about.
    deployment = await deploy(client, team, "drained", versions["v1"], maxBatchSize=4)
    accepted = 0
    closing = asyncio.Event()
    gate = threading.Event()
    submit_checked = AdaptiveBatcher.submit_checked
    close = AdaptiveBatcher.close
    predict_batch = JaxLoadedModel.predict_batch

    async def counted(self: AdaptiveBatcher, checked: dict[str, Any]) -> dict[str, Any]:
        nonlocal accepted
        accepted += 1
        return await submit_checked(self, checked)

    async def observed_close(self: AdaptiveBatcher, drain: bool = True) -> None:
        closing.set()
        await close(self, drain)

    def held(self: JaxLoadedModel, columns: dict[str, Any]) -> dict[str, Any]:
        gate.wait(timeout=30)
        return predict_batch(self, columns)

    monkeypatch.setattr(AdaptiveBatcher, "submit_checked", counted)
    monkeypatch.setattr(AdaptiveBatcher, "close", observed_close)
    monkeypatch.setattr(JaxLoadedModel, "predict_batch", held)
    try:
        requests = [
            asyncio.create_task(predict(client, team, deployment["id"], wine_records(1)))
            for _ in range(20)
        ]

        async def all_accepted() -> bool:
            return accepted == 20

        assert await poll_until(all_accepted, timeout_s=30, interval_s=0.005) is not None
        assert not any(request.done() for request in requests)
        mark = await audit_mark(platform)
        deleting = asyncio.create_task(
            call(client, DELETE, {"id": deployment["id"]}, team.token(ProjectRole.MAINTAINER))
        )
        async with asyncio.timeout(30):
            await closing.wait()
    finally:
        gate.set()
    stopped = await deleting
    assert stopped["__typename"] == "DeploymentSuccess", stopped
    assert stopped["deployment"]["state"] == "STOPPED"
    answers = await asyncio.gather(*requests)
    assert [answer["__typename"] for answer in answers] == ["PredictSuccess"] * 20, answers
    assert await events_since(platform, mark) == [("deployment.delete", "success")]
    after = await predict(client, team, deployment["id"], wine_records(1))
    assert after["__typename"] == "NotFoundError", after
    again = await call(client, DELETE, {"id": deployment["id"]}, team.token(ProjectRole.MAINTAINER))
    assert again["__typename"] == "ConflictError", again

    schema = build_schema(platform)
    context = await subscription_context(platform, team.token(ProjectRole.VIEWER), "stopped")
    subscription = await schema.subscribe(
        "subscription($id: ID!) { deploymentEvents(deploymentId: $id) { type state } }",
        variable_values={"id": deployment["id"]},
        context_value=context,
    )
    assert isinstance(subscription, AsyncIterator)
    states = []
    async with asyncio.timeout(10):
        async for result in subscription:  # ends by itself: the deployment is STOPPED
            assert result.errors is None, result.errors
            states.append(result.data["deploymentEvents"]["state"])
    assert states[0] == "CREATING"
    assert states[-1] == "STOPPED"
    assert states.count("STOPPED") == 1


# Compilations ---------------------------------------------------------------------------------


async def test_warm_up_compiles_every_bucket_so_serving_compiles_nothing(
    app: Any,
    client: httpx.AsyncClient,
    team: Team,
    versions: dict[str, models.ModelVersion],
    admin_token: str,
) -> None:
    # A batch limit of its own, so that the model is loaded (and warmed) for this test alone.
    deployment = await deploy(client, team, "compiled", versions["v1"], maxBatchSize=40)
    labels = {"deployment": "compiled", "version": str(versions["v1"].number), "role": "stable"}
    first = await predict(client, team, deployment["id"], wine_records(1))
    assert first["__typename"] == "PredictSuccess", first
    warmed = series_of(
        await scrape(app, client, admin_token), "aiaas_inference_compilations_total", **labels
    )
    assert len(warmed) == 1, warmed
    # One executable per bucket (1, 2, 4, 8, 16, 32, 40), all made before READY.
    assert list(warmed.values()) == [7.0]
    for rows in (1, 3, 7, 32, 40, 5, 17):
        answer = await predict(client, team, deployment["id"], wine_records(rows))
        assert answer["__typename"] == "PredictSuccess", answer
        assert len(answer["outputs"]) == rows
    served = series_of(
        await scrape(app, client, admin_token), "aiaas_inference_compilations_total", **labels
    )
    assert served == warmed


# Drift ------------------------------------------------------------------------------------------

DRIFT = """
query($id: ID!) {
  node(id: $id) {
    ... on Deployment {
      drift { sampleCount maxPsi threshold alert modelVersion { number }
              features { feature psi sampleCount } }
    }
  }
}
"""


async def drift_of(
    client: httpx.AsyncClient, team: Team, deployment_id: str
) -> list[dict[str, Any]]:
    node = data_of(
        await graphql(client, DRIFT, {"id": deployment_id}, token=team.token(ProjectRole.VIEWER))
    )["node"]
    reports: list[dict[str, Any]] = node["drift"]
    return reports


async def predict_one_by_one(
    client: httpx.AsyncClient, team: Team, deployment_id: str, records: list[dict[str, Any]]
) -> None:
    """One request per record, so that each record is sampled (one row of each request is)."""
    for start in range(0, len(records), 16):
        answers = await asyncio.gather(
            *(
                predict(client, team, deployment_id, [record])
                for record in records[start : start + 16]
            )
        )
        assert {answer["__typename"] for answer in answers} == {"PredictSuccess"}, answers


async def test_drift_reports_tell_training_like_inputs_from_shifted_ones(
    app: Any,
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    versions: dict[str, models.ModelVersion],
    admin_token: str,
) -> None:
    calm = await deploy(client, team, "calm", versions["v1"])
    shifted = await deploy(client, team, "shifted", versions["v1"])
    table = wine_table().drop_columns(["cultivar"])
    # Exactly the training rows: the samples have the training distribution.
    await predict_one_by_one(client, team, calm["id"], table.to_pylist())
    deviations = {name: float(np.std(table.column(name).to_numpy())) for name in table.column_names}
    moved = [
        {name: value + 5 * deviations[name] for name, value in row.items()}
        for row in table.slice(0, 60).to_pylist()
    ]
    await predict_one_by_one(client, team, shifted["id"], moved)
    await platform.service(INFERENCE_SERVER).samples.flush()
    await check_drift(platform)

    [report] = await drift_of(client, team, calm["id"])
    assert report["modelVersion"] == {"number": versions["v1"].number}
    assert report["sampleCount"] == table.num_rows
    assert report["alert"] is False, report
    assert {feature["feature"] for feature in report["features"]} == set(table.column_names)
    for feature in report["features"]:
        assert feature["sampleCount"] == table.num_rows
        assert feature["psi"] is not None
        assert 0 <= feature["psi"] < 0.01, feature
    assert report["maxPsi"] == max(feature["psi"] for feature in report["features"])

    [drifted] = await drift_of(client, team, shifted["id"])
    assert drifted["sampleCount"] == len(moved)
    assert drifted["alert"] is True, drifted
    assert drifted["maxPsi"] > drifted["threshold"] == platform.config.drift_psi_threshold
    assert all(feature["psi"] > drifted["threshold"] for feature in drifted["features"]), drifted

    scraped = await scrape(app, client, admin_token)
    calm_psi = series_of(scraped, "aiaas_inference_feature_drift_psi", deployment="calm")
    shifted_psi = series_of(scraped, "aiaas_inference_feature_drift_psi", deployment="shifted")
    assert len(calm_psi) == len(shifted_psi) == table.num_columns
    assert max(calm_psi.values()) < 0.01
    assert min(shifted_psi.values()) > drifted["threshold"]
    alerts = series_of(scraped, "aiaas_inference_drift_alert", project=team.slug)
    assert alerts[(("deployment", "calm"), ("project", team.slug), ("version", "1"))] == 0.0
    assert alerts[(("deployment", "shifted"), ("project", team.slug), ("version", "1"))] == 1.0
    for deployment in (calm, shifted):
        await call(client, DELETE, {"id": deployment["id"]}, team.token(ProjectRole.MAINTAINER))
