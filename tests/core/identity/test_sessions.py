"""Signing in with a password (`aiaas.core.identity.sessions.login`): the session token it gives,
the one answer every failure gets, the audit trail of failures, the rate limits, and the
constant-time password check."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher

from aiaas.core.config import Config
from aiaas.core.errors import AuthenticationError, RateLimitedError
from aiaas.core.identity import accounts as identity
from aiaas.core.identity.sessions import Session, counter_keys, login
from aiaas.core.platform import Platform

# Small limits, so that a test reaches them in a few attempts; a TTL unlike the default, so that
# the session expiry is seen to come from the config.
LIMITS = {
    "login_attempts_per_user": 3,
    "login_attempts_per_client": 5,
    "login_attempts_per_user_global": 7,
    "login_window_s": 300,
    "session_ttl_s": 900,
}
PASSWORD = "a long enough password"
FAILURE_MESSAGE = "wrong username or password"


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """This module's config: the shared one with small login limits."""
    return config.model_copy(update=LIMITS)


@dataclass(frozen=True)
class Attempts:
    """Names for one test's login attempts. Usernames and client addresses are unique to the
    test, so that no failure counted in Redis by another test (or another person's run on the same
    Redis) counts against this one. It remembers the names it gave, to clean up their counts."""

    tag: str
    usernames: set[str] = field(default_factory=set)
    clients: set[str | None] = field(default_factory=lambda: {None})

    @property
    def client(self) -> str:
        return self.other_client(0)

    def other_client(self, index: int) -> str:
        # An IPv6 documentation address (RFC 3849): never a real client.
        address = f"2001:db8:{index:x}::{self.tag[:4]}:{self.tag[4:8]}"
        self.clients.add(address)
        return address

    def username(self, label: str) -> str:
        name = f"{label}-{self.tag}"
        self.usernames.add(name)
        return name


@pytest.fixture
async def attempts(platform: Platform) -> AsyncIterator[Attempts]:
    names = Attempts(uuid.uuid4().hex[:8])
    yield names
    # Leave no failure counts behind: the limits would otherwise outlive the test.
    keys = {
        key
        for username in names.usernames
        for client in names.clients
        for key in counter_keys(username, client)
    }
    keys |= {key for client in names.clients for key in counter_keys("", client)}
    await platform.redis.delete(*keys)


async def counts(platform: Platform) -> dict[bytes, bytes]:
    """Every login-attempt count in Redis, by key."""
    keys = [key async for key in platform.redis.scan_iter(match="aiaas:login-attempts:*")]
    values = await platform.redis.mget(keys) if keys else []
    return {key: value for key, value in zip(keys, values, strict=True) if value is not None}


async def new_user(
    platform: Platform, username: str, password: str | None = PASSWORD
) -> identity.User:
    return await identity.create_user(platform, None, username=username, password=password)


async def sign_in(
    platform: Platform,
    username: str,
    password: str,
    client: str | None,
    request_id: str | None = None,
) -> Session:
    return await login(
        platform,
        username=username,
        password=password,
        client_address=client,
        request_id=request_id,
    )


async def failure_of(
    platform: Platform,
    username: str,
    password: str,
    client: str | None,
    request_id: str | None = None,
) -> Exception:
    """The exception a login attempt that must fail raises."""
    with pytest.raises((AuthenticationError, RateLimitedError)) as caught:
        await sign_in(platform, username, password, client, request_id)
    return caught.value


async def session_tokens(platform: Platform, user_id: uuid.UUID) -> int:
    async with platform.metadata.acquire() as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM api_tokens WHERE user_id = $1 AND kind = 'session'", user_id
        )
    return count


