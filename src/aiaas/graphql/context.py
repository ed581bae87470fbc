"""The per-request context every resolver receives as `info.context`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader

from aiaas.core.auth import Credentials, Principal
from aiaas.core.errors import AuthenticationError
from aiaas.core.platform import Platform


@dataclass
class RequestContext:
    platform: Platform
    request: Request | WebSocket
    response: Response | WebSocket | None
    request_id: str
    credentials: Credentials
    principal: Principal | None = None
    authentication_error: AuthenticationError | None = None
    loaders: dict[str, DataLoader[Any, Any]] = field(default_factory=dict)
    connection_params: Any = None
    """The graphql-ws `connection_init` payload, for a WebSocket."""

    def loader(self, name: str) -> DataLoader[Any, Any]:
        """The request's DataLoader of that name (see `aiaas.graphql.loaders`)."""
        return self.loaders[name]

    def require_principal(self) -> Principal:
        """The caller, or the reason there is none (`AuthenticationError`)."""
        if self.authentication_error is not None:
            raise self.authentication_error
        if self.principal is None:
            raise AuthenticationError("authentication required: send `Bearer <API token>`")
        return self.principal

    def mark_unauthenticated(self) -> None:
        if isinstance(self.response, Response):
            self.response.status_code = 401
            self.response.headers["WWW-Authenticate"] = 'Bearer realm="aiaas"'
