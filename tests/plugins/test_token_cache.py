"""The API token cache (`aiaas.plugins.token_auth.cache`) never lets a token through that PostgreSQL
would refuse, once the change is committed and announced: on real PostgreSQL, with a second
platform (its own pool and listener, as a second process has) beside the module's.

- a token revoked by one platform, or by hand in SQL, is refused by the other as soon as the
  announcement reaches it, though the other had it cached;
- the platform that revokes refuses at once, without waiting for the announcement;
- a cached token is refused once it expires;
- losing the LISTEN connection empties the cache, and it listens again;
- a check that began before the cache was emptied is not remembered.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from aiaas.core.auth import Credentials, Principal
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config
from aiaas.core.errors import AuthenticationError
from aiaas.core.identity import accounts as identity
from aiaas.core.platform import Platform
from aiaas.plugins.token_auth import NAME, ApiTokenAuthenticator
from aiaas.plugins.token_auth.cache import TokenCache
from support import unique

NOTICE_TIMEOUT_S = 10.0
CACHE_S = 60.0


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """The module's platforms remember tokens (`token_cache_s`; off by default)."""
    return config.model_copy(update={"token_cache_s": CACHE_S})


@pytest.fixture(scope="module")
async def other(config: Config) -> AsyncIterator[Platform]:
    """A second platform on the same database: its own pool, listener and token cache."""
    second = create_platform(config)
    await second.start()
    yield second
    await second.stop()


def token_authenticator(platform: Platform) -> ApiTokenAuthenticator:
    authenticator = dict(platform.authenticators)[NAME]
    assert isinstance(authenticator, ApiTokenAuthenticator)
    return authenticator


def token_cache(platform: Platform) -> TokenCache:
    cache = token_authenticator(platform).cache
    assert cache is not None, "token_cache_s is set for this module"
    return cache


async def token_of_new_user(platform: Platform, **options: object) -> identity.IssuedToken:
    user = await identity.create_user(platform, None, username=unique("cache"))
    return await identity.create_api_token(
        platform,
        None,
        name="cached",
        user_id=user.id,
        **options,  # type: ignore[arg-type]
    )


async def authenticate(platform: Platform, secret: str) -> Principal | None:
    return await platform.authenticate(Credentials(f"Bearer {secret}"))


async def cached_on(platform: Platform, secret: str) -> int:
    """Authenticate twice, so that the token is in the platform's cache (asserted); the cache's
    generation then."""
    cache = token_cache(platform)
    await wait_for(lambda: cache.serves(platform.metadata))
    first = await authenticate(platform, secret)
    assert cache.get(identity.token_hash(secret)) == first
    assert await authenticate(platform, secret) == first
    return cache.generation


async def wait_for(condition: object) -> None:
    async with asyncio.timeout(NOTICE_TIMEOUT_S):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - a flag, no event
            await asyncio.sleep(0.01)


async def test_a_revocation_by_another_platform_ends_the_cached_token_on_notice(
    platform: Platform, other: Platform
) -> None:
    issued = await token_of_new_user(platform)
    generation = await cached_on(other, issued.secret)
    assert await identity.revoke_token(platform, None, issued.id)
    # The announcement empties the other's cache; its next check goes to the database.
    await wait_for(lambda: token_cache(other).generation > generation)
    with pytest.raises(AuthenticationError, match="revoked"):
        await authenticate(other, issued.secret)


async def test_a_revocation_by_hand_in_sql_ends_the_cached_token_on_notice(
    platform: Platform, other: Platform
) -> None:
    issued = await token_of_new_user(platform)
    generation = await cached_on(other, issued.secret)
    async with platform.metadata.acquire() as connection:
        await connection.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1", issued.id
        )
    await wait_for(lambda: token_cache(other).generation > generation)
    with pytest.raises(AuthenticationError, match="revoked"):
        await authenticate(other, issued.secret)


async def test_the_revoking_platform_refuses_the_token_at_once(platform: Platform) -> None:
    issued = await token_of_new_user(platform)
    await cached_on(platform, issued.secret)
    assert await identity.revoke_token(platform, None, issued.id)
    # No waiting for the announcement: the revoking process has forgotten the token already.
    with pytest.raises(AuthenticationError, match="revoked"):
        await authenticate(platform, issued.secret)


