from __future__ import annotations

from collections.abc import Awaitable, Callable

import strawberry
from strawberry.types import Info

from aiaas.core import errors
from aiaas.core.identity import members, project_settings, projects
from aiaas.core.identity.access import ProjectRole as CoreProjectRole
from aiaas.graphql.context import RequestContext
from aiaas.graphql.errors import ConflictResult, InvalidInputResult, expected
from aiaas.graphql.permissions import project_by_global_id, requires, requires_in_project
from aiaas.graphql.projects.types import (
    ArchiveProjectResult,
    ArchiveProjectSuccess,
    CreateProjectInput,
    CreateProjectResult,
    CreateProjectSuccess,
    Project,
    ProjectMember,
    ProjectMemberInput,
    ProjectMemberResult,
    ProjectMemberSuccess,
    ProjectSettingsResult,
    ProjectSettingsSuccess,
    RemoveProjectMemberInput,
    RemoveProjectMemberResult,
    RemoveProjectMemberSuccess,
)
from aiaas.graphql.relay import uuid_of

MEMBER_OF_INPUT = project_by_global_id("project", within="input")


@strawberry.type
class ProjectMutation:
    @strawberry.mutation(
        extensions=requires("project", "create"),
        description="Create a project; the caller becomes its owner.",
    )
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
            return InvalidInputResult.from_exception(exc)
        except errors.ConflictError as exc:
            return ConflictResult.from_exception(exc)
        return CreateProjectSuccess(project=Project.from_domain(project))

    @strawberry.mutation(
        extensions=requires_in_project("project", "archive", project_by_global_id("id")),
        description="Archive a project, for good: it stays readable and is otherwise "
        "read-only; every change to it answers ConflictError. Running deployments keep serving "
        "and running jobs go on until stopped with deleteDeployment or cancelTrainingJob.",
    )
    async def archive_project(self, info: Info, id: strawberry.ID) -> ArchiveProjectResult:
        context: RequestContext = info.context
        project_id = uuid_of(id, "Project", "id")

        async def archive() -> ArchiveProjectSuccess:
            project = await projects.archive_project(
                context.platform,
                context.require_principal(),
                project_id,
                request_id=context.request_id,
            )
            return ArchiveProjectSuccess(project=Project.from_domain(project))

        return await expected(archive)

    @strawberry.mutation(
        extensions=requires_in_project("project", "configure", project_by_global_id("id")),
        description="Set whether DICOM files uploaded into the project's image datasets keep "
        "their personal tags (patient name, birth date, ids...) in `dicom_tags`; they are "
        "dropped unless this is true. Audited; every DICOM upload's audit row also says "
        "whether its tags were kept. Versions uploaded before keep what they were made with.",
    )
    async def set_project_dicom_personal_tags(
        self, info: Info, id: strawberry.ID, keep: bool
    ) -> ProjectSettingsResult:
        context: RequestContext = info.context
        project_id = uuid_of(id, "Project", "id")

        async def configure() -> ProjectSettingsSuccess:
            kept = await project_settings.set_keep_dicom_personal_tags(
                context.platform,
                context.require_principal(),
                project_id,
                keep,
                request_id=context.request_id,
            )
            async with context.platform.metadata.acquire() as connection:
                project = await projects.projects_by_ids(connection, [project_id])
            return ProjectSettingsSuccess(
                project=Project.from_domain(project[project_id]), keep_dicom_personal_tags=kept
            )

        return await expected(configure)

    @strawberry.mutation(
        extensions=requires_in_project("member", "manage", MEMBER_OF_INPUT),
        description="Add a user to a project. Maintainers add up to maintainer; owners any role.",
    )
    async def add_project_member(
        self, info: Info, input: ProjectMemberInput
    ) -> ProjectMemberResult:
        return await _member_change(info, input, members.add_member)

    @strawberry.mutation(
        extensions=requires_in_project("member", "manage", MEMBER_OF_INPUT),
        description="Change a member's role. Only owners make, demote or remove owners; a "
        "project keeps at least one owner.",
    )
    async def change_project_member_role(
        self, info: Info, input: ProjectMemberInput
    ) -> ProjectMemberResult:
        return await _member_change(info, input, members.change_member_role)

    @strawberry.mutation(extensions=requires_in_project("member", "manage", MEMBER_OF_INPUT))
    async def remove_project_member(
        self, info: Info, input: RemoveProjectMemberInput
    ) -> RemoveProjectMemberResult:
        context: RequestContext = info.context
        project_id = uuid_of(input.project, "Project", "input.project")

        async def remove() -> RemoveProjectMemberSuccess:
            await members.remove_member(
                context.platform,
                context.require_principal(),
                project_id,
                username=input.username,
                request_id=context.request_id,
            )
            return RemoveProjectMemberSuccess(removed_username=input.username)

        return await expected(remove)


MemberChange = Callable[..., Awaitable[members.ProjectMember]]


async def _member_change(
    info: Info, input: ProjectMemberInput, change: MemberChange
) -> ProjectMemberResult:
    context: RequestContext = info.context
    project_id = uuid_of(input.project, "Project", "input.project")

    async def apply() -> ProjectMemberSuccess:
        member = await change(
            context.platform,
            context.require_principal(),
            project_id,
            username=input.username,
            role=CoreProjectRole(input.role),
            request_id=context.request_id,
        )
        return ProjectMemberSuccess(member=ProjectMember.from_domain(member))

    return await expected(apply)
