"""`node(id)`: any object by its global id, each type checked by its own grant."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import strawberry
from strawberry.types import Info

from aiaas.core.errors import NotFoundError, PermissionDeniedError
from aiaas.core.identity import accounts as identity
from aiaas.core.training import TRAINING_JOB
from aiaas.graphql.context import RequestContext
from aiaas.graphql.datasets.types import Dataset, DatasetVersion
from aiaas.graphql.deployments.types import Deployment
from aiaas.graphql.identity.types import ApiToken, User
from aiaas.graphql.jobs.types import Job
from aiaas.graphql.models.types import Model, ModelVersion
from aiaas.graphql.permissions import authorize_in_project, requires
from aiaas.graphql.projects.types import Project
from aiaas.graphql.relay import Node, from_global_id
from aiaas.graphql.sweeps.types import Sweep
from aiaas.graphql.training.types import TrainingJob


async def _project(context: RequestContext, project_id: UUID) -> Node | None:
    found = await context.loader("project").load(project_id)
    if found is None:
        return None
    await authorize_in_project(context, found.id, "project", "read")
    return Project.from_domain(found)


async def _user(context: RequestContext, user_id: UUID) -> Node | None:
    principal = context.require_principal()
    if user_id != principal.user_id:
        await context.platform.authorize(principal, "*", "user", "read")
    found = await context.loader("user").load(user_id)
    return User.from_domain(found) if found is not None else None


async def _api_token(context: RequestContext, token_id: UUID) -> Node | None:
    principal = context.require_principal()
    async with context.platform.metadata.acquire() as connection:
        tokens = await identity.list_api_tokens(connection, principal.user_id)
    mine = {token.id: token for token in tokens}
    return ApiToken.from_domain(mine[token_id]) if token_id in mine else None


def _owned(loader: str, resource: str, present: Callable[[Any], Node]) -> NodeFetcher:
    """A node type that belongs to a project: readable with `resource:read` there."""

    async def fetch(context: RequestContext, object_id: UUID) -> Node | None:
        found = await context.loader(loader).load(object_id)
        if found is None:
            return None
        await authorize_in_project(context, found.project_id, resource, "read")
        return present(found)

    return fetch


NodeFetcher = Callable[[RequestContext, UUID], Awaitable[Node | None]]


async def _training_job(context: RequestContext, job_id: UUID) -> Node | None:
    found = await context.loader("job").load(job_id)
    if found is None or found.kind != TRAINING_JOB:
        return None
    await authorize_in_project(context, found.project_id, "job", "read")
    return TrainingJob.from_domain(found)


async def _deployment(context: RequestContext, deployment_id: UUID) -> Node | None:
    found = await context.loader("deployment").load(deployment_id)
    if found is None:
        return None
    await authorize_in_project(context, found.project_id, "deployment", "read")
    project = await context.loader("project").load(found.project_id)
    return Deployment.from_domain(found, project.slug)


# How each node type is fetched, and checked: not being allowed to see it reads as null.
_NODE_TYPES: dict[str, NodeFetcher] = {
    "Project": _project,
    "User": _user,
    "ApiToken": _api_token,
    "Dataset": _owned("dataset", "dataset", Dataset.from_domain),
    "DatasetVersion": _owned("dataset_version", "dataset", DatasetVersion.from_domain),
    "Job": _owned("job", "job", Job.from_domain),
    "TrainingJob": _training_job,
    "Model": _owned("model", "model", Model.from_domain),
    "ModelVersion": _owned("model_version", "model", ModelVersion.from_domain),
    "Deployment": _deployment,
    "Sweep": _owned("sweep", "sweep", Sweep.from_domain),
}


@strawberry.type
class NodeQuery:
    @strawberry.field(
        extensions=requires("node", "read"),
        description="Any object by its global id; null if there is none the caller may see.",
    )
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        context: RequestContext = info.context
        type_name, object_id = from_global_id(id)
        fetch = _NODE_TYPES.get(type_name)
        if fetch is None:
            return None
        try:
            return await fetch(context, object_id)
        except (NotFoundError, PermissionDeniedError):
            return None
