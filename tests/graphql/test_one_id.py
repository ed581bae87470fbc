"""One id everywhere (issue 20): every interface answers global ids and every id argument takes
them, refusing anything else with an error that names the argument and what it expected.

- the REST upload answers the ids that `node(id:)` and `submitTrainingJob` take as they are;
- every id argument of the schema, found by walking it (arguments and input fields), refuses a
  raw UUID, text that is no id, and an id of another type, naming its path (`input.canary`,
  `ids.0`) and the type it wanted; a table here says which type each wants, and a test fails
  when the schema has an id argument the table does not know;
- the JSON that events and fields carry (`deploymentEvents`' traffic, `compareTrainingJobs`'
  rows) names versions and jobs by global ids, in GraphQL's camelCase.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from aiaas.core.bootstrap import create_platform
from aiaas.core.config import build_config
from aiaas.core.identity import accounts as identity
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.training import SearchDimension, SweepRequest, create_sweep
from aiaas.graphql.relay import from_global_id, to_global_id
from aiaas.graphql.schema import build_schema
from deployment_calls import create, settled
from graphql import (
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    Undefined,
    get_named_type,
    is_enum_type,
)
from serving_support import register_bytes_as_version, wine_table
from support import Team, data_of, graphql, new_team, subscription_context

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# What each id argument of the schema names. Keyed by the field's coordinate and the argument's
# path as the schema spells it; `()` for any type (`node`).
EXPECTED_TYPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("Query.node", "id"): (),
    ("Project.compareTrainingJobs", "ids"): ("TrainingJob", "Job"),
    ("Mutation.revokeApiToken", "id"): ("ApiToken",),
    ("Mutation.archiveProject", "id"): ("Project",),
    ("Mutation.setProjectDicomPersonalTags", "id"): ("Project",),
    ("Mutation.addProjectMember", "input.project"): ("Project",),
    ("Mutation.changeProjectMemberRole", "input.project"): ("Project",),
    ("Mutation.removeProjectMember", "input.project"): ("Project",),
    ("Mutation.uploadDataset", "input.project"): ("Project",),
    ("Mutation.setDatasetExpectations", "dataset"): ("Dataset",),
    ("Mutation.validateDatasetVersion", "id"): ("DatasetVersion",),
    ("Mutation.transformDatasetVersion", "input.version"): ("DatasetVersion",),
    ("Mutation.deleteDatasetVersion", "id"): ("DatasetVersion",),
    ("Mutation.submitTrainingJob", "input.datasetVersion"): ("DatasetVersion",),
    ("Mutation.cancelTrainingJob", "id"): ("TrainingJob",),
    ("Mutation.setModelAlias", "input.version"): ("ModelVersion",),
    ("Mutation.setModelPromotionGates", "model"): ("Model",),
    ("Mutation.createDeployment", "input.modelVersion"): ("ModelVersion",),
    ("Mutation.createDeployment", "input.model"): ("Model",),
    ("Mutation.updateDeploymentTraffic", "input.deployment"): ("Deployment",),
    ("Mutation.updateDeploymentTraffic", "input.canary"): ("ModelVersion",),
    ("Mutation.updateDeploymentTraffic", "input.shadow"): ("ModelVersion",),
    ("Mutation.promoteDeployment", "deployment"): ("Deployment",),
    ("Mutation.rollbackDeployment", "deployment"): ("Deployment",),
    ("Mutation.deleteDeployment", "deployment"): ("Deployment",),
    ("Mutation.predict", "deployment"): ("Deployment",),
    ("Mutation.submitBatchPredictionJob", "input.datasetVersion"): ("DatasetVersion",),
    ("Mutation.submitBatchPredictionJob", "input.modelVersion"): ("ModelVersion",),
    ("Mutation.submitBatchPredictionJob", "input.deployment"): ("Deployment",),
    ("Mutation.cancelBatchPredictionJob", "id"): ("Job",),
    ("Subscription.projectAuditEvents", "project"): ("Project",),
    ("Subscription.projectJobChanges", "project"): ("Project",),
    ("Subscription.jobEvents", "jobId"): ("TrainingJob", "Job"),
    ("Subscription.deploymentEvents", "deploymentId"): ("Deployment",),
    ("Mutation.createSweep", "input.datasetVersion"): ("DatasetVersion",),
    ("Mutation.cancelSweep", "id"): ("Sweep",),
    ("Mutation.promoteSweepTrial", "id"): ("Sweep",),
    ("Subscription.sweepEvents", "sweepId"): ("Sweep",),
}


def _ids_in(argument_type: GraphQLInputType, path: str) -> list[str]:
    named = get_named_type(argument_type)
    if isinstance(named, GraphQLScalarType) and named.name == "ID":
        return [path]
    if isinstance(named, GraphQLInputObjectType):
        return [
            found
            for name, field in named.fields.items()
            for found in _ids_in(field.type, f"{path}.{name}")
        ]
    return []


def id_arguments(schema: GraphQLSchema) -> list[tuple[str, str]]:
    """`(field coordinate, argument path)` of every id the schema takes, anywhere."""
    found = []
    for type_name, graphql_type in schema.type_map.items():
        if type_name.startswith("__") or not isinstance(graphql_type, GraphQLObjectType):
            continue
        for field_name, field in graphql_type.fields.items():
            for argument_name, argument in field.args.items():
                for path in _ids_in(argument.type, argument_name):
                    found.append((f"{type_name}.{field_name}", path))
    return found


SCHEMA = build_schema(create_platform(build_config({"disable_plugin_autoload": True})))
ID_ARGUMENTS = id_arguments(SCHEMA._schema)


def test_every_id_argument_of_the_schema_is_known_here() -> None:
    assert sorted(ID_ARGUMENTS) == sorted(EXPECTED_TYPES)


# The objects the ids name ------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    team: Team
    uuids: dict[str, uuid.UUID]
    """Of one object per node type."""
    upload: dict[str, Any]
    """The REST upload's `version`."""

    def global_id(self, type_name: str) -> str:
        return str(to_global_id(type_name, self.uuids[type_name]))

    @property
    def token(self) -> str:
        return self.team.token(ProjectRole.OWNER)


