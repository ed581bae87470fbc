"""The authorization truth table: every root field of the schema, called by every kind of caller,
answers what docs/access-control.md says it should.

The expected outcome of each case is read from the page's two tables (which grant each field
needs, and which callers hold each grant), never written here, so the test checks the API against
the documented matrix, and the page is checked against the enforcer in tests/test_docs.py. A root
field with no row on the page, or with no operation in `OPERATIONS` below, fails the test: a new
field cannot go untested.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import httpx
import pytest

from aiaas.cli.inspection import builtin_schema
from aiaas.core.audit import AuditedChange, audit_channel
from aiaas.core.auth import Principal
from aiaas.core.data import datasets
from aiaas.core.governance.vault import VAULT
from aiaas.core.identity import members, projects
from aiaas.core.identity.access import ROLE_HIERARCHY, ProjectRole
from aiaas.core.identity.accounts import User, create_user, insert_token, verify_token
from aiaas.core.job_announcements import project_jobs_channel
from aiaas.core.platform import Platform
from aiaas.core.serving import deployments
from aiaas.core.serving.batch_prediction import BatchPredictionRequest, submit_batch_prediction
from aiaas.core.training import (
    TRAINING_JOB,
    SearchDimension,
    SweepRequest,
    TrainingRequest,
    create_sweep,
    submit_training_job,
)
from aiaas.core.training import registry as models
from aiaas.graphql.permissions import root_field_policies
from aiaas.graphql.relay import from_global_id, to_global_id
from aiaas.graphql.schema import build_schema
from aiaas.plugins.casbin_policy import CasbinPolicyEnforcer
from support import REPOSITORY, graphql, subscription_context, unique

ACCESS_CONTROL = REPOSITORY / "docs" / "access-control.md"

MEMBER_PERSONAS = tuple(role.value for role in ROLE_HIERARCHY)
PERSONAS = ("anonymous", "outsider", *MEMBER_PERSONAS, "admin")
COLUMN_OF_PERSONA = {
    "anonymous": "signed out",
    "outsider": "signed in",
    **{role: role for role in MEMBER_PERSONAS},
    "admin": "admin",
}
"""Which column of the page's grant table describes each persona."""
COLUMNS = tuple(COLUMN_OF_PERSONA.values())

LOGIN_PASSWORD = "correct horse battery staple"
SUBSCRIPTION_WAIT_S = 5.0


class Outcome(StrEnum):
    ALLOWED = "ALLOWED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"


# The documented matrix ----------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentedMatrix:
    grants: dict[str, dict[str, bool]]
    """`{grant: {column: allowed}}` from the "Grants" table."""
    fields: dict[str, tuple[str, str | None]]
    """`{"Query.viewer": (scope, grant or None)}` from the "GraphQL root fields" table."""


def markdown_table(page: str, heading: str) -> list[dict[str, str]]:
    """The rows of the first table under `## heading`, each as `{column header: cell}`."""
    section = page.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    header, _separator, *rows = split
    return [dict(zip(header, row, strict=True)) for row in rows]


def unquote(cell: str) -> str:
    return cell.strip("`")


def documented_matrix() -> DocumentedMatrix:
    page = ACCESS_CONTROL.read_text(encoding="utf-8")
    grants = {
        unquote(row["grant"]): {column: row[column] == "yes" for column in COLUMNS}
        for row in markdown_table(page, "Grants")
    }
    fields = {
        unquote(row["field"]): (row["scope"], unquote(row["grant"]) or None)
        for row in markdown_table(page, "GraphQL root fields")
    }
    return DocumentedMatrix(grants=grants, fields=fields)


def expected_outcome(matrix: DocumentedMatrix, field_name: str, persona: str) -> Outcome:
    scope, grant = matrix.fields[field_name]
    if scope == "public":
        return Outcome.ALLOWED
    if persona == "anonymous":
        return Outcome.UNAUTHENTICATED
    assert grant is not None, f"{field_name} is {scope}-scoped but names no grant"
    if matrix.grants[grant][COLUMN_OF_PERSONA[persona]]:
        return Outcome.ALLOWED
    # In a project, whoever has no part in it is told the object does not exist.
    if scope == "project" and persona == "outsider":
        return Outcome.NOT_FOUND
    return Outcome.FORBIDDEN


# The callers and what they act on -----------------------------------------------------------


@dataclass(frozen=True)
class Persona:
    name: str
    user: User | None
    principal: Principal | None
    token: str | None


