from __future__ import annotations

import strawberry
from strawberry.types import Info

from aiaas.core.identity import projects
from aiaas.core.pagination import DEFAULT_PAGE_SIZE
from aiaas.graphql.context import RequestContext
from aiaas.graphql.permissions import project_by_slug, requires, requires_in_project
from aiaas.graphql.projects.types import Project
from aiaas.graphql.relay import Connection, page_connection


@strawberry.type
class ProjectQuery:
    @strawberry.field(
        extensions=requires("project", "list"),
        description="The projects the caller is a member of (admins: all), oldest first. "
        "`first` is at most 100.",
    )
    async def projects(
        self,
        info: Info,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        include_archived: bool = False,
    ) -> Connection[Project]:
        context: RequestContext = info.context
        principal = context.require_principal()
        return await page_connection(
            info,
            Project.from_domain,
            projects.list_projects,
            first=first,
            after=after,
            include_archived=include_archived,
            member=None if principal.is_admin else principal.user_id,
        )

    @strawberry.field(
        extensions=requires_in_project("project", "read", project_by_slug("slug")),
        description="A project by slug; null if there is none the caller may see.",
    )
    async def project(self, info: Info, slug: str) -> Project | None:
        found = await info.context.loader("project_by_slug").load(slug)
        return Project.from_domain(found) if found is not None else None
