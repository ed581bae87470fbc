"""Project members through GraphQL: `addProjectMember`, `changeProjectMemberRole`,
`removeProjectMember`, who owns a new project, and which projects `projects` lists."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from aiaas.core.identity.access import ProjectRole
from aiaas.core.identity.members import add_member
from aiaas.core.identity.projects import create_project
from aiaas.core.platform import Platform
from aiaas.graphql.relay import to_global_id
from support import Account, data_of, error_codes, graphql, new_account, until_policy_holds

MEMBER_RESULT = """
    __typename
    ... on ProjectMemberSuccess { member { role user { username } } }
    ... on InvalidInputError { message code fieldErrors { field message } }
    ... on Error { message code }
"""
ADD = f"""
mutation Add($input: ProjectMemberInput!) {{
  addProjectMember(input: $input) {{ {MEMBER_RESULT} }}
}}
"""
CHANGE = f"""
mutation Change($input: ProjectMemberInput!) {{
  changeProjectMemberRole(input: $input) {{ {MEMBER_RESULT} }}
}}
"""
REMOVE = """
mutation Remove($input: RemoveProjectMemberInput!) {
  removeProjectMember(input: $input) {
    __typename
    ... on RemoveProjectMemberSuccess { removedUsername }
    ... on Error { message code }
  }
}
"""
CREATE_PROJECT = """
mutation Create($input: CreateProjectInput!) {
  createProject(input: $input) { __typename ... on CreateProjectSuccess { project { id slug } } }
}
"""
PROJECT = """
query Project($slug: String!) {
  project(slug: $slug) {
    viewerRole
    createdBy { username }
    members(first: 100) { nodes { role user { username } } }
  }
}
"""
PROJECTS = "{ projects(first: 100) { nodes { slug } } }"


@dataclass(frozen=True)
class Team:
    """A project with two owners, one member of every other role, and a user who is none."""

    project_id: uuid.UUID
    project: str
    """The project's global id."""
    accounts: dict[str, Account]

    def __getattr__(self, name: str) -> Account:
        try:
            return self.accounts[name]
        except KeyError:
            raise AttributeError(name) from None


ROLES = {
    "second_owner": ProjectRole.OWNER,
    "maintainer": ProjectRole.MAINTAINER,
    "developer": ProjectRole.DEVELOPER,
    "viewer": ProjectRole.VIEWER,
}


async def new_team(platform: Platform, *, second_owner: bool = True) -> Team:
    owner = await new_account(platform, "owner")
    project = await create_project(
        platform, owner.principal, slug=f"team-{uuid.uuid4().hex[:10]}", name="Team"
    )
    await until_policy_holds(platform, owner.principal, project.id, ProjectRole.OWNER)
    accounts = {"owner": owner}
    for name, role in ROLES.items():
        if name == "second_owner" and not second_owner:
            continue
        accounts[name] = await new_account(platform, name.replace("_", "-"))
        await add_member(
            platform, owner.principal, project.id, username=accounts[name].username, role=role
        )
    for name, role in ROLES.items():
        if name in accounts:
            await until_policy_holds(platform, accounts[name].principal, project.id, role)
    accounts["outsider"] = await new_account(platform, "outsider")
    accounts["newcomer"] = await new_account(platform, "newcomer")
    return Team(
        project_id=project.id, project=to_global_id("Project", project.id), accounts=accounts
    )


async def roles_in(platform: Platform, project_id: uuid.UUID) -> dict[str, str]:
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT u.username, m.role FROM project_members m JOIN users u ON u.id = m.user_id "
            "WHERE m.project_id = $1",
            project_id,
        )
    return {row["username"]: row["role"] for row in rows}


async def events_of_request(platform: Platform, request_id: str) -> list[dict[str, Any]]:
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT actor_name, action, outcome, object_id, project_id, details "
            "FROM audit_events WHERE correlation_id = $1 ORDER BY id",
            request_id,
        )
    return [dict(row) for row in rows]


@dataclass(frozen=True)
class Call:
    """One member mutation: its document, its input, and the result field to read."""

    document: str
    field: str
    input: dict[str, Any]