@dataclass
class World:
    platform: Platform
    personas: dict[str, Persona]
    project: projects.Project
    """A project where each member persona holds the role it is named after."""
    login_username: str
    dataset_version: datasets.DatasetVersion
    """A version of a dataset in `project`."""
    training_version: datasets.DatasetVersion | None = None
    """A version of another dataset, which no case gives expectations: trainable throughout."""

    @property
    def owner(self) -> Persona:
        return self.personas["owner"]


async def sync_policy(platform: Platform) -> None:
    # The enforcer hears of membership changes through LISTEN/NOTIFY, a moment later; reloading
    # here makes the memberships just made count for the next request, without a race.
    enforcer = platform.enforcer
    assert isinstance(enforcer, CasbinPolicyEnforcer)
    await enforcer.reload()


async def new_user(platform: Platform, prefix: str = "user") -> User:
    return await create_user(platform, None, username=unique(prefix))


async def new_token_of(platform: Platform, user_id: uuid.UUID) -> tuple[str, Principal, uuid.UUID]:
    async with platform.metadata.transaction() as connection:
        issued = await insert_token(connection, user_id, unique("matrix"))
        principal = await verify_token(connection, issued.secret, "test")
    return issued.secret, principal, issued.id


async def project_with_personas(
    platform: Platform, personas: dict[str, Persona]
) -> projects.Project:
    """A new project owned by the owner persona, where each other member persona holds the role
    it is named after; added through the members service, as the API would."""
    owner = personas["owner"].principal
    assert owner is not None
    project = await projects.create_project(platform, owner, slug=unique("matrix"), name="Matrix")
    await sync_policy(platform)
    for role in ROLE_HIERARCHY:
        if role is ProjectRole.OWNER:
            continue
        user = personas[role.value].user
        assert user is not None
        await members.add_member(platform, owner, project.id, username=user.username, role=role)
    await sync_policy(platform)
    return project


async def new_member(world: World, role: ProjectRole = ProjectRole.VIEWER) -> User:
    """A fresh user who holds `role` in the world's project: a target to change or remove."""
    user = await new_user(world.platform, "target")
    owner = world.owner.principal
    assert owner is not None
    await members.add_member(
        world.platform, owner, world.project.id, username=user.username, role=role
    )
    return user


@pytest.fixture(scope="module")
async def world(platform: Platform, admin_token: str) -> World:
    personas: dict[str, Persona] = {"anonymous": Persona("anonymous", None, None, None)}
    for name in ("outsider", *MEMBER_PERSONAS):
        user = await create_user(platform, None, username=unique(name))
        secret, principal, _ = await new_token_of(platform, user.id)
        personas[name] = Persona(name, user, principal, secret)
    async with platform.metadata.acquire() as connection:
        admin = await verify_token(connection, admin_token, "test")
    assert admin.is_admin
    personas["admin"] = Persona("admin", None, admin, admin_token)
    login_user = await create_user(
        platform, None, username=unique("login"), password=LOGIN_PASSWORD
    )
    project = await project_with_personas(platform, personas)
    world = World(
        platform=platform,
        personas=personas,
        project=project,
        login_username=login_user.username,
        dataset_version=None,  # type: ignore[arg-type]
    )
    world.dataset_version = await new_dataset_version(world)
    world.training_version = await new_dataset_version(world, "matrix-training")
    return world


async def new_dataset_version(world: World, dataset: str = "matrix") -> datasets.DatasetVersion:
    """A fresh version (fresh content) of the world's dataset, uploaded by its owner."""
    owner = world.owner.principal
    assert owner is not None
    with datasets.scratch(world.platform) as work:
        source = work / "upload.csv"
        source.write_text(f"id,label\n1,{uuid.uuid4().hex}\n2,b\n")
        added = await datasets.upload_version(
            world.platform, owner, world.project.id, dataset_name=dataset, source=source
        )
    return added.version


# One minimal valid operation per root field -------------------------------------------------


@dataclass(frozen=True)
class Call:
    variables: dict[str, Any]
    token: str | None


Prepare = Callable[[World, Persona], Awaitable[Call]]


async def no_variables(world: World, persona: Persona) -> Call:
    return Call({}, persona.token)


def with_variables(make: Callable[[World, Persona], Awaitable[dict[str, Any]]]) -> Prepare:
    async def prepare(world: World, persona: Persona) -> Call:
        return Call(await make(world, persona), persona.token)

    return prepare


@dataclass(frozen=True)
class Operation:
    document: str
    prepare: Prepare = no_variables
    upload: bool = False
    """Sent as a multipart upload (the file goes in `variables.input.file`)."""


