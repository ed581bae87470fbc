"""GraphQL over WebSocket (graphql-transport-ws) against a real `aiaas serve`: the connection_init
token, live audit events across processes, revoked tokens closing open sockets, and the origin
allowlist of the handshake."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from aiaas.core.audit import audit_channel
from aiaas.core.config import Config
from aiaas.core.identity import accounts as identity
from aiaas.core.identity import members, projects
from aiaas.core.identity.access import ProjectRole
from aiaas.core.identity.projects import Project
from aiaas.core.platform import Platform
from aiaas.graphql.relay import to_global_id
from support import (
    RunningServer,
    UserWithToken,
    acknowledged_socket,
    data_of,
    messages_until_closed,
    open_socket,
    poll_until,
    ready_server,
    receive,
    sees_project,
    send,
    unique,
    user_with_token,
)

pytestmark = pytest.mark.slow

PORTAL_ORIGIN = "https://portal.example"
FORBIDDEN = 4403
UNAUTHORIZED = 4401

AUDIT_SUBSCRIPTION = """
subscription Audit($project: ID!) {
  projectAuditEvents(project: $project) { action outcome actor objectType details }
}
"""

ADD_MEMBER = """
mutation Add($input: ProjectMemberInput!) {
  addProjectMember(input: $input) { __typename ... on Error { message code } }
}
"""

REVOKE_TOKEN = """
mutation Revoke($id: ID!) {
  revokeApiToken(id: $id) { __typename ... on Error { message code } }
}
"""


# The server and the people who use it ---------------------------------------------------------


@pytest.fixture(scope="module")
async def server(
    config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    """One real server for the module; the portal's origin is on its allowlist so that the
    origin tests can show both sides of the rule against the same process."""
    async with ready_server(config, tmp_path_factory, AIAAS_CORS_ORIGINS=PORTAL_ORIGIN) as running:
        yield running


@pytest.fixture
async def owner(platform: Platform) -> UserWithToken:
    return await user_with_token(platform, unique("owner"))


@pytest.fixture
async def owned_project(platform: Platform, owner: UserWithToken) -> Project:
    slug = unique("live")
    return await projects.create_project(platform, owner.principal, slug=slug, name="Live")


async def subscribe_to_audit(websocket: ClientConnection, project: Project, op_id: str) -> None:
    await send(
        websocket,
        {
            "id": op_id,
            "type": "subscribe",
            "payload": {
                "query": AUDIT_SUBSCRIPTION,
                "variables": {"project": to_global_id("Project", project.id)},
            },
        },
    )


async def wait_for_channel_subscriber(platform: Platform, project: Project) -> None:
    """graphql-transport-ws has no "subscribed" message: wait until the server has subscribed
    to the project's Redis channel, or an event published now would reach no one."""

    async def subscribed() -> bool:
        counts = await platform.redis.pubsub_numsub(audit_channel(project.id))
        return bool(counts) and counts[0][1] >= 1

    assert await poll_until(subscribed, timeout_s=5) is not None, "the server never subscribed"


# connection_init carries the token ----------------------------------------------------------


@pytest.fixture(scope="module")
async def refused_payloads(platform: Platform) -> dict[str, dict[str, Any] | None]:
    """connection_init payloads that must not get a connection_ack; None: no payload at all."""
    revoked = await user_with_token(platform, unique("revoked"))
    await identity.revoke_token(platform, None, revoked.token.id)
    well_formed_but_unknown = f"aiaas_{'0' * 12}_{'A' * 43}"
    return {
        "no-payload": None,
        "no-authorization": {"token": "whatever"},
        "empty-authorization": {"authorization": ""},
        "malformed-token": {"authorization": "Bearer aiaas_not-a-token"},
        "not-bearer": {"authorization": "Basic YWRtaW46YWRtaW4="},
        "unknown-token": {"authorization": f"Bearer {well_formed_but_unknown}"},
        "revoked-token": {"authorization": f"Bearer {revoked.token.secret}"},
    }


