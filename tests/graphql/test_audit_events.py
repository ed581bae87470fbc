"""A project's audit trail through GraphQL (`Project.auditEvents`): who may read it, its order,
its cursors, and its filters by actor, action and time."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from aiaas.core.identity.access import ProjectRole
from aiaas.core.identity.members import add_member
from aiaas.core.identity.projects import create_project
from aiaas.core.platform import Platform
from aiaas.graphql.relay import to_global_id
from support import Account, data_of, error_codes, graphql, new_account, until_policy_holds

AUDIT = """
query Audit(
  $slug: String!, $first: Int! = 100, $after: String,
  $actor: String, $action: String, $since: DateTime, $until: DateTime
) {
  project(slug: $slug) {
    auditEvents(
      first: $first, after: $after, actor: $actor, action: $action, since: $since, until: $until
    ) {
      edges { cursor node { id occurredAt actor action outcome objectType objectId details } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}
"""
ADD_MEMBER = """
mutation Add($input: ProjectMemberInput!) { addProjectMember(input: $input) { __typename } }
"""
# An hour of the past that no real event of this run falls in: events placed there by a test are
# the only ones a filter on that hour can find.
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Team:
    project_id: uuid.UUID
    slug: str
    members: dict[ProjectRole, Account]


async def new_team(platform: Platform) -> Team:
    owner = await new_account(platform, "owner")
    project = await create_project(
        platform, owner.principal, slug=f"audited-{uuid.uuid4().hex[:10]}", name="Audited"
    )
    await until_policy_holds(platform, owner.principal, project.id, ProjectRole.OWNER)
    members = {ProjectRole.OWNER: owner}
    for role in (ProjectRole.MAINTAINER, ProjectRole.DEVELOPER, ProjectRole.VIEWER):
        members[role] = await new_account(platform, role.value)
        await add_member(
            platform, owner.principal, project.id, username=members[role].username, role=role
        )
    for role, account in members.items():
        await until_policy_holds(platform, account.principal, project.id, role)
    return Team(project_id=project.id, slug=project.slug, members=members)


async def insert_events(
    platform: Platform, project_id: uuid.UUID, events: list[tuple[datetime, str, str]]
) -> list[int]:
    """Events of the project at chosen times, as (occurred_at, actor, action); their ids.
    Backdated by hand, they are outside the project's hash chain (random hashes): these tests
    page and filter the trail, they do not verify it."""
    async with platform.metadata.transaction() as connection:
        return [
            await connection.fetchval(
                "INSERT INTO audit_events (occurred_at, actor_name, action, outcome, project_id, "
                "previous_hash, row_hash) VALUES ($1, $2, $3, 'success', $4, "
                "sha256(uuid_send(gen_random_uuid())), sha256(uuid_send(gen_random_uuid()))) "
                "RETURNING id",
                occurred_at,
                actor,
                action,
                project_id,
            )
            for occurred_at, actor, action in events
        ]


async def audit_page(
    client: httpx.AsyncClient, token: str, slug: str, **arguments: Any
) -> dict[str, Any]:
    variables = {"slug": slug, **arguments}
    for bound in ("since", "until"):
        if isinstance(variables.get(bound), datetime):
            variables[bound] = variables[bound].isoformat()
    page: dict[str, Any] = data_of(await graphql(client, AUDIT, variables, token=token))["project"][
        "auditEvents"
    ]
    return page


def ids_of(page: dict[str, Any]) -> list[int]:
    return [int(edge["node"]["id"]) for edge in page["edges"]]


@pytest.mark.parametrize(
    ("reader", "allowed"),
    [
        (ProjectRole.OWNER, True),
        (ProjectRole.MAINTAINER, False),
        (ProjectRole.DEVELOPER, False),
        (ProjectRole.VIEWER, False),
    ],
)
async def test_only_owners_read_the_audit_trail(
    client: httpx.AsyncClient, platform: Platform, reader: ProjectRole, allowed: bool
) -> None:
    team = await new_team(platform)

    _, body = await graphql(
        client, AUDIT, {"slug": team.slug, "first": 5}, token=team.members[reader].token
    )

    if allowed:
        assert "errors" not in body, body
        assert body["data"]["project"]["auditEvents"]["edges"]
    else:
        assert error_codes(body) == ["FORBIDDEN"]
        assert body["errors"][0]["path"] == ["project", "auditEvents"]
        assert body["data"] == {"project": None}


async def test_an_admin_who_is_no_member_reads_the_audit_trail(
    client: httpx.AsyncClient, platform: Platform, admin_token: str
) -> None:
    team = await new_team(platform)

    page = await audit_page(client, admin_token, team.slug)

    assert "project.create" in [edge["node"]["action"] for edge in page["edges"]]


async def test_events_come_newest_first_and_only_the_projects_own(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    team = await new_team(platform)
    await new_team(platform)  # another project, whose events must not show here
    owner = team.members[ProjectRole.OWNER]

    page = await audit_page(client, owner.token, team.slug)

    nodes = [edge["node"] for edge in page["edges"]]
    # The team was made by one project.create and then three member.add, in that order; the
    # other project's events are not listed.
    assert [(node["action"], node["actor"]) for node in nodes] == [
        ("member.add", owner.username),
        ("member.add", owner.username),
        ("member.add", owner.username),
        ("project.create", owner.username),
    ]
    assert [node["details"].get("username") for node in nodes[:3]] == [
        team.members[role].username
        for role in (ProjectRole.VIEWER, ProjectRole.DEVELOPER, ProjectRole.MAINTAINER)
    ]
    assert nodes[-1]["objectId"] == str(team.project_id)
    times = [datetime.fromisoformat(node["occurredAt"]) for node in nodes]
    assert times == sorted(times, reverse=True)
    assert ids_of(page) == sorted(ids_of(page), reverse=True)


async def test_pages_follow_each_other_without_gaps_or_repeats(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    team = await new_team(platform)
    owner = team.members[ProjectRole.OWNER]
    # Several events share a time, so that the order must break ties (by id) for the cursors to
    # resume at the right place.
    times = [EPOCH + timedelta(minutes=minute) for minute in (0, 0, 1, 1, 1, 2, 3, 3, 4)]
    await insert_events(platform, team.project_id, [(at, "pager", "test.page") for at in times])
    everything = ids_of(await audit_page(client, owner.token, team.slug))

    seen: list[int] = []
    after = None
    while True:
        page = await audit_page(client, owner.token, team.slug, first=2, after=after)
        seen += ids_of(page)
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]

    assert seen == everything
    assert len(set(seen)) == len(seen) == len(times) + 4


async def test_filters_by_actor_action_and_time(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    team = await new_team(platform)
    owner = team.members[ProjectRole.OWNER]
    hour = [EPOCH + timedelta(minutes=10 * step) for step in range(4)]
    ids = await insert_events(
        platform,
        team.project_id,
        [
            (hour[0], "alice", "test.read"),
            (hour[1], "bob", "test.write"),
            (hour[2], "alice", "test.write"),
            (hour[3], "bob", "test.read"),
        ],
    )
    within = {"since": hour[0], "until": hour[3] + timedelta(seconds=1)}

    async def found(**filters: Any) -> list[int]:
        return ids_of(await audit_page(client, owner.token, team.slug, **filters))

    assert await found(**within) == ids[::-1]
    assert await found(actor="alice", **within) == [ids[2], ids[0]]
    assert await found(action="test.read", **within) == [ids[3], ids[0]]
    assert await found(actor="bob", action="test.write") == [ids[1]]
    # `since` is inclusive and `until` exclusive: exactly the events at hour[1] and hour[2].
    assert await found(since=hour[1], until=hour[3]) == [ids[2], ids[1]]
    assert ids[3] in await found(since=hour[3])
    assert ids[2] not in await found(since=hour[3])
    assert await found(until=hour[0]) == []
    assert await found(actor="nobody") == []
    # The real events of the team, all made by the owner, are found by the owner's name.
    assert len(await found(actor=owner.username)) == 4


async def test_a_malformed_cursor_is_bad_user_input(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    team = await new_team(platform)

    _, body = await graphql(
        client,
        AUDIT,
        {"slug": team.slug, "after": "not-a-cursor"},
        token=team.members[ProjectRole.OWNER].token,
    )

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert "cursor" in body["errors"][0]["message"]


async def test_a_refused_member_change_shows_in_the_projects_trail(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    team = await new_team(platform)
    maintainer = team.members[ProjectRole.MAINTAINER]
    request_id = f"refused-{uuid.uuid4().hex[:8]}"
    newcomer = await new_account(platform, "newcomer")
    _, refused = await graphql(
        client,
        ADD_MEMBER,
        {
            "input": {
                "project": to_global_id("Project", team.project_id),
                "username": newcomer.username,
                "role": "OWNER",
            }
        },
        token=maintainer.token,
        headers={"x-request-id": request_id},
    )
    assert error_codes(refused) == ["FORBIDDEN"]

    page = await audit_page(
        client, team.members[ProjectRole.OWNER].token, team.slug, actor=maintainer.username
    )

    assert [(edge["node"]["action"], edge["node"]["outcome"]) for edge in page["edges"]] == [
        ("member.add", "denied")
    ]
