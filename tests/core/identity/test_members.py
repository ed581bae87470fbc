"""Project members in the core services: who may add, promote, demote and remove whom, the last
owner, and the one audit event each change (or refusal) writes."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from aiaas.core.auth import Principal
from aiaas.core.errors import ConflictError, InputError, NotFoundError, PermissionDeniedError
from aiaas.core.identity import accounts as identity
from aiaas.core.identity.access import ProjectRole
from aiaas.core.identity.members import add_member, change_member_role, list_members, remove_member
from aiaas.core.identity.projects import create_project
from aiaas.core.platform import Platform
from support import until_policy_holds

OWNER, MAINTAINER, DEVELOPER, VIEWER = (
    ProjectRole.OWNER,
    ProjectRole.MAINTAINER,
    ProjectRole.DEVELOPER,
    ProjectRole.VIEWER,
)


def principal_of(user: identity.User) -> Principal:
    return Principal(
        user_id=user.id, username=user.username, is_admin=user.is_admin, authenticated_by="test"
    )


async def new_user(platform: Platform, label: str, *, is_admin: bool = False) -> Principal:
    user = await identity.create_user(
        platform, None, username=f"{label}-{uuid.uuid4().hex[:8]}", is_admin=is_admin
    )
    return principal_of(user)


@dataclass(frozen=True)
class Team:
    """A project with two owners, a member of each other role, and a user who is no member."""

    project_id: uuid.UUID
    owner: Principal
    second_owner: Principal
    maintainer: Principal
    developer: Principal
    viewer: Principal
    outsider: Principal

    def by_role(self, role: ProjectRole) -> Principal:
        return {
            OWNER: self.owner,
            MAINTAINER: self.maintainer,
            DEVELOPER: self.developer,
            VIEWER: self.viewer,
        }[role]


async def new_team(platform: Platform, *, second_owner: bool = True) -> Team:
    owner = await new_user(platform, "owner")
    project = await create_project(
        platform, owner, slug=f"team-{uuid.uuid4().hex[:10]}", name="Team"
    )
    await until_policy_holds(platform, owner, project.id, OWNER)
    members = {
        "second_owner": OWNER,
        "maintainer": MAINTAINER,
        "developer": DEVELOPER,
        "viewer": VIEWER,
    }
    if not second_owner:
        del members["second_owner"]
    principals: dict[str, Principal] = {}
    for name, role in members.items():
        principals[name] = await new_user(platform, name.replace("_", "-"))
        await add_member(platform, owner, project.id, username=principals[name].username, role=role)
    if not second_owner:
        principals["second_owner"] = await new_user(platform, "not-an-owner")
    team = Team(
        project_id=project.id,
        owner=owner,
        outsider=await new_user(platform, "outsider"),
        **principals,
    )
    for role in (OWNER, MAINTAINER, DEVELOPER, VIEWER):
        await until_policy_holds(platform, team.by_role(role), project.id, role)
    return team


async def roles_in(platform: Platform, project_id: uuid.UUID) -> dict[str, ProjectRole]:
    async with platform.metadata.acquire() as connection:
        page = await list_members(connection, project_id, first=100, after=None)
    return {member.username: member.role for member in page.items}


async def events_of_request(platform: Platform, request_id: str) -> list[dict[str, Any]]:
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT actor_name, action, outcome, object_type, object_id, project_id, details "
            "FROM audit_events WHERE request_id = $1 ORDER BY id",
            request_id,
        )
    return [dict(row) for row in rows]


# What each operation does, on a fresh team, as `actor`. Each returns the audit action it makes.
Operation = Callable[[Platform, Team, Principal, str], Awaitable[str]]


def add(role: ProjectRole) -> Operation:
    async def operation(platform: Platform, team: Team, actor: Principal, request_id: str) -> str:
        newcomer = await new_user(platform, "newcomer")
        await add_member(
            platform,
            actor,
            team.project_id,
            username=newcomer.username,
            role=role,
            request_id=request_id,
        )
        return "member.add"

    return operation


def change(target: str, role: ProjectRole) -> Operation:
    async def operation(platform: Platform, team: Team, actor: Principal, request_id: str) -> str:
        await change_member_role(
            platform,
            actor,
            team.project_id,
            username=getattr(team, target).username,
            role=role,
            request_id=request_id,
        )
        return "member.change_role"

    return operation


def remove(target: str) -> Operation:
    async def operation(platform: Platform, team: Team, actor: Principal, request_id: str) -> str:
        await remove_member(
            platform,
            actor,
            team.project_id,
            username=getattr(team, target).username,
            request_id=request_id,
        )
        return "member.remove"

    return operation


@dataclass(frozen=True)
class Case:
    run: Operation
    action: str
    touches_owner: bool


OPERATIONS: dict[str, Case] = {
    "add-viewer": Case(add(VIEWER), "member.add", touches_owner=False),
    "add-developer": Case(add(DEVELOPER), "member.add", touches_owner=False),
    "add-maintainer": Case(add(MAINTAINER), "member.add", touches_owner=False),
    "add-owner": Case(add(OWNER), "member.add", touches_owner=True),
    "promote-developer-to-maintainer": Case(
        change("developer", MAINTAINER), "member.change_role", touches_owner=False
    ),
    "demote-maintainer-to-viewer": Case(
        change("maintainer", VIEWER), "member.change_role", touches_owner=False
    ),
    "promote-developer-to-owner": Case(
        change("developer", OWNER), "member.change_role", touches_owner=True
    ),
    "demote-owner": Case(
        change("second_owner", MAINTAINER), "member.change_role", touches_owner=True
    ),
    "remove-developer": Case(remove("developer"), "member.remove", touches_owner=False),
    "remove-owner": Case(remove("second_owner"), "member.remove", touches_owner=True),
}


def allowed(role: ProjectRole, touches_owner: bool) -> bool:
    """The rule under test: owners manage anyone, maintainers everyone but owners, others none."""
    if role is OWNER:
        return True
    return role is MAINTAINER and not touches_owner


@pytest.mark.parametrize("actor_role", [OWNER, MAINTAINER, DEVELOPER, VIEWER])
@pytest.mark.parametrize("operation_name", list(OPERATIONS))
async def test_who_may_manage_which_members(
    platform: Platform, actor_role: ProjectRole, operation_name: str
) -> None:
    team = await new_team(platform)
    actor = team.by_role(actor_role)
    case = OPERATIONS[operation_name]
    request_id = f"{operation_name}-{uuid.uuid4().hex[:8]}"
    before = await roles_in(platform, team.project_id)

    if allowed(actor_role, case.touches_owner):
        assert await case.run(platform, team, actor, request_id) == case.action
        outcome = "success"
        assert await roles_in(platform, team.project_id) != before
    else:
        with pytest.raises(PermissionDeniedError) as caught:
            await case.run(platform, team, actor, request_id)
        outcome = "denied"
        assert caught.value.code == "FORBIDDEN"
        assert await roles_in(platform, team.project_id) == before

    events = await events_of_request(platform, request_id)
    assert [(e["actor_name"], e["action"], e["outcome"]) for e in events] == [
        (actor.username, case.action, outcome)
    ]


async def test_the_creator_of_a_project_is_its_only_member_and_owner(platform: Platform) -> None:
    creator = await new_user(platform, "creator")

    project = await create_project(
        platform, creator, slug=f"mine-{uuid.uuid4().hex[:8]}", name="Mine"
    )

    assert await roles_in(platform, project.id) == {creator.username: OWNER}
    await until_policy_holds(platform, creator, project.id, OWNER)


async def test_each_change_writes_one_event_with_its_details(platform: Platform) -> None:
    team = await new_team(platform)
    newcomer = await new_user(platform, "newcomer")
    request_ids = {step: f"{step}-{uuid.uuid4().hex[:8]}" for step in ("add", "change", "remove")}

    added = await add_member(
        platform,
        team.owner,
        team.project_id,
        username=newcomer.username,
        role=DEVELOPER,
        request_id=request_ids["add"],
    )
    changed = await change_member_role(
        platform,
        team.owner,
        team.project_id,
        username=newcomer.username,
        role=MAINTAINER,
        request_id=request_ids["change"],
    )
    await remove_member(
        platform,
        team.owner,
        team.project_id,
        username=newcomer.username,
        request_id=request_ids["remove"],
    )

    assert (added.user_id, added.username, added.role) == (
        newcomer.user_id,
        newcomer.username,
        DEVELOPER,
    )
    assert changed.role is MAINTAINER
    assert newcomer.username not in await roles_in(platform, team.project_id)
    common = {
        "actor_name": team.owner.username,
        "outcome": "success",
        "object_type": "member",
        "object_id": str(newcomer.user_id),
        "project_id": team.project_id,
    }
    assert await events_of_request(platform, request_ids["add"]) == [
        common
        | {"action": "member.add", "details": {"username": newcomer.username, "role": "developer"}}
    ]
    assert await events_of_request(platform, request_ids["change"]) == [
        common
        | {
            "action": "member.change_role",
            "details": {"username": newcomer.username, "from": "developer", "to": "maintainer"},
        }
    ]
    assert await events_of_request(platform, request_ids["remove"]) == [
        common
        | {
            "action": "member.remove",
            "details": {"username": newcomer.username, "role": "maintainer"},
        }
    ]


async def test_a_change_takes_effect_in_the_policy(platform: Platform) -> None:
    team = await new_team(platform)

    await change_member_role(
        platform, team.owner, team.project_id, username=team.viewer.username, role=MAINTAINER
    )
    await until_policy_holds(platform, team.viewer, team.project_id, MAINTAINER)
    await remove_member(platform, team.owner, team.project_id, username=team.viewer.username)
    await until_policy_holds(platform, team.viewer, team.project_id, None)


@pytest.mark.parametrize(
    "operation",
    [change("owner", MAINTAINER), remove("owner")],
    ids=["demote", "remove"],
)
async def test_the_last_owner_cannot_be_demoted_or_removed(
    platform: Platform, operation: Operation
) -> None:
    team = await new_team(platform, second_owner=False)
    request_id = f"last-owner-{uuid.uuid4().hex[:8]}"
    before = await roles_in(platform, team.project_id)

    # The owner acts on themselves: nobody else may touch an owner here.
    with pytest.raises(ConflictError, match="at least one owner"):
        await operation(platform, team, team.owner, request_id)

    assert await roles_in(platform, team.project_id) == before
    assert [
        (e["outcome"], e["details"]["code"]) for e in await events_of_request(platform, request_id)
    ] == [("failed", "CONFLICT")]


async def test_an_owner_may_step_down_while_another_owner_remains(platform: Platform) -> None:
    team = await new_team(platform)

    await change("owner", DEVELOPER)(platform, team, team.owner, f"step-down-{uuid.uuid4().hex}")

    assert (await roles_in(platform, team.project_id))[team.owner.username] is DEVELOPER


async def test_adding_an_existing_member_is_a_conflict(platform: Platform) -> None:
    team = await new_team(platform)
    request_id = f"again-{uuid.uuid4().hex[:8]}"

    with pytest.raises(ConflictError, match="already a member"):
        await add_member(
            platform,
            team.owner,
            team.project_id,
            username=team.viewer.username,
            role=MAINTAINER,
            request_id=request_id,
        )

    assert (await roles_in(platform, team.project_id))[team.viewer.username] is VIEWER
    assert [e["outcome"] for e in await events_of_request(platform, request_id)] == ["failed"]


@pytest.mark.parametrize("disabled", [False, True], ids=["unknown", "disabled"])
async def test_adding_a_user_who_does_not_exist_or_is_disabled_is_invalid_input(
    platform: Platform, disabled: bool
) -> None:
    team = await new_team(platform)
    username = f"ghost-{uuid.uuid4().hex[:8]}"
    if disabled:
        username = (await new_user(platform, "disabled")).username
        async with platform.metadata.transaction() as connection:
            await connection.execute(
                "UPDATE users SET disabled_at = now() WHERE username = $1", username
            )
    before = await roles_in(platform, team.project_id)

    with pytest.raises(InputError) as caught:
        await add_member(platform, team.owner, team.project_id, username=username, role=VIEWER)

    assert list(caught.value.field_errors) == ["username"]
    assert await roles_in(platform, team.project_id) == before


@pytest.mark.parametrize("operation", [change("outsider", VIEWER), remove("outsider")])
async def test_changing_or_removing_someone_who_is_no_member_is_not_found(
    platform: Platform, operation: Operation
) -> None:
    team = await new_team(platform)

    with pytest.raises(NotFoundError):
        await operation(platform, team, team.owner, f"nobody-{uuid.uuid4().hex[:8]}")


async def test_a_user_with_no_part_in_the_project_may_not_add_members(platform: Platform) -> None:
    team = await new_team(platform)
    request_id = f"outsider-{uuid.uuid4().hex[:8]}"

    with pytest.raises(PermissionDeniedError):
        await add(VIEWER)(platform, team, team.outsider, request_id)

    assert team.outsider.username not in await roles_in(platform, team.project_id)
    assert [e["outcome"] for e in await events_of_request(platform, request_id)] == ["denied"]


async def test_an_admin_who_is_no_member_may_manage_owners(platform: Platform) -> None:
    team = await new_team(platform)
    admin = await new_user(platform, "admin", is_admin=True)

    await remove_member(platform, admin, team.project_id, username=team.second_owner.username)
    await change_member_role(
        platform, admin, team.project_id, username=team.developer.username, role=OWNER
    )

    roles = await roles_in(platform, team.project_id)
    assert team.second_owner.username not in roles
    assert roles[team.developer.username] is OWNER


async def test_a_disabled_member_can_still_be_removed(platform: Platform) -> None:
    team = await new_team(platform)
    async with platform.metadata.transaction() as connection:
        await connection.execute(
            "UPDATE users SET disabled_at = now() WHERE id = $1", team.developer.user_id
        )
    assert team.developer.username in await roles_in(platform, team.project_id)

    await remove_member(platform, team.owner, team.project_id, username=team.developer.username)

    assert team.developer.username not in await roles_in(platform, team.project_id)
