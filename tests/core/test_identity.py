"""Users and API tokens: the bootstrap admin, what is stored, and every way a token is refused."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiaas.core.auth import Principal
from aiaas.core.errors import AuthenticationError
from aiaas.core.identity import (
    BOOTSTRAP_ADMIN,
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
