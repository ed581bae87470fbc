"""Project members: who holds which role in a project. This module owns `project_members`.

Changing who may do what is a change of policy, so each change is authorized twice over: the
caller's field permission (`member:manage`) and, when an owner is made, demoted or removed,
`member:manage-owners`, which only owners and admins hold. A project always keeps at least one
owner. Changes to one project's members are serialized by locking the project's row, and none
is made in an archived project.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.errors import (
    AuthenticationError,
    ConcealedDenialError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
)
from aiaas.core.identity.access import (
    ProjectRole,
    allowed_in_archived_project,
    required_grant_to_manage,
)
from aiaas.core.identity.projects import hold_open_project, lock_project, refuse_if_archived
from aiaas.core.log_records import bind_log_context
from aiaas.core.pagination import Order, Page, fetch_page
from aiaas.core.storage import Connection, Record

if TYPE_CHECKING:
    from aiaas.core.platform import Platform


@dataclass(frozen=True)
class ProjectMember:
    project_id: UUID
    user_id: UUID
    username: str
    display_name: str
    role: ProjectRole
    added_at: datetime


_SELECT = """
SELECT * FROM (
    SELECT m.project_id, m.user_id, u.username, u.display_name, m.role, m.added_at
    FROM project_members m JOIN users u ON u.id = m.user_id
) AS members
"""
MEMBER_ORDER = Order(at="added_at", id="user_id")


@dataclass(frozen=True)
class Membership:
    """One user's role in one project: a line of the access policy."""

    user_id: UUID
    project_id: UUID
    role: ProjectRole


def _to_member(row: Record) -> ProjectMember:
    values = dict(row)
    values["role"] = ProjectRole(values["role"])
    return ProjectMember(**values)


async def all_memberships(connection: Connection) -> list[Membership]:
    """Every membership of every enabled user, for a policy enforcer to load whole. A disabled
    user's memberships are left out: they lose every project's grants at once."""
    rows = await connection.fetch(
        "SELECT m.user_id, m.project_id, m.role "
        "FROM project_members m JOIN users u ON u.id = m.user_id "
        "WHERE u.disabled_at IS NULL"
    )
    return [
        Membership(
            user_id=row["user_id"], project_id=row["project_id"], role=ProjectRole(row["role"])
        )
        for row in rows
    ]


async def member_role(
    connection: Connection, project_id: UUID, user_id: UUID
) -> ProjectRole | None:
    role = await connection.fetchval(
        "SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2",
        project_id,
        user_id,
    )
    return ProjectRole(role) if role is not None else None


async def authorize_in_project(
    platform: Platform,
    principal: Principal | None,
    project_id: UUID | None,
    resource: str,
    action: str,
) -> Principal:
    """`Platform.authorize` in a project's domain. A caller with no part in the project (neither
    member nor admin), or no project at all, gets `ConcealedDenialError`/`NotFoundError`: a
    refusal must not reveal which projects exist.

    An archived project is read-only: an action that changes something in it is refused with
    `ConflictError`, whoever asks. This is the one place that says so for every interface, and
    it comes after the permission check, so that only those who may see the project learn that
    it is archived."""
    if principal is None:
        raise AuthenticationError("authentication required: send `Bearer <API token>`")
    if project_id is None:
        raise NotFoundError("no such project")
    bind_log_context(project=project_id)  # the rest of the request's lines are about it
    try:
        authorized = await platform.authorize(principal, str(project_id), resource, action)
    except PermissionDeniedError:
        if principal.is_admin:
            raise
        async with platform.metadata.acquire() as connection:
            role = await member_role(connection, project_id, principal.user_id)
        if role is None:
            raise ConcealedDenialError("no such project") from None
        raise
    if not allowed_in_archived_project(resource, action):
        async with platform.metadata.acquire() as connection:
            await hold_open_project(connection, project_id)
    return authorized


async def list_members(
    connection: Connection, project_id: UUID, *, first: int | None, after: str | None
) -> Page[ProjectMember]:
    return await fetch_page(
        connection,
        query=_SELECT,
        conditions=["project_id = $1"],
        arguments=[project_id],
        first=first,
        after=after,
        to_item=_to_member,
        order=MEMBER_ORDER,
    )


async def _user_id(connection: Connection, username: str, *, active_only: bool = False) -> UUID:
    """The user's id. A disabled user can still be demoted or removed, but not added."""
    user_id: UUID | None = await connection.fetchval(
        "SELECT id FROM users WHERE username = $1 AND (disabled_at IS NULL OR NOT $2)",
        username,
        active_only,
    )
    if user_id is None:
        raise InputError(f"no user named {username!r}", field_errors={"username": "no such user"})
    return user_id