@pytest.fixture(scope="module")
async def world(platform: Platform, app: Any) -> World:
    team = await new_team(platform, "one-id", (ProjectRole.VIEWER, ProjectRole.DEVELOPER))
    owner = team.members[ProjectRole.OWNER]
    parquet = io.BytesIO()
    pq.write_table(wine_table(), parquet)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        uploaded = await client.post(
            f"/v1/projects/{team.slug}/datasets/wine/versions",
            content=parquet.getvalue(),
            headers={"authorization": f"Bearer {owner.token}"},
        )
        assert uploaded.status_code == 201, uploaded.text
        upload = uploaded.json()["version"]
        model_version = await register_bytes_as_version(
            platform, owner.principal, uuid.UUID(upload["uuid"]), b"no model", model_name="wine"
        )
        created = await create(
            client,
            team,
            "wine",
            modelVersion=str(to_global_id("ModelVersion", model_version.id)),
        )
        assert created["__typename"] == "DeploymentSuccess", created
        deployment = created["deployment"]["id"]
        # Its model cannot load: the rollout fails, and is over before the module ends.
        await settled(client, team, deployment)
    async with platform.metadata.acquire() as connection:
        dataset_id = await connection.fetchval(
            "SELECT dataset_id FROM dataset_versions WHERE id = $1", uuid.UUID(upload["uuid"])
        )
    # No worker runs here: its first trial stays queued, and the sweep running.
    sweep = await create_sweep(
        platform,
        owner.principal,
        SweepRequest(
            dataset_version_id=uuid.UUID(upload["uuid"]),
            trainer="tabular-classifier",
            target="cultivar",
            search_space=[SearchDimension(name="learning_rate", low=1e-4, high=1e-2)],
            objective_metric="accuracy",
            n_trials=1,
        ),
    )
    issued = await identity.create_api_token(
        platform, None, user_id=owner.principal.user_id, name="one-id"
    )
    async with platform.metadata.acquire() as connection:
        token_id = await connection.fetchval(
            "SELECT id FROM api_tokens WHERE prefix = $1", issued.prefix
        )
    return World(
        team=team,
        uuids={
            "Project": team.project_id,
            "Dataset": dataset_id,
            "DatasetVersion": uuid.UUID(upload["uuid"]),
            "TrainingJob": model_version.job_id,
            "Job": model_version.job_id,
            "Model": model_version.model_id,
            "ModelVersion": model_version.id,
            "Deployment": from_global_id(deployment)[1],
            "ApiToken": token_id,
            "Sweep": sweep.id,
        },
        upload=upload,
    )


