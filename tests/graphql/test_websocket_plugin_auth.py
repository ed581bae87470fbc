"""A WebSocket let in by a plugin's authenticator is closed when that authenticator stops
recognising its credentials: the session guard asks the `Authenticator` protocol again, not the
API-token table, so credentials of any kind are watched alike.

The API runs in a real uvicorn inside the test's event loop, so that the plugin registered here
(which a subprocess could not see) is the one letting the socket in.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import ClassVar

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from aiaas.app import create_app
from aiaas.core.auth import Authenticator, Credentials, Principal
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config
from aiaas.core.hookspecs import hookimpl
from aiaas.core.plugins import create_plugin_manager
from aiaas.core.specs import AuthenticatorSpec
from aiaas.core.storage import MetadataStore
from support import GRAPHQL_TRANSPORT_WS, messages_until_closed, receive, send

pytestmark = pytest.mark.slow

FORBIDDEN = 4403


class BadgeAuthenticator(Authenticator):
    """Lets in `Badge <name>` unless the name has been struck off."""

    struck_off: ClassVar[set[str]] = set()

    def __init__(self, config: Config) -> None:
        del config

    async def authenticate(
        self, credentials: Credentials, metadata: MetadataStore
    ) -> Principal | None:
        scheme, _, name = (credentials.authorization or "").partition(" ")
        if scheme != "Badge" or name in self.struck_off:
            return None
        return Principal(
            user_id=uuid.uuid5(uuid.NAMESPACE_DNS, name),
            username=name,
            is_admin=False,
            authenticated_by="badge",
        )


class BadgePlugin:
    @hookimpl
    def aiaas_authenticators(self) -> Iterable[AuthenticatorSpec]:
        return [AuthenticatorSpec(name="badge", factory=BadgeAuthenticator)]


@dataclass(frozen=True)
class InProcessServer:
    port: int

    @property
    def websocket_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"


@pytest.fixture
async def server(config: Config) -> AsyncIterator[InProcessServer]:
    manager = create_plugin_manager(config)
    manager.register_plugin(BadgePlugin(), "badge-plugin")
    app = create_app(platform=create_platform(config, manager))
    uvicorn_server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning")
    )
    serving = asyncio.create_task(uvicorn_server.serve())
    try:
        async with asyncio.timeout(30):
            while not uvicorn_server.started:  # noqa: ASYNC110 - uvicorn sets a flag, no event
                await asyncio.sleep(0.05)
        port = uvicorn_server.servers[0].sockets[0].getsockname()[1]
        yield InProcessServer(port)
    finally:
        uvicorn_server.should_exit = True
        await serving
        BadgeAuthenticator.struck_off.clear()


async def badge_socket(server: InProcessServer, name: str) -> ClientConnection:
    websocket = await connect(
        server.websocket_url, subprotocols=[GRAPHQL_TRANSPORT_WS], open_timeout=5, proxy=None
    )
    await send(
        websocket, {"type": "connection_init", "payload": {"authorization": f"Badge {name}"}}
    )
    ack = await receive(websocket)
    assert ack["type"] == "connection_ack", ack
    return websocket


async def test_a_socket_whose_plugin_credentials_go_bad_is_closed(server: InProcessServer) -> None:
    struck, kept = f"struck-{uuid.uuid4().hex[:6]}", f"kept-{uuid.uuid4().hex[:6]}"
    struck_socket = await badge_socket(server, struck)
    kept_socket = await badge_socket(server, kept)

    BadgeAuthenticator.struck_off.add(struck)
    messages, close_code = await messages_until_closed(struck_socket, timeout_s=8)

    assert (messages, close_code) == ([], FORBIDDEN)
    assert struck_socket.close_reason == "credentials revoked or expired"
    # The other badge is still good: its socket stays open and answers a ping.
    await send(kept_socket, {"type": "ping"})
    assert (await receive(kept_socket))["type"] == "pong"
    await kept_socket.close()