def add(team: Team, username: str, role: str) -> Call:
    return Call(
        ADD, "addProjectMember", {"project": team.project, "username": username, "role": role}
    )


def change(team: Team, username: str, role: str) -> Call:
    return Call(
        CHANGE,
        "changeProjectMemberRole",
        {"project": team.project, "username": username, "role": role},
    )


def remove(team: Team, username: str) -> Call:
    return Call(REMOVE, "removeProjectMember", {"project": team.project, "username": username})


async def send(
    client: httpx.AsyncClient, account: Account, call: Call, request_id: str
) -> tuple[int, dict[str, Any]]:
    return await graphql(
        client,
        call.document,
        {"input": call.input},
        token=account.token,
        headers={"x-request-id": request_id},
    )


def new_request_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


# Ownership and listing ------------------------------------------------------------------------


async def test_the_creator_of_a_project_is_its_owner(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    creator = await new_account(platform, "creator")
    slug = f"mine-{uuid.uuid4().hex[:8]}"

    created = data_of(
        await graphql(
            client, CREATE_PROJECT, {"input": {"slug": slug, "name": "Mine"}}, token=creator.token
        )
    )["createProject"]
    assert created["__typename"] == "CreateProjectSuccess"
    await until_policy_holds(
        platform,
        creator.principal,
        await _project_id(platform, slug),
        ProjectRole.OWNER,
    )

    project = data_of(await graphql(client, PROJECT, {"slug": slug}, token=creator.token))[
        "project"
    ]
    assert project == {
        "viewerRole": "OWNER",
        "createdBy": {"username": creator.username},
        "members": {"nodes": [{"role": "OWNER", "user": {"username": creator.username}}]},
    }


async def _project_id(platform: Platform, slug: str) -> uuid.UUID:
    async with platform.metadata.acquire() as connection:
        project_id: uuid.UUID = await connection.fetchval(
            "SELECT id FROM projects WHERE slug = $1", slug
        )
    return project_id


async def test_projects_lists_only_the_callers_projects_and_everything_for_admins(
    client: httpx.AsyncClient, platform: Platform, admin_token: str
) -> None:
    alice = await new_account(platform, "alice")
    bob = await new_account(platform, "bob")
    loner = await new_account(platform, "loner")
    tag = uuid.uuid4().hex[:8]
    alices = await create_project(platform, alice.principal, slug=f"alice-{tag}", name="A")
    bobs = await create_project(platform, bob.principal, slug=f"bob-{tag}", name="B")
    shared = await create_project(platform, bob.principal, slug=f"shared-{tag}", name="S")
    await until_policy_holds(platform, bob.principal, shared.id, ProjectRole.OWNER)
    await add_member(
        platform, bob.principal, shared.id, username=alice.username, role=ProjectRole.VIEWER
    )

    async def listed(token: str) -> list[str]:
        nodes = data_of(await graphql(client, PROJECTS, token=token))["projects"]["nodes"]
        return [node["slug"] for node in nodes if node["slug"].endswith(tag)]

    assert await listed(alice.token) == [alices.slug, shared.slug]
    assert await listed(bob.token) == [bobs.slug, shared.slug]
    assert data_of(await graphql(client, PROJECTS, token=loner.token)) == {
        "projects": {"nodes": []}
    }
    assert await listed(admin_token) == [alices.slug, bobs.slug, shared.slug]


# Who may manage whom --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["VIEWER", "DEVELOPER", "MAINTAINER", "OWNER"])
async def test_an_owner_adds_members_with_any_role(
    client: httpx.AsyncClient, platform: Platform, role: str
) -> None:
    team = await new_team(platform)
    request_id = new_request_id("owner-adds")

    result = data_of(
        await send(client, team.owner, add(team, team.newcomer.username, role), request_id)
    )

    assert result["addProjectMember"] == {
        "__typename": "ProjectMemberSuccess",
        "member": {"role": role, "user": {"username": team.newcomer.username}},
    }
    assert (await roles_in(platform, team.project_id))[team.newcomer.username] == role.lower()
    assert await events_of_request(platform, request_id) == [
        {
            "actor_name": team.owner.username,
            "action": "member.add",
            "outcome": "success",
            "object_id": str(team.newcomer.principal.user_id),
            "project_id": team.project_id,
            "details": {"username": team.newcomer.username, "role": role.lower()},
        }
    ]


@pytest.mark.parametrize("role", ["VIEWER", "DEVELOPER", "MAINTAINER"])
async def test_a_maintainer_adds_members_up_to_maintainer(
    client: httpx.AsyncClient, platform: Platform, role: str
) -> None:
    team = await new_team(platform)

    result = data_of(
        await send(
            client, team.maintainer, add(team, team.newcomer.username, role), new_request_id("m")
        )
    )

    assert result["addProjectMember"]["__typename"] == "ProjectMemberSuccess"
    assert (await roles_in(platform, team.project_id))[team.newcomer.username] == role.lower()


async def test_a_maintainer_changes_and_removes_members_below_owner(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    team = await new_team(platform)

    promoted = data_of(
        await send(
            client,
            team.maintainer,
            change(team, team.viewer.username, "MAINTAINER"),
            new_request_id("promote"),
        )
    )
    removed = data_of(
        await send(
            client, team.maintainer, remove(team, team.developer.username), new_request_id("rm")
        )
    )

    assert promoted["changeProjectMemberRole"]["member"]["role"] == "MAINTAINER"
    assert removed["removeProjectMember"] == {
        "__typename": "RemoveProjectMemberSuccess",
        "removedUsername": team.developer.username,
    }
    roles = await roles_in(platform, team.project_id)
    assert roles[team.viewer.username] == "maintainer"
    assert team.developer.username not in roles


OWNER_CHANGES: dict[str, tuple[str, Callable[[Team], Call]]] = {
    "add-owner": ("member.add", lambda team: add(team, team.newcomer.username, "OWNER")),
    "promote-to-owner": (
        "member.change_role",
        lambda team: change(team, team.developer.username, "OWNER"),
    ),
    "demote-owner": (
        "member.change_role",
        lambda team: change(team, team.second_owner.username, "VIEWER"),
    ),
    "remove-owner": ("member.remove", lambda team: remove(team, team.second_owner.username)),
}


@pytest.mark.parametrize("change_name", list(OWNER_CHANGES))
async def test_a_maintainer_may_not_make_demote_or_remove_owners(
    client: httpx.AsyncClient, platform: Platform, change_name: str
) -> None:
    team = await new_team(platform)
    action, make_call = OWNER_CHANGES[change_name]
    request_id = new_request_id(change_name)
    before = await roles_in(platform, team.project_id)

    _, body = await send(client, team.maintainer, make_call(team), request_id)

    assert body["data"] is None
    assert error_codes(body) == ["FORBIDDEN"]
    assert await roles_in(platform, team.project_id) == before
    assert [
        (event["actor_name"], event["action"], event["outcome"])
        for event in await events_of_request(platform, request_id)
    ] == [(team.maintainer.username, action, "denied")]


@pytest.mark.parametrize("actor", ["viewer", "developer"])
@pytest.mark.parametrize("operation", ["add", "change", "remove"])
async def test_viewers_and_developers_cannot_manage_members(
    client: httpx.AsyncClient, platform: Platform, actor: str, operation: str
) -> None:
    team = await new_team(platform)
    call = {
        "add": add(team, team.newcomer.username, "VIEWER"),
        "change": change(team, team.viewer.username, "DEVELOPER"),
        "remove": remove(team, team.viewer.username),
    }[operation]
    request_id = new_request_id(f"{actor}-{operation}")
    before = await roles_in(platform, team.project_id)

    _, body = await send(client, getattr(team, actor), call, request_id)

    assert body["data"] is None
    assert error_codes(body) == ["FORBIDDEN"]
    assert await roles_in(platform, team.project_id) == before
    events = await events_of_request(platform, request_id)
    assert [(e["actor_name"], e["action"], e["outcome"]) for e in events] == [
        (getattr(team, actor).username, f"graphql.{call.field}", "denied")
    ]


async def test_a_user_with_no_part_in_the_project_is_told_it_is_not_found(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    team = await new_team(platform)
    request_id = new_request_id("outsider")

    result = data_of(
        await send(client, team.outsider, add(team, team.outsider.username, "OWNER"), request_id)
    )

    assert result["addProjectMember"]["__typename"] == "NotFoundError"
    assert team.outsider.username not in await roles_in(platform, team.project_id)
    assert [e["outcome"] for e in await events_of_request(platform, request_id)] == ["denied"]


# Refused changes ------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["demote", "remove"])
async def test_the_last_owner_cannot_be_demoted_or_removed(
    client: httpx.AsyncClient, platform: Platform, operation: str
) -> None:
    team = await new_team(platform, second_owner=False)
    call = (
        change(team, team.owner.username, "MAINTAINER")
        if operation == "demote"
        else remove(team, team.owner.username)
    )
    request_id = new_request_id(f"last-owner-{operation}")
    before = await roles_in(platform, team.project_id)

    result = data_of(await send(client, team.owner, call, request_id))[call.field]

    assert result["__typename"] == "ConflictError"
    assert result["code"] == "CONFLICT"
    assert "owner" in result["message"]
    assert await roles_in(platform, team.project_id) == before
    assert [e["outcome"] for e in await events_of_request(platform, request_id)] == ["failed"]


async def test_adding_an_existing_member_is_a_conflict(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    team = await new_team(platform)
    before = await roles_in(platform, team.project_id)

    result = data_of(
        await send(
            client, team.owner, add(team, team.viewer.username, "OWNER"), new_request_id("again")
        )
    )

    assert result["addProjectMember"]["__typename"] == "ConflictError"
    assert await roles_in(platform, team.project_id) == before


async def test_adding_an_unknown_username_is_invalid_input(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    team = await new_team(platform)
    before = await roles_in(platform, team.project_id)

    result = data_of(
        await send(
            client, team.owner, add(team, f"ghost-{uuid.uuid4().hex[:8]}", "VIEWER"), "ghost"
        )
    )

    assert result["addProjectMember"]["__typename"] == "InvalidInputError"
    assert [error["field"] for error in result["addProjectMember"]["fieldErrors"]] == ["username"]
    assert await roles_in(platform, team.project_id) == before


@pytest.mark.parametrize("how", ["literal", "variable"])
async def test_a_role_that_does_not_exist_is_refused_by_validation_with_no_side_effect(
    client: httpx.AsyncClient, platform: Platform, how: str
) -> None:
    team = await new_team(platform)
    request_id = new_request_id("superuser")
    before = await roles_in(platform, team.project_id)
    if how == "literal":
        document = (
            "mutation { addProjectMember(input: "
            f'{{project: "{team.project}", username: "{team.newcomer.username}", role: SUPERUSER}}'
            ") { __typename } }"
        )
        variables: dict[str, Any] = {}
    else:
        document = ADD
        variables = {"input": add(team, team.newcomer.username, "SUPERUSER").input}

    _, body = await graphql(
        client, document, variables, token=team.owner.token, headers={"x-request-id": request_id}
    )

    assert body.get("data") is None
    assert "SUPERUSER" in body["errors"][0]["message"]
    assert await roles_in(platform, team.project_id) == before
    assert await events_of_request(platform, request_id) == []


async def test_each_member_change_writes_exactly_one_event_with_its_details(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    team = await new_team(platform)
    newcomer = team.newcomer
    steps = [
        ("add", add(team, newcomer.username, "DEVELOPER"), "member.add", {"role": "developer"}),
        (
            "change",
            change(team, newcomer.username, "MAINTAINER"),
            "member.change_role",
            {"from": "developer", "to": "maintainer"},
        ),
        ("remove", remove(team, newcomer.username), "member.remove", {"role": "maintainer"}),
    ]

    for label, call, action, details in steps:
        request_id = new_request_id(label)
        data_of(await send(client, team.owner, call, request_id))
        assert await events_of_request(platform, request_id) == [
            {
                "actor_name": team.owner.username,
                "action": action,
                "outcome": "success",
                "object_id": str(newcomer.principal.user_id),
                "project_id": team.project_id,
                "details": {"username": newcomer.username, **details},
            }
        ], label

    assert newcomer.username not in await roles_in(platform, team.project_id)
