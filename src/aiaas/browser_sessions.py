"""Browser sessions: a session token in an httpOnly cookie, good only with its CSRF token.

The portal signs in with `POST /v1/session` (`rest/browser_session.py`), which sets the session
token (the same token the GraphQL `login` answers) as the `aiaas_session` cookie: `HttpOnly`, so
no page script can read it, even after a reload; `SameSite=Strict`, so no other site's page
makes the browser send it; `Path=/`; and `Secure` when the request came over https (the ASGI
scope's scheme: behind a proxy that ends TLS, the server must be told to trust its forwarded
headers, as uvicorn's `--proxy-headers` does).

The cookie alone authenticates nothing. Every request it should authenticate must also carry
`x-aiaas-csrf: <csrf token>`, where the CSRF token is derived from the session token
(base64url of HMAC-SHA256 keyed with the session token over `aiaas-csrf`), so nothing new is
stored and nothing can be forged without the token. A page on another site cannot read the token
nor set the header on a request the browser would send with the cookie. A WebSocket handshake
cannot carry headers from a browser: there, the `connection_init` payload carries
`{"csrf": "<csrf token>"}`, and the handshake's `Origin`, when present, must be the server's
own or one of `cors_origins`. A request that carries two different session cookies (one
set for the parent domain by another host of the site) is refused rather than guessed at.

An `Authorization` header wins: a request that carries one is judged by it alone and its
cookies are not looked at, so SDK and CLI calls behave as before. A cookie that passes is
handed to the authenticators as `Credentials(authorization="Bearer <token>")`, exactly what the
header would have given: the `Authenticator` contract does not change, and revoking the token
(`DELETE /v1/session`, or `revokeApiToken`) ends the session everywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import HTTPConnection, cookie_parser
from strawberry.http.websocket_origin import is_same_origin, normalize_origin

from aiaas.core.auth import Credentials
from aiaas.core.errors import AuthenticationError

SESSION_COOKIE = "aiaas_session"
CSRF_HEADER = "x-aiaas-csrf"
CSRF_INIT_FIELD = "csrf"
"""The field of a WebSocket's `connection_init` payload that carries the CSRF token."""
_CSRF_MESSAGE = b"aiaas-csrf"

CSRF_MISSING = (
    f"the {SESSION_COOKIE} cookie counts only with the {CSRF_HEADER} header: send the csrfToken "
    "that /v1/session answered"
)
CSRF_WRONG = f"the {CSRF_HEADER} header does not match the {SESSION_COOKIE} cookie's session"
SOCKET_CSRF_MISSING = (
    f'the {SESSION_COOKIE} cookie counts only with connection_init payload {{"csrf": "<token>"}}'
)
SOCKET_CSRF_WRONG = f"the connection_init csrf does not match the {SESSION_COOKIE} cookie"
SOCKET_ORIGIN_REFUSED = f"the {SESSION_COOKIE} cookie is not accepted from this Origin"
SESSION_COOKIE_AMBIGUOUS = (
    f"the request carries more than one {SESSION_COOKIE} cookie, so none counts: clear this "
    "site's cookies and sign in again"
)


