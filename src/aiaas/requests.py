"""Request ids: every HTTP request and WebSocket gets one, echoed in `X-Request-ID`, written to
audit events and attached to masked errors, so that a user's report leads to the log line.

The request id is always the server's own, so that no two requests share one. An id the caller
sends (`X-Correlation-ID`, or `X-Request-ID` as most clients name it) is kept apart, as the
correlation id: echoed in `X-Correlation-ID`, and stored with the audit events beside ours.

The same middleware, outermost of ours, also ends a request quietly whose client disconnected
before sending all of its body: nobody is left to answer, and it is no error of the server's.
"""

from __future__ import annotations

import logging
import re
import uuid

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiaas.core.audit import correlated

logger = logging.getLogger(__name__)

HEADER = "x-request-id"
CORRELATION_HEADER = "x-correlation-id"
# A caller-supplied id is kept only if it is short and plain, so it cannot forge log lines.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_of(scope: Scope) -> str:
    request_id: str = scope.setdefault("state", {}).get("request_id") or uuid.uuid4().hex
    return request_id


def _supplied_correlation_id(scope: Scope) -> str | None:
    headers = dict(scope["headers"])
    for name in (CORRELATION_HEADER, HEADER):
        supplied = headers.get(name.encode(), b"").decode("latin-1")
        if supplied:
            return supplied if _ACCEPTABLE.fullmatch(supplied) else None
    return None


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        correlation_id = _supplied_correlation_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"], state["correlation_id"] = request_id, correlation_id
        echoed = [(HEADER.encode(), request_id.encode())]
        if correlation_id is not None:
            echoed.append((CORRELATION_HEADER.encode(), correlation_id.encode()))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *echoed]
            await send(message)

        try:
            with correlated(correlation_id):
                await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # Raised by Starlette to a route still reading the body (a client that gave up, or
            # that declared a longer body than it sent). Left to propagate, uvicorn would log
            # it as an exception in the application, with a traceback.
            logger.info("request %s: the client disconnected before sending its body", request_id)
