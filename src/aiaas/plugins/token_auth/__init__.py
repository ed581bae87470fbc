"""API token authentication: `Authorization: Bearer aiaas_...`.

With `token_cache_s` above 0, a token once accepted is remembered by the process (`cache`) until
PostgreSQL announces a change of tokens or users, the token expires, or `token_cache_s` passes:
every request of the inference API carries one, and checking it in the database each time was a
large share of a request's CPU. A refusal is never remembered. It is off by default, because a
revocation then reaches other processes with the notice, not at its commit.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiaas.core.auth import Authenticator, Credentials, Principal
from aiaas.core.config import Config
from aiaas.core.hookspecs import hookimpl
from aiaas.core.identity import looks_like_token, token_hash, token_prefix, verify_token_lifetime
from aiaas.core.specs import AuthenticatorSpec
from aiaas.core.storage import MetadataStore
from aiaas.plugins.token_auth.cache import TokenCache

NAME = "api-token"


class ApiTokenAuthenticator(Authenticator):
    def __init__(self, config: Config) -> None:
        self.cache = TokenCache(max_age_s=config.token_cache_s) if config.token_cache_s else None

    async def authenticate(
        self, credentials: Credentials, metadata: MetadataStore
    ) -> Principal | None:
        scheme, _, value = (credentials.authorization or "").partition(" ")
        token = value.strip()
        if scheme.lower() != "bearer" or not looks_like_token(token):
            return None
        token_prefix(token)  # a malformed token is refused before anything is looked up
        key = token_hash(token)
        cache = self.cache
        cached = cache is not None and cache.serves(metadata)
        if cache is not None and cached and (known := cache.get(key)) is not None:
            return known
        generation = cache.generation if cache is not None else 0
        async with metadata.acquire() as connection:
            principal, valid_for_s = await verify_token_lifetime(connection, token, NAME)
        if cache is not None and cached:
            cache.put(key, principal, valid_for_s, generation)
        return principal

    async def start(self, metadata: MetadataStore) -> None:
        if self.cache is not None:
            await self.cache.start(metadata)

    async def refresh(self) -> None:
        if self.cache is not None:
            self.cache.forget_all()

    async def close(self) -> None:
        if self.cache is not None:
            await self.cache.close()


@hookimpl
def aiaas_authenticators() -> Iterable[AuthenticatorSpec]:
    return [
        AuthenticatorSpec(
            name=NAME,
            factory=ApiTokenAuthenticator,
            description="Bearer API tokens, stored as sha256 hashes.",
        )
    ]