async def test_right_password_gives_a_session_token_that_authenticates_and_expires(
    platform: Platform, attempts: Attempts
) -> None:
    user = await new_user(platform, attempts.username("ada"))
    request_id = f"login-{attempts.tag}"

    before = datetime.now(UTC)
    session = await sign_in(platform, user.username, PASSWORD, attempts.client, request_id)
    after = datetime.now(UTC)

    assert session.user == user
    ttl = timedelta(seconds=LIMITS["session_ttl_s"])
    assert session.token.expires_at is not None
    assert before + ttl <= session.token.expires_at <= after + ttl
    async with platform.metadata.acquire() as connection:
        principal = await identity.verify_token(connection, session.token.secret, "test")
        row = await connection.fetchrow(
            "SELECT kind, name, expires_at FROM api_tokens WHERE id = $1", session.token.id
        )
        events = await connection.fetch(
            "SELECT actor_name, action, outcome, object_id, details FROM audit_events "
            "WHERE request_id = $1",
            request_id,
        )
    assert (principal.user_id, principal.token_id) == (user.id, session.token.id)
    assert (row["kind"], row["name"], row["expires_at"]) == (
        "session",
        "session",
        session.token.expires_at,
    )
    assert [dict(event) for event in events] == [
        {
            "actor_name": user.username,
            "action": "session.create",
            "outcome": "success",
            "object_id": str(session.token.id),
            "details": {"prefix": session.token.prefix, "client": attempts.client},
        }
    ]


async def test_session_token_past_its_expiry_is_refused(
    platform: Platform, attempts: Attempts
) -> None:
    user = await new_user(platform, attempts.username("expiring"))
    session = await sign_in(platform, user.username, PASSWORD, attempts.client)

    async with platform.metadata.transaction() as connection:
        await connection.execute(
            "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
            session.token.id,
        )
    async with platform.metadata.acquire() as connection:
        with pytest.raises(AuthenticationError, match="expired"):
            await identity.verify_token(connection, session.token.secret, "test")


async def test_every_kind_of_failure_gets_the_same_answer_and_a_failed_event(
    platform: Platform, attempts: Attempts
) -> None:
    existing = await new_user(platform, attempts.username("existing"))
    passwordless = await new_user(platform, attempts.username("passwordless"), password=None)
    disabled = await new_user(platform, attempts.username("disabled"))
    async with platform.metadata.transaction() as connection:
        await connection.execute("UPDATE users SET disabled_at = now() WHERE id = $1", disabled.id)
    # The disabled user gives their right password: being disabled is what must refuse them.
    cases = {
        "wrong-password": (existing.username, "not the password at all"),
        "unknown-user": (attempts.username("nobody"), PASSWORD),
        "no-password": (passwordless.username, PASSWORD),
        "disabled": (disabled.username, PASSWORD),
    }

    answers = {}
    for reason, (username, password) in cases.items():
        error = await failure_of(
            platform, username, password, attempts.client, f"{reason}-{attempts.tag}"
        )
        answers[reason] = (type(error), str(error))

    assert set(answers.values()) == {(AuthenticationError, FAILURE_MESSAGE)}, answers
    async with platform.metadata.acquire() as connection:
        for reason, (username, _) in cases.items():
            events = await connection.fetch(
                "SELECT actor_id, action, outcome, details FROM audit_events WHERE request_id = $1",
                f"{reason}-{attempts.tag}",
            )
            assert [dict(event) for event in events] == [
                {
                    "actor_id": None,
                    "action": "session.create",
                    "outcome": "failed",
                    "details": {"username": username, "client": attempts.client},
                }
            ], reason
    # None of the failures gave anyone a session.
    for user in (existing, passwordless, disabled):
        assert await session_tokens(platform, user.id) == 0


async def test_after_too_many_failures_for_a_user_even_the_right_password_is_refused(
    platform: Platform, attempts: Attempts
) -> None:
    user = await new_user(platform, attempts.username("guessed"))
    bystander = await new_user(platform, attempts.username("bystander"))
    for _ in range(LIMITS["login_attempts_per_user"]):
        await failure_of(platform, user.username, "a wrong guess!", attempts.client)

    refused = await failure_of(platform, user.username, PASSWORD, attempts.client)

    assert isinstance(refused, RateLimitedError)
    assert 0 < refused.retry_after_s <= LIMITS["login_window_s"]
    assert await session_tokens(platform, user.id) == 0
    # The limit is the user's: another account on the same client still signs in.
    assert (
        await sign_in(platform, bystander.username, PASSWORD, attempts.client)
    ).user == bystander