@pytest.mark.parametrize(
    "kind",
    [
        "no-payload",
        "no-authorization",
        "empty-authorization",
        "malformed-token",
        "not-bearer",
        "unknown-token",
        "revoked-token",
    ],
)
async def test_connection_init_without_a_valid_token_is_closed_4403_without_an_ack(
    server: RunningServer, refused_payloads: dict[str, dict[str, Any] | None], kind: str
) -> None:
    payload = refused_payloads[kind]
    init: dict[str, Any] = {"type": "connection_init"}
    if payload is not None:
        init["payload"] = payload

    websocket = await open_socket(server)
    await send(websocket, init)
    messages, close_code = await messages_until_closed(websocket)

    assert close_code == FORBIDDEN
    assert messages == []


async def test_connection_init_with_a_valid_token_is_acknowledged(
    server: RunningServer, owner: UserWithToken
) -> None:
    websocket = await acknowledged_socket(server, owner.token.secret)
    await send(websocket, {"type": "ping"})

    assert await receive(websocket) == {"type": "pong"}
    await websocket.close()


async def test_subscribe_before_connection_init_is_closed_4401(
    server: RunningServer, owned_project: Project
) -> None:
    websocket = await open_socket(server)
    await subscribe_to_audit(websocket, owned_project, "early")
    messages, close_code = await messages_until_closed(websocket)

    assert close_code == UNAUTHORIZED
    assert messages == []


# Live audit events --------------------------------------------------------------------------


async def add_member_over_http(
    server: RunningServer, owner: UserWithToken, project: Project, username: str
) -> None:
    variables = {
        "input": {
            "project": to_global_id("Project", project.id),
            "username": username,
            "role": "VIEWER",
        }
    }
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
        response = await client.post(
            "/graphql",
            json={"query": ADD_MEMBER, "variables": variables},
            headers=owner.authorization,
        )
    result = data_of((response.status_code, response.json()))["addProjectMember"]
    assert result["__typename"] == "ProjectMemberSuccess", result


@pytest.mark.parametrize("made_by", ["the-server-itself", "another-process"])
async def test_the_owner_receives_a_member_added_to_the_project_live(
    server: RunningServer,
    platform: Platform,
    owner: UserWithToken,
    owned_project: Project,
    made_by: str,
) -> None:
    newcomer = await user_with_token(platform, unique("newcomer"))
    websocket = await acknowledged_socket(server, owner.token.secret)
    await subscribe_to_audit(websocket, owned_project, "audit")
    await wait_for_channel_subscriber(platform, owned_project)

    started = time.monotonic()
    if made_by == "the-server-itself":
        await add_member_over_http(server, owner, owned_project, newcomer.principal.username)
    else:
        # This test process is another API process on the same database and Redis.
        await members.add_member(
            platform,
            owner.principal,
            owned_project.id,
            username=newcomer.principal.username,
            role=ProjectRole.VIEWER,
        )
    message = await receive(websocket, timeout_s=5)
    elapsed = time.monotonic() - started
    await websocket.close()
    print(f"audit event received {elapsed:.3f} s after the change ({made_by})")

    assert message["type"] == "next", message
    assert message["id"] == "audit"
    event = message["payload"]["data"]["projectAuditEvents"]
    assert event["action"] == "member.add"
    assert event["outcome"] == "success"
    assert event["actor"] == owner.principal.username
    assert event["details"] == {"username": newcomer.principal.username, "role": "viewer"}


async def test_a_non_member_gets_not_found_and_no_events(
    server: RunningServer, platform: Platform, owner: UserWithToken, owned_project: Project
) -> None:
    outsider = await user_with_token(platform, unique("outsider"))
    newcomer = await user_with_token(platform, unique("newcomer"))
    spy = await acknowledged_socket(server, outsider.token.secret)
    watcher = await acknowledged_socket(server, owner.token.secret)

    await subscribe_to_audit(spy, owned_project, "spy")
    refusal = await receive(spy)
    await subscribe_to_audit(watcher, owned_project, "watch")
    await wait_for_channel_subscriber(platform, owned_project)
    await add_member_over_http(server, owner, owned_project, newcomer.principal.username)
    # Once the owner has the event, the server has fanned it out to every subscriber it has.
    seen_by_owner = await receive(watcher)
    after_refusal, spy_close_code = await messages_until_closed(spy, timeout_s=1)
    await spy.close()
    await watcher.close()

    assert refusal["type"] == "error", refusal
    assert refusal["id"] == "spy"
    assert [error["extensions"]["code"] for error in refusal["payload"]] == ["NOT_FOUND"]
    assert seen_by_owner["payload"]["data"]["projectAuditEvents"]["action"] == "member.add"
    assert after_refusal == []
    assert spy_close_code is None, "a refused subscription does not end the connection"


