"""Signing in with a password, and out again.

A login is rate limited twice over: per username, against guessing one account's password, and
per client address, against spraying one password across many accounts. Failures are counted in
Redis so that every API replica sees the same counts. The password check takes the same time
whether or not the user exists, has a password, or is disabled: a dummy hash is verified instead,
so timing reveals nothing about which accounts exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from argon2.exceptions import InvalidHashError, VerificationError

from aiaas.core.audit import AuditedChange, record_outside_change
from aiaas.core.auth import Principal
from aiaas.core.errors import AuthenticationError, RateLimitedError
from aiaas.core.identity import PASSWORDS, IssuedToken, User, insert_token

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

# Verified when there is no real hash to verify, so that a missing account costs the same time.
_DUMMY_HASH = PASSWORDS.hash("not the password of anyone: it only spends the same time")

_LOGIN_ROW = """
SELECT id, username, display_name, is_admin, created_at, password_hash, disabled_at
FROM users WHERE username = $1
"""


@dataclass(frozen=True)
class Session:
    user: User
    token: IssuedToken


def _counter_keys(username: str, client_address: str | None) -> list[str]:
    keys = [f"aiaas:login-failures:user:{username}"]
    if client_address:
        keys.append(f"aiaas:login-failures:client:{client_address}")
    return keys


async def _refuse_if_limited(platform: Platform, username: str, client_address: str | None) -> None:
    config = platform.config
    limits = [config.login_attempts_per_user, config.login_attempts_per_client]
    for key, limit in zip(_counter_keys(username, client_address), limits, strict=False):
        failures = int(await platform.redis.get(key) or 0)
        if failures >= limit:
            retry_after = max(1, int(await platform.redis.ttl(key)))
            raise RateLimitedError(
                f"too many failed logins; try again in {retry_after} s", retry_after_s=retry_after
            )


async def _count_failure(platform: Platform, username: str, client_address: str | None) -> None:
    async with platform.redis.pipeline(transaction=True) as pipe:
        for key in _counter_keys(username, client_address):
            pipe.incr(key)
            # The window starts at the first failure and is not extended by later ones.
            pipe.expire(key, platform.config.login_window_s, nx=True)
        await pipe.execute()


def _password_matches(password_hash: str | None, password: str) -> bool:
    try:
        return PASSWORDS.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


async def login(
    platform: Platform,
    *,
    username: str,
    password: str,
    client_address: str | None,
    request_id: str | None = None,
) -> Session:
    """A session token for the user, or `AuthenticationError` (the same for every reason, so
    the answer does not tell whether the account exists) or `RateLimitedError`."""
    await _refuse_if_limited(platform, username, client_address)
    async with platform.metadata.acquire() as connection:
        row = await connection.fetchrow(_LOGIN_ROW, username)
    valid = _password_matches(row["password_hash"] if row else None, password)
    if row is None or not valid or row["disabled_at"] is not None:
        await _count_failure(platform, username, client_address)
        await record_outside_change(
            platform,
            actor=None,
            action="session.create",
            outcome="failed",
            request_id=request_id,
            details={"username": username[:100], "client": client_address},
        )
        raise AuthenticationError("wrong username or password")
    user = User(
        id=row["id"],
        username=row["username"],
        display_name=row["display_name"],
        is_admin=row["is_admin"],
        created_at=row["created_at"],
    )
    actor = Principal(
        user_id=user.id, username=user.username, is_admin=user.is_admin, authenticated_by="password"
    )
    expires_at = datetime.now(UTC) + timedelta(seconds=platform.config.session_ttl_s)
    async with AuditedChange(platform, actor, "session.create", request_id) as change:
        token = await insert_token(
            change.connection, user.id, "session", expires_at, kind="session"
        )
        await change.record(
            object_type="api_token",
            object_id=str(token.id),
            details={"prefix": token.prefix, "client": client_address},
        )
    await platform.redis.delete(_counter_keys(username, None)[0])
    return Session(user=user, token=token)
