"""The graphql-transport-ws handshake against a real `aiaas serve`: every place clients put the
token in `connection_init` (or the handshake's header) is accepted, and every refusal closes the
socket with the code and the reason that the README and the schema document."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from aiaas.core.config import Config
from aiaas.core.identity import accounts as identity
from aiaas.core.platform import Platform
from aiaas.graphql.schema import SUBSCRIPTION_DESCRIPTION
from aiaas.graphql.view import (
    AUTHORIZATION_AMBIGUOUS,
    AUTHORIZATION_EXPECTED,
    CLOSE_REASON_MAX_BYTES,
    SUBPROTOCOL_EXPECTED,
    close_reason,
)
from support import (
    GRAPHQL_TRANSPORT_WS,
    RunningServer,
    UserWithToken,
    messages_until_closed,
    ready_server,
    receive,
    send,
    user_with_token,
)

README = Path(__file__).parents[2] / "README.md"
FORBIDDEN = 4403
SUBPROTOCOL_NOT_ACCEPTABLE = 4406
UNKNOWN_TOKEN = f"aiaas_{'0' * 12}_{'A' * 43}"


@pytest.fixture(scope="module")
async def server(
    config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    async with ready_server(config, tmp_path_factory) as running:
        yield running


@pytest.fixture(scope="module")
async def user(platform: Platform) -> UserWithToken:
    return await user_with_token(platform, f"handshake-{uuid.uuid4().hex[:8]}")


async def open_socket(
    server: RunningServer,
    *,
    subprotocols: list[str] | None = None,
    authorization: str | None = None,
) -> ClientConnection:
    """A socket to the server, offering `subprotocols` (graphql-transport-ws by default), with
    `authorization` as the handshake's `Authorization` header."""
    offered = [GRAPHQL_TRANSPORT_WS] if subprotocols is None else subprotocols
    return await connect(
        server.websocket_url,
        # None when there are none: an empty Sec-WebSocket-Protocol header is malformed.
        subprotocols=[Subprotocol(name) for name in offered] or None,
        additional_headers={"Authorization": authorization} if authorization else None,
        open_timeout=5,
        close_timeout=2,
        proxy=None,
    )


async def init(websocket: ClientConnection, payload: Any = None) -> None:
    message: dict[str, Any] = {"type": "connection_init"}
    if payload is not None:
        message["payload"] = payload
    await send(websocket, message)


async def closed_with(websocket: ClientConnection) -> tuple[list[dict[str, Any]], int | None, str]:
    messages, code = await messages_until_closed(websocket)
    return messages, code, websocket.close_reason or ""


# Where clients put the token ------------------------------------------------------------------


def accepted_payloads(token: str) -> dict[str, dict[str, Any]]:
    return {
        "authorization": {"authorization": f"Bearer {token}"},
        "Authorization": {"Authorization": f"Bearer {token}"},
        "AUTHORIZATION": {"AUTHORIZATION": f"Bearer {token}"},
        "headers.Authorization": {"headers": {"Authorization": f"Bearer {token}"}},
        "headers.authorization": {"headers": {"authorization": f"Bearer {token}"}},
        "token": {"token": token},
        "token-with-scheme": {"token": f"Bearer {token}"},
        "same-token-twice": {"Authorization": f"Bearer {token}", "token": token},
    }


@pytest.mark.slow
@pytest.mark.parametrize("where", list(accepted_payloads("t")))
async def test_each_place_clients_put_the_token_is_acknowledged(
    server: RunningServer, user: UserWithToken, where: str
) -> None:
    websocket = await open_socket(server)
    await init(websocket, accepted_payloads(user.token.secret)[where])

    ack = await receive(websocket)
    await send(websocket, {"type": "ping"})
    pong = await receive(websocket)
    await websocket.close()

    assert ack["type"] == "connection_ack", ack
    assert pong == {"type": "pong"}


@pytest.mark.slow
@pytest.mark.parametrize("payload", [None, {}], ids=["no-payload", "empty-payload"])
async def test_the_handshake_header_serves_when_the_payload_has_no_token(
    server: RunningServer, user: UserWithToken, payload: dict[str, Any] | None
) -> None:
    websocket = await open_socket(server, authorization=f"Bearer {user.token.secret}")
    await init(websocket, payload)

    ack = await receive(websocket)
    await websocket.close()

    assert ack["type"] == "connection_ack", ack


@pytest.mark.slow
async def test_the_payload_wins_over_the_handshake_header(
    server: RunningServer, user: UserWithToken
) -> None:
    websocket = await open_socket(server, authorization=f"Bearer {user.token.secret}")
    await init(websocket, {"authorization": f"Bearer {UNKNOWN_TOKEN}"})

    messages, code, reason = await closed_with(websocket)

    assert (messages, code, reason) == ([], FORBIDDEN, "unknown API token")


# Refusals say what was expected -------------------------------------------------------------


