"""Users and API tokens.

A token reads `aiaas_<12 hex>_<43 urlsafe>`. The `aiaas_<12 hex>` part is its visible prefix: it is
stored in clear and shown in listings so that a leaked token can be identified and revoked. Only
the sha256 of the whole token is stored. A fast hash is right here, unlike for passwords: the
secret part carries 256 random bits, so there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.errors import AuthenticationError

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

TOKEN_SCHEME = "aiaas"
_TOKEN = re.compile(r"(aiaas_[0-9a-f]{12})_[A-Za-z0-9_-]{43}")
BOOTSTRAP_ADMIN = "admin"


@dataclass(frozen=True)
class User:
    id: UUID
    username: str
    display_name: str
    is_admin: bool
    created_at: datetime


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created token. `secret` is the only copy of the full token there will be."""

    id: UUID
    name: str
    prefix: str
    secret: str
    expires_at: datetime | None


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def new_token() -> tuple[str, str]:
    """A new token and its prefix."""
    prefix = f"{TOKEN_SCHEME}_{secrets.token_hex(6)}"
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def token_prefix(token: str) -> str:
    """The prefix of a well-formed token; `AuthenticationError` for anything else."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise AuthenticationError("malformed API token")
    return match.group(1)


def looks_like_token(token: str) -> bool:
    return token.startswith(f"{TOKEN_SCHEME}_")


_USER_COLUMNS = "id, username, display_name, is_admin, created_at"


async def users_by_ids(connection: Any, ids: list[UUID]) -> dict[UUID, User]:
    rows = await connection.fetch(
        f"SELECT {_USER_COLUMNS} FROM users WHERE id = ANY($1::uuid[])", ids
    )
    return {row["id"]: User(**dict(row)) for row in rows}


async def insert_token(
    connection: Any, user_id: UUID, name: str, expires_at: datetime | None = None
) -> IssuedToken:
    secret, prefix = new_token()
    token_id = await connection.fetchval(
        "INSERT INTO api_tokens (user_id, name, prefix, token_hash, expires_at) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING id",
        user_id,
        name,
        prefix,
        token_hash(secret),
        expires_at,
    )
    return IssuedToken(id=token_id, name=name, prefix=prefix, secret=secret, expires_at=expires_at)


_VERIFY = """
SELECT t.id AS token_id, t.token_hash, t.expires_at, t.revoked_at, now() AS now,
       u.id AS user_id, u.username, u.is_admin, u.disabled_at
FROM api_tokens t JOIN users u ON u.id = t.user_id
WHERE t.prefix = $1
"""


async def verify_token(connection: Any, token: str, authenticator: str) -> Principal:
    """The principal a token stands for, or `AuthenticationError` saying why not."""
    row = await connection.fetchrow(_VERIFY, token_prefix(token))
    # Compare in constant time even when the prefix is unknown, so timing reveals nothing.
    stored = row["token_hash"] if row is not None else bytes(32)
    if not hmac.compare_digest(stored, token_hash(token)) or row is None:
        raise AuthenticationError("unknown API token")
    if row["revoked_at"] is not None:
        raise AuthenticationError("API token revoked")
    if row["expires_at"] is not None and row["expires_at"] <= row["now"]:
        raise AuthenticationError("API token expired")
    if row["disabled_at"] is not None:
        raise AuthenticationError("user disabled")
    return Principal(
        user_id=row["user_id"],
        username=row["username"],
        is_admin=row["is_admin"],
        authenticated_by=authenticator,
        token_id=row["token_id"],
    )


async def revoke_token(platform: Platform, actor: Principal, token_id: UUID) -> bool:
    """Revoke a token; False if it was already revoked or does not exist."""
    async with AuditedChange(platform, actor, "api_token.revoke") as change:
        revoked = await change.connection.fetchval(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL "
            "RETURNING true",
            token_id,
        )
        await change.record(
            object_type="api_token", object_id=str(token_id), details={"revoked": bool(revoked)}
        )
    return bool(revoked)


async def bootstrap_admin(platform: Platform) -> IssuedToken | None:
    """Create the first admin user and a token for it, unless an admin exists already.

    Returns the new token, or None when there was nothing to do. Safe to run from several
    processes at once: the advisory lock makes one of them do the work.
    """
    async with AuditedChange(platform, None, "admin.bootstrap") as change:
        connection = change.connection
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext('aiaas.bootstrap'))")
        if await connection.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE is_admin)"):
            change.unchanged()
            return None
        user_id = await connection.fetchval(
            "INSERT INTO users (username, display_name, is_admin) VALUES ($1, $2, true) "
            "RETURNING id",
            BOOTSTRAP_ADMIN,
            "Administrator",
        )
        token = await insert_token(connection, user_id, "bootstrap")
        await change.record(
            object_type="user", object_id=str(user_id), details={"token_prefix": token.prefix}
        )
    return token