async def test_a_strangers_failures_refuse_the_stranger_but_not_the_owner_elsewhere(
    platform: Platform, attempts: Attempts
) -> None:
    alice = await new_user(platform, attempts.username("alice"))
    stranger = attempts.other_client(1)
    # Past the per-user limit from the stranger's address, and on past the global one too: the
    # attempts refused to that address must not use up alice's backstop either.
    tries = LIMITS["login_attempts_per_user_global"] + 1
    answers = [
        type(await failure_of(platform, alice.username, "a wrong guess!", stranger))
        for _ in range(tries)
    ]

    allowed = LIMITS["login_attempts_per_user"]
    assert answers == [AuthenticationError] * allowed + [RateLimitedError] * (tries - allowed)
    assert isinstance(
        await failure_of(platform, alice.username, PASSWORD, stranger), RateLimitedError
    )
    # Her own address was never counted against: alice signs in.
    assert (await sign_in(platform, alice.username, PASSWORD, attempts.client)).user == alice


async def test_failures_for_one_user_from_many_addresses_hit_the_global_limit(
    platform: Platform, attempts: Attempts
) -> None:
    user = await new_user(platform, attempts.username("distributed"))
    limit = LIMITS["login_attempts_per_user_global"]
    # One guess from each address: below the per-user and the per-client limit of every one.
    answers = [
        type(await failure_of(platform, user.username, "a wrong guess!", attempts.other_client(i)))
        for i in range(1, limit + 1)
    ]

    refused = await failure_of(platform, user.username, PASSWORD, attempts.client)

    assert answers == [AuthenticationError] * limit
    assert isinstance(refused, RateLimitedError)
    assert 0 < refused.retry_after_s <= LIMITS["login_window_s"]
    assert await session_tokens(platform, user.id) == 0


async def test_failures_across_many_usernames_from_one_client_hit_the_client_limit(
    platform: Platform, attempts: Attempts
) -> None:
    user = await new_user(platform, attempts.username("sprayed"))
    # Password spraying: one guess per account, each below the per-user limit.
    for index in range(LIMITS["login_attempts_per_client"]):
        await failure_of(platform, attempts.username(f"victim{index}"), PASSWORD, attempts.client)

    refused = await failure_of(platform, user.username, PASSWORD, attempts.client)

    assert isinstance(refused, RateLimitedError)
    assert refused.retry_after_s > 0
    assert await session_tokens(platform, user.id) == 0
    # The limit is the client's: the same user from another address signs in.
    elsewhere = attempts.other_client(1)
    assert (await sign_in(platform, user.username, PASSWORD, elsewhere)).user == user


async def test_a_client_without_an_address_is_limited_per_user(
    platform: Platform, attempts: Attempts
) -> None:
    user = await new_user(platform, attempts.username("addressless"))
    for _ in range(LIMITS["login_attempts_per_user"]):
        await failure_of(platform, user.username, "a wrong guess!", None)

    refused = await failure_of(platform, user.username, PASSWORD, None)

    assert isinstance(refused, RateLimitedError)
    assert (await sign_in(platform, user.username, PASSWORD, attempts.client)).user == user


