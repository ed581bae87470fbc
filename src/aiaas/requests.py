"""Request ids: every HTTP request and WebSocket gets one, echoed in `X-Request-ID`, written to
audit events and attached to masked errors, so that a user's report leads to the log line.

The same middleware, outermost of ours, also ends a request quietly whose client disconnected
before sending all of its body: nobody is left to answer, and it is no error of the server's.
"""

from __future__ import annotations

import logging
import re
import uuid

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

HEADER = "x-request-id"
# A caller-supplied id is kept only if it is short and plain, so it cannot forge log lines.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_of(scope: Scope) -> str:
    request_id: str = scope.setdefault("state", {}).get("request_id") or uuid.uuid4().hex
    return request_id


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        supplied = dict(scope["headers"]).get(HEADER.encode(), b"").decode("latin-1")
        request_id = supplied if _ACCEPTABLE.fullmatch(supplied) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (HEADER.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # Raised by Starlette to a route still reading the body (a client that gave up, or
            # that declared a longer body than it sent). Left to propagate, uvicorn would log
            # it as an exception in the application, with a traceback.
            logger.info("request %s: the client disconnected before sending its body", request_id)
