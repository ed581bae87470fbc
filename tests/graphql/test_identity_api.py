"""Accounts, login and tokens through GraphQL: `createUser`, `login`, `logout`, `createApiToken`,
`revokeApiToken` and `viewer.apiTokens`."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from aiaas.core.config import Config
from aiaas.core.identity import accounts as identity
from aiaas.core.identity.sessions import counter_keys
from aiaas.core.platform import Platform
from aiaas.graphql.relay import to_global_id
from support import data_of, error_codes, graphql

# Small login limits, so that a test reaches them in a few attempts; a session TTL unlike the
# default, so that the expiry is seen to come from the config.
LIMITS = {
    "login_attempts_per_user": 3,
    "login_attempts_per_client": 5,
    "login_window_s": 300,
    "session_ttl_s": 900,
}
PASSWORD = "a long enough password"

CREATE_USER = """
mutation CreateUser($input: CreateUserInput!) {
  createUser(input: $input) {
    __typename
    ... on CreateUserSuccess { user { id username displayName isAdmin } }
    ... on InvalidInputError { message code fieldErrors { field message } }
    ... on ConflictError { message code }
  }
}
"""
LOGIN = """
mutation Login($username: String!, $password: String!) {
  login(username: $username, password: $password) {
    __typename
    ... on LoginSuccess { token expiresAt user { username } }
    ... on LoginFailedError { message code }
    ... on RateLimitedError { message code retryAfterSeconds }
  }
}
"""
LOGOUT = "mutation { logout }"
CREATE_TOKEN = """
mutation CreateToken($input: CreateApiTokenInput!) {
  createApiToken(input: $input) {
    __typename
    ... on CreateApiTokenSuccess {
      token
      apiToken { id name prefix kind expiresAt revokedAt }
    }
    ... on InvalidInputError { message code fieldErrors { field message } }
  }
}
"""
REVOKE_TOKEN = """
mutation Revoke($id: ID!) {
  revokeApiToken(id: $id) {
    __typename
    ... on RevokeApiTokenSuccess { apiTokenId }
    ... on Error { message code }
  }
}
"""
VIEWER = "{ viewer { username } }"
VIEWER_TOKENS = "{ viewer { apiTokens { id name prefix kind expiresAt revokedAt } } }"


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """This module's config: the shared one with small login limits."""
    return config.model_copy(update=LIMITS)


@dataclass(frozen=True)
class Account:
    user: identity.User
    token: str

    @property
    def username(self) -> str:
        return self.user.username


async def new_account(
    platform: Platform, label: str = "user", *, password: str | None = PASSWORD
) -> Account:
    """A user and an API token of theirs, made directly: these tests are about the API."""
    user = await identity.create_user(
        platform, None, username=f"{label}-{uuid.uuid4().hex[:8]}", password=password
    )
    issued = await identity.create_api_token(platform, None, user_id=user.id, name="setup")
    return Account(user=user, token=issued.secret)


async def events_of_request(platform: Platform, request_id: str) -> list[dict[str, Any]]:
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT actor_name, action, outcome, details FROM audit_events "
            "WHERE correlation_id = $1 ORDER BY id",
            request_id,
        )
    return [dict(row) for row in rows]


async def status_of(client: httpx.AsyncClient, token: str) -> int:
    """The HTTP status of a `viewer` query made with `token`."""
    status, _ = await graphql(client, VIEWER, token=token)
    return status


# Accounts -------------------------------------------------------------------------------------


async def test_an_admin_creates_a_user_whose_password_is_stored_as_argon2id(
    client: httpx.AsyncClient, admin_token: str, platform: Platform
) -> None:
    username = f"ada-{uuid.uuid4().hex[:8]}"
    variables = {"input": {"username": username, "displayName": "Ada", "password": PASSWORD}}

    status, body = await graphql(client, CREATE_USER, variables, token=admin_token)

    assert PASSWORD not in str(body)
    result = data_of((status, body))["createUser"]
    assert result["__typename"] == "CreateUserSuccess"
    assert result["user"] | {"id": None} == {
        "id": None,
        "username": username,
        "displayName": "Ada",
        "isAdmin": False,
    }
    async with platform.metadata.acquire() as connection:
        stored = await connection.fetchval(
            "SELECT password_hash FROM users WHERE username = $1", username
        )
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


