"""The strawberry ASGI view, with aiaas's request context and the rules for reaching it.

- HTTP: a browser session's cookie counts only with the `X-Aiaas-CSRF` header that matches it
  (`aiaas.browser_sessions`); without it the fields that need a caller are refused with a
  message that names the header. A POST whose body is not JSON (a form, `text/plain`, a
  multipart upload) must carry the `X-Aiaas-CSRF` header. A page on another site can send those
  three kinds of request without a CORS preflight, but it cannot add a custom header; a JSON
  POST always needs a preflight. Mutations over GET are refused by strawberry itself.
- WebSocket (graphql-transport-ws only; any other subprotocol is closed with 4406 and a reason
  that names it): the `connection_init` payload must carry a valid token, as
  `{"authorization": "Bearer <token>"}`, where clients put it (`connection_init_authorizations`);
  the handshake's own `Authorization` header serves when the payload carries none. A browser,
  which cannot set headers on a socket, is authenticated by its session cookie when neither
  carries one, but only with the session's CSRF token in the payload as `{"csrf": "<token>"}`
  and from an allowed origin (`aiaas.browser_sessions`). Missing or refused credentials close
  the socket with 4403 and a reason that says what was expected or what was wrong. A handshake
  from a browser page on another origin is refused unless the origin is in `cors_origins`. A
  connection whose credentials stop being valid (a token revoked or expired, a user disabled,
  whatever a plugin's authenticator now refuses) is closed within
  `SessionGuard.CHECK_INTERVAL_S`. A refused `connection_init` is audited as a `denied`
  `websocket.connect` event, with the client's address and whether a token was missing or
  refused, and nothing of the token: one event per socket at most, since a socket takes one
  `connection_init`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws import WS_4406_PROTOCOL_NOT_ACCEPTABLE
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage

from aiaas.browser_sessions import (
    CSRF_HEADER,
    http_credentials,
    sends_session_cookie,
    socket_cookie_authorization,
)
from aiaas.core.audit import record_outside_change
from aiaas.core.auth import Credentials
from aiaas.core.errors import AuthenticationError
from aiaas.core.log_records import detached_context
from aiaas.core.platform import Platform
from aiaas.graphql.context import RequestContext
from aiaas.graphql.graphiql import graphiql_page, graphiql_policy
from aiaas.graphql.loaders import make_loaders
from aiaas.graphql.schema import build_schema
from aiaas.graphql.shared_operations import SharedSubscriptionsHandler
from aiaas.requests import request_id_of

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPES = ("application/json", "application/graphql-response+json")
CREDENTIALS_REFUSED_CLOSE_CODE = 4403
CONNECT_ACTION = "websocket.connect"
CLOSE_REASON_MAX_BYTES = 123
"""A close frame's payload is at most 125 bytes, two of them the code (RFC 6455, 5.5)."""
AUTHORIZATION_EXPECTED = 'connection_init needs payload {"authorization": "Bearer <token>"}'
AUTHORIZATION_AMBIGUOUS = "connection_init carries different credentials; send one authorization"
SUBPROTOCOL_EXPECTED = f"subprotocol {GRAPHQL_TRANSPORT_WS_PROTOCOL} expected"


def close_reason(text: str) -> str:
    """`text` cut to what a close frame holds, on a character boundary."""
    return text.encode()[:CLOSE_REASON_MAX_BYTES].decode(errors="ignore")


def _named(params: dict[Any, Any], name: str) -> list[object]:
    """The values of the keys of `params` that are `name` in any case."""
    return [value for key, value in params.items() if str(key).casefold() == name]


def connection_init_authorizations(params: object) -> set[str]:
    """The `Authorization` values a `connection_init` payload carries, wherever clients put
    them: `authorization` in any case (GraphiQL sends its headers editor's `Authorization`), the
    same inside `headers` (as Apollo and urql users often write it), or a bare API token as
    `token`. A value that is not a non-empty string counts as none."""
    if not isinstance(params, dict):
        return set()
    found = _named(params, "authorization")
    for headers in _named(params, "headers"):
        if isinstance(headers, dict):
            found += _named(headers, "authorization")
    for token in _named(params, "token"):
        bare = isinstance(token, str) and token and not token.lower().startswith("bearer ")
        found.append(f"Bearer {token}" if bare else token)
    return {value for value in found if isinstance(value, str) and value}


