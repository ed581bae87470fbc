"""`/v1/session` and the session cookie: signing in sets an httpOnly, SameSite=Strict cookie that
authenticates GraphQL and REST only together with its `x-aiaas-csrf` header; a reload finds the
session again; signing out revokes it everywhere. Every refusal changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from aiaas.browser_sessions import (
    CSRF_HEADER,
    SESSION_COOKIE,
    csrf_matches,
    csrf_token,
)
from aiaas.core.identity import accounts as identity
from aiaas.core.identity.sessions import counter_keys
from aiaas.core.platform import Platform
from aiaas.rest.browser_session import LOGIN_BODY_MAX_BYTES
from support import audit_mark, audit_rows_since, events_since, unique, user_with_token

PASSWORD = "a long enough password for the portal"
VIEWER = "{ viewer { username } }"
SESSION = "/v1/session"


def client_from(app: Starlette, address: str = "127.0.0.1", scheme: str = "http") -> Any:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url=f"{scheme}://aiaas.test")


@pytest.fixture
async def browser(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client that keeps cookies, as a browser does."""
    async with client_from(app) as client:
        yield client


@pytest.fixture
async def username(platform: Platform) -> str:
    name = unique("portal")
    await identity.create_user(platform, None, username=name, password=PASSWORD)
    return name