def acting_user_id(world: World, persona: Persona) -> uuid.UUID:
    """The persona's own user id; the owner's for anonymous, who has none."""
    principal = persona.principal or world.owner.principal
    assert principal is not None
    return principal.user_id


async def own_user_id(world: World, persona: Persona) -> dict[str, Any]:
    # Anyone signed in may look themselves up, so every signed-in persona gets an object back.
    return {"id": to_global_id("User", acting_user_id(world, persona))}


async def project_slug(world: World, persona: Persona) -> dict[str, Any]:
    return {"slug": world.project.slug}


async def project_global_id(world: World, persona: Persona) -> dict[str, Any]:
    return {"project": to_global_id("Project", world.project.id)}


async def fresh_project_id(world: World, persona: Persona) -> dict[str, Any]:
    # Archiving is for good: each case archives a project of its own.
    project = await project_with_personas(world.platform, world.personas)
    return {"id": to_global_id("Project", project.id)}


async def login_credentials(world: World, persona: Persona) -> dict[str, Any]:
    return {"username": world.login_username, "password": LOGIN_PASSWORD}


async def fresh_token_to_sign_out_with(world: World, persona: Persona) -> Call:
    # logout revokes the token it is called with: never the persona's own, which later cases use.
    if persona.principal is None:
        return Call({}, None)
    secret, _, _ = await new_token_of(world.platform, persona.principal.user_id)
    return Call({}, secret)


async def fresh_own_token_id(world: World, persona: Persona) -> dict[str, Any]:
    _, _, token_id = await new_token_of(world.platform, acting_user_id(world, persona))
    return {"id": to_global_id("ApiToken", token_id)}


async def new_project_input(world: World, persona: Persona) -> dict[str, Any]:
    return {"input": {"slug": unique("created"), "name": "Created"}}


async def new_user_input(world: World, persona: Persona) -> dict[str, Any]:
    return {"input": {"username": unique("created")}}


async def token_input(world: World, persona: Persona) -> dict[str, Any]:
    return {"input": {"name": "matrix"}}


async def dataset_global_id(world: World, persona: Persona) -> dict[str, Any]:
    return {
        "dataset": to_global_id("Dataset", world.dataset_version.dataset_id),
        "expectations": [{"kind": "not_null", "column": "id"}],
    }


async def version_global_id(world: World, persona: Persona) -> dict[str, Any]:
    return {"id": to_global_id("DatasetVersion", world.dataset_version.id)}


async def fresh_version_id(world: World, persona: Persona) -> dict[str, Any]:
    # Deleting is for good: each case deletes a version of its own.
    version = await new_dataset_version(world)
    return {"id": to_global_id("DatasetVersion", version.id)}


async def transform_input(world: World, persona: Persona) -> dict[str, Any]:
    version = to_global_id("DatasetVersion", world.dataset_version.id)
    return {"input": {"version": version, "steps": [{"kind": "DROP_DUPLICATES"}]}}


async def upload_input(world: World, persona: Persona) -> dict[str, Any]:
    return {"input": {"project": to_global_id("Project", world.project.id), "name": "matrix"}}


async def add_member_input(world: World, persona: Persona) -> dict[str, Any]:
    user = await new_user(world.platform, "joiner")
    project = to_global_id("Project", world.project.id)
    return {"input": {"project": project, "username": user.username, "role": "VIEWER"}}


async def change_role_input(world: World, persona: Persona) -> dict[str, Any]:
    user = await new_member(world)
    project = to_global_id("Project", world.project.id)
    return {"input": {"project": project, "username": user.username, "role": "DEVELOPER"}}


async def remove_member_input(world: World, persona: Persona) -> dict[str, Any]:
    user = await new_member(world)
    project = to_global_id("Project", world.project.id)
    return {"input": {"project": project, "username": user.username}}


def training_version(world: World) -> datasets.DatasetVersion:
    assert world.training_version is not None
    return world.training_version


async def training_request(world: World) -> TrainingRequest:
    return TrainingRequest(
        dataset_version_id=training_version(world).id,
        trainer="tabular-classifier",
        target="label",
        features=["id"],
        hyperparameters={"epochs": 1},
    )


async def queued_training_job(world: World) -> uuid.UUID:
    """A training job of the world's project; no worker runs here, so it stays QUEUED."""
    owner = world.owner.principal
    assert owner is not None
    job = await submit_training_job(world.platform, owner, await training_request(world))
    return job.id


async def submit_input(world: World, persona: Persona) -> dict[str, Any]:
    version = to_global_id("DatasetVersion", training_version(world).id)
    return {
        "input": {
            "datasetVersion": version,
            "trainer": "tabular-classifier",
            "target": "label",
            "features": ["id"],
        }
    }


