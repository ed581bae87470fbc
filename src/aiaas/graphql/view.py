"""The strawberry ASGI view, with aiaas's request context and the rules for reaching it.

- HTTP: a POST whose body is not JSON (a form, `text/plain`, a multipart upload) must carry the
  `X-Aiaas-CSRF` header. A page on another site can send those three kinds of request without a
  CORS preflight, but it cannot add a custom header; a JSON POST always needs a preflight.
  Mutations over GET are refused by strawberry itself.
- WebSocket (graphql-transport-ws only): the `connection_init` payload must carry a valid token,
  as `{"authorization": "Bearer <token>"}`. A handshake from a browser page on another origin is
  refused unless the origin is in `cors_origins`. A connection whose credentials stop being
  valid (a token revoked or expired, a user disabled, whatever a plugin's authenticator now
  refuses) is closed within `SessionGuard.CHECK_INTERVAL_S`. A refused `connection_init` is
  audited as a `denied` `websocket.connect` event, with the client's address and whether a
  token was missing or refused, and nothing of the token: one event per socket at most, since
  a socket takes one `connection_init`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from aiaas.core.audit import record_outside_change
from aiaas.core.auth import Credentials
from aiaas.core.errors import AuthenticationError
from aiaas.core.platform import Platform
from aiaas.graphql.context import RequestContext
from aiaas.graphql.loaders import make_loaders
from aiaas.graphql.schema import build_schema
from aiaas.requests import request_id_of

logger = logging.getLogger(__name__)

CSRF_HEADER = "x-aiaas-csrf"
JSON_CONTENT_TYPES = ("application/json", "application/graphql-response+json")
CREDENTIALS_REFUSED_CLOSE_CODE = 4403
CONNECT_ACTION = "websocket.connect"


def connection_init_credentials(params: Any, client_address: str | None) -> Credentials:
    """The credentials a graphql-ws `connection_init` payload carries."""
    authorization = params.get("authorization") if isinstance(params, dict) else None
    if not isinstance(authorization, str) or not authorization:
        raise AuthenticationError("connection_init must carry {authorization: 'Bearer <token>'}")
    return Credentials(authorization=authorization, client_address=client_address)


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
            self._task = asyncio.create_task(self._check_periodically(), name="session-guard")

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
        credentials = Credentials(
            authorization=request.headers.get("authorization"),
            client_address=request.client.host if request.client else None,
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
        return context

    async def on_ws_connect(self, context: RequestContext) -> dict[str, object] | None:
        credentials: Credentials | None = None
        try:
            credentials = connection_init_credentials(
                context.connection_params, context.credentials.client_address
            )
            principal = await self.platform.authenticate(credentials)
            if principal is None:
                raise AuthenticationError("a token is required")
        except AuthenticationError as exc:
            await self._record_refused_connection(context, exc, missing=credentials is None)
            raise ConnectionRejectionError({"message": exc.message}) from exc
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
