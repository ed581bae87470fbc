"""The strawberry ASGI view, with aiaas's request context and the rules for reaching it.

- HTTP: a POST whose body is not JSON (a form, `text/plain`, a multipart upload) must carry the
  `X-Aiaas-CSRF` header. A page on another site can send those three kinds of request without a
  CORS preflight, but it cannot add a custom header; a JSON POST always needs a preflight.
  Mutations over GET are refused by strawberry itself.
- WebSocket (graphql-transport-ws only): the `connection_init` payload must carry a valid token,
  as `{"authorization": "Bearer <token>"}`. A handshake from a browser page on another origin is
  refused unless the origin is in `cors_origins`. A connection whose token is revoked, or
  expires, is closed within `SessionGuard.CHECK_INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from uuid import UUID

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

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
TOKEN_REVOKED_CLOSE_CODE = 4403


def connection_init_credentials(params: Any, client_address: str | None) -> Credentials:
    """The credentials a graphql-ws `connection_init` payload carries."""
    authorization = params.get("authorization") if isinstance(params, dict) else None
    if not isinstance(authorization, str) or not authorization:
        raise AuthenticationError("connection_init must carry {authorization: 'Bearer <token>'}")
    return Credentials(authorization=authorization, client_address=client_address)


class SessionGuard:
    """Closes the WebSockets of tokens that stop being valid. One query per interval covers
    every open connection of the process."""

    CHECK_INTERVAL_S = 1.0

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.sockets: dict[UUID, set[WebSocket]] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, token_id: UUID, websocket: WebSocket) -> None:
        self.sockets.setdefault(token_id, set()).add(websocket)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._check_periodically(), name="session-guard")

    def forget(self, websocket: WebSocket) -> None:
        for token_id in [t for t, sockets in self.sockets.items() if websocket in sockets]:
            self.sockets[token_id].discard(websocket)
            if not self.sockets[token_id]:
                del self.sockets[token_id]

    async def _check_periodically(self) -> None:
        while self.sockets:
            await asyncio.sleep(self.CHECK_INTERVAL_S)
            try:
                await self._close_invalid()
            except Exception:
                logger.exception("checking the tokens of open WebSockets failed")

    async def _close_invalid(self) -> None:
        async with self.platform.metadata.acquire() as connection:
            rows = await connection.fetch(
                """
                SELECT t.id FROM api_tokens t JOIN users u ON u.id = t.user_id
                WHERE t.id = ANY($1::uuid[])
                  AND (t.revoked_at IS NOT NULL OR t.expires_at <= now()
                       OR u.disabled_at IS NOT NULL)
                """,
                list(self.sockets),
            )
        for row in rows:
            for websocket in self.sockets.pop(row["id"], set()):
                with contextlib.suppress(Exception):
                    await websocket.close(TOKEN_REVOKED_CLOSE_CODE, "token revoked or expired")

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
        try:
            credentials = connection_init_credentials(
                context.connection_params, context.credentials.client_address
            )
            principal = await self.platform.authenticate(credentials)
        except AuthenticationError as exc:
            raise ConnectionRejectionError({"message": exc.message}) from exc
        if principal is None:
            raise ConnectionRejectionError({"message": "a token is required"})
        context.credentials = credentials
        context.principal = principal
        if principal.token_id is not None and isinstance(context.request, WebSocket):
            self.sessions.watch(principal.token_id, context.request)
        return None