# The REST upload's ids ----------------------------------------------------------------------

SUBMIT = """
mutation($input: SubmitTrainingJobInput!) {
  submitTrainingJob(input: $input) {
    __typename
    ... on TrainingJobSuccess { job { id datasetVersion { id } } }
    ... on InvalidInputError { message fieldErrors { field message } }
  }
}
"""


async def test_the_rest_upload_answers_ids_that_graphql_takes_as_they_are(
    client: httpx.AsyncClient, world: World
) -> None:
    upload = world.upload
    node = data_of(
        await graphql(
            client,
            "query($id: ID!) { node(id: $id) { __typename id } }",
            {"id": upload["id"]},
            token=world.token,
        )
    )["node"]
    submitted = data_of(
        await graphql(
            client,
            SUBMIT,
            {
                "input": {
                    "datasetVersion": upload["id"],
                    "trainer": "tabular-classifier",
                    "target": "cultivar",
                    "hyperparameters": {"epochs": 1},
                }
            },
            token=world.token,
        )
    )["submitTrainingJob"]

    assert node == {"__typename": "DatasetVersion", "id": upload["id"]}
    assert submitted["__typename"] == "TrainingJobSuccess", submitted
    assert submitted["job"]["datasetVersion"] == {"id": upload["id"]}


async def test_the_raw_uuid_of_the_rest_upload_is_refused_saying_where_the_id_is(
    client: httpx.AsyncClient, world: World
) -> None:
    _, body = await graphql(
        client,
        SUBMIT,
        {
            "input": {
                "datasetVersion": world.upload["uuid"],
                "trainer": "tabular-classifier",
                "target": "cultivar",
            }
        },
        token=world.token,
    )

    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert list(error["extensions"]["fieldErrors"]) == ["input.datasetVersion"]
    assert error["message"].startswith(
        "input.datasetVersion: expected a DatasetVersion id (a global id such as '"
    )
    assert error["message"].endswith("got a raw UUID; the REST upload answers it as version.id")


# Every id argument, generated from the schema ----------------------------------------------


def _selection(field_type: Any) -> str:
    named = get_named_type(field_type)
    if isinstance(named, GraphQLUnionType) and "InvalidInputError" in {
        member.name for member in named.types
    }:
        return "{ __typename ... on InvalidInputError { message fieldErrors { field message } } }"
    if isinstance(named, GraphQLScalarType) or is_enum_type(named):
        return ""
    return "{ __typename }"


FILLERS: dict[str, Any] = {
    "String": "x",
    "Int": 1,
    "Float": 0.5,
    "Boolean": False,
    "JSON": {},
    "DateTime": "2024-01-01T00:00:00Z",
    "Upload": "x",
}


def _value(
    graphql_type: GraphQLInputType, path: str, target: str, bad: str, world: World, coordinate: str
) -> Any:
    """A value of `graphql_type` at `path`: `bad` at `target`, a real object's id for any
    other id, and a plain value of the type elsewhere."""
    if isinstance(graphql_type, GraphQLNonNull):
        graphql_type = graphql_type.of_type
    if isinstance(graphql_type, GraphQLList):
        return [_value(graphql_type.of_type, path, target, bad, world, coordinate)]
    if path == target:
        return bad
    if isinstance(graphql_type, GraphQLInputObjectType):
        return {
            name: _value(field.type, f"{path}.{name}", target, bad, world, coordinate)
            for name, field in graphql_type.fields.items()
            if target.startswith(f"{path}.{name}")
            or (isinstance(field.type, GraphQLNonNull) and field.default_value is Undefined)
        }
    if is_enum_type(graphql_type):
        return next(iter(graphql_type.values))  # type: ignore[union-attr]
    assert isinstance(graphql_type, GraphQLScalarType)
    if graphql_type.name == "ID":
        # Another id the field takes (`input.deployment` beside `input.canary`): a real one.
        return world.global_id(EXPECTED_TYPES[(coordinate, path)][0])
    return FILLERS[graphql_type.name]