class ConnectionInitRefusedError(Exception):
    """`on_ws_connect` refuses the connection; the socket is closed with 4403 and `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = close_reason(reason)


class TransportWSHandler(SharedSubscriptionsHandler):
    """strawberry's graphql-transport-ws handler, with subscriptions shared between sockets
    (`SharedSubscriptionsHandler`), and a refused `connection_init` closed with a reason that
    says why, where strawberry's says "Forbidden"."""

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except ConnectionInitRefusedError as refused:
            await self.websocket.close(code=CREDENTIALS_REFUSED_CLOSE_CODE, reason=refused.reason)


class WebSocketAdapter(ASGIWebSocketAdapter):
    """strawberry closes a socket with 4406 "Subprotocol not acceptable" without naming the one
    it accepts; this names it. And it sends what `encode_json` gives as it is, a binary frame
    for bytes, where graphql-transport-ws speaks in text frames: a browser's graphql-ws client
    drops a binary one. Messages go as text, encoded as the answers to queries are."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(self.view.encode_json_string(message))
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc

    async def close(self, code: int, reason: str) -> None:
        if code == WS_4406_PROTOCOL_NOT_ACCEPTABLE:
            reason = SUBPROTOCOL_EXPECTED
        await super().close(code, reason)


class SessionGuard:
    """Closes the WebSockets whose credentials stop being valid.

    Each open connection's credentials are checked again, every interval, by the authenticators
    that let them in (`Platform.authenticate`): a socket opened with an API token closes when the
    token is revoked or expires, or its user is disabled, and one opened through a plugin's
    authenticator closes when that authenticator refuses its credentials. Sockets that share
    credentials are checked once between them."""

    CHECK_INTERVAL_S = 1.0

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.sockets: dict[Credentials, set[WebSocket]] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, credentials: Credentials, websocket: WebSocket) -> None:
        self.sockets.setdefault(credentials, set()).add(websocket)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(
                self._check_periodically(), name="session-guard", context=detached_context()
            )

    def forget(self, websocket: WebSocket) -> None:
        for credentials in [c for c, sockets in self.sockets.items() if websocket in sockets]:
            self.sockets[credentials].discard(websocket)
            if not self.sockets[credentials]:
                del self.sockets[credentials]

    async def _check_periodically(self) -> None:
        while self.sockets:
            await asyncio.sleep(self.CHECK_INTERVAL_S)
            try:
                await self._close_invalid()
            except Exception:
                logger.exception("checking the credentials of open WebSockets failed")

    async def _close_invalid(self) -> None:
        for credentials in list(self.sockets):
            if await self._still_valid(credentials):
                continue
            for websocket in self.sockets.pop(credentials, set()):
                with contextlib.suppress(Exception):
                    await websocket.close(
                        CREDENTIALS_REFUSED_CLOSE_CODE, "credentials revoked or expired"
                    )

    async def _still_valid(self, credentials: Credentials) -> bool:
        # Any other failure (the database unreachable) says nothing about the credentials: it
        # propagates, and the sockets stay open until a check can answer.
        try:
            return await self.platform.authenticate(credentials) is not None
        except AuthenticationError:
            return False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class GraphQLView(GraphQL[RequestContext, None]):
    graphql_transport_ws_handler_class = TransportWSHandler
    websocket_adapter_class = WebSocketAdapter

    def __init__(self, platform: Platform) -> None:
        config = platform.config
        super().__init__(
            build_schema(platform),
            graphql_ide="graphiql" if config.is_dev else None,
            allowed_origins=config.cors_origins,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            # Allowed for uploadDataset; a multipart POST needs the CSRF header (see run()).
            multipart_uploads_enabled=True,
        )
        self.platform = platform
        self.sessions = SessionGuard(platform)

    async def run(self, request: Any, context: Any = None, root_value: Any = None) -> Any:
        if isinstance(request, Request) and request.method == "POST":
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type not in JSON_CONTENT_TYPES and not request.headers.get(CSRF_HEADER):
                raise HTTPException(
                    400, f"a POST that is not JSON must carry the {CSRF_HEADER} header"
                )
        if not isinstance(request, WebSocket):
            try:
                return await super().run(request)
            finally:
                # Uploaded files spool to temporary files; release them whatever the outcome,
                # also when a refused field never read them.
                await request.close()
        try:
            return await super().run(request)
        finally:
            self.sessions.forget(request)

    def encode_json(self, data: object) -> bytes:
        # orjson writes a page of thousands of floats (a metric history's columns) several
        # times faster than json.dumps. Where it refuses (an integer beyond 64 bits, a lone
        # surrogate) the standard library writes it. orjson writes UTF-8 rather than \u
        # escapes, and a non-finite float as null where json.dumps writes NaN, which no JSON
        # reader accepts.
        try:
            return orjson.dumps(data)
        except TypeError:
            return json.dumps(data, separators=(",", ":")).encode()

    def decode_json(self, data: str | bytes) -> object:
        # json.loads raises more than JSONDecodeError on a body it cannot read: RecursionError
        # for deep nesting, ValueError for an integer of more than 4300 digits, and
        # UnicodeDecodeError for bytes that are not UTF-8. Strawberry answers a JSONDecodeError
        # with a 400 (and closes a WebSocket with 4400); anything else would be a 500.
        try:
            return super().decode_json(data)
        except (RecursionError, ValueError) as exc:
            if isinstance(exc, json.JSONDecodeError):
                raise
            raise json.JSONDecodeError(f"unreadable JSON: {type(exc).__name__}", "", 0) from None

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> RequestContext:
        presented = http_credentials(request)
        credentials = presented.credentials
        if isinstance(request, WebSocket):
            # A socket's cookie counts only with the CSRF token of its connection_init
            # (on_ws_connect); here, only the handshake's own Authorization header.
            credentials = Credentials(
                authorization=request.headers.get("authorization"),
                client_address=credentials.client_address,
            )
        context = RequestContext(
            platform=self.platform,
            request=request,
            response=response,
            request_id=request_id_of(request.scope),
            credentials=credentials,
            loaders=make_loaders(self.platform),
        )
        if isinstance(request, WebSocket):
            # A WebSocket authenticates with its connection_init message, in on_ws_connect.
            return context
        try:
            context.principal = await self.platform.authenticate(credentials)
        except AuthenticationError as exc:
            context.authentication_error = exc
        if context.principal is None and context.authentication_error is None:
            # A session cookie without its CSRF header: the fields that need a caller say so.
            context.authentication_error = presented.cookie_refusal
        return context

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(graphiql_page(), headers={"Content-Security-Policy": graphiql_policy()})

    async def on_ws_connect(self, context: RequestContext) -> dict[str, object] | None:
        presented = connection_init_authorizations(context.connection_params)
        if not presented and context.credentials.authorization:
            presented = {context.credentials.authorization}
        cookie_sent = False
        try:
            if not presented and isinstance(context.request, WebSocket):
                # A browser's socket: its session cookie, with the csrf of connection_init.
                cookie_sent = sends_session_cookie(context.request)
                from_cookie = socket_cookie_authorization(
                    context.request, context.connection_params, self.platform.config.cors_origins
                )
                presented = {from_cookie} if from_cookie else set()
            if not presented:
                raise AuthenticationError(AUTHORIZATION_EXPECTED)
            if len(presented) > 1:
                raise AuthenticationError(AUTHORIZATION_AMBIGUOUS)
            credentials = Credentials(
                authorization=next(iter(presented)),
                client_address=context.credentials.client_address,
            )
            principal = await self.platform.authenticate(credentials)
            if principal is None:
                raise AuthenticationError(AUTHORIZATION_EXPECTED)
        except AuthenticationError as exc:
            await self._record_refused_connection(
                context, exc, missing=not presented and not cookie_sent
            )
            # The caller sent these credentials: the authenticator's message ("API token
            # revoked") tells them no more than an HTTP request with them would.
            raise ConnectionInitRefusedError(exc.message) from exc
        context.credentials = credentials
        context.principal = principal
        if isinstance(context.request, WebSocket):
            self.sessions.watch(credentials, context.request)
        return None

    async def _record_refused_connection(
        self, context: RequestContext, exc: AuthenticationError, *, missing: bool
    ) -> None:
        # Not the message: a plugin's authenticator may quote the credentials it refused.
        await record_outside_change(
            self.platform,
            actor=None,
            action=CONNECT_ACTION,
            outcome="denied",
            request_id=context.request_id,
            details={
                "code": exc.code,
                "reason": "missing" if missing else "refused",
                "client": context.credentials.client_address,
            },
        )