async def fresh_training_job_id(world: World, persona: Persona) -> dict[str, Any]:
    # Cancelling is for good: each case cancels a job of its own.
    return {"id": to_global_id("TrainingJob", await queued_training_job(world))}


async def job_events_of(world: World, persona: Persona) -> dict[str, Any]:
    # Its QUEUED event is in its stream already: the subscription's first result is a replay.
    return {"job": to_global_id("TrainingJob", await queued_training_job(world))}


async def project_with_a_training_job(world: World, persona: Persona) -> dict[str, Any]:
    # A job whose change the subscription can be told of (`run_subscription`).
    announced_jobs[world.project.id] = await queued_training_job(world)
    return await project_global_id(world, persona)


announced_jobs: dict[uuid.UUID, uuid.UUID] = {}
"""The training job `run_subscription` announces a change of, by project."""


async def sweep_input(world: World, persona: Persona) -> dict[str, Any]:
    return {
        "input": {
            "datasetVersion": to_global_id("DatasetVersion", training_version(world).id),
            "trainer": "tabular-classifier",
            "target": "label",
            "features": ["id"],
            "hyperparameters": {"epochs": 1},
            "searchSpace": [{"name": "learning_rate", "low": 0.0001, "high": 0.01, "log": True}],
            "objective": {"metric": "accuracy"},
            "nTrials": 2,
        }
    }


async def fresh_sweep_id(world: World, persona: Persona) -> dict[str, Any]:
    """A sweep of the world's project; no worker runs here, so its first trial stays QUEUED
    and the sweep RUNNING."""
    owner = world.owner.principal
    assert owner is not None
    sweep = await create_sweep(
        world.platform,
        owner,
        SweepRequest(
            dataset_version_id=training_version(world).id,
            trainer="tabular-classifier",
            target="label",
            features=["id"],
            hyperparameters={"epochs": 1},
            search_space=[SearchDimension(name="learning_rate", low=1e-4, high=1e-2, log=True)],
            objective_metric="accuracy",
            n_trials=2,
        ),
    )
    return {"id": to_global_id("Sweep", sweep.id)}


async def registered_model_version(
    world: World, signature: dict[str, Any] | None = None
) -> models.ModelVersion:
    """A model version registered as a finished job registers one (without the training, which
    these authorization cases do not need)."""
    owner = world.owner.principal
    assert owner is not None
    job_id = await queued_training_job(world)

    async def bundle() -> AsyncIterator[bytes]:
        yield b"matrix"

    stored = await world.platform.service(VAULT).store(world.project.id, bundle())
    async with AuditedChange(
        world.platform, owner, "model.register", project_id=world.project.id
    ) as change:
        return await models.register_model_version(
            change,
            models.NewModelVersion(
                project_id=world.project.id,
                model_name="matrix",
                job_id=job_id,
                dataset_version_id=training_version(world).id,
                trainer="tabular-classifier",
                format="flax-nnx",
                artifact_key=stored.key,
                size_bytes=stored.size_bytes,
                signature=signature or {"inputs": [], "outputs": []},
                metrics={"f1": 1.0},
                hyperparameters={},
                created_by=owner.user_id,
            ),
        )


async def model_alias_input(world: World, persona: Persona) -> dict[str, Any]:
    version = await registered_model_version(world)
    return {"input": {"version": to_global_id("ModelVersion", version.id), "alias": "staging"}}


async def model_gates_input(world: World, persona: Persona) -> dict[str, Any]:
    version = await registered_model_version(world)
    return {"model": to_global_id("Model", version.model_id), "gates": []}


async def fresh_deployment(world: World) -> uuid.UUID:
    """A deployment of its own per case (some cases stop theirs). Its version's bundle is no
    model, so its rollout fails: every state it can be in refuses what needs READY with a
    ConflictError, which counts as allowed."""
    owner = world.owner.principal
    assert owner is not None
    version = await registered_model_version(world)
    created = await deployments.create_deployment(
        world.platform,
        owner,
        deployments.NewDeployment(name=unique("d")[:60].lower(), version_id=version.id),
    )
    return created.id


async def create_deployment_input(world: World, persona: Persona) -> dict[str, Any]:
    version = await registered_model_version(world)
    name = unique("d")[:60].lower()
    return {"input": {"name": name, "modelVersion": to_global_id("ModelVersion", version.id)}}