def operation(coordinate: str, target: str, bad: str, world: World) -> tuple[str, dict[str, Any]]:
    """The document and variables that call the field at `coordinate` with `bad` as the id at
    `target`, and everything else it requires filled in."""
    parent, field_name = coordinate.split(".")
    schema = SCHEMA._schema
    parent_type = schema.type_map[parent]
    assert isinstance(parent_type, GraphQLObjectType)
    field = parent_type.fields[field_name]
    declared, passed, variables = [], [], {}
    argument_name = target.split(".", maxsplit=1)[0]
    for name, argument in field.args.items():
        if name != argument_name and not isinstance(argument.type, GraphQLNonNull):
            continue
        declared.append(f"${name}: {argument.type}")
        passed.append(f"{name}: ${name}")
        variables[name] = _value(argument.type, name, target, bad, world, coordinate)
    call = f"{field_name}({', '.join(passed)}) {_selection(field.type)}"
    if parent == "Project":
        call = f'project(slug: "{world.team.slug}") {{ {call} }}'
        parent = "Query"
    kind = {"Query": "query", "Mutation": "mutation", "Subscription": "subscription"}[parent]
    return f"{kind}({', '.join(declared)}) {{ {call} }}", variables


def _refusals(data: Any, errors: list[dict[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    """`(message, fieldErrors)` of every refusal of bad input an answer holds: GraphQL errors
    with code BAD_USER_INPUT, or an InvalidInputError member, wherever it is in `data`."""
    found = [
        (error["message"], error["extensions"]["fieldErrors"])
        for error in errors
        if error.get("extensions", {}).get("code") == "BAD_USER_INPUT"
    ]
    pending = [data]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            if value.get("__typename") == "InvalidInputError":
                fields = {error["field"]: error["message"] for error in value["fieldErrors"]}
                found.append((value["message"], fields))
            pending.extend(value.values())
    return found


@pytest.fixture(scope="module")
def schema(platform: Platform) -> Any:
    """The module's platform's schema, to run subscriptions in process."""
    return build_schema(platform)


async def answer(
    client: httpx.AsyncClient,
    platform: Platform,
    schema: Any,
    world: World,
    document: str,
    variables: Any,
) -> tuple[Any, list[dict[str, Any]]]:
    if not document.startswith("subscription"):
        _, body = await graphql(client, document, variables, token=world.token)
        return body.get("data"), body.get("errors", [])
    context = await subscription_context(platform, world.token, "one-id")
    result = await schema.subscribe(document, variable_values=variables, context_value=context)
    if isinstance(result, AsyncIterator):
        stream = result
        # A subscription that took the id would wait for events: bounded, so that it fails.
        try:
            result = await asyncio.wait_for(anext(stream), timeout=30)
        except TimeoutError:
            pytest.fail(f"the subscription took {variables} and waits for events")
        finally:
            await stream.aclose()
    errors = [
        {"message": error.message, "extensions": error.extensions or {}}
        for error in result.errors or []
    ]
    return result.data, errors


def _article(name: str) -> str:
    return "an" if name[0] in "AEIOU" else "a"


BAD_KINDS = ["raw UUID", "not an id", "another type"]


def _bad_id(kind: str, expected: tuple[str, ...], world: World) -> tuple[str, str]:
    """An id of `kind` where one of `expected` was wanted, and how the refusal says what it got."""
    if kind == "raw UUID":
        return str(world.uuids[expected[0] if expected else "Project"]), "got a raw UUID"
    if kind == "not an id":
        return "no-such-id!", "got text that is not a global id"
    other = "Dataset" if "Project" in expected else "Project"
    return world.global_id(other), f"got {_article(other)} {other} id"


# node(id:) takes an id of any type: no other type's id is a wrong one there.
BAD_ID_CASES = [
    (coordinate, path, kind)
    for coordinate, path in ID_ARGUMENTS
    for kind in BAD_KINDS
    if EXPECTED_TYPES[(coordinate, path)] or kind != "another type"
]


@pytest.mark.parametrize(
    ("coordinate", "path", "kind"),
    BAD_ID_CASES,
    ids=[f"{c}({p})-{k}" for c, p, k in BAD_ID_CASES],
)
async def test_a_bad_id_is_refused_naming_the_argument_and_what_it_expected(
    client: httpx.AsyncClient,
    platform: Platform,
    schema: Any,
    world: World,
    coordinate: str,
    path: str,
    kind: str,
) -> None:
    expected = EXPECTED_TYPES[(coordinate, path)]
    bad, got = _bad_id(kind, expected, world)
    document, variables = operation(coordinate, path, bad, world)
    # A list of ids is refused naming the element.
    named = f"{path}.0" if "[" in _declared_type(coordinate, path) else path

    data, errors = await answer(client, platform, schema, world, document, variables)

    refusals = _refusals(data, errors)
    assert len(refusals) == 1, (data, errors)
    [(message, field_errors)] = refusals
    assert list(field_errors) == [named], (message, field_errors)
    if expected:
        names = " or ".join(expected)
        wanted = f"expected {_article(names)} {names} id (a global id such as '"
    else:
        wanted = "expected a global id (such as '"
    assert field_errors[named].startswith(wanted), field_errors
    assert got in field_errors[named], field_errors
    assert message == f"{named}: {field_errors[named]}"


def _declared_type(coordinate: str, path: str) -> str:
    parent, field_name = coordinate.split(".")
    parent_type = SCHEMA._schema.type_map[parent]
    assert isinstance(parent_type, GraphQLObjectType)
    name, *rest = path.split(".")
    graphql_type: Any = parent_type.fields[field_name].args[name].type
    for step in rest:
        graphql_type = get_named_type(graphql_type).fields[step].type
    return str(graphql_type)


# JSON that names objects ------------------------------------------------------------------


async def test_deployment_events_name_the_versions_of_their_traffic_by_global_id(
    platform: Platform, schema: Any, client: httpx.AsyncClient, world: World
) -> None:
    context = await subscription_context(platform, world.token, "one-id-events")
    subscription = await schema.subscribe(
        "subscription($id: ID!) { deploymentEvents(deploymentId: $id) { type state traffic } }",
        variable_values={"id": world.global_id("Deployment")},
        context_value=context,
    )
    assert isinstance(subscription, AsyncIterator)
    first = await anext(subscription)
    await subscription.aclose()

    assert first.errors is None, first.errors
    event = first.data["deploymentEvents"]
    assert event["state"] == "CREATING"
    assert event["traffic"] == {
        "stablePercent": 100,
        "canaryPercent": 0,
        "stableVersion": world.global_id("ModelVersion"),
        "canaryVersion": None,
        "shadowVersion": None,
    }
    version = data_of(
        await graphql(
            client,
            "query($id: ID!) { node(id: $id) { __typename } }",
            {"id": event["traffic"]["stableVersion"]},
            token=world.token,
        )
    )["node"]
    assert version == {"__typename": "ModelVersion"}


async def test_compared_training_jobs_name_jobs_and_versions_by_global_id(
    client: httpx.AsyncClient, world: World
) -> None:
    compared = data_of(
        await graphql(
            client,
            "query($slug: String!, $ids: [ID!]!) { project(slug: $slug) { "
            "compareTrainingJobs(ids: $ids) { rows } } }",
            {"slug": world.team.slug, "ids": [world.global_id("TrainingJob")]},
            token=world.token,
        )
    )["project"]["compareTrainingJobs"]

    [row] = compared["rows"]
    assert row["jobId"] == world.global_id("TrainingJob")
    assert row["modelVersionId"] == world.global_id("ModelVersion")


async def test_column_statistics_are_keyed_in_graphqls_casing(
    client: httpx.AsyncClient, world: World
) -> None:
    version = data_of(
        await graphql(
            client,
            "query($id: ID!) { node(id: $id) { ... on DatasetVersion { columnStats } } }",
            {"id": world.upload["id"]},
            token=world.token,
        )
    )["node"]

    stats = version["columnStats"]
    # Column names are the caller's (`od280_od315_of_diluted_wines`); the keys of each are ours.
    assert set(stats) == {column["name"] for column in world.upload["columns"]}
    for column in stats.values():
        assert {"nullFraction", "distinctCount"} <= set(column), column
        assert not [key for key in column if "_" in key], column