async def test_a_subscriber_removed_from_the_project_receives_no_further_events(
    server: RunningServer, platform: Platform, owner: UserWithToken, owned_project: Project
) -> None:
    # A subscription is authorized when it starts, and again for every event: losing
    # audit:read must end the feed even though the socket and its token stay valid.
    co_owner = await user_with_token(platform, unique("co-owner"))
    newcomer = await user_with_token(platform, unique("newcomer"))
    await members.add_member(
        platform,
        owner.principal,
        owned_project.id,
        username=co_owner.principal.username,
        role=ProjectRole.OWNER,
    )
    websocket = await acknowledged_socket(server, co_owner.token.secret)
    await subscribe_to_audit(websocket, owned_project, "audit")
    await wait_for_channel_subscriber(platform, owned_project)
    await members.remove_member(
        platform, owner.principal, owned_project.id, username=co_owner.principal.username
    )

    async def server_forgot_co_owner() -> bool:
        return not await sees_project(server, co_owner.token.secret, owned_project.slug)

    # Only once the server's own policy says the co-owner is out may we expect it to act on it.
    assert await poll_until(server_forgot_co_owner, timeout_s=5) is not None
    await add_member_over_http(server, owner, owned_project, newcomer.principal.username)
    messages, _ = await messages_until_closed(websocket, timeout_s=2)
    await websocket.close()

    # Whether their own removal still reaches them is a race with the policy reload; what
    # happens after the server knows they are out must not, in any form.
    assert newcomer.principal.username not in json.dumps(messages), (
        f"the removed co-owner still receives the project's audit events: {messages}"
    )


# Revoked tokens close their sockets ---------------------------------------------------------


@pytest.mark.parametrize("revoked_by", ["revokeApiToken-over-http", "another-process"])
async def test_revoking_the_token_closes_the_open_socket_within_5_s(
    server: RunningServer,
    platform: Platform,
    owner: UserWithToken,
    owned_project: Project,
    revoked_by: str,
) -> None:
    websocket = await acknowledged_socket(server, owner.token.secret)
    await subscribe_to_audit(websocket, owned_project, "audit")
    await wait_for_channel_subscriber(platform, owned_project)

    started = time.monotonic()
    if revoked_by == "another-process":
        await identity.revoke_token(platform, owner.principal, owner.token.id)
    else:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
            response = await client.post(
                "/graphql",
                json={
                    "query": REVOKE_TOKEN,
                    "variables": {"id": to_global_id("ApiToken", owner.token.id)},
                },
                headers=owner.authorization,
            )
        result = data_of((response.status_code, response.json()))["revokeApiToken"]
        assert result["__typename"] == "RevokeApiTokenSuccess", result
    messages, close_code = await messages_until_closed(websocket, timeout_s=8)
    elapsed = time.monotonic() - started
    print(f"socket closed {elapsed:.2f} s after the revocation ({revoked_by})")

    assert close_code == FORBIDDEN
    assert messages == []


# The origin of the handshake ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        (None, True),
        (PORTAL_ORIGIN, True),
        ("https://evil.example", False),
        ("https://portal.example.evil.example", False),
        ("http://portal.example", False),
    ],
    ids=["no-origin", "allowed-origin", "other-origin", "lookalike-origin", "other-scheme"],
)
async def test_only_allowlisted_origins_may_open_a_socket(
    server: RunningServer, owner: UserWithToken, origin: str | None, accepted: bool
) -> None:
    if not accepted:
        # Refused during the handshake: the page never gets a socket to send its token over.
        with pytest.raises(InvalidStatus) as refused:
            await open_socket(server, origin=origin)
        assert refused.value.response.status_code == 403
        return

    websocket = await open_socket(server, origin=origin)
    await send(
        websocket,
        {"type": "connection_init", "payload": {"authorization": f"Bearer {owner.token.secret}"}},
    )
    assert (await receive(websocket))["type"] == "connection_ack"
    await websocket.close()