async def batch_prediction_input(world: World, persona: Persona) -> dict[str, Any]:
    # A signature the training version's columns satisfy: the job is queued, never run.
    version = await registered_model_version(
        world,
        {
            "inputs": [{"name": "id", "dtype": "float32", "shape": [-1]}],
            "outputs": [{"name": "score", "dtype": "float32", "shape": [-1]}],
        },
    )
    return {
        "input": {
            "datasetVersion": to_global_id("DatasetVersion", training_version(world).id),
            "modelVersion": to_global_id("ModelVersion", version.id),
        }
    }


async def fresh_batch_prediction_job_id(world: World, persona: Persona) -> dict[str, Any]:
    # Cancelling is for good: each case cancels a queued job of its own (no worker runs here).
    owner = world.owner.principal
    assert owner is not None
    request = (await batch_prediction_input(world, persona))["input"]
    job = await submit_batch_prediction(
        world.platform,
        owner,
        BatchPredictionRequest(
            dataset_version_id=training_version(world).id,
            model_version_id=from_global_id(request["modelVersion"])[1],
        ),
    )
    return {"id": to_global_id("Job", job.id)}


async def fresh_deployment_id(world: World, persona: Persona) -> dict[str, Any]:
    return {"id": to_global_id("Deployment", await fresh_deployment(world))}


async def traffic_input(world: World, persona: Persona) -> dict[str, Any]:
    deployment_id = to_global_id("Deployment", await fresh_deployment(world))
    return {"input": {"deployment": deployment_id, "stablePercent": 100}}


async def predict_input(world: World, persona: Persona) -> dict[str, Any]:
    return {
        "id": to_global_id("Deployment", await fresh_deployment(world)),
        "inputs": [{"x": 1.0}],
    }


