"""API token authentication: `Authorization: Bearer aiaas_...`."""

from __future__ import annotations

from collections.abc import Iterable

from aiaas.core.auth import Authenticator, Credentials, Principal
from aiaas.core.config import Config
from aiaas.core.hookspecs import hookimpl
from aiaas.core.identity import looks_like_token, verify_token
from aiaas.core.specs import AuthenticatorSpec
from aiaas.core.storage import MetadataStore

NAME = "api-token"


class ApiTokenAuthenticator(Authenticator):
    def __init__(self, config: Config) -> None:
        del config  # tokens live in the metadata store; nothing to configure

    async def authenticate(
        self, credentials: Credentials, metadata: MetadataStore
    ) -> Principal | None:
        scheme, _, value = (credentials.authorization or "").partition(" ")
        token = value.strip()
        if scheme.lower() != "bearer" or not looks_like_token(token):
            return None
        async with metadata.acquire() as connection:
            return await verify_token(connection, token, NAME)


@hookimpl
def aiaas_authenticators() -> Iterable[AuthenticatorSpec]:
    return [
        AuthenticatorSpec(
            name=NAME,
            factory=ApiTokenAuthenticator,
            description="Bearer API tokens, stored as sha256 hashes.",
        )
    ]
