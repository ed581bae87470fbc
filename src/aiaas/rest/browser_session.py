"""`/v1/session`: a browser signs in, finds its session again after a reload, and signs out.

- `POST /v1/session`, public, a JSON body `{"username": "...", "password": "..."}` sent as
  `Content-Type: application/json` (a form or `text/plain` POST, which any site's page can make
  a browser send without asking, is refused: no one can sign a visitor in to an account of
  theirs). It signs in as the GraphQL `login` does (`core.identity.sessions.login`: the same
  rate limits, the same `session.create` audit events) and answers 200
  `{"username", "isAdmin", "csrfToken", "expiresAt"}` with the session token in the
  `aiaas_session` cookie (`aiaas.browser_sessions` says which attributes and why). Wrong
  credentials are a 401, the rate limit a 429 with `Retry-After`, and a body that is not JSON,
  not an object of exactly two strings, or over `LOGIN_BODY_MAX_BYTES` a 400 (413 for the size)
  that signs no one in and counts no attempt. A session the browser held until then (its
  cookie) is revoked once the new one is made.
- `GET /v1/session`: the same JSON for the session of the cookie, so that the portal finds its
  user and CSRF token again after a reload; 401 without a valid session. It needs no CSRF
  header (it is how the page learns the token): it changes nothing, a page on another site
  cannot read its answer (CORS), and a browser does not even send a `SameSite=Strict` cookie
  with another site's request.
- `DELETE /v1/session`: the cookie and its `x-aiaas-csrf` header; revokes the session's token
  (`api_token.revoke`, audited), answers 204 and clears the cookie. The token is then refused
  everywhere, and the sockets it opened are closed (`graphql.view.SessionGuard`).

The three answer `Cache-Control: no-store`: they carry the CSRF token. `GET` and `DELETE` look
at the cookie only: an `Authorization` header names an API client, which has no browser session.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiaas.browser_sessions import (
    SESSION_COOKIE,
    bearer,
    client_address,
    csrf_refusal,
    csrf_token,
    session_cookie,
)
from aiaas.core.auth import Credentials, Principal
from aiaas.core.errors import (
    AiaasError,
    AuthenticationError,
    InputError,
    PayloadTooLargeError,
    RateLimitedError,
)
from aiaas.core.identity import accounts, sessions
from aiaas.core.platform import Platform
from aiaas.request_limits import BodyRefused, declared_length, unauthenticated_response
from aiaas.requests import request_id_of
from aiaas.rest.errors import error_response

SESSION_PATH = "/v1/session"
PUBLIC_PATHS = (SESSION_PATH,)
"""Public to `RequirePrincipal`: signing in needs no credentials; GET and DELETE check the
cookie themselves."""
LOGIN_BODY_MAX_BYTES = 16 * 1024
"""A username is at most 63 characters; this leaves a password of thousands."""
LOGIN_FIELDS = ("username", "password")
NO_SESSION = f"no browser session: sign in with POST {SESSION_PATH}"
JSON_MEDIA_TYPE = "application/json"
NO_STORE = {"Cache-Control": "no-store"}


def session_cookie_header(request: Request, token: str | None) -> str:
    """The `Set-Cookie` value that sets the session token, or with None clears it."""
    value = f"{SESSION_COOKIE}={token or ''}; HttpOnly; SameSite=Strict; Path=/"
    if token is None:
        value += "; Max-Age=0"
    if request.url.scheme == "https":
        value += "; Secure"
    return value


def session_json(principal: Principal | sessions.Session, token: str) -> dict[str, Any]:
    if isinstance(principal, sessions.Session):
        username, is_admin = principal.user.username, principal.user.is_admin
        expires_at = principal.token.expires_at
    else:
        username, is_admin, expires_at = principal.username, principal.is_admin, None
    return {
        "username": username,
        "isAdmin": is_admin,
        "csrfToken": csrf_token(token),
        "expiresAt": expires_at.isoformat() if expires_at is not None else None,
    }


async def _bounded_body(request: Request) -> bytes:
    try:
        declared = declared_length(request.headers)
    except BodyRefused as refused:
        raise InputError(refused.message) from None
    too_large = PayloadTooLargeError(
        f"the request body is larger than the limit of {LOGIN_BODY_MAX_BYTES} bytes"
    )
    if declared is not None and declared > LOGIN_BODY_MAX_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > LOGIN_BODY_MAX_BYTES:
            raise too_large
    return bytes(body)


def _login_fields(request: Request, body: bytes) -> tuple[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != JSON_MEDIA_TYPE:
        raise InputError(f"the body must be JSON, sent as Content-Type: {JSON_MEDIA_TYPE}")
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, huge integers
        raise InputError("the body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise InputError('the body must be a JSON object {"username": ..., "password": ...}')
    problems = {
        field: "a string is required"
        for field in LOGIN_FIELDS
        if not isinstance(parsed.get(field), str)
    }
    problems |= {str(field): "unknown field" for field in parsed if field not in LOGIN_FIELDS}
    if problems:
        raise InputError("the body must hold a username and a password", field_errors=problems)
    return parsed["username"], parsed["password"]


def _refusal(request: Request, exc: AiaasError) -> Response:
    if isinstance(exc, AuthenticationError):
        response: Response = unauthenticated_response(request.scope, exc)
    else:
        response = error_response(exc)
    if isinstance(exc, RateLimitedError):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    response.headers.update(NO_STORE)
    return response


async def _sign_in(request: Request, platform: Platform) -> Response:
    username, password = _login_fields(request, await _bounded_body(request))
    session = await sessions.login(
        platform,
        username=username,
        password=password,
        client_address=client_address(request),
        request_id=request_id_of(request.scope),
    )
    await _end_replaced_session(request, platform)
    response = JSONResponse(session_json(session, session.token.secret), headers=NO_STORE)
    response.headers["Set-Cookie"] = session_cookie_header(request, session.token.secret)
    return response


async def _end_replaced_session(request: Request, platform: Platform) -> None:
    """Revoke the session whose cookie the new one replaces (audited): once no cookie holds its
    token, it would stay valid, unseen, until it expired. Only after the new sign-in succeeded:
    a wrong password ends no one's session."""
    try:
        _, principal = await _session_of_cookie(request, platform)
    except AuthenticationError:
        return  # no session, one gone already, or two cookies that count for neither
    if principal.token_id is not None:
        await accounts.revoke_token(
            platform, principal, principal.token_id, request_id=request_id_of(request.scope)
        )


