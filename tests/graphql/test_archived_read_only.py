"""An archived project is read-only, proven for every mutation of the schema.

Each mutation is one of three kinds, and the sets below must together be exactly the schema's
mutations, so that a new one cannot go unchecked:

- `REFUSED`: acts in a project and changes it. Called against the objects of an archived
  project, it answers `ConflictError` with the one message `members.authorize_in_project` gives,
  is audited as `failed`, and changes nothing.
- `ALLOWED`: acts in a project but only reads or stops work already running (running
  deployments keep serving until stopped): it still succeeds.
- `PLATFORM_MUTATIONS`: acts in no project.

Which kind each is must also agree with the `Effect` its grant declares. Job submission is
checked again through the domain functions, which refuse on their own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from aiaas.cli.inspection import builtin_schema
from aiaas.core.data import datasets
from aiaas.core.data.quality import submit_validation
from aiaas.core.errors import ConflictError
from aiaas.core.identity import members
from aiaas.core.identity.access import ProjectRole, allowed_in_archived_project
from aiaas.core.identity.projects import ARCHIVED_IS_READ_ONLY
from aiaas.core.platform import Platform
from aiaas.core.training import (
    SearchDimension,
    SweepRequest,
    TrainingRequest,
    create_sweep,
    submit_training_job,
)
from aiaas.core.training import registry as models
from aiaas.graphql.permissions import root_field_policies
from aiaas.graphql.relay import to_global_id
from aiaas.graphql.schema import build_schema
from deployment_calls import deploy, predict, wine_records
from serving_support import train_version, upload, wine_table
from support import (
    Account,
    Leftovers,
    Team,
    audit_mark,
    data_of,
    events_since,
    graphql,
    leftovers,
    new_account,
    new_team,
    project_state,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PLATFORM_MUTATIONS = {
    "login": "signs a user in: a session belongs to a user, not to a project",
    "logout": "revokes the caller's own token",
    "createUser": "users belong to the platform",
    "createApiToken": "tokens belong to their user",
    "revokeApiToken": "tokens belong to their user",
    "createProject": "makes a new project, in no existing one",
}
"""Mutations that act in no project, and why."""

ALLOWED = {
    "predict": "reads: a running deployment keeps serving",
    "cancelTrainingJob": "stops a job already queued or running",
    "cancelSweep": "stops a sweep and its running trials",
    "deleteDeployment": "stops a deployment: the only way an archived project's serving ends",
}
"""Mutations that act in a project and still succeed once it is archived, and why."""


# The archived project and its objects ------------------------------------------------------


@dataclass(frozen=True)
class Archived:
    team: Team
    outsider: Account
    """A user who is no member: someone addProjectMember would add."""
    version: datasets.DatasetVersion
    """The version the model was trained on."""
    spare_version: datasets.DatasetVersion
    """A version nothing uses: one deleteDatasetVersion would delete."""
    model_version: models.ModelVersion
    deployment: dict[str, Any]
    """A deployment that was READY when the project was archived."""
    queued_job: uuid.UUID
    sweep: uuid.UUID
    """A sweep whose first trial is queued."""

    @property
    def owner_token(self) -> str:
        return self.team.token(ProjectRole.OWNER)

    @property
    def viewer(self) -> Account:
        return self.team.members[ProjectRole.VIEWER]


def gid(type_name: str, object_id: Any) -> str:
    return str(to_global_id(type_name, object_id))


@pytest.fixture(scope="module")
async def app_client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        yield client


@pytest.fixture(scope="module")
async def archived(
    platform: Platform, app_client: httpx.AsyncClient, tmp_path_factory: pytest.TempPathFactory
) -> Archived:
    directory = tmp_path_factory.mktemp("archived")
    team = await new_team(
        platform, f"archived-{uuid.uuid4().hex[:8]}", (ProjectRole.VIEWER, ProjectRole.DEVELOPER)
    )
    owner = team.members[ProjectRole.OWNER].principal
    version = await upload(platform, owner, team.project_id, wine_table(), "wine", directory)
    spare = await upload(
        platform, owner, team.project_id, wine_table().slice(0, 20), "spare", directory
    )
    model_version = await train_version(
        platform, owner, version, target="cultivar", model_name="wine"
    )
    deployment = await deploy(app_client, team, "live", model_version)
    # No worker runs here: the job stays QUEUED.
    job = await submit_training_job(
        platform,
        owner,
        TrainingRequest(
            dataset_version_id=version.id,
            trainer="tabular-classifier",
            target="cultivar",
            hyperparameters={"epochs": 1},
        ),
    )
    sweep = await create_sweep(
        platform,
        owner,
        SweepRequest(
            dataset_version_id=version.id,
            trainer="tabular-classifier",
            target="cultivar",
            search_space=[SearchDimension(name="learning_rate", low=1e-4, high=1e-2)],
            objective_metric="accuracy",
            hyperparameters={"epochs": 1},
            n_trials=2,
        ),
    )
    answer = data_of(
        await graphql(
            app_client,
            "mutation($id: ID!) { archiveProject(id: $id) { __typename } }",
            {"id": gid("Project", team.project_id)},
            token=team.token(ProjectRole.OWNER),
        )
    )
    assert answer["archiveProject"]["__typename"] == "ArchiveProjectSuccess", answer
    return Archived(
        team=team,
        outsider=await new_account(platform, "outsider"),
        version=version,
        spare_version=spare,
        model_version=model_version,
        deployment=deployment,
        queued_job=job.id,
        sweep=sweep.id,
    )


# One call per refused mutation, against the archived project's objects ---------------------


@dataclass(frozen=True)
class Call:
    document: str
    variables: Callable[[Archived], dict[str, Any]]
    upload: bool = False
    """Sent as a multipart upload, the file in `variables.input.file`."""


def member_input(role: str | None = None) -> Callable[[Archived], dict[str, Any]]:
    def variables(world: Archived) -> dict[str, Any]:
        username = world.outsider.username if role == "new" else world.viewer.username
        fields = {"project": gid("Project", world.team.project_id), "username": username}
        if role is not None:
            fields["role"] = "VIEWER" if role == "new" else role
        return {"input": fields}

    return variables


def deployment_id(world: Archived) -> dict[str, Any]:
    return {"id": world.deployment["id"]}


REFUSED: dict[str, Call] = {
    "archiveProject": Call(
        "mutation($id: ID!) { archiveProject(id: $id) { ...refusal } }",
        lambda world: {"id": gid("Project", world.team.project_id)},
    ),
    "setProjectDicomPersonalTags": Call(
        "mutation($id: ID!) { setProjectDicomPersonalTags(id: $id, keep: true) { ...refusal } }",
        lambda world: {"id": gid("Project", world.team.project_id)},
    ),
    "addProjectMember": Call(
        "mutation($input: ProjectMemberInput!) { addProjectMember(input: $input) { ...refusal } }",
        member_input("new"),
    ),
    "changeProjectMemberRole": Call(
        "mutation($input: ProjectMemberInput!) { "
        "changeProjectMemberRole(input: $input) { ...refusal } }",
        member_input("DEVELOPER"),
    ),
    "removeProjectMember": Call(
        "mutation($input: RemoveProjectMemberInput!) { "
        "removeProjectMember(input: $input) { ...refusal } }",
        member_input(),
    ),
    "uploadDataset": Call(
        "mutation($input: UploadDatasetInput!) { uploadDataset(input: $input) { ...refusal } }",
        lambda world: {"input": {"project": gid("Project", world.team.project_id), "name": "new"}},
        upload=True,
    ),
    "setDatasetExpectations": Call(
        "mutation($dataset: ID!, $expectations: JSON!) { "
        "setDatasetExpectations(dataset: $dataset, expectations: $expectations) { ...refusal } }",
        lambda world: {
            "dataset": gid("Dataset", world.version.dataset_id),
            "expectations": [{"kind": "not_null", "column": "alcohol"}],
        },
    ),
    "validateDatasetVersion": Call(
        "mutation($id: ID!) { validateDatasetVersion(id: $id) { ...refusal } }",
        lambda world: {"id": gid("DatasetVersion", world.version.id)},
    ),
    "transformDatasetVersion": Call(
        "mutation($input: TransformDatasetVersionInput!) { "
        "transformDatasetVersion(input: $input) { ...refusal } }",
        lambda world: {
            "input": {
                "version": gid("DatasetVersion", world.version.id),
                "steps": [{"kind": "DROP_DUPLICATES"}],
            }
        },
    ),
    "deleteDatasetVersion": Call(
        "mutation($id: ID!) { deleteDatasetVersion(id: $id) { ...refusal } }",
        lambda world: {"id": gid("DatasetVersion", world.spare_version.id)},
    ),
    "submitTrainingJob": Call(
        "mutation($input: SubmitTrainingJobInput!) { "
        "submitTrainingJob(input: $input) { ...refusal } }",
        lambda world: {
            "input": {
                "datasetVersion": gid("DatasetVersion", world.version.id),
                "trainer": "tabular-classifier",
                "target": "cultivar",
            }
        },
    ),
    "submitBatchPredictionJob": Call(
        "mutation($input: SubmitBatchPredictionJobInput!) { "
        "submitBatchPredictionJob(input: $input) { ...refusal } }",
        lambda world: {
            "input": {
                "datasetVersion": gid("DatasetVersion", world.version.id),
                "modelVersion": gid("ModelVersion", world.model_version.id),
            }
        },
    ),
    # Needs dataset:transform, as submitting does; any job of the project shows whose it is.
    "cancelBatchPredictionJob": Call(
        "mutation($id: ID!) { cancelBatchPredictionJob(id: $id) { ...refusal } }",
        lambda world: {"id": gid("Job", world.queued_job)},
    ),
    "createSweep": Call(
        "mutation($input: CreateSweepInput!) { createSweep(input: $input) { ...refusal } }",
        lambda world: {
            "input": {
                "datasetVersion": gid("DatasetVersion", world.version.id),
                "trainer": "tabular-classifier",
                "target": "cultivar",
                "searchSpace": [{"name": "learning_rate", "low": 0.0001, "high": 0.01}],
                "objective": {"metric": "accuracy"},
            }
        },
    ),
    "promoteSweepTrial": Call(
        'mutation($id: ID!) { promoteSweepTrial(id: $id, alias: "staging") { ...refusal } }',
        lambda world: {"id": gid("Sweep", world.sweep)},
    ),
    "setModelAlias": Call(
        "mutation($input: SetModelAliasInput!) { setModelAlias(input: $input) { ...refusal } }",
        lambda world: {
            "input": {"version": gid("ModelVersion", world.model_version.id), "alias": "staging"}
        },
    ),
    "setModelPromotionGates": Call(
        "mutation($model: ID!, $gates: JSON!) { "
        "setModelPromotionGates(model: $model, gates: $gates) { ...refusal } }",
        lambda world: {"model": gid("Model", world.model_version.model_id), "gates": []},
    ),
    "createDeployment": Call(
        "mutation($input: CreateDeploymentInput!) { "
        "createDeployment(input: $input) { ...refusal } }",
        lambda world: {
            "input": {
                "name": "another",
                "modelVersion": gid("ModelVersion", world.model_version.id),
            }
        },
    ),
    "updateDeploymentTraffic": Call(
        "mutation($input: UpdateDeploymentTrafficInput!) { "
        "updateDeploymentTraffic(input: $input) { ...refusal } }",
        lambda world: {
            "input": {
                "deployment": world.deployment["id"],
                "stablePercent": 90,
                "canary": gid("ModelVersion", world.model_version.id),
                "canaryPercent": 10,
            }
        },
    ),
    "promoteDeployment": Call(
        "mutation($id: ID!) { promoteDeployment(deployment: $id) { ...refusal } }",
        deployment_id,
    ),
    "rollbackDeployment": Call(
        "mutation($id: ID!) { rollbackDeployment(deployment: $id) { ...refusal } }",
        deployment_id,
    ),
}
"""How to call each mutation that must be refused in an archived project."""

MUTATION_TYPE = builtin_schema()._schema.mutation_type
assert MUTATION_TYPE is not None
RESULT_UNIONS = {name: str(field.type).rstrip("!") for name, field in MUTATION_TYPE.fields.items()}
"""The result union of each mutation, for the fragment that reads a refusal."""

REFUSAL = """
fragment refusal on {union} {{
  __typename
  ... on ConflictError {{ message code }}
}}
"""


async def send(client: httpx.AsyncClient, name: str, world: Archived) -> dict[str, Any]:
    """Call the mutation `name` as the project's owner; the body of the answer."""
    call = REFUSED[name]
    document = call.document + REFUSAL.format(union=RESULT_UNIONS[name])
    variables = call.variables(world)
    if not call.upload:
        _, body = await graphql(client, document, variables, token=world.owner_token)
        return body
    variables["input"]["file"] = None
    response = await client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": document, "variables": variables}),
            "map": json.dumps({"0": ["variables.input.file"]}),
        },
        files={"0": ("data.csv", f"id,label\n1,{uuid.uuid4().hex}\n".encode(), "text/csv")},
        headers={"x-aiaas-csrf": "1", "authorization": f"Bearer {world.owner_token}"},
    )
    answer: dict[str, Any] = response.json()
    return answer


