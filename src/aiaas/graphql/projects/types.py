"""The `Project` type and what hangs off it (its members, audit trail, datasets, training jobs,
models and deployments), with the inputs and results of the project mutations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from aiaas.core import audit
from aiaas.core import jobs as core_jobs
from aiaas.core.data import datasets as core_datasets
from aiaas.core.identity import members, project_settings, projects
from aiaas.core.identity.access import ProjectRole as CoreProjectRole
from aiaas.core.pagination import DEFAULT_PAGE_SIZE
from aiaas.core.serving import deployments as core_deployments
from aiaas.core.training import TRAINING_JOB, compare_jobs, list_sweeps
from aiaas.core.training import registry as core_models
from aiaas.graphql.context import RequestContext
from aiaas.graphql.datasets.types import Dataset
from aiaas.graphql.deployments.types import Deployment
from aiaas.graphql.errors import ConflictResult, InvalidInputResult, NotFoundResult
from aiaas.graphql.identity.types import User
from aiaas.graphql.models.types import Model
from aiaas.graphql.permissions import project_of_source, requires_in_project
from aiaas.graphql.relay import (
    Connection,
    Node,
    page_connection,
    to_global_id,
    uuid_of,
)
from aiaas.graphql.sweeps.types import Sweep
from aiaas.graphql.training.types import TrainingJob, TrainingJobComparison

ProjectRole = strawberry.enum(
    CoreProjectRole,
    name="ProjectRole",
    description="Each role holds every grant of the roles below it (docs/access-control.md).",
)


@strawberry.type(description="A member of a project and their role in it.")
class ProjectMember:
    role: ProjectRole  # type: ignore[valid-type]
    added_at: datetime
    user_uuid: strawberry.Private[UUID]

    @strawberry.field
    async def user(self, info: Info) -> User:
        found = await info.context.loader("user").load(self.user_uuid)
        return User.from_domain(found)

    @classmethod
    def from_domain(cls, member: members.ProjectMember) -> ProjectMember:
        return cls(role=member.role, added_at=member.added_at, user_uuid=member.user_id)


@strawberry.type(description="One entry of the append-only audit trail.")
class AuditEvent:
    id: strawberry.ID
    occurred_at: datetime
    actor: str | None = strawberry.field(description="The username, as it was then.")
    action: str
    outcome: str = strawberry.field(description="`success`, `denied` or `failed`.")
    object_type: str | None
    object_id: str | None
    request_id: str | None = strawberry.field(description="The server's id of the request.")
    correlation_id: str | None = strawberry.field(
        description="The caller's own id of the request (its `X-Request-ID`), if it sent one."
    )
    details: JSON

    @classmethod
    def from_domain(cls, event: audit.AuditEvent) -> AuditEvent:
        return cls(
            id=strawberry.ID(str(event.id)),
            occurred_at=event.occurred_at,
            actor=event.actor_name,
            action=event.action,
            outcome=event.outcome,
            object_type=event.object_type,
            object_id=event.object_id,
            request_id=event.request_id,
            correlation_id=event.correlation_id,
            details=cast(JSON, event.details),
        )


def _comparison_row(row: Any) -> dict[str, Any]:
    """A compared job (`core.training.compare_jobs`) as `rows` answers it: with global ids."""
    version_id = row.model_version_id
    return {
        **row.as_json(),
        "jobId": to_global_id("TrainingJob", row.job.id),
        "modelVersionId": to_global_id("ModelVersion", version_id) if version_id else None,
    }


@strawberry.type(description="A project: the unit of ownership and of access control.")
class Project(Node):
    slug: str
    name: str
    description: str
    created_at: datetime
    archived_at: datetime | None
    created_by_id: strawberry.Private[UUID | None]
    project_uuid: strawberry.Private[UUID]

    @strawberry.field
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @strawberry.field(description="Who created it; null once that user is gone.")
    async def created_by(self, info: Info) -> User | None:
        if self.created_by_id is None:
            return None
        user = await info.context.loader("user").load(self.created_by_id)
        return User.from_domain(user) if user is not None else None

    @strawberry.field(description="The caller's role here; null for an admin who is no member.")
    async def viewer_role(self, info: Info) -> ProjectRole | None:  # type: ignore[valid-type]
        context: RequestContext = info.context
        principal = context.require_principal()
        async with context.platform.metadata.acquire() as connection:
            return await members.member_role(connection, self.project_uuid, principal.user_id)

    @strawberry.field(
        description="Whether DICOM files uploaded here keep their personal tags (patient name, "
        "birth date, ids...) in their version's `dicom_tags`: false unless an owner sets it "
        "with setProjectDicomPersonalTags (docs/guides/images.md)."
    )
    async def keep_dicom_personal_tags(self, info: Info) -> bool:
        context: RequestContext = info.context
        async with context.platform.metadata.acquire() as connection:
            return await project_settings.keeps_dicom_personal_tags(connection, self.project_uuid)

    @strawberry.field(extensions=requires_in_project("member", "list", project_of_source))
    async def members(
        self, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[ProjectMember]:
        return await page_connection(
            info,
            ProjectMember.from_domain,
            members.list_members,
            self.project_uuid,
            first=first,
            after=after,
        )

    @strawberry.field(
        extensions=requires_in_project("audit", "read", project_of_source),
        description="The project's audit trail, newest first (owners and admins).",
    )
    async def audit_events(
        self,
        info: Info,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Connection[AuditEvent]:
        return await page_connection(
            info,
            AuditEvent.from_domain,
            audit.list_audit_events,
            project_id=self.project_uuid,
            first=first,
            after=after,
            actor=actor,
            action=action,
            since=since,
            until=until,
        )

    @strawberry.field(extensions=requires_in_project("dataset", "read", project_of_source))
    async def datasets(
        self, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Dataset]:
        return await page_connection(
            info,
            Dataset.from_domain,
            core_datasets.list_datasets,
            self.project_uuid,
            first=first,
            after=after,
        )

    @strawberry.field(
        extensions=requires_in_project("dataset", "read", project_of_source),
        description="A dataset by name.",
    )
    async def dataset(self, info: Info, name: str) -> Dataset | None:
        async with info.context.platform.metadata.acquire() as connection:
            found = await core_datasets.dataset_by_name(connection, self.project_uuid, name)
        return Dataset.from_domain(found) if found is not None else None

    @strawberry.field(
        extensions=requires_in_project("job", "read", project_of_source),
        description="The project's training jobs, newest first.",
    )
    async def training_jobs(
        self, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[TrainingJob]:
        return await page_connection(
            info,
            TrainingJob.from_domain,
            core_jobs.list_jobs,
            self.project_uuid,
            TRAINING_JOB,
            first=first,
            after=after,
        )

    @strawberry.field(
        extensions=requires_in_project("sweep", "read", project_of_source),
        description="The project's hyperparameter sweeps, newest first.",
    )
    async def sweeps(
        self, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Sweep]:
        return await page_connection(
            info, Sweep.from_domain, list_sweeps, self.project_uuid, first=first, after=after
        )

    @strawberry.field(
        extensions=requires_in_project("job", "read", project_of_source),
        description="Training jobs of this project side by side (at most 20): their "
        "hyperparameters and final metrics.",
    )
    async def compare_training_jobs(
        self, info: Info, ids: list[strawberry.ID]
    ) -> TrainingJobComparison:
        job_ids = [
            uuid_of(job_id, ("TrainingJob", "Job"), f"ids.{index}")
            for index, job_id in enumerate(ids)
        ]
        async with info.context.platform.metadata.acquire() as connection:
            rows = await compare_jobs(connection, self.project_uuid, job_ids)
        return TrainingJobComparison(
            jobs=[TrainingJob.from_domain(row.job) for row in rows],
            hyperparameter_names=sorted({k for row in rows for k in row.hyperparameters}),
            metric_names=sorted({k for row in rows for k in row.final_metrics}),
            rows=cast(JSON, [_comparison_row(row) for row in rows]),
        )

    @strawberry.field(extensions=requires_in_project("model", "read", project_of_source))
    async def models(
        self, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Model]:
        return await page_connection(
            info,
            Model.from_domain,
            core_models.list_models,
            self.project_uuid,
            first=first,
            after=after,
        )

    @strawberry.field(
        extensions=requires_in_project("model", "read", project_of_source),
        description="A registered model by name.",
    )
    async def model(self, info: Info, name: str) -> Model | None:
        async with info.context.platform.metadata.acquire() as connection:
            found = await core_models.model_by_name(connection, self.project_uuid, name)
        return Model.from_domain(found) if found is not None else None

    @strawberry.field(
        extensions=requires_in_project("deployment", "read", project_of_source),
        description="The project's deployments, newest first; stopped ones on request.",
    )
    async def deployments(
        self,
        info: Info,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        include_stopped: bool = False,
    ) -> Connection[Deployment]:
        return await page_connection(
            info,
            lambda found: Deployment.from_domain(found, self.slug),
            core_deployments.list_deployments,
            self.project_uuid,
            first=first,
            after=after,
            include_stopped=include_stopped,
        )

    @strawberry.field(
        extensions=requires_in_project("deployment", "read", project_of_source),
        description="The live (not stopped) deployment of that name.",
    )
    async def deployment(self, info: Info, name: str) -> Deployment | None:
        async with info.context.platform.metadata.acquire() as connection:
            found = await core_deployments.live_deployment_by_name(
                connection, self.project_uuid, name
            )
        return Deployment.from_domain(found, self.slug) if found is not None else None

    @classmethod
    def from_domain(cls, project: projects.Project) -> Project:
        return cls(
            id=to_global_id("Project", project.id),
            slug=project.slug,
            name=project.name,
            description=project.description,
            created_at=project.created_at,
            archived_at=project.archived_at,
            created_by_id=project.created_by,
            project_uuid=project.id,
        )


@strawberry.input
class CreateProjectInput:
    slug: str = strawberry.field(
        description="Lowercase letters, digits and hyphens; 1 to 63 characters. Unique."
    )
    name: str
    description: str = ""


@strawberry.input
class ProjectMemberInput:
    project: strawberry.ID
    username: str
    role: ProjectRole  # type: ignore[valid-type]


@strawberry.input
class RemoveProjectMemberInput:
    project: strawberry.ID
    username: str


@strawberry.type
class CreateProjectSuccess:
    project: Project


@strawberry.type
class ArchiveProjectSuccess:
    project: Project


@strawberry.type
class ProjectMemberSuccess:
    member: ProjectMember


@strawberry.type
class RemoveProjectMemberSuccess:
    removed_username: str


CreateProjectResult = Annotated[
    CreateProjectSuccess | InvalidInputResult | ConflictResult,
    strawberry.union("CreateProjectResult"),
]


@strawberry.type(description="A project's settings, as a change of them left them.")
class ProjectSettingsSuccess:
    project: Project
    keep_dicom_personal_tags: bool


ProjectSettingsResult = Annotated[
    ProjectSettingsSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("ProjectSettingsResult"),
]
ArchiveProjectResult = Annotated[
    ArchiveProjectSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("ArchiveProjectResult"),
]
ProjectMemberResult = Annotated[
    ProjectMemberSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("ProjectMemberResult"),
]
RemoveProjectMemberResult = Annotated[
    RemoveProjectMemberSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("RemoveProjectMemberResult"),
]