async def _session_of_cookie(request: Request, platform: Platform) -> tuple[str, Principal]:
    token = session_cookie(request)
    if token is None:
        raise AuthenticationError(NO_SESSION)
    principal = await platform.authenticate(Credentials(bearer(token), client_address(request)))
    if principal is None:
        raise AuthenticationError(NO_SESSION)
    return token, principal


async def _current(request: Request, platform: Platform) -> Response:
    token, principal = await _session_of_cookie(request, platform)
    body = session_json(principal, token)
    if principal.token_id is not None:
        async with platform.metadata.acquire() as connection:
            stored = await accounts.find_token_by_prefix(connection, accounts.token_prefix(token))
        if stored is not None and stored.expires_at is not None:
            body["expiresAt"] = stored.expires_at.isoformat()
    return JSONResponse(body, headers=NO_STORE)


async def _sign_out(request: Request, platform: Platform) -> Response:
    token = session_cookie(request)
    if token is None:
        raise AuthenticationError(NO_SESSION)
    refusal = csrf_refusal(request, token)
    if refusal is not None:
        raise refusal
    try:
        _, principal = await _session_of_cookie(request, platform)
    except AuthenticationError as exc:
        # A session that is gone (revoked, expired) leaves no cookie behind either.
        refused = _refusal(request, exc)
        refused.headers["Set-Cookie"] = session_cookie_header(request, None)
        return refused
    if principal.token_id is not None:
        await accounts.revoke_token(
            platform, principal, principal.token_id, request_id=request_id_of(request.scope)
        )
    response = Response(status_code=204, headers=NO_STORE)
    response.headers["Set-Cookie"] = session_cookie_header(request, None)
    return response


async def session_endpoint(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    handlers = {"POST": _sign_in, "GET": _current, "HEAD": _current, "DELETE": _sign_out}
    try:
        return await handlers[request.method](request, platform)
    except AiaasError as exc:
        return _refusal(request, exc)


ROUTES = [Route(SESSION_PATH, session_endpoint, methods=["GET", "POST", "DELETE"])]
