from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import strawberry
from strawberry.types import Info

from aiaas.core import projects
from aiaas.graphql.errors import ConflictError, InvalidInputError, NotFoundError
from aiaas.graphql.identity.types import User
from aiaas.graphql.relay import Node, to_global_id


@strawberry.type(description="A project: the unit of ownership and of access control.")
class Project(Node):
    slug: str
    name: str
    description: str
    created_at: datetime
    archived_at: datetime | None
    created_by_id: strawberry.Private[UUID | None]

    @strawberry.field
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @strawberry.field(description="Who created it; null once that user is gone.")
    async def created_by(self, info: Info) -> User | None:
        if self.created_by_id is None:
            return None
        user = await info.context.loader("user").load(self.created_by_id)
        return User.from_domain(user) if user is not None else None

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
        )


@strawberry.input
class CreateProjectInput:
    slug: str = strawberry.field(
        description="Lowercase letters, digits and hyphens; 1 to 63 characters. Unique."
    )
    name: str
    description: str = ""


@strawberry.type
class CreateProjectSuccess:
    project: Project


@strawberry.type
class ArchiveProjectSuccess:
    project: Project


CreateProjectResult = Annotated[
    CreateProjectSuccess | InvalidInputError | ConflictError,
    strawberry.union("CreateProjectResult"),
]
ArchiveProjectResult = Annotated[
    ArchiveProjectSuccess | InvalidInputError | NotFoundError | ConflictError,
    strawberry.union("ArchiveProjectResult"),
]
