"""Signing in with a password, and out again.

A login is rate limited twice over: per username, against guessing one account's password, and
per client address, against spraying one password across many accounts. Each attempt is counted
in Redis before its password is checked (so that every API replica sees the same counts, and
guesses made in parallel are bounded too); a successful one is then taken back off the counts.
The password check takes the same time whether or not the user exists, has a password, or is
disabled: a dummy hash is verified instead, so timing reveals nothing about which accounts exist.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from argon2.exceptions import InvalidHashError, VerificationError

from aiaas.core.audit import AuditedChange, record_outside_change
from aiaas.core.auth import Principal
from aiaas.core.errors import AuthenticationError, RateLimitedError
from aiaas.core.identity.accounts import PASSWORDS, IssuedToken, User, insert_token

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
    keys = [f"aiaas:login-attempts:user:{username}"]
    if client_address:
        keys.append(f"aiaas:login-attempts:client:{client_address}")
    return keys


async def _take_attempt(platform: Platform, username: str, client_address: str | None) -> None:
    """Count this attempt before the password is even looked at, and refuse it if it is over a
    limit. Counting first, atomically, is what bounds guesses made in parallel: checking a count
    and raising it afterwards would let every concurrent guess through the check."""
    config = platform.config
    keys = _counter_keys(username, client_address)
    async with platform.redis.pipeline(transaction=True) as pipe:
        for key in keys:
            # The window starts at the first attempt and is not extended by later ones. SET NX
            # with EX rather than EXPIRE NX, which Redis gained only in 7.0: the embedded Redis
            # of `aiaas dev` is 6.2.
            pipe.set(key, 0, ex=config.login_window_s, nx=True)
            pipe.incr(key)
        results = await pipe.execute()
    counts = results[1::2]
    limits = [config.login_attempts_per_user, config.login_attempts_per_client]
    for key, count, limit in zip(keys, counts, limits, strict=False):
        if count > limit:
            retry_after = max(1, int(await platform.redis.ttl(key)))
            raise RateLimitedError(
                f"too many login attempts; try again in {retry_after} s", retry_after_s=retry_after
            )


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
    await _take_attempt(platform, username, client_address)
    async with platform.metadata.acquire() as connection:
        row = await connection.fetchrow(_LOGIN_ROW, username)
    # argon2 is slow on purpose: verify in a thread so the event loop keeps serving.
    valid = await asyncio.to_thread(
        _password_matches, row["password_hash"] if row else None, password
    )
    if row is None or not valid or row["disabled_at"] is not None:
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
    # Only failures count against the limits: a success clears the user's count and gives the
    # client back the attempt it took.
    user_key, *client_key = _counter_keys(username, client_address)
    async with platform.redis.pipeline(transaction=True) as pipe:
        pipe.delete(user_key)
        for key in client_key:
            pipe.decr(key)
        await pipe.execute()
    return Session(user=user, token=token)