# The tests ----------------------------------------------------------------------------------


def test_every_mutation_is_refused_allowed_or_platform_level(platform: Platform) -> None:
    policies = {
        name.removeprefix("Mutation."): policy
        for name, policy in root_field_policies(build_schema(platform)).items()
        if name.startswith("Mutation.")
    }
    kinds = (set(REFUSED), set(ALLOWED), set(PLATFORM_MUTATIONS))

    assert set.union(*kinds) == set(policies), (
        f"not classified: {sorted(set(policies) - set.union(*kinds))}; "
        f"no longer in the schema: {sorted(set.union(*kinds) - set(policies))}"
    )
    assert sum(len(kind) for kind in kinds) == len(set.union(*kinds)), "a mutation in two sets"
    for name, policy in policies.items():
        assert policy is not None, name
        in_project = policy.scope == "project"
        assert in_project == (name not in PLATFORM_MUTATIONS), f"{name} is {policy.scope}-scoped"
        if in_project:
            assert policy.resource is not None
            assert policy.action is not None
            allowed = allowed_in_archived_project(policy.resource, policy.action)
            assert allowed == (name in ALLOWED), (
                f"{name} needs {policy.resource}:{policy.action}, whose effect says it is "
                f"{'allowed' if allowed else 'refused'} in an archived project"
            )