async def sign_in(client: httpx.AsyncClient, username: str) -> dict[str, Any]:
    response = await client.post(SESSION, json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def cookie_of(client: httpx.AsyncClient) -> str:
    token = client.cookies.get(SESSION_COOKIE)
    assert token
    return token


async def viewer(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.post("/graphql", json={"query": VIEWER}, headers=headers)


def viewer_name(response: httpx.Response) -> str | None:
    data = response.json().get("data") or {}
    return (data.get("viewer") or {}).get("username")


def graphql_error_messages(response: httpx.Response) -> str:
    return " ".join(error["message"] for error in response.json().get("errors", []))


async def token_count(platform: Platform) -> int:
    async with platform.metadata.acquire() as connection:
        return int(await connection.fetchval("SELECT count(*) FROM api_tokens"))


def rest_path() -> str:
    """An authenticated REST route; for a project nobody has, a known caller gets a 404."""
    return "/v1/projects/no-such-project/datasets/none/versions/1/data"


# Signing in ---------------------------------------------------------------------------------


async def test_signing_in_sets_an_httponly_strict_cookie_and_answers_the_session(
    browser: httpx.AsyncClient, platform: Platform, username: str
) -> None:
    mark = await audit_mark(platform)
    response = await browser.post(SESSION, json={"username": username, "password": PASSWORD})

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"username", "isAdmin", "csrfToken", "expiresAt"}
    assert body["username"] == username
    assert body["isAdmin"] is False
    assert body["expiresAt"].endswith("+00:00")
    token = cookie_of(browser)
    assert body["csrfToken"] == csrf_token(token)
    assert token not in response.text  # the token is in the cookie only
    assert response.headers["set-cookie"] == (
        f"{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    )
    assert response.headers["cache-control"] == "no-store"
    assert ("session.create", "success") in await events_since(platform, mark)


async def test_over_https_the_cookie_is_also_secure(app: Starlette, username: str) -> None:
    async with client_from(app, scheme="https") as client:
        response = await client.post(SESSION, json={"username": username, "password": PASSWORD})

    assert response.status_code == 200
    attributes = [part.strip() for part in response.headers["set-cookie"].split(";")]
    assert set(attributes[1:]) == {"HttpOnly", "SameSite=Strict", "Path=/", "Secure"}


def test_the_csrf_token_is_an_hmac_of_the_session_token() -> None:
    token = f"aiaas_{'1' * 12}_{'B' * 43}"

    assert csrf_token(token) == csrf_token(token)
    assert csrf_token(token) != csrf_token(token.replace("B", "C"))
    assert len(csrf_token(token)) == 43  # 32 bytes, unpadded base64url
    assert csrf_matches(token, csrf_token(token))
    assert not csrf_matches(token, csrf_token(token)[:-1])
    assert not csrf_matches(token, None)
    assert not csrf_matches(token, "é" * 43)


# The cookie with and without its CSRF header ------------------------------------------------


async def test_the_cookie_with_its_csrf_header_authenticates_graphql_and_rest(
    browser: httpx.AsyncClient, username: str
) -> None:
    session = await sign_in(browser, username)
    csrf = {CSRF_HEADER: session["csrfToken"]}

    over_post = await viewer(browser, **csrf)
    over_get = await browser.get("/graphql", params={"query": VIEWER}, headers=csrf)
    rest = await browser.get(rest_path(), headers=csrf)

    assert viewer_name(over_post) == username
    assert viewer_name(over_get) == username
    assert rest.status_code == 404, rest.text  # past authentication: the project is unknown


@pytest.mark.parametrize("csrf", [None, "", "wrong", "the-right-one-of-another-session"])
async def test_the_cookie_without_the_right_csrf_header_is_ignored(
    browser: httpx.AsyncClient, app: Starlette, username: str, csrf: str | None
) -> None:
    await sign_in(browser, username)
    if csrf == "the-right-one-of-another-session":
        async with client_from(app) as other:
            csrf = (await sign_in(other, username))["csrfToken"]
    headers = {CSRF_HEADER: csrf} if csrf is not None else {}

    graphql = await viewer(browser, **headers)
    rest = await browser.get(rest_path(), headers=headers)

    assert viewer_name(graphql) is None
    assert graphql.status_code == 401
    assert CSRF_HEADER in graphql_error_messages(graphql)
    assert rest.status_code == 401
    assert rest.json()["error"]["code"] == "UNAUTHENTICATED"
    assert CSRF_HEADER in rest.json()["error"]["message"]


async def test_the_csrf_header_without_the_cookie_authenticates_nothing(
    browser: httpx.AsyncClient, app: Starlette, username: str
) -> None:
    session = await sign_in(browser, username)
    async with client_from(app) as cookieless:
        graphql = await viewer(cookieless, **{CSRF_HEADER: session["csrfToken"]})
        rest = await cookieless.get(rest_path(), headers={CSRF_HEADER: session["csrfToken"]})

    assert viewer_name(graphql) is None
    assert rest.status_code == 401


async def test_an_authorization_header_wins_over_the_cookie(
    browser: httpx.AsyncClient, platform: Platform, username: str
) -> None:
    await sign_in(browser, username)
    other = await user_with_token(platform, unique("sdk"))

    # Without a CSRF header: the cookie is not even looked at.
    response = await viewer(browser, authorization=f"Bearer {other.token.secret}")

    assert viewer_name(response) == other.principal.username


@pytest.mark.parametrize("planted_first", [True, False])
async def test_two_different_session_cookies_count_for_neither(
    app: Starlette, platform: Platform, username: str, planted_first: bool
) -> None:
    # A page on another host of the site can set a cookie of the same name for the parent
    # domain, and the browser then sends both: guessing would sign the visitor in as whoever
    # planted theirs.
    async with client_from(app) as own, client_from(app) as planter:
        session = await sign_in(own, username)
        planted = unique("planter")
        await identity.create_user(platform, None, username=planted, password=PASSWORD)
        await sign_in(planter, planted)
        cookies = [f"{SESSION_COOKIE}={cookie_of(own)}", f"{SESSION_COOKIE}={cookie_of(planter)}"]
        header = "; ".join(reversed(cookies) if planted_first else cookies)
        async with client_from(app) as browser:
            for csrf in (session["csrfToken"], csrf_token(cookie_of(planter))):
                headers = {"cookie": header, CSRF_HEADER: csrf}
                graphql = await viewer(browser, **headers)
                rest = await browser.get(rest_path(), headers=headers)
                restored = await browser.get(SESSION, headers={"cookie": header})

                assert viewer_name(graphql) is None
                assert "more than one" in graphql_error_messages(graphql)
                assert rest.status_code == 401
                assert restored.status_code == 401
                assert "more than one" in restored.json()["error"]["message"]
            # The same cookie sent twice (for the host and for its domain) is no doubt.
            same = f"{cookies[0]}; other=1; {cookies[0]}"
            twice = await viewer(browser, cookie=same, **{CSRF_HEADER: session["csrfToken"]})

    assert viewer_name(twice) == username


# A reload -----------------------------------------------------------------------------------


async def test_get_restores_the_session_from_the_cookie_alone(
    browser: httpx.AsyncClient, username: str
) -> None:
    signed_in = await sign_in(browser, username)

    restored = await browser.get(SESSION)

    assert restored.status_code == 200
    assert restored.json() == signed_in
    assert restored.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("cookie", [None, "", "not-a-token", f"aiaas_{'0' * 12}_{'A' * 43}"])
async def test_get_without_a_valid_session_is_401(
    app: Starlette, admin_token: str, cookie: str | None
) -> None:
    async with client_from(app) as client:
        if cookie is not None:
            client.cookies.set(SESSION_COOKIE, cookie)
        response = await client.get(SESSION)
        # An API token names an API client, which has no browser session.
        with_token = await client.get(SESSION, headers={"authorization": f"Bearer {admin_token}"})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert with_token.status_code == 401


# Signing out --------------------------------------------------------------------------------


async def test_delete_revokes_the_session_everywhere_and_clears_the_cookie(
    browser: httpx.AsyncClient, platform: Platform, username: str
) -> None:
    session = await sign_in(browser, username)
    token = cookie_of(browser)
    csrf = {CSRF_HEADER: session["csrfToken"]}
    mark = await audit_mark(platform)

    response = await browser.delete(SESSION, headers=csrf)

    assert response.status_code == 204
    assert response.headers["set-cookie"] == (
        f"{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    )
    assert browser.cookies.get(SESSION_COOKIE) is None
    revocations = await audit_rows_since(platform, mark, action="api_token.revoke")
    assert [row["outcome"] for row in revocations] == ["success"]
    assert revocations[0]["details"] == {"revoked": True}
    # The old cookie, replayed with its CSRF token, is refused everywhere.
    browser.cookies.set(SESSION_COOKIE, token)
    graphql = await viewer(browser, **csrf)
    rest = await browser.get(rest_path(), headers=csrf)
    restored = await browser.get(SESSION)
    bearer = await viewer(browser, authorization=f"Bearer {token}")
    assert viewer_name(graphql) is None
    assert "revoked" in graphql_error_messages(graphql)
    assert rest.status_code == 401
    assert restored.status_code == 401
    assert viewer_name(bearer) is None


async def test_signing_in_again_revokes_the_session_the_new_cookie_replaces(
    browser: httpx.AsyncClient, platform: Platform, username: str
) -> None:
    first = await sign_in(browser, username)
    replaced = cookie_of(browser)
    wrong = await browser.post(SESSION, json={"username": username, "password": "not it"})
    assert wrong.status_code == 401
    assert viewer_name(await viewer(browser, **{CSRF_HEADER: first["csrfToken"]})) == username
    mark = await audit_mark(platform)

    second = await sign_in(browser, username)

    assert cookie_of(browser) != replaced
    assert viewer_name(await viewer(browser, **{CSRF_HEADER: second["csrfToken"]})) == username
    revocations = await audit_rows_since(platform, mark, action="api_token.revoke")
    assert [row["outcome"] for row in revocations] == ["success"]
    old = await viewer(browser, authorization=f"Bearer {replaced}")
    assert viewer_name(old) is None and "revoked" in graphql_error_messages(old)


@pytest.mark.parametrize("csrf", [None, "wrong"])
async def test_delete_without_the_csrf_header_revokes_nothing(
    browser: httpx.AsyncClient, platform: Platform, username: str, csrf: str | None
) -> None:
    session = await sign_in(browser, username)
    mark = await audit_mark(platform)

    response = await browser.delete(SESSION, headers={CSRF_HEADER: csrf} if csrf else {})

    assert response.status_code == 401
    assert CSRF_HEADER in response.json()["error"]["message"]
    assert "set-cookie" not in response.headers
    assert await events_since(platform, mark) == []
    still = await viewer(browser, **{CSRF_HEADER: session["csrfToken"]})
    assert viewer_name(still) == username


async def test_delete_without_a_cookie_is_401(browser: httpx.AsyncClient) -> None:
    response = await browser.delete(SESSION, headers={CSRF_HEADER: "anything"})

    assert response.status_code == 401


# Refused sign-ins ---------------------------------------------------------------------------


async def test_a_wrong_password_is_401_and_audited_as_the_graphql_login_is(
    browser: httpx.AsyncClient, platform: Platform, username: str
) -> None:
    mark = await audit_mark(platform)
    tokens = await token_count(platform)

    response = await browser.post(SESSION, json={"username": username, "password": "wrong"})

    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "UNAUTHENTICATED",
        "message": "wrong username or password",
    }
    assert "set-cookie" not in response.headers
    assert await token_count(platform) == tokens
    failures = await audit_rows_since(platform, mark, action="session.create")
    assert [row["outcome"] for row in failures] == ["failed"]
    assert failures[0]["details"] == {"username": username, "client": "127.0.0.1"}


async def test_too_many_attempts_are_429_with_retry_after(
    app: Starlette, platform: Platform, username: str
) -> None:
    limit = platform.config.login_attempts_per_user
    async with client_from(app, address="10.11.0.1") as client:
        for _ in range(limit):
            wrong = await client.post(SESSION, json={"username": username, "password": "no"})
            assert wrong.status_code == 401
        refused = await client.post(SESSION, json={"username": username, "password": PASSWORD})

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) >= 1
    assert "set-cookie" not in refused.headers


HUGE = LOGIN_BODY_MAX_BYTES + 1


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "BAD_USER_INPUT"),
        (b"\xff\xfe", "application/json", 400, "BAD_USER_INPUT"),
        (b"[1, 2]", "application/json", 400, "BAD_USER_INPUT"),
        (b'"text"', "application/json", 400, "BAD_USER_INPUT"),
        (b"null", "application/json", 400, "BAD_USER_INPUT"),
        (b'{"username": "u"}', "application/json", 400, "BAD_USER_INPUT"),
        (b'{"username": 7, "password": "p"}', "application/json", 400, "BAD_USER_INPUT"),
        (b'{"username": "u", "password": ["p"]}', "application/json", 400, "BAD_USER_INPUT"),
        (b'{"username": "u", "password": "p", "admin": true}', "application/json", 400,
         "BAD_USER_INPUT"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "BAD_USER_INPUT"),
        (b'{"username": "u", "password": "p"}', "text/plain", 400, "BAD_USER_INPUT"),
        (b"username=u&password=p", "application/x-www-form-urlencoded", 400, "BAD_USER_INPUT"),
        (b'{"username": "u", "password": "' + b"p" * HUGE + b'"}', "application/json", 413,
         "PAYLOAD_TOO_LARGE"),
    ],
    ids=[
        "not-json", "not-utf8", "array", "string", "null", "missing-password",
        "non-string-username", "non-string-password", "unknown-field", "deep-nesting",
        "text-plain", "form", "huge",
    ],
)  # fmt: skip
async def test_a_malformed_body_is_a_typed_error_and_changes_nothing(
    app: Starlette,
    platform: Platform,
    body: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    mark = await audit_mark(platform)
    tokens = await token_count(platform)
    address = "10.12.0.1"
    async with client_from(app, address=address) as client:
        response = await client.post(SESSION, content=body, headers={"content-type": content_type})

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert "set-cookie" not in response.headers
    assert await events_since(platform, mark) == []
    assert await token_count(platform) == tokens
    assert await platform.redis.exists(*counter_keys("u", address)) == 0


async def test_a_huge_body_without_a_length_is_cut_off(app: Starlette) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(HUGE // 1024 + 2):
            yield b" " * 1024

    async with client_from(app) as client:
        response = await client.post(
            SESSION, content=chunks(), headers={"content-type": "application/json"}
        )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
