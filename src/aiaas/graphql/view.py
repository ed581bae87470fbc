"""The strawberry ASGI view, with aiaas's request context."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from aiaas.core.auth import Credentials
from aiaas.core.errors import AuthenticationError
from aiaas.core.platform import Platform
from aiaas.graphql.context import RequestContext
from aiaas.graphql.loaders import make_loaders
from aiaas.graphql.schema import build_schema
from aiaas.requests import request_id_of


class GraphQLView(GraphQL[RequestContext, None]):
    def __init__(self, platform: Platform) -> None:
        config = platform.config
        super().__init__(
            build_schema(platform),
            graphql_ide="graphiql" if config.is_dev else None,
            allowed_origins=config.cors_origins,
        )
        self.platform = platform

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
        try:
            context.principal = await self.platform.authenticate(credentials)
        except AuthenticationError as exc:
            context.authentication_error = exc
        return context
