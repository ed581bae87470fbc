"""A browser's GraphQL socket against a real `aiaas serve`: the session cookie of the handshake
counts only with the session's CSRF token in `connection_init` and from an allowed origin, and
signing out closes the socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from aiaas.browser_sessions import (
    CSRF_HEADER,
    SESSION_COOKIE,
    SESSION_COOKIE_AMBIGUOUS,
    SOCKET_CSRF_MISSING,
    SOCKET_CSRF_WRONG,
    SOCKET_ORIGIN_REFUSED,
)
from aiaas.core.audit import audit_channel
from aiaas.core.auth import Principal
from aiaas.core.config import Config
from aiaas.core.identity import accounts as identity
from aiaas.core.identity import members, projects
from aiaas.core.identity.access import ProjectRole
from aiaas.core.identity.projects import Project
from aiaas.core.platform import Platform
from aiaas.graphql.relay import to_global_id
from aiaas.graphql.view import close_reason
from support import (
    GRAPHQL_TRANSPORT_WS,
    RunningServer,
    messages_until_closed,
    poll_until,
    ready_server,
    receive,
    send,
    unique,
    user_with_token,
)

pytestmark = pytest.mark.slow

PASSWORD = "a long enough password for the portal"
PORTAL_ORIGIN = "https://portal.example"
FOREIGN_ORIGIN = "https://evil.example"
FORBIDDEN = 4403
AUDIT_SUBSCRIPTION = (
    "subscription Audit($project: ID!) { projectAuditEvents(project: $project) { action } }"
)


@pytest.fixture(scope="module")
async def server(
    config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    """`*` lets a page of any origin open a socket (strawberry's handshake check), so that the
    cookie's own origin rule is what is left to refuse one; the portal's origin is listed."""
    origins = f"*,{PORTAL_ORIGIN}"
    async with ready_server(config, tmp_path_factory, AIAAS_CORS_ORIGINS=origins) as running:
        yield running


class BrowserSession:
    def __init__(self, server: RunningServer, token: str, csrf: str, principal: Principal):
        self.server = server
        self.token = token
        self.csrf = csrf
        self.principal = principal

    async def sign_out(self) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.server.base_url, timeout=5) as client:
            client.cookies.set(SESSION_COOKIE, self.token)
            return await client.delete("/v1/session", headers={CSRF_HEADER: self.csrf})


@pytest.fixture
async def session(server: RunningServer, platform: Platform) -> BrowserSession:
    return await signed_in(server, platform)


async def signed_in(server: RunningServer, platform: Platform) -> BrowserSession:
    username = unique("socket")
    user = await identity.create_user(platform, None, username=username, password=PASSWORD)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
        response = await client.post(
            "/v1/session", json={"username": username, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        token = client.cookies.get(SESSION_COOKIE)
    assert token
    principal = Principal(
        user_id=user.id, username=username, is_admin=False, authenticated_by="test"
    )
    return BrowserSession(server, token, response.json()["csrfToken"], principal)


@pytest.fixture
async def project(platform: Platform, session: BrowserSession) -> Project:
    return await projects.create_project(
        platform, session.principal, slug=unique("socket"), name="Socket"
    )


async def browser_socket(
    server: RunningServer, cookie: str | None, origin: str | None
) -> ClientConnection:
    return await connect(
        server.websocket_url,
        subprotocols=[GRAPHQL_TRANSPORT_WS],
        origin=Origin(origin) if origin else None,
        additional_headers={"Cookie": f"{SESSION_COOKIE}={cookie}"} if cookie else None,
        open_timeout=5,
        close_timeout=2,
        proxy=None,
    )


async def init(websocket: ClientConnection, payload: dict[str, Any] | None) -> None:
    message: dict[str, Any] = {"type": "connection_init"}
    if payload is not None:
        message["payload"] = payload
    await send(websocket, message)


async def subscribed_socket(
    server: RunningServer, session: BrowserSession, project: Project, platform: Platform
) -> ClientConnection:
    websocket = await browser_socket(server, session.token, server.base_url)
    await init(websocket, {"csrf": session.csrf})
    assert (await receive(websocket))["type"] == "connection_ack"
    await send(
        websocket,
        {
            "id": "audit",
            "type": "subscribe",
            "payload": {
                "query": AUDIT_SUBSCRIPTION,
                "variables": {"project": to_global_id("Project", project.id)},
            },
        },
    )
    channel = audit_channel(project.id)

    async def subscribed() -> bool:
        counts = await platform.redis.pubsub_numsub(channel)
        return bool(counts) and counts[0][1] >= 1

    assert await poll_until(subscribed, timeout_s=5) is not None, "the server never subscribed"
    return websocket


async def test_the_cookie_with_its_csrf_in_connection_init_subscribes(
    server: RunningServer, platform: Platform, session: BrowserSession, project: Project
) -> None:
    websocket = await subscribed_socket(server, session, project, platform)
    newcomer = await user_with_token(platform, unique("newcomer"))

    await members.add_member(
        platform,
        session.principal,
        project.id,
        username=newcomer.principal.username,
        role=ProjectRole.VIEWER,
    )
    message = await receive(websocket, timeout_s=5)
    await websocket.close()

    assert message["type"] == "next", message
    assert message["payload"]["data"]["projectAuditEvents"]["action"] == "member.add"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, SOCKET_CSRF_MISSING),
        ({}, SOCKET_CSRF_MISSING),
        ({"csrf": "wrong"}, SOCKET_CSRF_WRONG),
        ({"csrf": 42}, SOCKET_CSRF_WRONG),
    ],
    ids=["no-payload", "no-csrf", "wrong-csrf", "not-a-string"],
)
async def test_the_cookie_without_its_csrf_is_closed_4403(
    server: RunningServer, session: BrowserSession, payload: dict[str, Any] | None, reason: str
) -> None:
    websocket = await browser_socket(server, session.token, server.base_url)
    await init(websocket, payload)
    messages, close_code = await messages_until_closed(websocket)

    assert close_code == FORBIDDEN
    assert websocket.close_reason == close_reason(reason)
    assert messages == []


async def test_two_different_session_cookies_are_closed_4403(
    server: RunningServer, platform: Platform, session: BrowserSession
) -> None:
    # One planted for the parent domain by another host of the site: neither counts.
    planted = await signed_in(server, platform)
    cookies = f"{session.token}; {SESSION_COOKIE}={planted.token}"
    websocket = await browser_socket(server, cookies, server.base_url)
    await init(websocket, {"csrf": planted.csrf})
    messages, close_code = await messages_until_closed(websocket)

    assert close_code == FORBIDDEN
    assert websocket.close_reason == close_reason(SESSION_COOKIE_AMBIGUOUS)
    assert messages == []


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        (None, True),
        ("own", True),
        (PORTAL_ORIGIN, True),
        (FOREIGN_ORIGIN, False),
        ("https://portal.example.evil.example", False),
        ("null", False),
    ],
    ids=["no-origin", "own-origin", "listed-origin", "foreign", "lookalike", "null"],
)
async def test_the_cookie_counts_only_from_an_allowed_origin(
    server: RunningServer, session: BrowserSession, origin: str | None, accepted: bool
) -> None:
    sent_origin = server.base_url if origin == "own" else origin
    websocket = await browser_socket(server, session.token, sent_origin)
    await init(websocket, {"csrf": session.csrf})

    if accepted:
        assert (await receive(websocket))["type"] == "connection_ack"
        await websocket.close()
        return
    messages, close_code = await messages_until_closed(websocket)
    assert close_code == FORBIDDEN
    assert websocket.close_reason == close_reason(SOCKET_ORIGIN_REFUSED)
    assert messages == []


async def test_an_authorization_in_connection_init_wins_over_the_cookie(
    server: RunningServer, platform: Platform, session: BrowserSession
) -> None:
    other = await user_with_token(platform, unique("sdk"))
    # A foreign page's cookie would be refused: the token in the payload is what counts.
    websocket = await browser_socket(server, session.token, FOREIGN_ORIGIN)
    await init(websocket, {"authorization": f"Bearer {other.token.secret}"})

    assert (await receive(websocket))["type"] == "connection_ack"
    await websocket.close()


async def test_signing_out_closes_the_sessions_open_socket(
    server: RunningServer, platform: Platform, session: BrowserSession, project: Project
) -> None:
    websocket = await subscribed_socket(server, session, project, platform)

    signed_out = await session.sign_out()
    messages, close_code = await messages_until_closed(websocket, timeout_s=8)

    assert signed_out.status_code == 204
    assert close_code == FORBIDDEN
    assert messages == []
    # And a new socket with the old cookie is refused.
    again = await browser_socket(server, session.token, server.base_url)
    await init(again, {"csrf": session.csrf})
    _, again_code = await messages_until_closed(again)
    assert again_code == FORBIDDEN