OPERATIONS: dict[str, Operation] = {
    "Mutation.createDeployment": Operation(
        """mutation($input: CreateDeploymentInput!) {
          createDeployment(input: $input) { __typename }
        }""",
        with_variables(create_deployment_input),
    ),
    "Mutation.updateDeploymentTraffic": Operation(
        """mutation($input: UpdateDeploymentTrafficInput!) {
          updateDeploymentTraffic(input: $input) { __typename }
        }""",
        with_variables(traffic_input),
    ),
    "Mutation.promoteDeployment": Operation(
        "mutation($id: ID!) { promoteDeployment(deployment: $id) { __typename } }",
        with_variables(fresh_deployment_id),
    ),
    "Mutation.rollbackDeployment": Operation(
        "mutation($id: ID!) { rollbackDeployment(deployment: $id) { __typename } }",
        with_variables(fresh_deployment_id),
    ),
    "Mutation.deleteDeployment": Operation(
        "mutation($id: ID!) { deleteDeployment(deployment: $id) { __typename } }",
        with_variables(fresh_deployment_id),
    ),
    "Mutation.predict": Operation(
        "mutation($id: ID!, $inputs: [JSON!]!) { predict(deployment: $id, inputs: $inputs) "
        "{ __typename } }",
        with_variables(predict_input),
    ),
    "Subscription.deploymentEvents": Operation(
        "subscription($id: ID!) { deploymentEvents(deploymentId: $id) { type state } }",
        with_variables(fresh_deployment_id),
    ),
    "Query.trainers": Operation("{ trainers { name } }"),
    "Mutation.submitBatchPredictionJob": Operation(
        """mutation($input: SubmitBatchPredictionJobInput!) {
          submitBatchPredictionJob(input: $input) { __typename }
        }""",
        with_variables(batch_prediction_input),
    ),
    "Mutation.cancelBatchPredictionJob": Operation(
        "mutation($id: ID!) { cancelBatchPredictionJob(id: $id) { __typename } }",
        with_variables(fresh_batch_prediction_job_id),
    ),
    "Mutation.submitTrainingJob": Operation(
        """mutation($input: SubmitTrainingJobInput!) {
          submitTrainingJob(input: $input) { __typename }
        }""",
        with_variables(submit_input),
    ),
    "Mutation.cancelTrainingJob": Operation(
        "mutation($id: ID!) { cancelTrainingJob(id: $id) { __typename } }",
        with_variables(fresh_training_job_id),
    ),
    "Mutation.setModelAlias": Operation(
        "mutation($input: SetModelAliasInput!) { setModelAlias(input: $input) { __typename } }",
        with_variables(model_alias_input),
    ),
    "Mutation.setModelPromotionGates": Operation(
        """mutation($model: ID!, $gates: JSON!) {
          setModelPromotionGates(model: $model, gates: $gates) { __typename }
        }""",
        with_variables(model_gates_input),
    ),
    "Mutation.createSweep": Operation(
        "mutation($input: CreateSweepInput!) { createSweep(input: $input) { __typename } }",
        with_variables(sweep_input),
    ),
    "Mutation.cancelSweep": Operation(
        "mutation($id: ID!) { cancelSweep(id: $id) { __typename } }",
        with_variables(fresh_sweep_id),
    ),
    "Mutation.promoteSweepTrial": Operation(
        # No trial has completed: a ConflictError, given only past authorization.
        'mutation($id: ID!) { promoteSweepTrial(id: $id, alias: "staging") { __typename } }',
        with_variables(fresh_sweep_id),
    ),
    "Subscription.sweepEvents": Operation(
        "subscription($id: ID!) { sweepEvents(sweepId: $id) { type state } }",
        with_variables(fresh_sweep_id),
    ),
    "Subscription.jobEvents": Operation(
        "subscription($job: ID!) { jobEvents(jobId: $job) { type state } }",
        with_variables(job_events_of),
    ),
    "Query.health": Operation("{ health { status } }"),
    "Query.viewer": Operation("{ viewer { username } }"),
    "Query.plugins": Operation("{ plugins { name state } }"),
    "Query.projects": Operation("{ projects(first: 5) { nodes { slug } } }"),
    "Query.project": Operation(
        "query($slug: String!) { project(slug: $slug) { id slug } }",
        with_variables(project_slug),
    ),
    "Query.users": Operation("{ users(first: 5) { nodes { username } } }"),
    "Query.node": Operation(
        "query($id: ID!) { node(id: $id) { __typename id } }", with_variables(own_user_id)
    ),
    "Mutation.login": Operation(
        """mutation($username: String!, $password: String!) {
          login(username: $username, password: $password) { __typename }
        }""",
        with_variables(login_credentials),
    ),
    "Mutation.logout": Operation("mutation { logout }", fresh_token_to_sign_out_with),
    "Mutation.createApiToken": Operation(
        """mutation($input: CreateApiTokenInput!) {
          createApiToken(input: $input) { __typename }
        }""",
        with_variables(token_input),
    ),
    "Mutation.revokeApiToken": Operation(
        "mutation($id: ID!) { revokeApiToken(id: $id) { __typename } }",
        with_variables(fresh_own_token_id),
    ),
    "Mutation.createUser": Operation(
        "mutation($input: CreateUserInput!) { createUser(input: $input) { __typename } }",
        with_variables(new_user_input),
    ),
    "Mutation.createProject": Operation(
        "mutation($input: CreateProjectInput!) { createProject(input: $input) { __typename } }",
        with_variables(new_project_input),
    ),
    "Mutation.archiveProject": Operation(
        "mutation($id: ID!) { archiveProject(id: $id) { __typename } }",
        with_variables(fresh_project_id),
    ),
    "Mutation.setProjectDicomPersonalTags": Operation(
        """mutation($project: ID!) {
          setProjectDicomPersonalTags(id: $project, keep: false) { __typename }
        }""",
        with_variables(project_global_id),
    ),
    "Mutation.addProjectMember": Operation(
        """mutation($input: ProjectMemberInput!) {
          addProjectMember(input: $input) { __typename }
        }""",
        with_variables(add_member_input),
    ),
    "Mutation.changeProjectMemberRole": Operation(
        """mutation($input: ProjectMemberInput!) {
          changeProjectMemberRole(input: $input) { __typename }
        }""",
        with_variables(change_role_input),
    ),
    "Mutation.removeProjectMember": Operation(
        """mutation($input: RemoveProjectMemberInput!) {
          removeProjectMember(input: $input) { __typename }
        }""",
        with_variables(remove_member_input),
    ),
    "Mutation.uploadDataset": Operation(
        """mutation($input: UploadDatasetInput!) {
          uploadDataset(input: $input) { __typename }
        }""",
        with_variables(upload_input),
        upload=True,
    ),
    "Mutation.setDatasetExpectations": Operation(
        """mutation($dataset: ID!, $expectations: JSON!) {
          setDatasetExpectations(dataset: $dataset, expectations: $expectations) { __typename }
        }""",
        with_variables(dataset_global_id),
    ),
    "Mutation.validateDatasetVersion": Operation(
        "mutation($id: ID!) { validateDatasetVersion(id: $id) { __typename } }",
        with_variables(version_global_id),
    ),
    "Mutation.transformDatasetVersion": Operation(
        """mutation($input: TransformDatasetVersionInput!) {
          transformDatasetVersion(input: $input) { __typename }
        }""",
        with_variables(transform_input),
    ),
    "Mutation.deleteDatasetVersion": Operation(
        "mutation($id: ID!) { deleteDatasetVersion(id: $id) { __typename } }",
        with_variables(fresh_version_id),
    ),
    "Subscription.projectAuditEvents": Operation(
        "subscription($project: ID!) { projectAuditEvents(project: $project) { action } }",
        with_variables(project_global_id),
    ),
    "Subscription.projectJobChanges": Operation(
        "subscription($project: ID!) { projectJobChanges(project: $project) { state } }",
        with_variables(project_with_a_training_job),
    ),
}
"""How to call each root field so that it succeeds for a caller who holds its grant."""


