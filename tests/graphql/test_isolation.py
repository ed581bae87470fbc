"""Cross-project isolation: a member of project A, whatever their role there, asking for project
B's objects by id or slug is told "not found", learns nothing of B, and changes nothing in B.

Each probe is also run once by a caller who may reach the object (the control; a mutation's on a
project of its own): the same document then reveals the object or changes it, so a probe that says
"not found" for a reason other than authorization (a wrong document, a wrong id) fails its control.

Last, a member who leaves a project must stop hearing its live audit events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import pytest

from aiaas.core.audit import audit_channel
from aiaas.core.auth import Principal
from aiaas.core.identity import members, projects
from aiaas.core.identity.access import ROLE_HIERARCHY, ProjectRole
from aiaas.core.identity.accounts import User, create_user, insert_token, verify_token
from aiaas.core.platform import Platform
from aiaas.graphql.relay import to_global_id
from aiaas.graphql.schema import build_schema
from aiaas.plugins.casbin_policy import CasbinPolicyEnforcer
from support import graphql, subscription_context, unique

SUBSCRIPTION_WAIT_S = 1.0
"""How long a subscription may stay silent before it counts as opened: a refusal is at once."""


async def sync_policy(platform: Platform) -> None:
    # Memberships reach the enforcer through LISTEN/NOTIFY, a moment later; reload now so that
    # the next request sees them, without a race.
    enforcer = platform.enforcer
    assert isinstance(enforcer, CasbinPolicyEnforcer)
    await enforcer.reload()


@dataclass(frozen=True)
class Caller:
    username: str
    token: str
    principal: Principal


async def new_caller(platform: Platform, prefix: str) -> tuple[User, Caller]:
    user = await create_user(platform, None, username=unique(prefix))
    async with platform.metadata.transaction() as connection:
        issued = await insert_token(connection, user.id, unique("token"))
        principal = await verify_token(connection, issued.secret, "test")
    return user, Caller(user.username, issued.secret, principal)


@dataclass(frozen=True)
class Victim:
    """A project that the prober has no part in, with everything about it they must not learn."""

    project: projects.Project
    owner: Caller
    owner_id: uuid.UUID
    member: User
    token_id: uuid.UUID
    token_prefix: str

    @property
    def secrets(self) -> list[str]:
        return [
            self.project.slug,
            self.project.name,
            self.project.description,
            str(self.project.id),
            self.owner.username,
            str(self.owner_id),
            self.member.username,
            str(self.member.id),
            self.token_prefix,
            str(self.token_id),
        ]


async def new_victim(platform: Platform, tag: str) -> Victim:
    owner_user, owner = await new_caller(platform, f"{tag}-owner")
    project = await projects.create_project(
        platform,
        owner.principal,
        slug=unique(f"{tag}-slug"),
        name=f"Name of {tag} {uuid.uuid4().hex[:6]}",
        description=f"Description of {tag} {uuid.uuid4().hex[:6]}",
    )
    await sync_policy(platform)
    member = await create_user(platform, None, username=unique(f"{tag}-member"))
    await members.add_member(
        platform,
        owner.principal,
        project.id,
        username=member.username,
        role=ProjectRole.MAINTAINER,
    )
    # A token of the owner's besides the one they sign in with: the one the probes go after.
    async with platform.metadata.transaction() as connection:
        token = await insert_token(connection, owner_user.id, unique(f"{tag}-token"))
    await sync_policy(platform)
    return Victim(project, owner, owner_user.id, member, token.id, token.prefix)


async def state_of(platform: Platform, victim: Victim) -> dict[str, Any]:
    """Everything a probe might change about the victim."""
    async with platform.metadata.acquire() as connection:
        project = await connection.fetchrow(
            "SELECT slug, name, description, archived_at FROM projects WHERE id = $1",
            victim.project.id,
        )
        member_rows = await connection.fetch(
            "SELECT user_id, role FROM project_members WHERE project_id = $1 ORDER BY user_id",
            victim.project.id,
        )
        revoked_at = await connection.fetchval(
            "SELECT revoked_at FROM api_tokens WHERE id = $1", victim.token_id
        )
    return {
        "project": dict(project),
        "members": [(row["user_id"], row["role"]) for row in member_rows],
        "token revoked at": revoked_at,
    }


@dataclass(frozen=True)
class World:
    platform: Platform
    victim: Victim
    """Project B."""
    members_of_a: dict[str, Caller]
    """A member of project A in each role, by role; none of them is a member of B."""
    admin: Caller


@pytest.fixture(scope="module")
async def world(platform: Platform, admin_token: str) -> World:
    victim = await new_victim(platform, "bravo")
    _, a_owner = await new_caller(platform, "alpha-owner")
    project_a = await projects.create_project(
        platform, a_owner.principal, slug=unique("alpha"), name="A"
    )
    await sync_policy(platform)
    members_of_a = {ProjectRole.OWNER.value: a_owner}
    for role in ROLE_HIERARCHY:
        if role is ProjectRole.OWNER:
            continue
        _, caller = await new_caller(platform, f"alpha-{role.value}")
        await members.add_member(
            platform, a_owner.principal, project_a.id, username=caller.username, role=role
        )
        members_of_a[role.value] = caller
    await sync_policy(platform)
    async with platform.metadata.acquire() as connection:
        admin = await verify_token(connection, admin_token, "test")
    return World(platform, victim, members_of_a, Caller("admin", admin_token, admin))


# The probes ---------------------------------------------------------------------------------

Kind = Literal["query", "mutation", "subscription"]
Variables = Callable[[Victim, Caller], dict[str, Any]]


@dataclass(frozen=True)
class Probe:
    key: str
    """The response key of the root field."""
    kind: Kind
    document: str
    variables: Variables
    control_by_owner: bool = False
    """Run the control as the victim's owner rather than an admin: only a token's owner may see
    it through node(id)."""


def project_gid(victim: Victim, caller: Caller) -> dict[str, Any]:
    return {"id": to_global_id("Project", victim.project.id)}


def member_input(role: str, username: Callable[[Victim, Caller], str]) -> Variables:
    def variables(victim: Victim, caller: Caller) -> dict[str, Any]:
        project = to_global_id("Project", victim.project.id)
        return {"input": {"project": project, "username": username(victim, caller), "role": role}}

    return variables


NODE = "query($id: ID!) { node(id: $id) { __typename id %s } }"
PROJECT_FIELDS = "... on Project { slug name description createdBy { username } }"
MEMBER_CHANGE = """mutation($input: ProjectMemberInput!) {
  %s(input: $input) {
    __typename
    ... on ProjectMemberSuccess { member { role user { username } } }
    ... on Error { message code }
  }
}"""

PROBES: dict[str, Probe] = {
    "node(Project)": Probe("node", "query", NODE % PROJECT_FIELDS, project_gid),
    "node(Project).members": Probe(
        "node",
        "query",
        NODE % "... on Project { members { nodes { role user { username } } } }",
        project_gid,
    ),
    "node(Project).auditEvents": Probe(
        "node",
        "query",
        # Filtered: the trail also holds the refused probes of this module, filed under B.
        NODE % '... on Project { auditEvents(action: "project.create") '
        "{ nodes { action actor details } } }",
        project_gid,
    ),
    "node(ApiToken)": Probe(
        "node",
        "query",
        NODE % "... on ApiToken { name prefix }",
        lambda victim, _: {"id": to_global_id("ApiToken", victim.token_id)},
        control_by_owner=True,
    ),
    "node(User owner)": Probe(
        "node",
        "query",
        NODE % "... on User { username displayName }",
        lambda victim, _: {"id": to_global_id("User", victim.owner_id)},
    ),
    "node(User member)": Probe(
        "node",
        "query",
        NODE % "... on User { username displayName }",
        lambda victim, _: {"id": to_global_id("User", victim.member.id)},
    ),
    "project(slug)": Probe(
        "project",
        "query",
        """query($slug: String!) {
          project(slug: $slug) {
            id slug name members { nodes { user { username } } }
          }
        }""",
        lambda victim, _: {"slug": victim.project.slug},
    ),
    "archiveProject": Probe(
        "archiveProject",
        "mutation",
        """mutation($id: ID!) {
          archiveProject(id: $id) {
            __typename
            ... on ArchiveProjectSuccess { project { slug name } }
            ... on Error { message code }
          }
        }""",
        project_gid,
    ),
    "addProjectMember(self as owner)": Probe(
        "addProjectMember",
        "mutation",
        MEMBER_CHANGE % "addProjectMember",
        member_input("OWNER", lambda _, caller: caller.username),
    ),
    "addProjectMember(self as viewer)": Probe(
        "addProjectMember",
        "mutation",
        MEMBER_CHANGE % "addProjectMember",
        member_input("VIEWER", lambda _, caller: caller.username),
    ),
    "changeProjectMemberRole(demote)": Probe(
        "changeProjectMemberRole",
        "mutation",
        MEMBER_CHANGE % "changeProjectMemberRole",
        member_input("VIEWER", lambda victim, _: victim.member.username),
    ),
    "changeProjectMemberRole(promote)": Probe(
        "changeProjectMemberRole",
        "mutation",
        MEMBER_CHANGE % "changeProjectMemberRole",
        member_input("OWNER", lambda victim, _: victim.member.username),
    ),
    "removeProjectMember": Probe(
        "removeProjectMember",
        "mutation",
        """mutation($input: RemoveProjectMemberInput!) {
          removeProjectMember(input: $input) {
            __typename
            ... on RemoveProjectMemberSuccess { removedUsername }
            ... on Error { message code }
          }
        }""",
        lambda victim, _: {
            "input": {
                "project": to_global_id("Project", victim.project.id),
                "username": victim.member.username,
            }
        },
    ),
    "revokeApiToken": Probe(
        "revokeApiToken",
        "mutation",
        """mutation($id: ID!) {
          revokeApiToken(id: $id) {
            __typename
            ... on RevokeApiTokenSuccess { apiTokenId }
            ... on Error { message code }
          }
        }""",
        lambda victim, _: {"id": to_global_id("ApiToken", victim.token_id)},
    ),
    "projectAuditEvents": Probe(
        "projectAuditEvents",
        "subscription",
        """subscription($project: ID!) {
          projectAuditEvents(project: $project) { action actor details }
        }""",
        lambda victim, _: {"project": to_global_id("Project", victim.project.id)},
    ),
}


def as_body(result: Any) -> dict[str, Any]:
    errors = [error.formatted for error in result.errors or []]
    return {"data": result.data, **({"errors": errors} if errors else {})}


async def subscribe(platform: Platform, probe: Probe, variables: dict[str, Any], token: str) -> Any:
    """The subscription's first result; `"opened"` when none comes at once, as for an allowed
    one (a refusal is the first result)."""
    context = await subscription_context(platform, token, unique("isolation"))
    results = await build_schema(platform).subscribe(probe.document, variables, context)
    try:
        async with asyncio.timeout(SUBSCRIPTION_WAIT_S):
            result = await anext(results)
    except TimeoutError:
        return "opened"
    finally:
        with contextlib.suppress(RuntimeError):
            await results.aclose()
    return as_body(result)


async def run_probe(
    platform: Platform, client: httpx.AsyncClient, probe: Probe, victim: Victim, caller: Caller
) -> Any:
    variables = probe.variables(victim, caller)
    if probe.kind == "subscription":
        return await subscribe(platform, probe, variables, caller.token)
    _, body = await graphql(client, probe.document, variables, token=caller.token)
    return body


def is_not_found(probe: Probe, body: Any) -> bool:
    if body == "opened":
        return False
    errors = body.get("errors") or []
    if probe.kind == "subscription":
        codes = [(error.get("extensions") or {}).get("code") for error in errors]
        return codes == ["NOT_FOUND"]
    if errors:
        return False
    value = body["data"][probe.key]
    if probe.kind == "query":
        return value is None
    return value["__typename"] == "NotFoundError"


def leaked(body: Any, victim: Victim) -> list[str]:
    text = json.dumps(body, default=str)
    return [secret for secret in victim.secrets if secret in text]


# The tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("probe_name", list(PROBES))
@pytest.mark.parametrize("role", [role.value for role in ROLE_HIERARCHY])
async def test_a_member_of_another_project_finds_nothing_and_changes_nothing(
    world: World, client: httpx.AsyncClient, role: str, probe_name: str
) -> None:
    probe = PROBES[probe_name]
    caller = world.members_of_a[role]
    before = await state_of(world.platform, world.victim)

    body = await run_probe(world.platform, client, probe, world.victim, caller)

    assert is_not_found(probe, body), f"{probe_name} as A's {role}: {body}"
    assert not leaked(body, world.victim), f"{probe_name} as A's {role} leaks: {body}"
    assert await state_of(world.platform, world.victim) == before


@pytest.mark.parametrize("probe_name", list(PROBES))
async def test_control_the_same_probe_reaches_the_object_for_who_may(
    world: World, client: httpx.AsyncClient, probe_name: str
) -> None:
    probe = PROBES[probe_name]
    # Mutations change their target, so each control gets a project of its own.
    victim = (
        await new_victim(world.platform, "control") if probe.kind == "mutation" else world.victim
    )
    caller = victim.owner if probe.control_by_owner else world.admin
    before = await state_of(world.platform, victim)

    body = await run_probe(world.platform, client, probe, victim, caller)

    assert not is_not_found(probe, body), f"{probe_name} as {caller.username}: {body}"
    if probe.kind == "query":
        assert "errors" not in body, body
        assert leaked(body, victim), f"{probe_name} shows nothing of the object: {body}"
    elif probe.kind == "mutation":
        assert body["data"][probe.key]["__typename"].endswith("Success"), body
        assert await state_of(world.platform, victim) != before
    else:
        assert body == "opened"


# Leaving a project --------------------------------------------------------------------------

QUIET_S = 3.0
"""How long to listen for an event that must not come."""


async def first_probe_event(platform: Platform, results: Any, victim: Victim) -> dict[str, Any]:
    """Publish a marker event on the victim's channel until the subscription hears one: from
    then on it is surely listening (pub/sub keeps nothing for late subscribers)."""
    marker = {
        "id": 0,
        "occurred_at": datetime.now(UTC).isoformat(),
        "actor_id": None,
        "actor_name": None,
        "action": "isolation.marker",
        "outcome": "success",
        "object_type": None,
        "object_id": None,
        "project_id": str(victim.project.id),
        "request_id": None,
        "details": {},
    }
    first = asyncio.ensure_future(anext(results))
    async with asyncio.timeout(5):
        while not first.done():
            await platform.events.publish(audit_channel(victim.project.id), marker)
            await asyncio.wait({first}, timeout=0.05)
    return as_body(first.result())


async def actions_heard(results: Any, until: str) -> list[str]:
    """The actions of the events the subscription yields until `until` comes, it ends, it
    yields an error, or it stays quiet for `QUIET_S`."""
    heard: list[str] = []
    with contextlib.suppress(TimeoutError, StopAsyncIteration):
        async with asyncio.timeout(QUIET_S):
            async for result in results:
                if result.errors:
                    heard.append(f"error {as_body(result)['errors']}")
                    break
                heard.append(result.data["projectAuditEvents"]["action"])
                if heard[-1] == until:
                    break
    return heard


async def test_a_removed_owner_stops_hearing_the_projects_audit_events(world: World) -> None:
    platform = world.platform
    victim = await new_victim(platform, "left")
    _, former = await new_caller(platform, "former-owner")
    await members.add_member(
        platform,
        victim.owner.principal,
        victim.project.id,
        username=former.username,
        role=ProjectRole.OWNER,
    )
    await sync_policy(platform)
    context = await subscription_context(platform, former.token, unique("isolation"))
    document = PROBES["projectAuditEvents"].document
    variables = {"project": to_global_id("Project", victim.project.id)}
    results = await build_schema(platform).subscribe(document, variables, context)
    try:
        # While an owner, they hear the project: the subscription is open and listening.
        first = await first_probe_event(platform, results, victim)
        assert first["data"]["projectAuditEvents"]["action"] == "isolation.marker", first

        await members.remove_member(
            platform, victim.owner.principal, victim.project.id, username=former.username
        )
        await sync_policy(platform)
        newcomer = await create_user(platform, None, username=unique("left-newcomer"))
        await members.add_member(
            platform,
            victim.owner.principal,
            victim.project.id,
            username=newcomer.username,
            role=ProjectRole.VIEWER,
        )
        heard = await actions_heard(results, until="member.add")
    finally:
        with contextlib.suppress(RuntimeError):
            await results.aclose()

    # Now an outsider of the project, they must learn nothing more of it.
    assert "member.add" not in heard, heard