async def test_a_cached_token_is_refused_once_it_expires(platform: Platform) -> None:
    async with platform.metadata.acquire() as connection:
        now = await connection.fetchval("SELECT now()")
    issued = await token_of_new_user(platform, expires_at=now + timedelta(seconds=1.5))
    generation = await cached_on(platform, issued.secret)
    cache = token_cache(platform)
    await asyncio.sleep(1.6)
    assert cache.get(identity.token_hash(issued.secret)) is None
    with pytest.raises(AuthenticationError, match="expired"):
        await authenticate(platform, issued.secret)
    assert cache.generation == generation, "refused by its expiry, not by a notice"


async def test_a_refusal_is_never_remembered(platform: Platform) -> None:
    issued = await token_of_new_user(platform)
    assert await identity.revoke_token(platform, None, issued.id)
    for _ in range(2):
        with pytest.raises(AuthenticationError, match="revoked"):
            await authenticate(platform, issued.secret)
    assert token_cache(platform).get(identity.token_hash(issued.secret)) is None


async def test_losing_the_listener_empties_the_cache_until_it_listens_again(
    platform: Platform, other: Platform
) -> None:
    issued = await token_of_new_user(platform)
    await cached_on(other, issued.secret)
    cache = token_cache(other)
    listener_pid = cache._listening_on.get_server_pid()
    emptied = cache.generation
    async with platform.metadata.acquire() as connection:
        assert await connection.fetchval("SELECT pg_terminate_backend($1)", listener_pid)
    # Emptied when the loss is seen. (The watcher may listen again within milliseconds, so
    # the test waits for the emptying, not for a moment of not listening it could miss.)
    await wait_for(lambda: cache.generation > emptied)
    assert cache.get(identity.token_hash(issued.secret)) is None
    # While it does not listen, tokens are checked in the database and not remembered.
    await authenticate(other, issued.secret)
    if not cache.serves(other.metadata):
        assert len(cache) == 0

    def listening_anew() -> bool:
        connection = cache._listening_on
        return cache.serves(other.metadata) and connection.get_server_pid() != listener_pid

    # Back to listening on a new connection, announcements reach it again.
    await wait_for(listening_anew)
    generation = await cached_on(other, issued.secret)
    assert await identity.revoke_token(platform, None, issued.id)
    await wait_for(lambda: cache.generation > generation)
    with pytest.raises(AuthenticationError, match="revoked"):
        await authenticate(other, issued.secret)


def principal() -> Principal:
    return Principal(user_id=uuid.uuid4(), username="u", is_admin=False, authenticated_by=NAME)


def test_a_check_that_began_before_the_cache_was_emptied_is_not_remembered() -> None:
    cache = TokenCache()
    began_at = cache.generation
    cache.forget_all()  # an announcement arrives while the check reads the database
    cache.put(b"key", principal(), None, began_at)
    assert cache.get(b"key") is None
    cache.put(b"key", who := principal(), None, cache.generation)
    assert cache.get(b"key") == who


def test_an_entry_lasts_no_longer_than_the_token_nor_the_cache_s_bound() -> None:
    cache = TokenCache(max_age_s=60.0)
    cache.put(b"expired", principal(), 0.0, cache.generation)
    cache.put(b"expiring", principal(), -5.0, cache.generation)
    assert cache.get(b"expired") is None and cache.get(b"expiring") is None
    bounded = TokenCache(max_age_s=0.0)
    bounded.put(b"forever", principal(), None, bounded.generation)
    assert bounded.get(b"forever") is None


async def test_without_token_cache_s_nothing_is_remembered_and_a_revocation_holds_at_once(
    config: Config,
) -> None:
    """The default: every request asks PostgreSQL, so a token revoked by another process is
    refused by the next request, with no notice to wait for."""
    plain = create_platform(config.model_copy(update={"token_cache_s": 0.0}))
    revoker = create_platform(config.model_copy(update={"token_cache_s": 0.0}))
    await plain.start()
    await revoker.start()
    try:
        assert token_authenticator(plain).cache is None
        issued = await token_of_new_user(revoker)
        assert await authenticate(plain, issued.secret) is not None
        await identity.revoke_token(revoker, None, issued.id)
        with pytest.raises(AuthenticationError):
            await authenticate(plain, issued.secret)
    finally:
        await revoker.stop()
        await plain.stop()