async def _authorize_roles(
    platform: Platform, actor: Principal, project_id: UUID, *roles: ProjectRole
) -> None:
    grant = required_grant_to_manage(*roles)
    await platform.authorize(actor, str(project_id), grant.resource, grant.action)


async def _owner_count(connection: Connection, project_id: UUID) -> int:
    count: int = await connection.fetchval(
        "SELECT count(*) FROM project_members WHERE project_id = $1 AND role = 'owner'",
        project_id,
    )
    return count


async def _fetch_member(connection: Connection, project_id: UUID, user_id: UUID) -> ProjectMember:
    row = await connection.fetchrow(
        f"{_SELECT} WHERE project_id = $1 AND user_id = $2", project_id, user_id
    )
    if row is None:
        raise NotFoundError("no such member")
    return _to_member(row)


async def add_member(
    platform: Platform,
    actor: Principal,
    project_id: UUID,
    *,
    username: str,
    role: ProjectRole,
    request_id: str | None = None,
) -> ProjectMember:
    async with AuditedChange(
        platform, actor, "member.add", request_id, project_id=project_id
    ) as change:
        connection = change.connection
        await _authorize_roles(platform, actor, project_id, role)
        refuse_if_archived(await lock_project(connection, project_id))
        user_id = await _user_id(connection, username, active_only=True)
        if await member_role(connection, project_id, user_id) is not None:
            raise ConflictError(f"{username} is already a member; change their role instead")
        await connection.execute(
            "INSERT INTO project_members (project_id, user_id, role, added_by) "
            "VALUES ($1, $2, $3, $4)",
            project_id,
            user_id,
            role.value,
            actor.user_id,
        )
        await change.record(
            object_type="member",
            object_id=str(user_id),
            project_id=project_id,
            details={"username": username, "role": role.value},
        )
        member = await _fetch_member(connection, project_id, user_id)
    await platform.enforcer.refresh()
    return member


async def change_member_role(
    platform: Platform,
    actor: Principal,
    project_id: UUID,
    *,
    username: str,
    role: ProjectRole,
    request_id: str | None = None,
) -> ProjectMember:
    async with AuditedChange(
        platform, actor, "member.change_role", request_id, project_id=project_id
    ) as change:
        connection = change.connection
        user_id, current = await _existing_member(
            platform, actor, connection, project_id, username, role
        )
        if current is ProjectRole.OWNER and role is not ProjectRole.OWNER:
            await _keep_an_owner(connection, project_id)
        await connection.execute(
            "UPDATE project_members SET role = $3 WHERE project_id = $1 AND user_id = $2",
            project_id,
            user_id,
            role.value,
        )
        await change.record(
            object_type="member",
            object_id=str(user_id),
            project_id=project_id,
            details={"username": username, "from": current.value, "to": role.value},
        )
        member = await _fetch_member(connection, project_id, user_id)
    await platform.enforcer.refresh()
    return member


async def remove_member(
    platform: Platform,
    actor: Principal,
    project_id: UUID,
    *,
    username: str,
    request_id: str | None = None,
) -> None:
    async with AuditedChange(
        platform, actor, "member.remove", request_id, project_id=project_id
    ) as change:
        connection = change.connection
        user_id, current = await _existing_member(platform, actor, connection, project_id, username)
        if current is ProjectRole.OWNER:
            await _keep_an_owner(connection, project_id)
        await connection.execute(
            "DELETE FROM project_members WHERE project_id = $1 AND user_id = $2",
            project_id,
            user_id,
        )
        await change.record(
            object_type="member",
            object_id=str(user_id),
            project_id=project_id,
            details={"username": username, "role": current.value},
        )
    await platform.enforcer.refresh()


async def _existing_member(
    platform: Platform,
    actor: Principal,
    connection: Connection,
    project_id: UUID,
    username: str,
    *new_roles: ProjectRole,
) -> tuple[UUID, ProjectRole]:
    """Lock the project (refusing an archived one), find the member, and check the actor may
    manage both the member's role and the roles it is to take."""
    refuse_if_archived(await lock_project(connection, project_id))
    user_id = await _user_id(connection, username)
    current = await member_role(connection, project_id, user_id)
    if current is None:
        raise NotFoundError(f"{username} is not a member of this project")
    await _authorize_roles(platform, actor, project_id, current, *new_roles)
    return user_id, current


async def _keep_an_owner(connection: Connection, project_id: UUID) -> None:
    if await _owner_count(connection, project_id) <= 1:
        raise ConflictError("a project keeps at least one owner: make someone else owner first")
