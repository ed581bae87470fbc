"""Users and API tokens: the bootstrap admin, creating users, what is stored, who may revoke a
token, and every way a token is refused."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiaas.core.auth import Principal
from aiaas.core.errors import AuthenticationError, ConflictError, InputError, NotFoundError
from aiaas.core.identity import accounts as identity
from aiaas.core.identity.accounts import (
    BOOTSTRAP_ADMIN,
    MIN_PASSWORD_LENGTH,
    PASSWORDS,
    IssuedToken,
    bootstrap_admin,
    insert_token,
    new_token,
    revoke_token,
    verify_token,
)
from aiaas.core.platform import Platform

AUTHENTICATOR = "test-authenticator"
WELL_SHAPED_TOKEN = r"aiaas_[0-9a-f]{12}_[A-Za-z0-9_-]{43}"


async def create_user(platform: Platform) -> uuid.UUID:
    """A plain user, made directly: these tests are about tokens, not about creating users.

    Never an admin, so that it cannot stand in for the bootstrap admin."""
    async with platform.metadata.transaction() as connection:
        user_id: uuid.UUID = await connection.fetchval(
            "INSERT INTO users (username) VALUES ($1) RETURNING id",
            f"user-{uuid.uuid4().hex[:10]}",
        )
    return user_id


async def issue_token(
    platform: Platform, user_id: uuid.UUID, expires_at: datetime | None = None
) -> IssuedToken:
    async with platform.metadata.transaction() as connection:
        return await insert_token(connection, user_id, "test token", expires_at)


async def verify(platform: Platform, token: str) -> Principal:
    async with platform.metadata.acquire() as connection:
        return await verify_token(connection, token, AUTHENTICATOR)


async def test_bootstrap_admin_creates_one_admin_and_token_then_does_nothing(
    platform: Platform,
) -> None:
    # Several processes may bootstrap at once: exactly one of them does the work.
    results = await asyncio.gather(*(bootstrap_admin(platform) for _ in range(3)))
    again = await bootstrap_admin(platform)

    issued = [result for result in results if result is not None]
    assert len(issued) == 1
    assert again is None
    async with platform.metadata.acquire() as connection:
        admins = await connection.fetch("SELECT id, username FROM users WHERE is_admin")
        tokens = await connection.fetch(
            "SELECT id FROM api_tokens WHERE user_id = $1", admins[0]["id"]
        )
        events = await connection.fetch(
            "SELECT outcome, details FROM audit_events WHERE action = 'admin.bootstrap'"
        )
    assert [row["username"] for row in admins] == [BOOTSTRAP_ADMIN]
    assert [row["id"] for row in tokens] == [issued[0].id]
    assert [(row["outcome"], row["details"]) for row in events] == [
        ("success", {"token_prefix": issued[0].prefix})
    ]
    principal = await verify(platform, issued[0].secret)
    assert principal.username == BOOTSTRAP_ADMIN
    assert principal.is_admin is True


async def test_database_keeps_only_the_hash_and_the_visible_prefix(platform: Platform) -> None:
    user_id = await create_user(platform)
    token = await issue_token(platform, user_id)
    secret_part = token.secret.removeprefix(token.prefix + "_")

    async with platform.metadata.acquire() as connection:
        row = await connection.fetchrow("SELECT * FROM api_tokens WHERE id = $1", token.id)
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
        # The secret must not appear in any column of any row of any table.
        leaks = {
            table["tablename"]: await connection.fetchval(
                f'SELECT count(*) FROM "{table["tablename"]}" t WHERE strpos(t::text, $1) > 0',
                secret_part,
            )
            for table in tables
        }

    assert token.secret.startswith(token.prefix + "_")
    assert len(secret_part) == 43
    assert row["prefix"] == token.prefix
    assert bytes(row["token_hash"]) == hashlib.sha256(token.secret.encode()).digest()
    assert "api_tokens" in leaks
    assert all(count == 0 for count in leaks.values()), leaks


async def test_valid_token_gives_its_principal(platform: Platform) -> None:
    user_id = await create_user(platform)
    token = await issue_token(platform, user_id)

    principal = await verify(platform, token.secret)

    assert principal.user_id == user_id
    assert principal.username.startswith("user-")
    assert principal.is_admin is False
    assert principal.authenticated_by == AUTHENTICATOR
    assert principal.token_id == token.id


async def test_token_that_expires_later_is_accepted(platform: Platform) -> None:
    user_id = await create_user(platform)
    token = await issue_token(platform, user_id, datetime.now(UTC) + timedelta(hours=1))

    assert (await verify(platform, token.secret)).token_id == token.id


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not a token",
        "aiaas_",
        "aiaas_0123456789ab",
        "aiaas_0123456789AB_" + "a" * 43,
        "aiaas_0123456789ab_" + "a" * 42,
        "aiaas_0123456789ab_" + "a" * 44,
        "aiaas_0123456789ab_" + "a" * 42 + "!",
        " aiaas_0123456789ab_" + "a" * 43,
        "aiaas_0123456789ab_" + "a" * 43 + "\n",
    ],
)
async def test_malformed_token_is_refused(platform: Platform, token: str) -> None:
    with pytest.raises(AuthenticationError, match="malformed"):
        await verify(platform, token)


async def test_unknown_token_of_valid_shape_is_refused(platform: Platform) -> None:
    unknown, _ = new_token()

    with pytest.raises(AuthenticationError, match="unknown"):
        await verify(platform, unknown)


async def test_known_prefix_with_the_wrong_secret_is_refused(platform: Platform) -> None:
    user_id = await create_user(platform)
    token = await issue_token(platform, user_id)
    forged = token.prefix + "_" + "A" * 43

    with pytest.raises(AuthenticationError, match="unknown"):
        await verify(platform, forged)


async def test_revoked_token_is_refused(platform: Platform) -> None:
    user_id = await create_user(platform)
    token = await issue_token(platform, user_id)
    actor = Principal(user_id=user_id, username="revoker", is_admin=False, authenticated_by="test")
    await verify(platform, token.secret)

    assert await revoke_token(platform, actor, token.id) is True
    assert await revoke_token(platform, actor, token.id) is False

    with pytest.raises(AuthenticationError, match="revoked"):
        await verify(platform, token.secret)
    async with platform.metadata.acquire() as connection:
        events = await connection.fetch(
            "SELECT outcome, details FROM audit_events "
            "WHERE action = 'api_token.revoke' AND object_id = $1 ORDER BY id",
            str(token.id),
        )
    assert [(row["outcome"], row["details"]) for row in events] == [
        ("success", {"revoked": True}),
        ("success", {"revoked": False}),
    ]


async def test_expired_token_is_refused(platform: Platform) -> None:
    user_id = await create_user(platform)
    token = await issue_token(platform, user_id, datetime.now(UTC) - timedelta(seconds=1))

    with pytest.raises(AuthenticationError, match="expired"):
        await verify(platform, token.secret)


async def test_token_of_a_disabled_user_is_refused(platform: Platform) -> None:
    user_id = await create_user(platform)
    token = await issue_token(platform, user_id)
    await verify(platform, token.secret)

    async with platform.metadata.transaction() as connection:
        await connection.execute("UPDATE users SET disabled_at = now() WHERE id = $1", user_id)

    with pytest.raises(AuthenticationError, match="disabled"):
        await verify(platform, token.secret)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    token=st.one_of(
        st.text(),
        st.text().map(lambda rest: "aiaas_" + rest),
        st.from_regex(WELL_SHAPED_TOKEN, fullmatch=True),
        # Well-shaped apart from one character anywhere.
        st.builds(
            lambda token, index, character: token[:index] + character + token[index + 1 :],
            st.from_regex(WELL_SHAPED_TOKEN, fullmatch=True),
            st.integers(0, 61),
            st.characters(),
        ),
    )
)
async def test_arbitrary_text_is_refused_with_an_authentication_error(
    platform: Platform, token: str
) -> None:
    # Any other exception (a UnicodeEncodeError, an asyncpg error) propagates and fails the test;
    # being accepted fails pytest.raises.
    with pytest.raises(AuthenticationError):
        await verify(platform, token)


# Creating users ------------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"


def unique_username(label: str = "user") -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def principal_of(user: identity.User) -> Principal:
    return Principal(
        user_id=user.id, username=user.username, is_admin=user.is_admin, authenticated_by="test"
    )


async def users_named(platform: Platform, username: str) -> list[dict[str, object]]:
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT display_name, is_admin, password_hash FROM users WHERE username = $1",
            username,
        )
    return [dict(row) for row in rows]


async def test_create_user_stores_an_argon2id_hash_and_never_the_password(
    platform: Platform,
) -> None:
    username = unique_username()

    user = await identity.create_user(
        platform, None, username=username, display_name="Ada", password=PASSWORD
    )

    [row] = await users_named(platform, username)
    stored = str(row["password_hash"])
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert PASSWORDS.verify(stored, PASSWORD)
    assert (user.username, user.display_name, user.is_admin) == (username, "Ada", False)
    async with platform.metadata.acquire() as connection:
        # Neither the password nor its hash reaches the audit trail.
        events = await connection.fetch(
            "SELECT actor_id, outcome, object_id, details FROM audit_events "
            "WHERE action = 'user.create' AND object_id = $1",
            str(user.id),
        )
    assert [dict(event) for event in events] == [
        {
            "actor_id": None,
            "outcome": "success",
            "object_id": str(user.id),
            "details": {"username": username, "is_admin": False},
        }
    ]


async def test_user_without_a_password_has_no_hash(platform: Platform) -> None:
    username = unique_username("robot")

    await identity.create_user(platform, None, username=username)

    assert [row["password_hash"] for row in await users_named(platform, username)] == [None]


@pytest.mark.parametrize(
    ("username", "password", "bad_fields"),
    [
        ("", PASSWORD, ["username"]),
        ("Upper-{tag}", PASSWORD, ["username"]),
        ("-lead-{tag}", PASSWORD, ["username"]),
        ("has space {tag}", PASSWORD, ["username"]),
        ("{tag}" + "a" * 60, PASSWORD, ["username"]),
        ("short-{tag}", "x" * (MIN_PASSWORD_LENGTH - 1), ["password"]),
        ("empty-{tag}", "", ["password"]),
        ("long-{tag}", "x" * 1025, ["password"]),
        ("Both {tag}", "short", ["password", "username"]),
    ],
    ids=[
        "empty-name",
        "uppercase",
        "leading-hyphen",
        "space",
        "64-characters",
        "9-character-password",
        "empty-password",
        "1025-character-password",
        "both",
    ],
)
async def test_invalid_new_user_is_refused_with_field_errors_and_nothing_is_created(
    platform: Platform, username: str, password: str, bad_fields: list[str]
) -> None:
    username = username.format(tag=uuid.uuid4().hex[:8])

    with pytest.raises(InputError) as caught:
        await identity.create_user(platform, None, username=username, password=password)

    assert sorted(caught.value.field_errors) == bad_fields
    assert caught.value.code == "BAD_USER_INPUT"
    assert await users_named(platform, username) == []


async def test_password_of_exactly_the_minimum_length_is_accepted(platform: Platform) -> None:
    username = unique_username()

    await identity.create_user(
        platform, None, username=username, password="x" * MIN_PASSWORD_LENGTH
    )

    assert len(await users_named(platform, username)) == 1


async def test_duplicate_username_is_a_conflict_that_keeps_the_first_user(
    platform: Platform,
) -> None:
    username = unique_username("taken")
    request_id = f"duplicate-{username}"
    await identity.create_user(platform, None, username=username, display_name="First")

    with pytest.raises(ConflictError, match=username):
        await identity.create_user(
            platform,
            None,
            username=username,
            display_name="Second",
            password=PASSWORD,
            is_admin=True,
            request_id=request_id,
        )

    assert await users_named(platform, username) == [
        {"display_name": "First", "is_admin": False, "password_hash": None}
    ]
    async with platform.metadata.acquire() as connection:
        events = await connection.fetch(
            "SELECT action, outcome, details FROM audit_events WHERE request_id = $1", request_id
        )
    assert [(e["action"], e["outcome"], e["details"]["code"]) for e in events] == [
        ("user.create", "failed", "CONFLICT")
    ]


# API tokens: creating and revoking -----------------------------------------------------------


async def test_create_api_token_returns_the_secret_and_stores_only_its_hash(
    platform: Platform,
) -> None:
    user = await identity.create_user(platform, None, username=unique_username())
    expires_at = datetime.now(UTC) + timedelta(days=30)

    issued = await identity.create_api_token(
        platform, principal_of(user), name="  ci  ", expires_at=expires_at
    )

    assert issued.secret.startswith(issued.prefix + "_")
    assert issued.name == "ci"
    async with platform.metadata.acquire() as connection:
        row = await connection.fetchrow("SELECT * FROM api_tokens WHERE id = $1", issued.id)
        [event] = await connection.fetch(
            "SELECT actor_id, outcome, details FROM audit_events "
            "WHERE action = 'api_token.create' AND object_id = $1",
            str(issued.id),
        )
    assert bytes(row["token_hash"]) == hashlib.sha256(issued.secret.encode()).digest()
    assert (row["user_id"], row["prefix"], row["kind"]) == (user.id, issued.prefix, "api")
    assert row["expires_at"] == expires_at
    assert issued.secret not in str(dict(row))
    assert (event["actor_id"], event["outcome"]) == (user.id, "success")
    assert event["details"] == {"prefix": issued.prefix}
    listed = await _list_tokens(platform, user.id)
    assert [(token.id, token.prefix) for token in listed] == [(issued.id, issued.prefix)]


async def _list_tokens(platform: Platform, user_id: uuid.UUID) -> list[identity.ApiToken]:
    async with platform.metadata.acquire() as connection:
        return await identity.list_api_tokens(connection, user_id)


@pytest.mark.parametrize(
    ("name", "expires_in", "bad_fields"),
    [
        ("past", timedelta(seconds=-1), ["expiresAt"]),
        ("   ", None, ["name"]),
        ("x" * 101, None, ["name"]),
        ("", timedelta(days=-1), ["expiresAt", "name"]),
    ],
    ids=["expired", "blank-name", "long-name", "both"],
)
async def test_invalid_api_token_is_refused_and_nothing_is_stored(
    platform: Platform, name: str, expires_in: timedelta | None, bad_fields: list[str]
) -> None:
    user = await identity.create_user(platform, None, username=unique_username())
    expires_at = datetime.now(UTC) + expires_in if expires_in is not None else None

    with pytest.raises(InputError) as caught:
        await identity.create_api_token(
            platform, principal_of(user), name=name, expires_at=expires_at
        )

    assert sorted(caught.value.field_errors) == bad_fields
    assert await _list_tokens(platform, user.id) == []


async def test_someone_elses_token_is_not_found_and_stays_valid(platform: Platform) -> None:
    owner = await identity.create_user(platform, None, username=unique_username("owner"))
    intruder = await identity.create_user(platform, None, username=unique_username("intruder"))
    token = await issue_token(platform, owner.id)

    with pytest.raises(NotFoundError):
        await revoke_token(platform, principal_of(intruder), token.id)

    assert (await verify(platform, token.secret)).user_id == owner.id
    [listed] = await _list_tokens(platform, owner.id)
    assert listed.revoked_at is None


async def test_unknown_token_id_is_not_found(platform: Platform) -> None:
    user = await identity.create_user(platform, None, username=unique_username())

    with pytest.raises(NotFoundError):
        await revoke_token(platform, principal_of(user), uuid.uuid4())


async def test_an_admin_may_revoke_anyones_token(platform: Platform) -> None:
    owner = await identity.create_user(platform, None, username=unique_username("owner"))
    admin = await identity.create_user(
        platform, None, username=unique_username("admin"), is_admin=True
    )
    token = await issue_token(platform, owner.id)

    assert await revoke_token(platform, principal_of(admin), token.id) is True

    with pytest.raises(AuthenticationError, match="revoked"):
        await verify(platform, token.secret)