async def test_create_user_by_a_non_admin_is_forbidden_audited_and_creates_nothing(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    caller = await new_account(platform, "plain")
    username = f"sneaky-{uuid.uuid4().hex[:8]}"
    request_id = f"create-user-{username}"
    variables = {"input": {"username": username, "password": PASSWORD, "isAdmin": True}}

    _, body = await graphql(
        client, CREATE_USER, variables, token=caller.token, headers={"x-request-id": request_id}
    )

    assert body["data"] is None
    assert error_codes(body) == ["FORBIDDEN"]
    async with platform.metadata.acquire() as connection:
        created = await connection.fetchval(
            "SELECT count(*) FROM users WHERE username = $1", username
        )
    assert created == 0
    assert [
        (event["actor_name"], event["action"], event["outcome"])
        for event in await events_of_request(platform, request_id)
    ] == [(caller.username, "graphql.createUser", "denied")]


@pytest.mark.parametrize(
    ("username", "password", "bad_fields"),
    [
        ("Not Valid", PASSWORD, ["username"]),
        ("fine-{tag}", "too short", ["password"]),
        ("-bad-{tag}", "", ["password", "username"]),
    ],
    ids=["username", "password", "both"],
)
async def test_invalid_new_user_is_a_typed_error_and_creates_nothing(
    client: httpx.AsyncClient,
    admin_token: str,
    platform: Platform,
    username: str,
    password: str,
    bad_fields: list[str],
) -> None:
    username = username.format(tag=uuid.uuid4().hex[:8])
    variables = {"input": {"username": username, "password": password}}

    result = data_of(await graphql(client, CREATE_USER, variables, token=admin_token))

    assert result["createUser"]["__typename"] == "InvalidInputError"
    assert result["createUser"]["code"] == "BAD_USER_INPUT"
    assert [error["field"] for error in result["createUser"]["fieldErrors"]] == bad_fields
    async with platform.metadata.acquire() as connection:
        assert (
            await connection.fetchval("SELECT count(*) FROM users WHERE username = $1", username)
            == 0
        )


async def test_duplicate_username_is_a_conflict(
    client: httpx.AsyncClient, admin_token: str, platform: Platform
) -> None:
    existing = await new_account(platform, "taken")
    variables = {"input": {"username": existing.username, "displayName": "Impostor"}}

    result = data_of(await graphql(client, CREATE_USER, variables, token=admin_token))

    assert result["createUser"]["__typename"] == "ConflictError"
    assert result["createUser"]["code"] == "CONFLICT"
    async with platform.metadata.acquire() as connection:
        names = await connection.fetch(
            "SELECT display_name FROM users WHERE username = $1", existing.username
        )
    assert [row["display_name"] for row in names] == [""]


# Login ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginClient:
    """An API client on an address of its own, so that the failures it makes count against no
    other test (or anyone else's run against the same Redis)."""

    http: httpx.AsyncClient
    address: str
    tag: str
    tried: set[str] = field(default_factory=set)
    """Every username this client logged in as: the fixture removes the counts they left."""

    def username(self, label: str) -> str:
        return f"{label}-{self.tag}"

    async def login(
        self, username: str, password: str, request_id: str | None = None
    ) -> dict[str, Any]:
        headers = {"x-request-id": request_id} if request_id else None
        self.tried.add(username)
        result = await graphql(
            self.http,
            LOGIN,
            {"username": username, "password": password},
            headers=headers,
        )
        login: dict[str, Any] = data_of(result)["login"]
        return login


@pytest.fixture
async def login_client(app: object, platform: Platform) -> AsyncIterator[LoginClient]:
    tag = uuid.uuid4().hex[:8]
    # An IPv6 documentation address (RFC 3849): never a real client.
    address = f"2001:db8::{tag[:4]}:{tag[4:]}"
    transport = httpx.ASGITransport(app=app, client=(address, 4321))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as http:
        login_client = LoginClient(http=http, address=address, tag=tag)
        yield login_client
    # The limiter's keys are digests: they are found from the names and address that made them.
    keys = {key for name in login_client.tried for key in counter_keys(name, address)}
    if keys:
        await platform.redis.delete(*keys)


async def test_login_gives_a_session_token_that_works_as_a_bearer_token(
    login_client: LoginClient, platform: Platform
) -> None:
    account = await new_account(platform, "ada")

    before = datetime.now(UTC)
    result = await login_client.login(account.username, PASSWORD)
    after = datetime.now(UTC)

    assert result["__typename"] == "LoginSuccess"
    assert result["user"] == {"username": account.username}
    ttl = timedelta(seconds=LIMITS["session_ttl_s"])
    expires_at = datetime.fromisoformat(result["expiresAt"])
    assert before + ttl - timedelta(seconds=1) <= expires_at <= after + ttl + timedelta(seconds=1)
    session = result["token"]
    viewer = data_of(await graphql(login_client.http, VIEWER_TOKENS, token=session))
    sessions = [token for token in viewer["viewer"]["apiTokens"] if token["kind"] == "session"]
    assert len(sessions) == 1
    assert session.startswith(sessions[0]["prefix"] + "_")
    assert datetime.fromisoformat(sessions[0]["expiresAt"]) == expires_at


async def test_a_session_token_past_its_expiry_answers_401(
    login_client: LoginClient, platform: Platform
) -> None:
    account = await new_account(platform, "expiring")
    session = (await login_client.login(account.username, PASSWORD))["token"]
    assert await status_of(login_client.http, session) == 200

    async with platform.metadata.transaction() as connection:
        await connection.execute(
            "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE prefix = $1",
            identity.token_prefix(session),
        )

    assert await status_of(login_client.http, session) == 401


async def test_every_failed_login_gets_the_same_answer_and_a_failed_event(
    login_client: LoginClient, platform: Platform
) -> None:
    existing = await new_account(platform, "existing")
    passwordless = await new_account(platform, "passwordless", password=None)
    disabled = await new_account(platform, "disabled")
    async with platform.metadata.transaction() as connection:
        await connection.execute(
            "UPDATE users SET disabled_at = now() WHERE id = $1", disabled.user.id
        )
    cases = {
        "wrong-password": (existing.username, "not the password at all"),
        "unknown-user": (login_client.username("nobody"), PASSWORD),
        "no-password": (passwordless.username, PASSWORD),
        "disabled": (disabled.username, PASSWORD),
    }

    answers = {
        reason: await login_client.login(username, password, f"{reason}-{login_client.tag}")
        for reason, (username, password) in cases.items()
    }

    assert {str(answer) for answer in answers.values()} == {
        str(
            {
                "__typename": "LoginFailedError",
                "message": "wrong username or password",
                "code": "UNAUTHENTICATED",
            }
        )
    }, answers
    for reason, (username, _) in cases.items():
        assert await events_of_request(platform, f"{reason}-{login_client.tag}") == [
            {
                "actor_name": None,
                "action": "session.create",
                "outcome": "failed",
                "details": {"username": username, "client": login_client.address},
            }
        ], reason


async def test_after_too_many_failures_for_a_user_even_the_right_password_is_rate_limited(
    login_client: LoginClient, platform: Platform
) -> None:
    account = await new_account(platform, "guessed")
    for _ in range(LIMITS["login_attempts_per_user"]):
        failed = await login_client.login(account.username, "a wrong guess!")
        assert failed["__typename"] == "LoginFailedError"

    refused = await login_client.login(account.username, PASSWORD)

    assert refused["__typename"] == "RateLimitedError"
    assert refused["code"] == "RATE_LIMITED"
    assert 0 < refused["retryAfterSeconds"] <= LIMITS["login_window_s"]
    tokens = data_of(await graphql(login_client.http, VIEWER_TOKENS, token=account.token))
    assert [token["kind"] for token in tokens["viewer"]["apiTokens"]] == ["api"]


async def test_failures_for_many_usernames_from_one_client_hit_the_client_limit(
    login_client: LoginClient, platform: Platform
) -> None:
    account = await new_account(platform, "sprayed")
    for index in range(LIMITS["login_attempts_per_client"]):
        failed = await login_client.login(login_client.username(f"victim{index}"), PASSWORD)
        assert failed["__typename"] == "LoginFailedError"

    refused = await login_client.login(account.username, PASSWORD)

    assert refused["__typename"] == "RateLimitedError"
    assert refused["retryAfterSeconds"] > 0


# API tokens -----------------------------------------------------------------------------------


async def create_token(
    client: httpx.AsyncClient, token: str, name: str, expires_at: str | None = None
) -> dict[str, Any]:
    variables = {"input": {"name": name, "expiresAt": expires_at}}
    created: dict[str, Any] = data_of(await graphql(client, CREATE_TOKEN, variables, token=token))[
        "createApiToken"
    ]
    return created


async def revoke(client: httpx.AsyncClient, token: str, token_id: str) -> dict[str, Any]:
    revoked: dict[str, Any] = data_of(
        await graphql(client, REVOKE_TOKEN, {"id": token_id}, token=token)
    )["revokeApiToken"]
    return revoked


async def test_create_api_token_shows_its_secret_once_and_stores_only_its_hash(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    account = await new_account(platform, "maker")
    expires_at = (datetime.now(UTC) + timedelta(days=7)).isoformat()

    created = await create_token(client, account.token, "notebook", expires_at)

    assert created["__typename"] == "CreateApiTokenSuccess"
    secret, api_token = created["token"], created["apiToken"]
    assert secret.startswith(api_token["prefix"] + "_")
    assert api_token["name"] == "notebook"
    assert api_token["kind"] == "api"
    assert api_token["revokedAt"] is None
    assert datetime.fromisoformat(api_token["expiresAt"]) == datetime.fromisoformat(expires_at)
    async with platform.metadata.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT * FROM api_tokens WHERE prefix = $1", api_token["prefix"]
        )
    assert bytes(row["token_hash"]) == hashlib.sha256(secret.encode()).digest()
    assert secret not in str(dict(row))
    # The listing shows the token by its prefix, and nowhere its secret.
    status, body = await graphql(client, VIEWER_TOKENS, token=account.token)
    listed = data_of((status, body))["viewer"]["apiTokens"]
    assert api_token in listed
    assert secret.removeprefix(api_token["prefix"] + "_") not in str(body)
    assert account.token.removeprefix(identity.token_prefix(account.token) + "_") not in str(body)
    # And the new token works.
    assert data_of(await graphql(client, VIEWER, token=secret)) == {
        "viewer": {"username": account.username}
    }


async def test_api_token_expiring_in_the_past_is_invalid_input(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    account = await new_account(platform, "late")
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()

    created = await create_token(client, account.token, "too-late", yesterday)

    assert created["__typename"] == "InvalidInputError"
    assert [error["field"] for error in created["fieldErrors"]] == ["expiresAt"]
    listed = data_of(await graphql(client, VIEWER_TOKENS, token=account.token))
    assert [token["name"] for token in listed["viewer"]["apiTokens"]] == ["setup"]


async def test_api_token_expiry_without_an_offset_is_not_an_internal_error(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    account = await new_account(platform, "naive")
    next_year = (datetime.now(UTC) + timedelta(days=365)).replace(tzinfo=None).isoformat()

    _, body = await graphql(
        client,
        CREATE_TOKEN,
        {"input": {"name": "naive", "expiresAt": next_year}},
        token=account.token,
    )

    # Either answer is fine (read as UTC, or refused as invalid input); a crash is not.
    assert "errors" not in body, body
    assert body["data"]["createApiToken"]["__typename"] in {
        "CreateApiTokenSuccess",
        "InvalidInputError",
    }


async def test_revoking_your_own_token_stops_it_and_a_second_revoke_is_a_conflict(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    account = await new_account(platform, "revoker")
    other = await create_token(client, account.token, "to-revoke")
    other_id = other["apiToken"]["id"]
    assert await status_of(client, other["token"]) == 200

    first = await revoke(client, account.token, other_id)
    second = await revoke(client, account.token, other_id)

    assert first == {"__typename": "RevokeApiTokenSuccess", "apiTokenId": other_id}
    assert await status_of(client, other["token"]) == 401
    assert second["__typename"] == "ConflictError"
    assert second["code"] == "CONFLICT"
    assert await status_of(client, account.token) == 200


async def test_revoking_the_token_in_use_signs_it_out(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    account = await new_account(platform, "self-revoker")
    token_id = to_global_id("ApiToken", (await _token_row(platform, account.token))["id"])

    result = await revoke(client, account.token, token_id)

    assert result["__typename"] == "RevokeApiTokenSuccess"
    assert await status_of(client, account.token) == 401


async def _token_row(platform: Platform, token: str) -> dict[str, Any]:
    async with platform.metadata.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT id, revoked_at FROM api_tokens WHERE prefix = $1",
            identity.token_prefix(token),
        )
    return dict(row)


async def test_someone_elses_token_is_not_found_and_keeps_working(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    owner = await new_account(platform, "owner")
    intruder = await new_account(platform, "intruder")
    token_id = to_global_id("ApiToken", (await _token_row(platform, owner.token))["id"])

    result = await revoke(client, intruder.token, token_id)

    assert result["__typename"] == "NotFoundError"
    assert (await _token_row(platform, owner.token))["revoked_at"] is None
    assert await status_of(client, owner.token) == 200


async def test_revoking_an_id_that_is_no_token_is_not_found(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    account = await new_account(platform)
    token_id = to_global_id("ApiToken", uuid.uuid4())

    assert (await revoke(client, account.token, token_id))["__typename"] == "NotFoundError"


async def test_revoking_an_id_of_another_type_is_invalid_input(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    account = await new_account(platform)

    result = await revoke(client, account.token, to_global_id("User", uuid.uuid4()))

    # The id says what it names: told so, as any id argument is (test_one_id.py).
    assert result["__typename"] == "InvalidInputError"


async def test_an_admin_may_revoke_anyones_token(
    client: httpx.AsyncClient, platform: Platform, admin_token: str
) -> None:
    owner = await new_account(platform, "owner")
    token_id = to_global_id("ApiToken", (await _token_row(platform, owner.token))["id"])

    result = await revoke(client, admin_token, token_id)

    assert result == {"__typename": "RevokeApiTokenSuccess", "apiTokenId": token_id}
    assert await status_of(client, owner.token) == 401


async def test_logout_revokes_the_session_token_it_was_sent_with(
    login_client: LoginClient, platform: Platform
) -> None:
    account = await new_account(platform, "leaving")
    first = (await login_client.login(account.username, PASSWORD))["token"]
    second = (await login_client.login(account.username, PASSWORD))["token"]

    result = data_of(await graphql(login_client.http, LOGOUT, token=first))

    assert result == {"logout": True}
    assert await status_of(login_client.http, first) == 401
    # Only that session ends: the user's other session and API token still work.
    assert await status_of(login_client.http, second) == 200
    assert await status_of(login_client.http, account.token) == 200