@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_a_change_to_an_archived_project_is_refused_audited_and_changes_nothing(
    platform: Platform, archived: Archived, app_client: httpx.AsyncClient, name: str
) -> None:
    project_id = archived.team.project_id
    before = await project_state(platform, project_id)
    files_before = await leftovers(platform)
    mark = await audit_mark(platform)

    body = await send(app_client, name, archived)

    assert "errors" not in body, body
    answer = body["data"][name]
    assert answer == {
        "__typename": "ConflictError",
        "message": ARCHIVED_IS_READ_ONLY,
        "code": "CONFLICT",
    }
    assert await project_state(platform, project_id) == before
    assert await leftovers(platform) == files_before == Leftovers()
    assert await events_since(platform, mark) == [(f"graphql.{name}", "failed")]


async def test_job_submission_into_an_archived_project_is_refused_by_the_domain(
    platform: Platform, archived: Archived
) -> None:
    # The domain functions refuse on their own, for any caller that reaches them.
    owner = archived.team.members[ProjectRole.OWNER].principal
    before = await project_state(platform, archived.team.project_id)
    request = TrainingRequest(
        dataset_version_id=archived.version.id,
        trainer="tabular-classifier",
        target="cultivar",
        hyperparameters={"epochs": 1},
    )

    with pytest.raises(ConflictError, match=ARCHIVED_IS_READ_ONLY):
        await submit_training_job(platform, owner, request)
    with pytest.raises(ConflictError, match=ARCHIVED_IS_READ_ONLY):
        await submit_validation(platform, owner, archived.version.id)
    with pytest.raises(ConflictError, match=ARCHIVED_IS_READ_ONLY):
        await members.add_member(
            platform,
            owner,
            archived.team.project_id,
            username=archived.outsider.username,
            role=ProjectRole.VIEWER,
        )

    assert await project_state(platform, archived.team.project_id) == before


