"""Bounds on what a request may make the API do before it is known to be welcome.

- `authenticated`: the principal of an HTTP request, or the 401 that refuses it, shared by
  `RequirePrincipal` (app.py), the body limit below and `/metrics`.
- `GraphQLBodyLimit`: an ASGI middleware for `/graphql`. A body that is not a multipart upload may
  be at most `graphql_max_body_bytes`; a multipart upload (`uploadDataset`) at most
  `upload_max_bytes` plus the same small allowance for its `operations` and `map` parts. A
  `Content-Length` over the limit is answered 413 before a byte of the body is read; a body
  without one (chunked), or longer than it said, is counted as it streams and cut off as soon as
  it passes. A multipart body is not read at all, so not spooled to disk by Starlette's form
  parser, before its caller is authenticated: without valid credentials it gets the same 401 as
  any other route, untouched.

The refusal does not close the connection: uvicorn reads whatever the client still sends and
throws it away, holding none of it. Closing instead would reset the connection under a client
still sending, and most clients (httpx among them) then never read the answer.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiaas.browser_sessions import http_credentials
from aiaas.core.auth import Principal
from aiaas.core.errors import AuthenticationError
from aiaas.core.platform import Platform
from aiaas.requests import error_body

MULTIPART = "multipart/form-data"
MAX_LENGTH_DIGITS = 20
"""Digits of the largest Content-Length worth reading (2**64 has 20)."""


async def authenticate_request(platform: Platform, scope: Scope) -> Principal:
    """The principal of an HTTP request; AuthenticationError without valid credentials."""
    # The Authorization header, or a browser session's cookie with its CSRF header.
    presented = http_credentials(HTTPConnection(scope))
    principal = await platform.authenticate(presented.credentials)
    if principal is None:
        raise presented.cookie_refusal or AuthenticationError(
            "authentication required: send `Bearer <API token>`"
        )
    return principal


def unauthenticated_response(scope: Scope, exc: AuthenticationError) -> JSONResponse:
    """The 401, in the error shape of the request's interface (V2's under /v2)."""
    return JSONResponse(
        error_body(scope, exc.code, exc.message),
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="aiaas"'},
    )


async def authenticated(platform: Platform, scope: Scope) -> Principal | JSONResponse:
    """The request's principal, kept in its scope's state for the handlers; or the 401 to
    answer with. Every HTTP route that authenticates does it through here."""
    state = scope.setdefault("state", {})
    known: Principal | None = state.get("principal")
    if known is not None:
        return known
    try:
        principal = await authenticate_request(platform, scope)
    except AuthenticationError as exc:
        return unauthenticated_response(scope, exc)
    state["principal"] = principal
    return principal


class BodyRefused(Exception):  # noqa: N818 (a refusal carried out of the app, not a bug)
    """A request body refused while the app was reading it. Deliberately not a ValueError:
    strawberry turns those into its own 400 while parsing a form."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": self.code, "message": self.message}},
            status_code=self.status_code,
        )


def too_large(limit: int) -> BodyRefused:
    return BodyRefused(
        413, "PAYLOAD_TOO_LARGE", f"the request body is larger than the limit of {limit} bytes"
    )


def declared_length(headers: Headers) -> int | None:
    """The body's length as the request declares it; None when it does not (chunked)."""
    values = headers.getlist("content-length")
    if not values:
        return None
    value = values[0].strip()
    # Digits only, and few of them: str.isdigit() also takes "²", which int() refuses, and
    # int() refuses more than 4,300 digits; either would be a 500 rather than this 400.
    well_formed = value.isascii() and value.isdigit() and len(value) <= MAX_LENGTH_DIGITS
    if len(set(values)) != 1 or not well_formed:
        raise BodyRefused(400, "BAD_REQUEST", "malformed Content-Length header")
    return int(value)


class CountedBody:
    """A `receive` that passes the body on while it stays within `limit` and `declared`."""

    def __init__(self, receive: Receive, limit: int, declared: int | None) -> None:
        self._receive = receive
        self.limit = limit
        self.declared = declared
        self.received = 0

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.declared is not None and self.received > self.declared:
                raise BodyRefused(
                    400, "BAD_REQUEST", "the request body is longer than its Content-Length"
                )
            if self.received > self.limit:
                raise too_large(self.limit)
        return message


class GraphQLBodyLimit:
    """The body limit of `/graphql`, and authentication before any multipart body is read."""

    def __init__(self, app: ASGIApp, platform: Platform, path: str) -> None:
        self.app = app
        self.platform = platform
        self.path = path

    def limit_for(self, multipart: bool) -> int:
        config = self.platform.config
        small = config.graphql_max_body_bytes
        return config.upload_max_bytes + small if multipart else small

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        multipart = content_type == MULTIPART
        limit = self.limit_for(multipart)
        try:
            declared = declared_length(headers)
            if declared is not None and declared > limit:
                raise too_large(limit)
        except BodyRefused as refused:
            await refused.response()(scope, receive, send)
            return
        if multipart:
            # The form parser spools file parts to disk as they arrive: only a known caller
            # may make it do so. Which fields it may then use is up to GraphQL's permissions.
            caller = await authenticated(self.platform, scope)
            if isinstance(caller, JSONResponse):
                await caller(scope, receive, send)
                return
        body = CountedBody(receive, limit, declared)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, body.receive, tracking_send)
        except BodyRefused as refused:
            if started:
                raise
            await refused.response()(scope, receive, send)
