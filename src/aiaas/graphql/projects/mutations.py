from __future__ import annotations

import strawberry
from strawberry.types import Info

from aiaas.core import errors, projects
from aiaas.core.errors import AiaasError, NotFoundError
from aiaas.graphql.context import RequestContext
from aiaas.graphql.errors import ConflictError, InvalidInputError, as_expected_error
from aiaas.graphql.permissions import requires
from aiaas.graphql.projects.types import (
    ArchiveProjectResult,
    ArchiveProjectSuccess,
    CreateProjectInput,
    CreateProjectResult,
    CreateProjectSuccess,
    Project,
)
from aiaas.graphql.relay import from_global_id


@strawberry.type
class ProjectMutation:
    @strawberry.mutation(extensions=requires("project", "create"))
    async def create_project(self, info: Info, input: CreateProjectInput) -> CreateProjectResult:
        context: RequestContext = info.context
        try:
            project = await projects.create_project(
                context.platform,
                context.require_principal(),
                slug=input.slug,
                name=input.name,
                description=input.description,
                request_id=context.request_id,
            )
        except errors.InputError as exc:
            return InvalidInputError.from_exception(exc)
        except errors.ConflictError as exc:
            return ConflictError.from_exception(exc)
        return CreateProjectSuccess(project=Project.from_domain(project))

    @strawberry.mutation(
        extensions=requires("project", "archive"),
        description="Archive a project: it stays readable and takes no new work.",
    )
    async def archive_project(self, info: Info, id: strawberry.ID) -> ArchiveProjectResult:
        context: RequestContext = info.context
        try:
            type_name, project_id = from_global_id(id)
            if type_name != "Project":
                raise NotFoundError("no such project")
            project = await projects.archive_project(
                context.platform,
                context.require_principal(),
                project_id,
                request_id=context.request_id,
            )
        except AiaasError as exc:
            return as_expected_error(exc)
        return ArchiveProjectSuccess(project=Project.from_domain(project))
