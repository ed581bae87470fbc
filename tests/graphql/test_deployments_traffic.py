"""Traffic of deployments through GraphQL, on real trained models: canaries and their share,
version pinning, promotion and rollback, shadows, and what `updateDeploymentTraffic` refuses.
(Creation, `predict`'s refusals, deletion, compilations and drift: `test_deployments_api.py`.)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiaas.core.config import Config, build_config
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.runtimes import LoadedModel
from aiaas.core.serving.deployments import Deployment
from aiaas.core.serving.inference import INFERENCE_SERVER
from aiaas.core.serving.prediction_samples import stored_samples
from aiaas.core.serving.rollout import ROLLOUT_SUPERVISOR
from aiaas.core.training import registry as models
from aiaas.graphql.relay import from_global_id
from deployment_calls import (
    PROMOTE,
    ROLLBACK,
    TRAFFIC,
    call,
    current,
    deploy,
    gid,
    predict,
    settled,
    trained_versions,
    wine_records,
)
from support import Team, audit_mark, events_since, new_team, poll_until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """Every request sampled, so that the samples of a shadow are seen at once."""
    return build_config({**config.model_dump(), "prediction_sample_rate": 1.0})


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(
        platform, "traffic", (ProjectRole.VIEWER, ProjectRole.DEVELOPER, ProjectRole.MAINTAINER)
    )


@pytest.fixture(scope="module")
async def versions(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, models.ModelVersion]:
    return await trained_versions(platform, team, tmp_path_factory.mktemp("traffic"))


async def set_traffic(
    client: httpx.AsyncClient, team: Team, deployment_id: str, **split: Any
) -> dict[str, Any]:
    return await call(
        client,
        TRAFFIC,
        {"input": {"deployment": deployment_id, **split}},
        team.token(ProjectRole.DEVELOPER),
    )


def split_of(deployment: dict[str, Any]) -> tuple[int, int | None, int, int | None]:
    """(stable, canary, canary percent, shadow) version numbers of the deployment's traffic."""
    traffic = deployment["traffic"]
    return (
        traffic["stableVersion"]["number"],
        (traffic["canaryVersion"] or {}).get("number"),
        traffic["canaryPercent"],
        (traffic["shadowVersion"] or {}).get("number"),
    )


# What a traffic change refuses ---------------------------------------------------------------


