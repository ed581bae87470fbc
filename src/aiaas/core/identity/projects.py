"""Projects: the unit of ownership. Every dataset, job, model and deployment belongs to one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

import asyncpg

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.errors import ConflictError, InputError, NotFoundError
from aiaas.core.pagination import Page, fetch_page
from aiaas.core.storage import Connection, Record, returned_row

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

SLUG = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 10_000


@dataclass(frozen=True)
class Project:
    id: UUID
    slug: str
    name: str
    description: str
    created_by: UUID | None
    created_at: datetime
    archived_at: datetime | None

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None


_COLUMNS = "id, slug, name, description, created_by, created_at, archived_at"
_SELECT = f"SELECT {_COLUMNS} FROM projects"


def _to_project(row: Record) -> Project:
    return Project(**dict(row))


def check_project_input(slug: str, name: str, description: str) -> None:
    problems: dict[str, str] = {}
    if not SLUG.fullmatch(slug):
        problems["slug"] = (
            "1 to 63 lowercase letters, digits and hyphens, starting and ending with a letter "
            "or digit"
        )
    if not name.strip() or len(name) > MAX_NAME_LENGTH:
        problems["name"] = f"must be 1 to {MAX_NAME_LENGTH} characters and not blank"
    if len(description) > MAX_DESCRIPTION_LENGTH:
        problems["description"] = f"must be at most {MAX_DESCRIPTION_LENGTH} characters"
    if problems:
        raise InputError("invalid project", field_errors=problems)


async def create_project(
    platform: Platform,
    actor: Principal,
    *,
    slug: str,
    name: str,
    description: str = "",
    request_id: str | None = None,
) -> Project:
    async with AuditedChange(platform, actor, "project.create", request_id) as change:
        # Checked inside the change, so that bad input is audited as a failed attempt.
        check_project_input(slug, name, description)
        try:
            row = await change.connection.fetchrow(
                "INSERT INTO projects (slug, name, description, created_by) "
                f"VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
                slug,
                name.strip(),
                description,
                actor.user_id,
            )
        except asyncpg.UniqueViolationError:
            raise ConflictError(
                f"a project with slug {slug!r} already exists",
                details={"field": "slug"},
            ) from None
        project = _to_project(returned_row(row))
        # Whoever creates a project owns it.
        await change.connection.execute(
            "INSERT INTO project_members (project_id, user_id, role, added_by) "
            "VALUES ($1, $2, 'owner', $2)",
            project.id,
            actor.user_id,
        )
        await change.record(
            object_type="project",
            object_id=str(project.id),
            project_id=project.id,
            details={"slug": slug},
        )
    # The creator's ownership must hold for their very next request, here at least; other
    # processes hear of it through the policy's change notification.
    await platform.enforcer.refresh()
    return project


async def archive_project(
    platform: Platform, actor: Principal, project_id: UUID, *, request_id: str | None = None
) -> Project:
    """Archive a project, for good. Archived projects stay readable and are otherwise read-only
    (`aiaas.core.identity.access.allowed_in_archived_project` says what is still allowed)."""
    async with AuditedChange(platform, actor, "project.archive", request_id) as change:
        found = await lock_project(change.connection, project_id)
        if found.is_archived:
            raise ConflictError(f"project {found.slug!r} is already archived")
        row = await change.connection.fetchrow(
            f"UPDATE projects SET archived_at = clock_timestamp() WHERE id = $1 "
            f"RETURNING {_COLUMNS}",
            project_id,
        )
        project = _to_project(returned_row(row))
        await change.record(
            object_type="project",
            object_id=str(project.id),
            project_id=project.id,
            details={"slug": project.slug},
        )
    return project


async def lock_project(connection: Connection, project_id: UUID) -> Project:
    """The project, its row locked until the transaction ends: changes made to one project
    (archiving it, changing its members) happen one after the other. `NotFoundError` if there
    is no such project."""
    row = await connection.fetchrow(f"{_SELECT} WHERE id = $1 FOR UPDATE", project_id)
    if row is None:
        raise NotFoundError("no such project")
    return _to_project(row)


async def hold_project(connection: Connection, project_id: UUID) -> Project:
    """The project, its row share-locked until the transaction ends: it cannot be archived
    meanwhile, while other work in the project goes on beside this. For a change that must not
    land in a project once it is archived: check `is_archived` on what this returns.
    `NotFoundError` if there is no such project."""
    row = await connection.fetchrow(f"{_SELECT} WHERE id = $1 FOR SHARE", project_id)
    if row is None:
        raise NotFoundError("no such project")
    return _to_project(row)


ARCHIVED_IS_READ_ONLY = "the project is archived: it is read-only"


def refuse_if_archived(project: Project) -> Project:
    """The project, if it still takes changes; `ConflictError` if it is archived. An archived
    project is read-only for good: there is no way to unarchive one."""
    if project.is_archived:
        raise ConflictError(ARCHIVED_IS_READ_ONLY, details={"project": project.slug})
    return project


def archived_job_result(slug: str, outcome: str) -> ConflictError:
    """Why a job whose project was archived before its result was stored ends FAILED:
    `outcome` says what it leaves out ("the job registers no model version")."""
    return ConflictError(
        f"project {slug!r} is archived, so it is read-only: {outcome}",
        details={"project": slug},
    )


async def hold_open_project(connection: Connection, project_id: UUID) -> Project:
    """`hold_project`, refusing an archived project with `ConflictError`: for a change that
    must not land in one. Inside a transaction, the project cannot be archived until the change
    has committed; outside one, the check is of this moment only."""
    return refuse_if_archived(await hold_project(connection, project_id))


class ChangeInProject(AuditedChange):
    """An `AuditedChange` to what a project holds, refused once the project is archived.

    As its transaction begins (on entry, or at `begin()` when deferred), it holds the project's
    row on the transaction's connection (`hold_project`) and refuses an archived one with
    `ConflictError` (`refuse_if_archived`); the project cannot be archived until the change has
    committed. The permission check before it (`members.authorize_in_project`) refuses archived
    projects too, but of its moment only: an archive committed between that check and the
    change's own transaction would otherwise let the change land in a read-only project.

    For what stops work already running (an `Effect.STOPS` grant), use a plain `AuditedChange`:
    that is still allowed in an archived project.
    """

    def __init__(
        self,
        platform: Platform,
        actor: Principal | None,
        action: str,
        request_id: str | None = None,
        *,
        project_id: UUID,
        deferred: bool = False,
    ) -> None:
        # The parent opens nothing on entry: `__aenter__` below begins, so that a refusal on
        # entry is rolled back and audited as a refusal in the body is.
        super().__init__(platform, actor, action, request_id, project_id=project_id, deferred=True)
        self._held_project_id = project_id
        self._begins_on_entry = not deferred
        self.project: Project | None = None
        """The project as the transaction found it, held, once it has begun: archived if the
        change was refused for that."""

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        if self._begins_on_entry:
            try:
                await self.begin()
            except BaseException as error:
                # Raised from `__aenter__`, it skips `__aexit__`: the transaction would stay
                # open and the refused attempt would go unaudited.
                await self.__aexit__(type(error), error, error.__traceback__)
                raise
        return self

    async def begin(self) -> Connection:
        connection = await super().begin()
        if self.project is None:
            self.project = await hold_project(connection, self._held_project_id)
        refuse_if_archived(self.project)
        return connection


async def project_by_slug(connection: Connection, slug: str) -> Project | None:
    row = await connection.fetchrow(f"{_SELECT} WHERE slug = $1", slug)
    return _to_project(row) if row is not None else None


async def projects_by_slugs(connection: Connection, slugs: list[str]) -> dict[str, Project]:
    rows = await connection.fetch(f"{_SELECT} WHERE slug = ANY($1::text[])", slugs)
    return {row["slug"]: _to_project(row) for row in rows}


async def projects_by_ids(connection: Connection, ids: list[UUID]) -> dict[UUID, Project]:
    rows = await connection.fetch(f"{_SELECT} WHERE id = ANY($1::uuid[])", ids)
    return {row["id"]: _to_project(row) for row in rows}


async def list_projects(
    connection: Connection,
    *,
    first: int | None,
    after: str | None,
    include_archived: bool,
    member: UUID | None,
) -> Page[Project]:
    """Projects, oldest first; only those `member` belongs to, unless it is None (admins)."""
    conditions = [] if include_archived else ["archived_at IS NULL"]
    arguments: list[Any] = []
    if member is not None:
        arguments.append(member)
        conditions.append("id IN (SELECT project_id FROM project_members WHERE user_id = $1)")
    return await fetch_page(
        connection,
        query=_SELECT,
        conditions=conditions,
        arguments=arguments,
        first=first,
        after=after,
        to_item=_to_project,
    )