def csrf_token(session_token: str) -> str:
    """The CSRF token that goes with a session token (unpadded base64url)."""
    digest = hmac.new(session_token.encode(), _CSRF_MESSAGE, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def csrf_matches(session_token: str, presented: object) -> bool:
    """Whether `presented` is the session's CSRF token, compared in constant time."""
    if not isinstance(presented, str) or not presented.isascii():
        return False
    return hmac.compare_digest(csrf_token(session_token).encode(), presented.encode())


def session_cookie(connection: HTTPConnection) -> str | None:
    """The session token the cookie carries; None without one (or with an empty one).

    `AuthenticationError` when the request carries two different ones. A browser sends every
    cookie of that name that matches the request, and a page on another host of the same site
    (`Domain=` the parent domain), or a network attacker over plain http, can set one: taking
    either (a parser keeps the last) could sign the visitor in to the attacker's account
    without their knowing, so neither counts."""
    tokens = _session_cookie_values(connection)
    if len(tokens) > 1:
        raise AuthenticationError(SESSION_COOKIE_AMBIGUOUS)
    return next(iter(tokens), None)


def sends_session_cookie(connection: HTTPConnection) -> bool:
    """Whether the request carries a session cookie at all, one that counts or not."""
    return bool(_session_cookie_values(connection))


def _session_cookie_values(connection: HTTPConnection) -> set[str]:
    # Pair by pair: a parsed dict (connection.cookies) keeps only the last of a name.
    return {
        value
        for header in connection.headers.getlist("cookie")
        for pair in header.split(";")
        if (value := cookie_parser(pair).get(SESSION_COOKIE))
    }


def bearer(session_token: str) -> str:
    return f"Bearer {session_token}"


@dataclass(frozen=True)
class Presented:
    """What a request presents to be authenticated by, and, when it sent a session cookie that
    does not count (no or a wrong CSRF token, two different cookies), why: the refusal to answer
    if nothing else authenticates the request."""

    credentials: Credentials
    cookie_refusal: AuthenticationError | None = None


def client_address(connection: HTTPConnection) -> str | None:
    return connection.client.host if connection.client else None


def http_credentials(connection: HTTPConnection) -> Presented:
    """The credentials of an HTTP request: its `Authorization` header, else its session cookie
    when the CSRF header matches it."""
    address = client_address(connection)
    authorization = connection.headers.get("authorization")
    if authorization:
        return Presented(Credentials(authorization=authorization, client_address=address))
    try:
        token = session_cookie(connection)
    except AuthenticationError as ambiguous:
        return Presented(Credentials(None, address), ambiguous)
    if token is None:
        return Presented(Credentials(authorization=authorization, client_address=address))
    refusal = csrf_refusal(connection, token)
    if refusal is not None:
        return Presented(Credentials(None, address), refusal)
    return Presented(Credentials(authorization=bearer(token), client_address=address))


def csrf_refusal(connection: HTTPConnection, session_token: str) -> AuthenticationError | None:
    """Why the request's CSRF header does not go with the session token; None when it does."""
    presented = connection.headers.get(CSRF_HEADER)
    if not presented:
        return AuthenticationError(CSRF_MISSING)
    if not csrf_matches(session_token, presented):
        return AuthenticationError(CSRF_WRONG)
    return None


def origin_allowed(connection: HTTPConnection, cors_origins: Iterable[str]) -> bool:
    """Whether a cookie may count on this WebSocket: no `Origin` (not a browser page), or the
    server's own (its host and port, as strawberry's own handshake check compares them, so
    that TLS ended at a proxy still counts), or one the operator lists in `cors_origins`. A
    `*` there lets any page open a socket, but never lets another site's page use the cookie."""
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    if is_same_origin(origin, connection.headers.get("host")):
        return True
    listed = {normalize_origin(allowed) for allowed in cors_origins if allowed != "*"}
    normalized = normalize_origin(origin)
    return normalized is not None and normalized in listed


def socket_cookie_authorization(
    connection: HTTPConnection, init_payload: object, cors_origins: Iterable[str]
) -> str | None:
    """The `Authorization` a WebSocket's session cookie stands for: None without a cookie;
    `AuthenticationError` when there is one but its `connection_init` carries no or a wrong
    `csrf`, or the handshake came from an origin not allowed."""
    token = session_cookie(connection)
    if token is None:
        return None
    if not origin_allowed(connection, cors_origins):
        raise AuthenticationError(SOCKET_ORIGIN_REFUSED)
    presented = init_payload.get(CSRF_INIT_FIELD) if isinstance(init_payload, dict) else None
    if presented is None:
        raise AuthenticationError(SOCKET_CSRF_MISSING)
    if not csrf_matches(token, presented):
        raise AuthenticationError(SOCKET_CSRF_WRONG)
    return bearer(token)