# Running an operation and telling what came of it -------------------------------------------


def classify(body: dict[str, Any], response_key: str) -> str:
    """What a GraphQL response says about authorization: an `Outcome`, or a description of
    anything else (which then fails the comparison, and shows what went wrong)."""
    codes = [(error.get("extensions") or {}).get("code") for error in body.get("errors") or []]
    # A multipart request is refused before GraphQL reads it when it carries no credentials,
    # in the shape every HTTP route answers with.
    if isinstance(body.get("error"), dict):
        codes.append(body["error"].get("code"))
    for outcome in (Outcome.UNAUTHENTICATED, Outcome.FORBIDDEN, Outcome.NOT_FOUND):
        if outcome.value in codes:
            return outcome
    if codes:
        return f"errors {codes}: {body['errors']}"
    value = (body.get("data") or {}).get(response_key)
    if value is None:
        return Outcome.NOT_FOUND
    typename = value.get("__typename") if isinstance(value, dict) else None
    if typename == "NotFoundError":
        return Outcome.NOT_FOUND
    # ConflictError is an answer about the object's state, reached only past authorization; any
    # other error member means the operation in OPERATIONS is not a valid one.
    if typename is not None and typename.endswith("Error") and typename != "ConflictError":
        return f"union member {typename}"
    return Outcome.ALLOWED


async def run_subscription(platform: Platform, document: str, call: Call) -> dict[str, Any]:
    """Subscribe as a graphql-transport-ws connection would once `connection_init` passed, and
    wait for the first result; an event is published on the project's channel until one comes."""
    context = await subscription_context(platform, call.token, unique("subscription"))
    schema = build_schema(platform)
    results = await schema.subscribe(document, call.variables, context)
    first = asyncio.ensure_future(anext(results))
    # A job's events start with a replay of its history; a project's audit events and job
    # changes need one published.
    project = call.variables.get("project")
    job = announced_jobs.get(project_uuid(project)) if project is not None else None
    change = {"job_id": str(job), "kind": TRAINING_JOB, "state": "QUEUED"}
    event = {
        "id": 0,
        "occurred_at": datetime.now(UTC).isoformat(),
        "actor_id": None,
        "actor_name": "matrix",
        "action": "matrix.probe",
        "outcome": "success",
        "object_type": None,
        "object_id": None,
        "project_id": None,
        "request_id": None,
        "details": {},
    }
    try:
        async with asyncio.timeout(SUBSCRIPTION_WAIT_S):
            while not first.done():
                # Pub/sub keeps nothing for late subscribers: publish until one is listening.
                if project is not None:
                    await platform.events.publish(audit_channel(project_uuid(project)), event)
                if job is not None:
                    channel = project_jobs_channel(project_uuid(project))
                    await platform.events.publish(channel, change)
                await asyncio.wait({first}, timeout=0.05)
        result = first.result()
    except TimeoutError:
        message = f"no result within {SUBSCRIPTION_WAIT_S} s"
        return {"data": None, "errors": [{"message": message, "extensions": {"code": "TIMEOUT"}}]}
    finally:
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await first
        await results.aclose()
    errors = [error.formatted for error in result.errors or []]
    return {"data": result.data, **({"errors": errors} if errors else {})}


async def upload(client: httpx.AsyncClient, document: str, call: Call) -> dict[str, Any]:
    """A GraphQL multipart request (the spec's `operations` and `map` fields) with a small CSV."""
    variables = {**call.variables, "input": {**call.variables["input"], "file": None}}
    headers = {"x-aiaas-csrf": "1"}
    if call.token is not None:
        headers["authorization"] = f"Bearer {call.token}"
    response = await client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": document, "variables": variables}),
            "map": json.dumps({"0": ["variables.input.file"]}),
        },
        files={"0": ("data.csv", f"id,label\n1,marker-{uuid.uuid4().hex}\n".encode(), "text/csv")},
        headers=headers,
    )
    body: dict[str, Any] = response.json()
    return body


