"""GraphQL subscriptions over a WebSocket (graphql-transport-ws, the token in
`connection_init`), resumed from the last cursor after a dropped connection."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from aiaas.client.errors import (
    AuthenticationError,
    GraphQLRequestError,
    RequestTimeoutError,
    ServerConnectionError,
    ServerUnreachableError,
)

SUBPROTOCOL = "graphql-transport-ws"
CREDENTIALS_REFUSED = 4403
MAX_RECONNECTS = 5
"""Reconnections in a row without an event in between before giving up."""


def websocket_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/graphql"


@contextlib.contextmanager
def _opened(url: str, token: str, timeout: float) -> Iterator[ClientConnection]:
    """A socket past `connection_ack`."""
    try:
        connection = connect(
            websocket_url(url), subprotocols=[Subprotocol(SUBPROTOCOL)], open_timeout=timeout
        )
    except TimeoutError as exc:
        raise RequestTimeoutError(f"the aiaas server at {url} did not answer in time") from exc
    except (OSError, InvalidHandshake) as exc:
        raise ServerUnreachableError(f"cannot reach the aiaas server at {url}: {exc}") from exc
    with connection as socket:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        socket.send(json.dumps(init))
        while True:
            message = json.loads(socket.recv(timeout))
            if message["type"] == "connection_ack":
                break
            if message["type"] == "ping":
                socket.send(json.dumps({"type": "pong"}))
        yield socket


def _messages(socket: ClientConnection, deadline: float | None) -> Iterator[str | bytes]:
    """The socket's messages until it closes; a builtin `TimeoutError` once `deadline` (of
    `time.monotonic()`) passes."""
    if deadline is None:
        yield from socket
        return
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the subscription did not end in time")
        try:
            yield socket.recv(left)  # TimeoutError when nothing comes in time
        except ConnectionClosedOK:
            return


def subscribe(
    url: str,
    token: str,
    document: str,
    variables: Callable[[], dict[str, Any]],
    *,
    timeout: float,
    deadline: float | None = None,
) -> Iterator[dict[str, Any]]:
    """The `data` of each event, until the server completes the subscription. After a dropped
    connection it subscribes again with `variables()` (which carry the last cursor seen).
    A builtin `TimeoutError` once `deadline` (of `time.monotonic()`) passes before the end."""
    failures = 0
    while True:
        try:
            with _opened(url, token, timeout) as socket:
                payload = {"query": document, "variables": variables()}
                socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                for raw in _messages(socket, deadline):
                    message = json.loads(raw)
                    kind = message["type"]
                    if kind == "next":
                        body = message["payload"]
                        if body.get("errors"):
                            raise GraphQLRequestError(body["errors"][0].get("message", ""))
                        failures = 0
                        yield body["data"]
                    elif kind == "error":
                        raise GraphQLRequestError(str(message["payload"][0].get("message", "")))
                    elif kind == "complete":
                        return
                    elif kind == "ping":
                        socket.send(json.dumps({"type": "pong"}))
            failures += 1  # closed without a `complete`: subscribe again from the cursor
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code == CREDENTIALS_REFUSED:
                raise AuthenticationError(
                    f"the aiaas server at {url} refused the token: {exc.rcvd.reason}"
                ) from exc
            failures += 1
        except ServerConnectionError:
            failures += 1
            if failures > MAX_RECONNECTS:
                raise
        if failures > MAX_RECONNECTS:
            raise ServerConnectionError(
                f"the connection to the aiaas server at {url} keeps dropping"
            )
        time.sleep(min(0.2 * 2**failures, 5.0))