async def test_the_rest_upload_is_refused_before_its_body_is_stored(
    platform: Platform, archived: Archived, app_client: httpx.AsyncClient
) -> None:
    before = await project_state(platform, archived.team.project_id)

    response = await app_client.post(
        f"/v1/projects/{archived.team.slug}/datasets/wine/versions",
        content=b"alcohol,cultivar\n1.0,c0\n",
        headers={"authorization": f"Bearer {archived.owner_token}"},
    )

    assert response.status_code == 409, response.text
    assert response.json()["error"] == {"code": "CONFLICT", "message": ARCHIVED_IS_READ_ONLY}
    assert await project_state(platform, archived.team.project_id) == before


async def test_reads_and_stops_still_work_in_an_archived_project(
    platform: Platform, archived: Archived, app_client: httpx.AsyncClient
) -> None:
    team, deployment = archived.team, archived.deployment

    # The deployment that was running keeps serving, through GraphQL and V2.
    predicted = await predict(app_client, team, deployment["id"], wine_records(2))
    assert predicted["__typename"] == "PredictSuccess", predicted
    table = wine_table().drop_columns(["cultivar"]).slice(0, 2)
    inferred = await app_client.post(
        f"/v2/models/{deployment['v2ModelName']}/infer",
        json={
            "inputs": [
                {"name": name, "datatype": "FP32", "shape": [2], "data": column.to_pylist()}
                for name, column in zip(table.column_names, table.columns, strict=True)
            ]
        },
        headers={"authorization": f"Bearer {team.token(ProjectRole.VIEWER)}"},
    )
    assert inferred.status_code == 200, inferred.text

    # What is running can be stopped.
    cancelled = data_of(
        await graphql(
            app_client,
            "mutation($id: ID!) { cancelTrainingJob(id: $id) { __typename "
            "... on TrainingJobSuccess { job { state } } } }",
            {"id": gid("TrainingJob", archived.queued_job)},
            token=archived.owner_token,
        )
    )["cancelTrainingJob"]
    assert cancelled == {"__typename": "TrainingJobSuccess", "job": {"state": "CANCELLED"}}
    sweep = data_of(
        await graphql(
            app_client,
            "mutation($id: ID!) { cancelSweep(id: $id) { __typename "
            "... on SweepSuccess { sweep { state trials { state } } } } }",
            {"id": gid("Sweep", archived.sweep)},
            token=archived.owner_token,
        )
    )["cancelSweep"]
    assert sweep == {
        "__typename": "SweepSuccess",
        "sweep": {"state": "CANCELLED", "trials": [{"state": "FAIL"}]},
    }
    stopped = data_of(
        await graphql(
            app_client,
            "mutation($id: ID!) { deleteDeployment(deployment: $id) { __typename } }",
            {"id": deployment["id"]},
            token=archived.owner_token,
        )
    )["deleteDeployment"]
    assert stopped == {"__typename": "DeploymentSuccess"}