def project_uuid(global_id: str) -> uuid.UUID:
    _, object_id = from_global_id(global_id)
    return object_id


async def run_case(
    world: World, client: httpx.AsyncClient, field_name: str, persona: Persona
) -> tuple[str, dict[str, Any]]:
    operation = OPERATIONS[field_name]
    call = await operation.prepare(world, persona)
    if field_name.startswith("Subscription."):
        body = await run_subscription(world.platform, operation.document, call)
    elif operation.upload:
        body = await upload(client, operation.document, call)
    else:
        _, body = await graphql(client, operation.document, call.variables, token=call.token)
    return classify(body, field_name.split(".", 1)[1]), body


# The tests ----------------------------------------------------------------------------------


def builtin_root_fields() -> list[str]:
    return sorted(root_field_policies(builtin_schema()))


ROOT_FIELDS = builtin_root_fields()


def test_every_root_field_of_the_schema_has_a_documented_policy(platform: Platform) -> None:
    matrix = documented_matrix()
    policies = root_field_policies(build_schema(platform))

    undocumented = sorted(set(policies) - set(matrix.fields))
    assert not undocumented, (
        f"root fields without a row in {ACCESS_CONTROL.name}: {undocumented}; run "
        "`aiaas export-access-control --output docs/access-control.md`"
    )
    for name, policy in policies.items():
        assert policy is not None, f"{name} declares no policy"
        grant = None if policy.is_public else f"{policy.resource}:{policy.action}"
        assert matrix.fields[name] == (policy.scope, grant), name


def test_every_documented_grant_has_a_row_with_a_column_for_every_persona() -> None:
    page = ACCESS_CONTROL.read_text(encoding="utf-8")
    matrix = documented_matrix()

    header = set(markdown_table(page, "Grants")[0])
    assert set(COLUMNS) <= header, f"the Grants table lacks columns: {set(COLUMNS) - header}"
    for name, (_, grant) in matrix.fields.items():
        if grant is not None:
            assert grant in matrix.grants, f"{name} needs {grant}, which the Grants table lacks"


def test_every_root_field_has_an_operation_in_this_test(platform: Platform) -> None:
    fields = set(root_field_policies(build_schema(platform)))

    missing = sorted(fields - set(OPERATIONS))
    stale = sorted(set(OPERATIONS) - fields)

    assert not missing, f"add a minimal valid operation to OPERATIONS for: {missing}"
    assert not stale, f"OPERATIONS names fields the schema does not have: {stale}"
    # The cases below are generated from the built-in schema at collection: it must be the one
    # the app serves, or a field could escape them.
    assert sorted(fields) == ROOT_FIELDS


@pytest.mark.parametrize(
    ("field_name", "persona_name"),
    [
        pytest.param(field_name, persona, id=f"{field_name}-{persona}")
        for field_name in ROOT_FIELDS
        for persona in PERSONAS
    ],
)
async def test_field_answers_each_persona_as_documented(
    world: World, client: httpx.AsyncClient, field_name: str, persona_name: str
) -> None:
    matrix = documented_matrix()
    if field_name not in matrix.fields:
        pytest.fail(f"{field_name} has no row in {ACCESS_CONTROL.name}")
    if field_name not in OPERATIONS:
        pytest.fail(f"{field_name} has no operation in OPERATIONS: add a minimal valid one")
    expected = expected_outcome(matrix, field_name, persona_name)

    outcome, body = await run_case(world, client, field_name, world.personas[persona_name])

    assert outcome == expected, f"{field_name} as {persona_name}: {body}"


def test_the_matrix_parser_reads_the_page_as_written() -> None:
    # A parser that read every cell as "-" would make every case expect a refusal; pin a few
    # cells of each kind so that it cannot.
    matrix = documented_matrix()

    assert matrix.fields["Query.health"] == ("public", None)
    assert matrix.fields["Mutation.archiveProject"] == ("project", "project:archive")
    assert matrix.grants["project:archive"] == {
        "signed out": False,
        "signed in": False,
        "viewer": False,
        "developer": False,
        "maintainer": True,
        "owner": True,
        "admin": True,
    }
    assert matrix.grants["viewer:read"]["signed in"] is True
    assert expected_outcome(matrix, "Mutation.archiveProject", "outsider") is Outcome.NOT_FOUND
    assert expected_outcome(matrix, "Mutation.archiveProject", "viewer") is Outcome.FORBIDDEN
    assert expected_outcome(matrix, "Query.users", "owner") is Outcome.FORBIDDEN
    assert expected_outcome(matrix, "Query.users", "anonymous") is Outcome.UNAUTHENTICATED