async def test_a_huge_username_leaves_only_a_small_client_count_in_redis(
    platform: Platform, attempts: Attempts
) -> None:
    # 2 MiB of characters a name may hold: only its length makes it a name no account can have.
    huge = attempts.tag * (2 * 1024**2 // len(attempts.tag))
    request_id = f"huge-{attempts.tag}"
    before = await counts(platform)

    error = await failure_of(platform, huge, PASSWORD, attempts.client, request_id)
    # Without an address there is no one to count it against at all.
    await failure_of(platform, huge, PASSWORD, None)

    assert (type(error), str(error)) == (AuthenticationError, FAILURE_MESSAGE)
    after = await counts(platform)
    for key, value in after.items():
        assert len(key) <= 100, key[:200]
        assert huge[:64].encode() not in key
        assert 0 <= int(value) <= 1000, (key, value)
    # A name no account can have raises no per-user or pair count: only the client's.
    written = {key: value for key, value in after.items() if before.get(key) != value}
    assert [(key.split(b":")[2], value) for key, value in written.items()] == [(b"client", b"1")]
    async with platform.metadata.acquire() as connection:
        details = await connection.fetchval(
            "SELECT details FROM audit_events WHERE request_id = $1", request_id
        )
    assert details == {"username": huge[:100], "client": attempts.client}


async def test_a_successful_login_clears_the_users_failure_count(
    platform: Platform, attempts: Attempts
) -> None:
    user = await new_user(platform, attempts.username("forgetful"))
    below_limit = LIMITS["login_attempts_per_user"] - 1

    for _ in range(below_limit):
        await failure_of(platform, user.username, "a wrong guess!", attempts.client)
    await sign_in(platform, user.username, PASSWORD, attempts.client)
    pair, user_key, client_key = counter_keys(user.username, attempts.client)
    # The pair's count is gone; the user's and the client's keep only the failures.
    assert await platform.redis.exists(pair) == 0
    assert await platform.redis.mget(user_key, client_key) == [str(below_limit).encode()] * 2
    for _ in range(below_limit):
        await failure_of(platform, user.username, "a wrong guess!", attempts.client)

    # Without the reset these would be limit + 1 failures, and this attempt refused.
    assert (await sign_in(platform, user.username, PASSWORD, attempts.client)).user == user


@dataclass
class VerifyCalls:
    count: int = 0


@pytest.fixture
def verify_calls(monkeypatch: pytest.MonkeyPatch) -> VerifyCalls:
    """Count the calls of argon2's verify, letting each one run for real."""
    calls = VerifyCalls()
    real_verify = PasswordHasher.verify

    def counting_verify(hasher: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        calls.count += 1
        return real_verify(hasher, hash, password)

    # PasswordHasher has __slots__, so its instance `identity.PASSWORDS` cannot take an attribute
    # of its own: the method is wrapped on the class, where `identity.PASSWORDS.verify` finds it.
    monkeypatch.setattr(PasswordHasher, "verify", counting_verify)
    assert identity.PASSWORDS.verify.__func__ is counting_verify  # type: ignore[attr-defined]
    return calls


@pytest.mark.parametrize("case", ["unknown-user", "no-password", "wrong-password", "right"])
async def test_password_check_runs_argon2_once_whatever_is_wrong(
    platform: Platform, attempts: Attempts, verify_calls: VerifyCalls, case: str
) -> None:
    # The time a login takes must not tell whether the account exists or has a password: argon2
    # (slow on purpose) has to run exactly once in every case.
    existing = await new_user(
        platform, attempts.username("timed"), None if case == "no-password" else PASSWORD
    )
    username = attempts.username("ghost") if case == "unknown-user" else existing.username
    password = "not the password at all" if case == "wrong-password" else PASSWORD
    verify_calls.count = 0

    if case == "right":
        await sign_in(platform, username, password, attempts.client)
    else:
        assert isinstance(
            await failure_of(platform, username, password, attempts.client), AuthenticationError
        )

    assert verify_calls.count == 1


async def test_a_rate_limited_attempt_checks_no_password(
    platform: Platform, attempts: Attempts, verify_calls: VerifyCalls
) -> None:
    user = await new_user(platform, attempts.username("locked"))
    for _ in range(LIMITS["login_attempts_per_user"]):
        await failure_of(platform, user.username, "a wrong guess!", attempts.client)
    verify_calls.count = 0

    refused = await failure_of(platform, user.username, PASSWORD, attempts.client)

    assert isinstance(refused, RateLimitedError)
    assert verify_calls.count == 0


async def test_concurrent_guesses_are_bounded_by_the_users_global_limit(
    platform: Platform, attempts: Attempts
) -> None:
    user = await new_user(platform, attempts.username("parallel"))
    # Each guess from its own address, so that only the user's global limit applies.
    limit = LIMITS["login_attempts_per_user_global"]
    clients = [attempts.other_client(index) for index in range(limit + 5)]

    async def guess(client: str) -> Any:
        try:
            return await sign_in(platform, user.username, f"wrong guess {client}", client)
        except (AuthenticationError, RateLimitedError) as exc:
            return exc

    results = await asyncio.gather(*(guess(client) for client in clients))

    checked = [result for result in results if isinstance(result, AuthenticationError)]
    assert len(checked) <= limit, results
