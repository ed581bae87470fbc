"""Who is calling (authenticators) and what they may do (the policy enforcer)."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from uuid import UUID

from aiaas.core.storage import MetadataStore

GLOBAL_DOMAIN = "*"
"""The Casbin domain of platform-wide grants, such as the `admin` role."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    user_id: UUID
    username: str
    is_admin: bool
    authenticated_by: str
    """Name of the authenticator that vouched for the caller."""
    token_id: UUID | None = None
    """The API token used, so that revoking it can end the caller's open subscriptions."""


@dataclass(frozen=True)
class Credentials:
    """What a request presents: the `Authorization` header value and the client's address."""

    authorization: str | None
    client_address: str | None = None


class Authenticator(abc.ABC):
    """Turns credentials into a `Principal`. Authenticators are asked in pluggy's order (last
    registered first), so a plugin's authenticator is asked before the built-in API tokens."""

    @abc.abstractmethod
    async def authenticate(
        self, credentials: Credentials, metadata: MetadataStore
    ) -> Principal | None:
        """Return the principal, or None when the credentials are not of this authenticator's
        kind (the next one is asked). Raise `AuthenticationError` when they are of its kind but
        invalid: malformed, unknown, expired or revoked."""

    async def start(self, metadata: MetadataStore) -> None:  # noqa: B027 - optional
        """Begin what the authenticator keeps beside the database (a cache of verified
        credentials, and what keeps it true); called once the database is reachable."""

    async def refresh(self) -> None:  # noqa: B027 - an authenticator that keeps nothing
        """Take in a change of credentials this process has just committed (a revoked token),
        before answering again: the announcement from PostgreSQL comes a moment later."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Let go of what `start` took; called before the database's pool closes."""


class PolicyEnforcer(abc.ABC):
    """Decides whether a principal may perform an action on a resource within a domain.

    The domain is a project's id, or `GLOBAL_DOMAIN` for platform-wide resources. Anything the
    policy does not grant is denied.
    """

    @abc.abstractmethod
    async def enforce(
        self, principal: Principal, domain: str, resource: str, action: str
    ) -> bool: ...

    async def start(self, metadata: MetadataStore) -> None:  # noqa: B027 - optional
        """Load what the policy keeps in the database; called once the database is reachable."""

    async def refresh(self) -> None:  # noqa: B027 - a policy held nowhere else is always fresh
        """Take in a change of policy this process has just committed, before answering again."""

    async def close(self) -> None:  # noqa: B027 - an in-memory policy holds nothing to release
        """Release what the enforcer holds."""