@pytest.fixture(scope="module")
async def steady(app: Any, team: Team, versions: dict[str, models.ModelVersion]) -> dict[str, Any]:
    """A deployment of v1 that every refused change leaves as it is."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        return await deploy(client, team, "steady", versions["v1"])


REFUSED_SPLITS: dict[str, tuple[dict[str, Any], str]] = {
    # case: (the split, with version names for versions; the field the refusal names)
    "shares add up to 110": (
        {"stablePercent": 80, "canary": "v2", "canaryPercent": 30},
        "canaryPercent",
    ),
    "shares add up to 90": (
        {"stablePercent": 60, "canary": "v2", "canaryPercent": 30},
        "canaryPercent",
    ),
    "shares out of range": ({"stablePercent": 150, "canaryPercent": -50}, "stablePercent"),
    "a share without a canary": ({"stablePercent": 70, "canaryPercent": 30}, "canary"),
    "a canary without a share": ({"stablePercent": 100, "canary": "v2"}, "canaryPercent"),
    "a canary of another signature": (
        {"stablePercent": 70, "canary": "regressor", "canaryPercent": 30},
        "canary",
    ),
    "a canary of another project": (
        {"stablePercent": 70, "canary": "foreign", "canaryPercent": 30},
        "canary",
    ),
    "the stable version as canary": (
        {"stablePercent": 70, "canary": "v1", "canaryPercent": 30},
        "canary",
    ),
    "the stable version as shadow": ({"stablePercent": 100, "shadow": "v1"}, "shadow"),
    "the canary as shadow": (
        {"stablePercent": 70, "canary": "v2", "canaryPercent": 30, "shadow": "v2"},
        "shadow",
    ),
    "a shadow of other inputs": ({"stablePercent": 100, "shadow": "regressor"}, "shadow"),
    "a shadow of another project": ({"stablePercent": 100, "shadow": "foreign"}, "shadow"),
}


@pytest.mark.parametrize("case", list(REFUSED_SPLITS))
async def test_invalid_splits_are_refused_and_change_nothing(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    versions: dict[str, models.ModelVersion],
    steady: dict[str, Any],
    case: str,
) -> None:
    given, field = REFUSED_SPLITS[case]
    split = {
        key: gid("ModelVersion", versions[value].id) if key in {"canary", "shadow"} else value
        for key, value in given.items()
    }
    mark = await audit_mark(platform)
    refused = await set_traffic(client, team, steady["id"], **split)
    assert refused["__typename"] == "InvalidInputError", refused
    assert field in {error["field"] for error in refused["fieldErrors"]}, refused
    after = await current(client, team, steady["id"])
    assert after == steady
    assert await events_since(platform, mark) == [("deployment.update_traffic", "failed")]


# Canaries, pinning, promotion and rollback ----------------------------------------------------


async def test_a_new_canary_is_warmed_first_then_takes_its_share(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    versions: dict[str, models.ModelVersion],
) -> None:
    deployment = await deploy(client, team, "canaried", versions["v1"])
    mark = await audit_mark(platform)
    updating = await set_traffic(
        client,
        team,
        deployment["id"],
        stablePercent=70,
        canary=gid("ModelVersion", versions["v2"].id),
        canaryPercent=30,
    )
    assert updating["__typename"] == "DeploymentSuccess", updating
    changed = updating["deployment"]
    # v2 is not served yet: the old split serves on while it is warmed.
    assert changed["state"] == "UPDATING"
    assert split_of(changed) == (1, None, 0, None)
    assert changed["pendingTraffic"] == {
        "stablePercent": 70,
        "canaryPercent": 30,
        "stableVersion": {"number": 1},
        "canaryVersion": {"number": 2},
        "shadowVersion": None,
    }
    ready = await settled(client, team, deployment["id"])
    assert ready["state"] == "READY", ready
    assert ready["reason"] is None
    assert ready["pendingTraffic"] is None
    assert split_of(ready) == (1, 2, 30, None)
    assert ready["traffic"]["stablePercent"] == 70
    assert await events_since(platform, mark) == [
        ("deployment.update_traffic", "success"),
        ("deployment.rollout", "success"),
    ]

    platform.service(INFERENCE_SERVER)._random.seed(20240601)
    answers = []
    for _round in range(10):
        answers += await asyncio.gather(
            *(predict(client, team, deployment["id"], wine_records(1)) for _ in range(20))
        )
    assert {answer["__typename"] for answer in answers} == {"PredictSuccess"}
    answered_by = Counter((a["role"], a["modelVersion"]["number"]) for a in answers)
    assert set(answered_by) == {("stable", 1), ("canary", 2)}, answered_by
    # 30 % of 200 is 60; the bounds are over 5 standard deviations away on either side.
    assert 20 <= answered_by[("canary", 2)] <= 110, answered_by

    pinned = await predict(client, team, deployment["id"], wine_records(2), version=2)
    assert (pinned["role"], pinned["modelVersion"]) == ("canary", {"number": 2}), pinned
    pinned = await predict(client, team, deployment["id"], wine_records(2), version=1)
    assert (pinned["role"], pinned["modelVersion"]) == ("stable", {"number": 1}), pinned
    unserved = await predict(client, team, deployment["id"], wine_records(2), version=3)
    assert unserved["__typename"] == "NotFoundError", unserved

    # Rolling back drops the canary; then there is nothing left to roll back.
    mark = await audit_mark(platform)
    rolled_back = await call(
        client, ROLLBACK, {"id": deployment["id"]}, team.token(ProjectRole.DEVELOPER)
    )
    assert rolled_back["__typename"] == "DeploymentSuccess", rolled_back
    assert rolled_back["deployment"]["state"] == "READY"
    assert split_of(rolled_back["deployment"]) == (1, None, 0, None)
    assert rolled_back["deployment"]["previousStableVersion"] is None
    only_stable = await asyncio.gather(
        *(predict(client, team, deployment["id"], wine_records(1)) for _ in range(20))
    )
    assert {(a["role"], a["modelVersion"]["number"]) for a in only_stable} == {("stable", 1)}
    nothing = await call(
        client, ROLLBACK, {"id": deployment["id"]}, team.token(ProjectRole.DEVELOPER)
    )
    assert nothing["__typename"] == "ConflictError", nothing
    assert await events_since(platform, mark) == [
        ("deployment.rollback", "success"),
        ("deployment.rollback", "failed"),
    ]


async def test_promotion_makes_the_canary_stable_and_rollback_undoes_it(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    versions: dict[str, models.ModelVersion],
) -> None:
    deployment = await deploy(client, team, "promoted", versions["v1"])
    maintainer = team.token(ProjectRole.MAINTAINER)
    no_canary = await call(client, PROMOTE, {"id": deployment["id"]}, maintainer)
    assert no_canary["__typename"] == "ConflictError", no_canary
    updated = await set_traffic(
        client,
        team,
        deployment["id"],
        stablePercent=50,
        canary=gid("ModelVersion", versions["v2"].id),
        canaryPercent=50,
    )
    assert updated["__typename"] == "DeploymentSuccess", updated
    assert (await settled(client, team, deployment["id"]))["state"] == "READY"

    mark = await audit_mark(platform)
    promoted = await call(client, PROMOTE, {"id": deployment["id"]}, maintainer)
    assert promoted["__typename"] == "DeploymentSuccess", promoted
    assert promoted["deployment"]["state"] == "READY"
    assert split_of(promoted["deployment"]) == (2, None, 0, None)
    assert promoted["deployment"]["traffic"]["stablePercent"] == 100
    assert promoted["deployment"]["previousStableVersion"] == {"number": 1}
    answers = await asyncio.gather(
        *(predict(client, team, deployment["id"], wine_records(1)) for _ in range(20))
    )
    assert {(a["role"], a["modelVersion"]["number"]) for a in answers} == {("stable", 2)}
    old = await predict(client, team, deployment["id"], wine_records(1), version=1)
    assert old["__typename"] == "NotFoundError", old

    rolled_back = await call(client, ROLLBACK, {"id": deployment["id"]}, maintainer)
    assert rolled_back["__typename"] == "DeploymentSuccess", rolled_back
    assert rolled_back["deployment"]["state"] == "READY"
    assert split_of(rolled_back["deployment"]) == (1, None, 0, None)
    assert rolled_back["deployment"]["previousStableVersion"] is None
    answers = await asyncio.gather(
        *(predict(client, team, deployment["id"], wine_records(1)) for _ in range(20))
    )
    assert {(a["role"], a["modelVersion"]["number"]) for a in answers} == {("stable", 1)}
    nothing = await call(client, ROLLBACK, {"id": deployment["id"]}, maintainer)
    assert nothing["__typename"] == "ConflictError", nothing
    assert await events_since(platform, mark) == [
        ("deployment.promote", "success"),
        ("deployment.rollback", "success"),
        ("deployment.rollback", "failed"),
    ]


async def test_rolling_back_an_update_under_way_keeps_the_old_split(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    versions: dict[str, models.ModelVersion],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployment = await deploy(client, team, "reverted", versions["v1"])
    server = platform.service(INFERENCE_SERVER)
    warm = server.warm
    warming = asyncio.Event()
    release = asyncio.Event()

    async def held(deployment: Deployment, version_id: Any) -> LoadedModel:
        warming.set()
        await release.wait()
        return await warm(deployment, version_id)

    rollouts = platform.service(ROLLOUT_SUPERVISOR)
    assert rollouts is not None
    finish = rollouts._finish
    finished = asyncio.Event()

    async def observed(deployment: Deployment, failure: str | None) -> None:
        await finish(deployment, failure)
        finished.set()

    monkeypatch.setattr(server, "warm", held)
    monkeypatch.setattr(rollouts, "_finish", observed)
    mark = await audit_mark(platform)
    updating = await set_traffic(
        client,
        team,
        deployment["id"],
        stablePercent=90,
        canary=gid("ModelVersion", versions["v2"].id),
        canaryPercent=10,
    )
    assert updating["deployment"]["state"] == "UPDATING", updating
    async with asyncio.timeout(30):
        await warming.wait()
    # While the canary warms, the old split answers.
    answer = await predict(client, team, deployment["id"], wine_records(1))
    assert (answer["role"], answer["modelVersion"]) == ("stable", {"number": 1}), answer

    rolled_back = await call(
        client, ROLLBACK, {"id": deployment["id"]}, team.token(ProjectRole.DEVELOPER)
    )
    assert rolled_back["__typename"] == "DeploymentSuccess", rolled_back
    assert rolled_back["deployment"]["state"] == "READY"
    assert rolled_back["deployment"]["pendingTraffic"] is None
    assert split_of(rolled_back["deployment"]) == (1, None, 0, None)
    release.set()
    # The rollout finishes its warm-up, then finds the deployment changed under it and leaves
    # it as the user left it: no rollout event, no canary.
    async with asyncio.timeout(30):
        await finished.wait()
    after = await settled(client, team, deployment["id"])
    assert split_of(after) == (1, None, 0, None)
    assert after["pendingTraffic"] is None
    assert await events_since(platform, mark) == [
        ("deployment.update_traffic", "success"),
        ("deployment.rollback", "success"),
    ]


# Shadows --------------------------------------------------------------------------------------


async def test_a_shadow_sees_every_request_and_answers_none(
    app: Any,
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    versions: dict[str, models.ModelVersion],
    admin_token: str,
) -> None:
    deployment = await deploy(client, team, "shadowed", versions["v1"])
    mark = await audit_mark(platform)
    updating = await set_traffic(
        client,
        team,
        deployment["id"],
        stablePercent=100,
        shadow=gid("ModelVersion", versions["v2"].id),
    )
    assert updating["deployment"]["state"] == "UPDATING", updating
    ready = await settled(client, team, deployment["id"])
    assert ready["state"] == "READY", ready
    assert split_of(ready) == (1, None, 0, 2)
    assert await events_since(platform, mark) == [
        ("deployment.update_traffic", "success"),
        ("deployment.rollout", "success"),
    ]

    answers = await asyncio.gather(
        *(predict(client, team, deployment["id"], wine_records(3)) for _ in range(10))
    )
    assert {(a["role"], a["modelVersion"]["number"]) for a in answers} == {("stable", 1)}
    # Only version 1 serves callers: the shadow cannot be asked for by number.
    pinned = await predict(client, team, deployment["id"], wine_records(1), version=2)
    assert pinned["__typename"] == "NotFoundError", pinned

    _, deployment_uuid = from_global_id(deployment["id"])
    rows: list[Any] = []

    async def shadows_sampled() -> bool:
        nonlocal rows
        await platform.service(INFERENCE_SERVER).samples.flush()
        rows = await stored_samples(platform, team.project_id, deployment_uuid)
        shadows = sum(1 for row in rows if row.role == "shadow")
        return shadows >= 10

    assert await poll_until(shadows_sampled, timeout_s=30) is not None, rows
    by_role = Counter((row.role, row.version_id) for row in rows)
    assert by_role == {("stable", versions["v1"].id): 10, ("shadow", versions["v2"].id): 10}
    for row in rows:
        outputs = row.outputs
        assert outputs is not None
        assert outputs["label"] in {"c0", "c1", "c2"}
        assert set(row.inputs) == set(wine_records(1)[0])

    scraped: dict[str, dict[Any, float]] = {}
    # Scraped as an admin: the series name every project, so they need `metrics:read`.
    response = await client.get("/metrics", headers={"authorization": f"Bearer {admin_token}"})
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            scraped.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    shadowed = {
        labels: value
        for labels, value in scraped["aiaas_inference_shadow_requests_total"].items()
        if ("deployment", "shadowed") in labels
    }
    assert shadowed == {
        (
            ("answered_version", "1"),
            ("deployment", "shadowed"),
            ("outcome", "ok"),
            ("project", team.slug),
            ("version", "2"),
        ): 10.0
    }