@pytest.fixture(scope="module")
async def revoked_token(platform: Platform) -> str:
    revoked = await user_with_token(platform, f"revoked-{uuid.uuid4().hex[:8]}")
    await identity.revoke_token(platform, None, revoked.token.id)
    return revoked.token.secret


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "expected_reason"),
    [
        pytest.param("no-payload", AUTHORIZATION_EXPECTED, id="no-payload"),
        pytest.param("empty-payload", AUTHORIZATION_EXPECTED, id="empty-payload"),
        pytest.param("empty-authorization", AUTHORIZATION_EXPECTED, id="empty-authorization"),
        pytest.param(
            "authorization-not-a-string", AUTHORIZATION_EXPECTED, id="authorization-not-a-string"
        ),
        pytest.param("other-key", AUTHORIZATION_EXPECTED, id="other-key"),
        pytest.param(
            "raw-token-as-authorization",
            "unrecognised credentials: expected `Bearer <API token>`",
            id="raw-token-as-authorization",
        ),
        pytest.param("unknown-token", "unknown API token", id="unknown-token"),
        pytest.param("revoked-token", "API token revoked", id="revoked-token"),
        pytest.param("malformed-token", "malformed API token", id="malformed-token"),
        pytest.param("two-different-tokens", AUTHORIZATION_AMBIGUOUS, id="two-different-tokens"),
    ],
)
async def test_a_refused_connection_init_is_closed_4403_saying_why(
    server: RunningServer,
    user: UserWithToken,
    revoked_token: str,
    kind: str,
    expected_reason: str,
) -> None:
    payloads: dict[str, Any] = {
        "no-payload": None,
        "empty-payload": {},
        "empty-authorization": {"authorization": ""},
        "authorization-not-a-string": {"authorization": {"Bearer": user.token.secret}},
        "other-key": {"apiKey": user.token.secret},
        "raw-token-as-authorization": {"authorization": user.token.secret},
        "unknown-token": {"authorization": f"Bearer {UNKNOWN_TOKEN}"},
        "revoked-token": {"Authorization": f"Bearer {revoked_token}"},
        "malformed-token": {"token": "aiaas_not-a-token"},
        "two-different-tokens": {
            "authorization": f"Bearer {user.token.secret}",
            "headers": {"Authorization": f"Bearer {UNKNOWN_TOKEN}"},
        },
    }
    websocket = await open_socket(server)
    await init(websocket, payloads[kind])

    messages, code, reason = await closed_with(websocket)

    assert code == FORBIDDEN
    assert reason == expected_reason
    assert messages == []


@pytest.mark.slow
async def test_a_refused_handshake_header_is_closed_4403_saying_why(
    server: RunningServer,
) -> None:
    websocket = await open_socket(server, authorization=f"Bearer {UNKNOWN_TOKEN}")
    await init(websocket)

    messages, code, reason = await closed_with(websocket)

    assert (messages, code, reason) == ([], FORBIDDEN, "unknown API token")


@pytest.mark.slow
@pytest.mark.parametrize(
    "offered",
    [["graphql-ws"], [], ["graphql-ws", "subscriptions-transport-ws"]],
    ids=["graphql-ws", "none", "two-others"],
)
async def test_another_subprotocol_is_closed_4406_naming_the_one_expected(
    server: RunningServer, offered: list[str]
) -> None:
    websocket = await open_socket(server, subprotocols=offered)

    messages, code, reason = await closed_with(websocket)

    assert code == SUBPROTOCOL_NOT_ACCEPTABLE
    assert reason == SUBPROTOCOL_EXPECTED == "subprotocol graphql-transport-ws expected"
    assert messages == []


# As documented -------------------------------------------------------------------------------


def test_the_readme_and_the_schema_give_the_reasons_the_server_sends() -> None:
    readme = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d{4}) \| `([^`]+)` \|", readme, flags=re.MULTILINE)

    for reason in (SUBPROTOCOL_EXPECTED, AUTHORIZATION_EXPECTED):
        assert reason in SUBSCRIPTION_DESCRIPTION
    assert ("4406", SUBPROTOCOL_EXPECTED) in rows
    assert ("4403", AUTHORIZATION_EXPECTED) in rows
    assert ("4403", AUTHORIZATION_AMBIGUOUS) in rows
    assert "graphql-transport-ws" in readme
    assert "(graphql-ws)" not in readme


def test_every_reason_fits_a_close_frame() -> None:
    for reason in (SUBPROTOCOL_EXPECTED, AUTHORIZATION_EXPECTED, AUTHORIZATION_AMBIGUOUS):
        assert len(reason.encode()) <= CLOSE_REASON_MAX_BYTES
    # An authenticator's message may be longer, and not ASCII: cut on a character boundary.
    long_message = "é" * 100

    cut = close_reason(long_message)

    assert len(cut.encode()) <= CLOSE_REASON_MAX_BYTES
    assert long_message.startswith(cut)
    assert len(cut) == CLOSE_REASON_MAX_BYTES // 2
