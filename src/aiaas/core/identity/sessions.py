"""Signing in with a password, and out again.

Password login is rate limited by three counters in Redis, each a count of attempts in a window of
`login_window_s` seconds that starts at the window's first attempt:

- per (username, client address) pair, `login_attempts_per_user`: against guessing one account's
  password from one address. A stranger who exhausts it is refused from their own address only;
  the owner signing in from any other address is not affected.
- per client address, `login_attempts_per_client`, across every username: against spraying one
  password over many accounts.
- per username from all addresses together, `login_attempts_per_user_global`: the slow backstop
  against guessing one account's password from many addresses. Only attempts that the first two
  limits let through count here, so one address cannot use it up on its own.

An attempt over any limit is refused with `RateLimitedError` (its retry-after is the time left in
the longest window that refused it) and its password is not checked. Each attempt is counted
before its password is checked (so that every API replica sees the same counts, and guesses made
in parallel are bounded too); a successful one deletes the pair's count and is taken back off the
client's and the user's. A client without an address (None) counts against the pair and the user
limits only.

Keys are `aiaas:login-attempts:{pair,client,user}:<sha256 hex>`, never the raw input, so their
size is fixed whatever a caller sends. A username that no account can have (see
`accounts.USERNAME`, which the `users` table also enforces), such as one longer than 63
characters, counts against the client only: there is no account whose pair or user count it could
raise, and it is not looked up.

The password check takes the same time whether or not the user exists, has a password, or is
disabled: a dummy hash is verified instead, so timing reveals nothing about which accounts exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from argon2.exceptions import InvalidHashError, VerificationError

from aiaas.core.audit import AuditedChange, record_outside_change
from aiaas.core.auth import Principal
from aiaas.core.errors import AuthenticationError, RateLimitedError
from aiaas.core.identity.accounts import PASSWORDS, USERNAME, IssuedToken, User, insert_token
from aiaas.core.outages import as_outage

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


# Lowers each count in KEYS by one, but only while its key still exists: a DECR on a key that
# expired meanwhile would create it again at -1 and without a TTL, a count that never ends.
_GIVE_BACK = """
for _, key in ipairs(KEYS) do
    local count = tonumber(redis.call('GET', key))
    if count and count > 0 then
        redis.call('DECR', key)
    end
end
"""


class _Keys(NamedTuple):
    """Where an attempt is counted; None where it is not counted at all."""

    pair: str | None
    user: str | None
    client: str | None


@dataclass(frozen=True)
class _Counter:
    key: str
    limit: int


def _key(kind: str, *parts: str | None) -> str:
    # A digest, never the input itself, so that a key's size is fixed whatever a caller sends.
    # JSON is an unambiguous encoding of the parts (("a", "b:c") and ("a:b", "c") differ), and
    # with its ASCII escapes even a lone surrogate encodes.
    digest = hashlib.sha256(json.dumps(parts).encode("ascii")).hexdigest()
    return f"aiaas:login-attempts:{kind}:{digest}"


def _may_exist(username: str) -> bool:
    """Whether an account could have this name (the `users` table enforces the same pattern).
    The pattern fails by its 64th character, so even a huge name costs little to check."""
    return USERNAME.fullmatch(username) is not None


def _keys_of(username: str, client_address: str | None) -> _Keys:
    # A name no account can have raises no pair or user count: there is no one to lock out.
    exists = _may_exist(username)
    return _Keys(
        pair=_key("pair", username, client_address) if exists else None,
        user=_key("user", username) if exists else None,
        client=_key("client", client_address) if client_address else None,
    )


def counter_keys(username: str, client_address: str | None) -> list[str]:
    """The Redis keys that an attempt with this username from this address counts in: the
    pair's, the user's and the client's, leaving out those it is not counted in."""
    return [key for key in _keys_of(username, client_address) if key is not None]


async def _count(platform: Platform, counters: list[_Counter]) -> None:
    """Raise each counter by one, then refuse the attempt if any is over its limit."""
    if not counters:
        return
    async with platform.redis.pipeline(transaction=True) as pipe:
        for counter in counters:
            # The window starts at the first attempt and is not extended by later ones. SET NX
            # with EX rather than EXPIRE NX, which Redis gained only in 7.0: the embedded Redis
            # of `aiaas dev` is 6.2.
            pipe.set(counter.key, 0, ex=platform.config.login_window_s, nx=True)
            pipe.incr(counter.key)
        results = await pipe.execute()
    over = [c.key for c, count in zip(counters, results[1::2], strict=True) if count > c.limit]
    if over:
        retry_after = max([1, *[int(await platform.redis.ttl(key)) for key in over]])
        raise RateLimitedError(
            f"too many login attempts; try again in {retry_after} s", retry_after_s=retry_after
        )


async def _take_attempt(platform: Platform, username: str, client_address: str | None) -> None:
    """Count this attempt before the password is even looked at, and refuse it if it is over a
    limit. Counting first, atomically, is what bounds guesses made in parallel: checking a count
    and raising it afterwards would let every concurrent guess through the check."""
    config = platform.config
    keys = _keys_of(username, client_address)
    own = [
        _Counter(key, limit)
        for key, limit in [
            (keys.pair, config.login_attempts_per_user),
            (keys.client, config.login_attempts_per_client),
        ]
        if key is not None
    ]
    backstop = [_Counter(keys.user, config.login_attempts_per_user_global)] if keys.user else []
    await _count(platform, own)
    # Only then the user's count from all addresses: an attempt refused to its own address must
    # not use up the owner's backstop, or one address could lock the owner out everywhere.
    await _count(platform, backstop)


async def _give_back(
    platform: Platform, username: str, client_address: str | None, *, succeeded: bool = True
) -> None:
    """After a success: the pair's count goes, the client's and the user's get back the attempt
    it took. After an attempt that an outage cut short (`succeeded=False`), every count gets
    back the attempt, the pair's too, and keeps the failures before it."""
    keys = _keys_of(username, client_address)
    given_back = [key for key in (keys.user, keys.client) if key is not None]
    if not succeeded and keys.pair is not None:
        given_back.append(keys.pair)
    give_back = platform.redis.register_script(_GIVE_BACK)
    async with platform.redis.pipeline(transaction=True) as pipe:
        if succeeded and keys.pair is not None:
            pipe.delete(keys.pair)
        await give_back(keys=given_back, client=pipe)
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
    await _take_attempt(platform, username, client_address)
    try:
        return await _sign_in(platform, username, password, client_address, request_id)
    except Exception as exc:
        if as_outage(exc) is not None:
            # PostgreSQL went away before the password was judged: the attempt does not count,
            # or a user retrying through an outage would find themselves locked out after it.
            with contextlib.suppress(Exception):  # Redis may be what is gone
                await _give_back(platform, username, client_address, succeeded=False)
        raise


async def _sign_in(
    platform: Platform,
    username: str,
    password: str,
    client_address: str | None,
    request_id: str | None,
) -> Session:
    row = None
    if _may_exist(username):
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
    # Only failures count against the limits: a success clears the pair's count and gives the
    # client and the user back the attempt it took.
    await _give_back(platform, username, client_address)
    return Session(user=user, token=token)
