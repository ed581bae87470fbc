"""GraphQL of deployments, shared by the test modules that deploy real trained models: the
versions they deploy, the documents they send, and the calls that wait for a rollout."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.serving.drift_checks import check_drift
from aiaas.core.serving.inference import INFERENCE_SERVER
from aiaas.core.training import registry as models
from aiaas.graphql.relay import to_global_id
from serving_support import diabetes_table, train_version, upload, wine_table
from support import Team, data_of, graphql, new_team, poll_until


async def trained_versions(
    platform: Platform, team: Team, directory: Path
) -> dict[str, models.ModelVersion]:
    """Two versions of a wine classifier, a regressor with another signature, and a version of
    another project."""
    developer = team.members[ProjectRole.DEVELOPER].principal
    wine = await upload(platform, developer, team.project_id, wine_table(), "wine", directory)
    diabetes = await upload(
        platform, developer, team.project_id, diabetes_table(), "diabetes", directory
    )
    found = {
        "v1": await train_version(
            platform, developer, wine, target="cultivar", model_name="wine", seed=0
        ),
        "v2": await train_version(
            platform, developer, wine, target="cultivar", model_name="wine", seed=1
        ),
        "regressor": await train_version(
            platform,
            developer,
            diabetes,
            target="progression",
            model_name="diabetes",
            trainer="tabular-regressor",
        ),
    }
    other = await new_team(platform, "elsewhere", (ProjectRole.DEVELOPER,))
    other_developer = other.members[ProjectRole.DEVELOPER].principal
    other_wine = await upload(
        platform, other_developer, other.project_id, wine_table(), "wine", directory
    )
    found["foreign"] = await train_version(
        platform, other_developer, other_wine, target="cultivar", model_name="wine"
    )
    return found


def gid(type_name: str, object_id: Any) -> str:
    return str(to_global_id(type_name, object_id))


DEPLOYMENT_FIELDS = """
  id name state reason generation v2ModelName maxBatchSize maxWaitMs maxQueueRows sourceAlias
  traffic { stablePercent canaryPercent stableVersion { number } canaryVersion { number }
            shadowVersion { number } }
  pendingTraffic { stablePercent canaryPercent stableVersion { number }
                   canaryVersion { number } shadowVersion { number } }
  previousStableVersion { number }
"""

RESULT = f"""
  __typename
  ... on DeploymentSuccess {{ deployment {{ {DEPLOYMENT_FIELDS} }} }}
  ... on InvalidInputError {{ message fieldErrors {{ field message }} }}
  ... on NotFoundError {{ message }}
  ... on ConflictError {{ message }}
"""

CREATE = (
    f"mutation($input: CreateDeploymentInput!) {{ createDeployment(input: $input) {{ {RESULT} }} }}"
)
TRAFFIC = (
    "mutation($input: UpdateDeploymentTrafficInput!) "
    f"{{ updateDeploymentTraffic(input: $input) {{ {RESULT} }} }}"
)
PROMOTE = f"mutation($id: ID!) {{ promoteDeployment(deployment: $id) {{ {RESULT} }} }}"
ROLLBACK = f"mutation($id: ID!) {{ rollbackDeployment(deployment: $id) {{ {RESULT} }} }}"
DELETE = f"mutation($id: ID!) {{ deleteDeployment(deployment: $id) {{ {RESULT} }} }}"
DEPLOYMENT = (
    f"query($id: ID!) {{ node(id: $id) {{ ... on Deployment {{ {DEPLOYMENT_FIELDS} }} }} }}"
)
PREDICT = """
mutation($id: ID!, $inputs: [JSON!]!, $version: Int) {
  predict(deployment: $id, inputs: $inputs, version: $version) {
    __typename
    ... on PredictSuccess { role outputs modelVersion { number } }
    ... on InvalidInputError { message fieldErrors { field message } }
    ... on NotFoundError { message }
    ... on ConflictError { message code }
    ... on UnavailableError { message code retryAfterSeconds }
  }
}
"""


async def call(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str
) -> dict[str, Any]:
    data = data_of(await graphql(client, query, variables, token=token))
    result: dict[str, Any] = next(iter(data.values()))
    return result


def wine_records(count: int, shift: float = 0.0) -> list[dict[str, float]]:
    table = wine_table().drop_columns(["cultivar"])
    rows = table.slice(0, count).to_pylist()
    return [{name: value + shift for name, value in row.items()} for row in rows]


async def create(client: httpx.AsyncClient, team: Team, name: str, **fields: Any) -> dict[str, Any]:
    return await call(
        client, CREATE, {"input": {"name": name, **fields}}, team.token(ProjectRole.DEVELOPER)
    )


async def settled(client: httpx.AsyncClient, team: Team, deployment_id: str) -> dict[str, Any]:
    """The deployment once its rollout is over (READY, or FAILED)."""
    latest: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal latest
        latest = data_of(
            await graphql(
                client, DEPLOYMENT, {"id": deployment_id}, token=team.token(ProjectRole.VIEWER)
            )
        )["node"]
        return latest["state"] in {"READY", "FAILED"}

    assert await poll_until(done, timeout_s=60) is not None, latest
    return latest


async def current(client: httpx.AsyncClient, team: Team, deployment_id: str) -> dict[str, Any]:
    node: dict[str, Any] = data_of(
        await graphql(
            client, DEPLOYMENT, {"id": deployment_id}, token=team.token(ProjectRole.VIEWER)
        )
    )["node"]
    return node


async def deploy(
    client: httpx.AsyncClient, team: Team, name: str, version: models.ModelVersion, **fields: Any
) -> dict[str, Any]:
    """A new deployment of `version`, once READY."""
    created = await create(
        client, team, name, modelVersion=gid("ModelVersion", version.id), **fields
    )
    assert created["__typename"] == "DeploymentSuccess", created
    found = await settled(client, team, created["deployment"]["id"])
    assert found["state"] == "READY", found
    return found


async def predict(
    client: httpx.AsyncClient,
    team: Team,
    deployment_id: str,
    records: list[dict[str, Any]],
    version: int | None = None,
) -> dict[str, Any]:
    return await call(
        client,
        PREDICT,
        {"id": deployment_id, "inputs": records, "version": version},
        team.token(ProjectRole.VIEWER),
    )


DRIFT = """
query($id: ID!) {
  node(id: $id) { ... on Deployment { drift { sampleCount alert features { feature psi } } } }
}
"""


async def drift_report_after(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    deployment_id: str,
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """Send each of `rows` as a request of its own (one row of each request is sampled), run a
    drift check, and return the deployment's one drift report."""
    answers = await asyncio.gather(
        *(
            call(
                client,
                PREDICT,
                {"id": deployment_id, "inputs": [row], "version": None},
                team.token(ProjectRole.VIEWER),
            )
            for row in rows
        )
    )
    assert {answer["__typename"] for answer in answers} == {"PredictSuccess"}, answers
    await platform.service(INFERENCE_SERVER).samples.flush()
    await check_drift(platform)
    viewer = team.token(ProjectRole.VIEWER)
    node = data_of(await graphql(client, DRIFT, {"id": deployment_id}, token=viewer))["node"]
    [report] = node["drift"]
    assert isinstance(report, dict)
    return report
