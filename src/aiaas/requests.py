"""Request ids: every HTTP request and WebSocket gets one, echoed in `X-Request-ID`, written to
audit events and attached to masked errors, so that a user's report leads to the log line.

The request id is always the server's own, so that no two requests share one. An id the caller
sends (`X-Correlation-ID`, or `X-Request-ID` as most clients name it) is kept apart, as the
correlation id: echoed in `X-Correlation-ID`, and stored with the audit events beside ours.

The same middleware, outermost of ours, also ends a request quietly whose client disconnected
before sending all of its body: nobody is left to answer, and it is no error of the server's.

And it is where an unexpected error (an exception no route turned into an answer) ends: it is
logged with the request id, answered with a 500 that carries the id and nothing else, and
audited as a `failed` `request.error` event that names the interface, the route's template and
the exception's type, and holds nothing the request carried (no path, no body, no exception
text, which may quote either). GraphQL answers its resolvers' unexpected errors itself, as
errors in its result: `aiaas.graphql.error_audit` audits those the same way.

An error that a lost service caused (PostgreSQL or Redis gone mid-request, `aiaas.core.outages`)
is no bug: it is answered 503 with `Retry-After` and the service's code, logged as a warning and
not audited (the trail may be what is gone).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiaas.core.audit import correlated, record_outside_change
from aiaas.core.auth import Principal
from aiaas.core.errors import AiaasError
from aiaas.core.log_records import log_context
from aiaas.core.outages import as_outage, retry_after_headers

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

HEADER = "x-request-id"
CORRELATION_HEADER = "x-correlation-id"
# A caller-supplied id is kept only if it is short and plain, so it cannot forge log lines.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._-]{1,64}")

UNEXPECTED_ERROR_ACTION = "request.error"
V2_PREFIX = "/v2"
GRAPHQL_PATH = "/graphql"


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


async def audit_unexpected_error(
    platform: Platform,
    *,
    actor: Principal | None,
    request_id: str,
    details: dict[str, Any],
) -> None:
    """Record that request `request_id` failed unexpectedly. `details` names where (the
    interface, a route or fields) and the exception's type, never anything the request carried.
    A trail that cannot be written (the database is what failed) is logged, not raised: the
    request's own failure is the one to report."""
    try:
        await record_outside_change(
            platform,
            actor=actor,
            action=UNEXPECTED_ERROR_ACTION,
            outcome="failed",
            request_id=request_id,
            details=details,
        )
    except Exception:
        logger.warning(
            "request %s: its unexpected error could not be audited", request_id, exc_info=True
        )


def is_v2(scope: Scope) -> bool:
    """Whether the request is one of the V2 inference protocol's (a path under /v2)."""
    path: str = scope.get("path", "")
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def _interface(scope: Scope) -> str:
    if scope.get("path", "") == GRAPHQL_PATH:
        return "graphql"
    return "v2" if is_v2(scope) else "rest"


def error_body(scope: Scope, code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The body of an error answer, in the shape of the request's interface. V2 clients get the
    protocol's `{"error": "<message>"}`, with our `code` (and `extra`) beside it: tritonclient
    and KServe's client read `error` as the message, and a client that finds an object there
    fails to report the error at all (tritonclient's `str()` of it raises `TypeError`). The
    REST API's errors are `{"error": {"code", "message", ...}}`."""
    if is_v2(scope):
        return {"error": message, "code": code, **extra}
    return {"error": {"code": code, "message": message, **extra}}


def _route_template(scope: Scope) -> str:
    """`POST /v1/projects/{project}/...`: the method and the template of the route the request
    matched, not its path, which holds what the caller put there."""
    method = scope.get("method", "WEBSOCKET")
    app = scope.get("app")
    for route in getattr(app, "routes", ()):
        match, _ = route.matches(scope)
        if match is Match.FULL and isinstance(getattr(route, "path", None), str):
            return f"{method} {route.path}"
    return f"{method} (no route)"


def internal_error_response(scope: Scope, request_id: str) -> JSONResponse:
    """The 500 answer of an unexpected error: its request id, and nothing of the error. V2
    clients get the protocol's shape, everyone else the REST error's."""
    return JSONResponse(
        error_body(scope, "INTERNAL", "internal error", requestId=request_id), status_code=500
    )


def outage_response(scope: Scope, outage: AiaasError) -> JSONResponse:
    """The 503 answer of a request that a lost service cut short: its code, and when to retry.
    A GraphQL request (its credentials could not be checked) gets a GraphQL error, as the same
    outage met by a resolver gives."""
    body = (
        {"errors": [{"message": outage.message, "extensions": outage.extensions}]}
        if _interface(scope) == "graphql"
        else error_body(scope, outage.code, outage.message)
    )
    return JSONResponse(body, status_code=outage.http_status, headers=retry_after_headers(outage))


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, platform: Platform | None = None) -> None:
        """Without `platform`, unexpected errors are logged and answered but not audited."""
        self.app = app
        self.platform = platform

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
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            # A WebSocket's handshake answer carries the ids too, so that its client can name
            # the connection in a report.
            if message["type"] in ("http.response.start", "websocket.accept"):
                started = True
                message["headers"] = [*message.get("headers", []), *echoed]
            await send(message)

        with correlated(correlation_id), log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except ClientDisconnect:
                # Raised by Starlette to a route still reading the body (a client that gave
                # up, or that declared a longer body than it sent). Left to propagate, uvicorn
                # would log it as an exception in the application, with a traceback.
                logger.info(
                    "request %s: the client disconnected before sending its body", request_id
                )
            except Exception as exc:
                outage = as_outage(exc)
                if outage is not None and scope["type"] == "http" and not started:
                    # A service it needs went away: no bug to audit (the trail may be what is
                    # gone), but an answer that tells the caller to come back.
                    logger.warning("request %s: %s", request_id, outage.message)
                    await outage_response(scope, outage)(scope, receive, send_with_id)
                    return
                logger.error("unexpected error in request %s", request_id, exc_info=exc)
                if self.platform is not None:
                    await audit_unexpected_error(
                        self.platform,
                        actor=state.get("principal"),
                        request_id=request_id,
                        details={
                            "interface": _interface(scope),
                            "route": _route_template(scope),
                            "error": type(exc).__name__,
                        },
                    )
                if started or scope["type"] != "http":
                    # Too late to answer: the server ends the connection.
                    raise
                await internal_error_response(scope, request_id)(scope, receive, send_with_id)
