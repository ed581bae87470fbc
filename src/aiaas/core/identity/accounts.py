"""Users and their tokens.

Passwords are hashed with argon2id (`PasswordHasher`'s default), which is slow on purpose.

A token reads `aiaas_<12 hex>_<43 urlsafe>`. The `aiaas_<12 hex>` part is its visible prefix: it is
stored in clear and shown in listings so that a leaked token can be identified and revoked. Only
the sha256 of the whole token is stored. A fast hash is right here, unlike for passwords: the
secret part carries 256 random bits, so there is nothing to brute-force.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg
from argon2 import PasswordHasher

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.errors import AuthenticationError, ConflictError, InputError, NotFoundError
from aiaas.core.pagination import Page, fetch_page
from aiaas.core.storage import Connection, returned_row

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
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
PASSWORDS = PasswordHasher()


def check_new_user(username: str, display_name: str, password: str | None) -> None:
    problems = {}
    if not USERNAME.fullmatch(username):
        problems["username"] = (
            "1 to 63 lowercase letters, digits, dots, hyphens and underscores, starting with a "
            "letter or digit"
        )
    if len(display_name) > 200:
        problems["displayName"] = "must be at most 200 characters"
    if password is not None and not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        problems["password"] = (
            f"must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long"
        )
    if problems:
        raise InputError("invalid user", field_errors=problems)


async def create_user(
    platform: Platform,
    actor: Principal | None,
    *,
    username: str,
    display_name: str = "",
    password: str | None = None,
    is_admin: bool = False,
    request_id: str | None = None,
) -> User:
    """Create a user. Without a password the user can only authenticate with API tokens.

    `actor` is None when an operator runs `aiaas users create` against the database."""
    # Checked inside the change, so that bad input is audited as a failed attempt; deferred,
    # so that no connection waits idle while the password is hashed.
    async with AuditedChange(platform, actor, "user.create", request_id, deferred=True) as change:
        check_new_user(username, display_name, password)
        # argon2 is slow on purpose: hash in a thread so the event loop keeps serving.
        password_hash = await asyncio.to_thread(PASSWORDS.hash, password) if password else None
        connection = await change.begin()
        try:
            row = await connection.fetchrow(
                "INSERT INTO users (username, display_name, is_admin, password_hash) "
                f"VALUES ($1, $2, $3, $4) RETURNING {_USER_COLUMNS}",
                username,
                display_name,
                is_admin,
                password_hash,
            )
        except asyncpg.UniqueViolationError:
            raise ConflictError(f"a user named {username!r} already exists") from None
        user = User(**dict(returned_row(row)))
        await change.record(
            object_type="user",
            object_id=str(user.id),
            details={"username": username, "is_admin": is_admin},
        )
    return user


async def list_users(connection: Connection, *, first: int | None, after: str | None) -> Page[User]:
    return await fetch_page(
        connection,
        query=f"SELECT {_USER_COLUMNS} FROM users",
        conditions=[],
        arguments=[],
        first=first,
        after=after,
        to_item=lambda row: User(**dict(row)),
    )


async def user_by_username(connection: Connection, username: str) -> User | None:
    row = await connection.fetchrow(
        f"SELECT {_USER_COLUMNS} FROM users WHERE username = $1", username
    )
    return User(**dict(row)) if row is not None else None


async def users_by_ids(connection: Connection, ids: list[UUID]) -> dict[UUID, User]:
    rows = await connection.fetch(
        f"SELECT {_USER_COLUMNS} FROM users WHERE id = ANY($1::uuid[])", ids
    )
    return {row["id"]: User(**dict(row)) for row in rows}


async def insert_token(
    connection: Connection,
    user_id: UUID,
    name: str,
    expires_at: datetime | None = None,
    *,
    kind: str = "api",
) -> IssuedToken:
    secret, prefix = new_token()
    token_id = await connection.fetchval(
        "INSERT INTO api_tokens (user_id, name, prefix, token_hash, expires_at, kind) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        user_id,
        name,
        prefix,
        token_hash(secret),
        expires_at,
        kind,
    )
    return IssuedToken(id=token_id, name=name, prefix=prefix, secret=secret, expires_at=expires_at)


_VERIFY = """
SELECT t.id AS token_id, t.token_hash, t.expires_at, t.revoked_at, now() AS now,
       u.id AS user_id, u.username, u.is_admin, u.disabled_at
FROM api_tokens t JOIN users u ON u.id = t.user_id
WHERE t.prefix = $1
"""


async def verify_token(connection: Connection, token: str, authenticator: str) -> Principal:
    """The principal a token stands for, or `AuthenticationError` saying why not."""
    principal, _ = await verify_token_lifetime(connection, token, authenticator)
    return principal


async def verify_token_lifetime(
    connection: Connection, token: str, authenticator: str
) -> tuple[Principal, float | None]:
    """`verify_token`, and the seconds the token stays valid by PostgreSQL's clock (None: it
    does not expire), so that a cache of it can end with it whatever the local clock says."""
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
    principal = Principal(
        user_id=row["user_id"],
        username=row["username"],
        is_admin=row["is_admin"],
        authenticated_by=authenticator,
        token_id=row["token_id"],
    )
    expires_at = row["expires_at"]
    return principal, None if expires_at is None else (expires_at - row["now"]).total_seconds()


async def revoke_token(
    platform: Platform,
    actor: Principal | None,
    token_id: UUID,
    *,
    request_id: str | None = None,
) -> bool:
    """Revoke one of the actor's tokens (an admin may revoke anyone's, and so may an operator,
    `actor` None). False if it was revoked already; `NotFoundError` if it does not exist or is
    someone else's."""
    async with AuditedChange(platform, actor, "api_token.revoke", request_id) as change:
        owner = await change.connection.fetchval(
            "SELECT user_id FROM api_tokens WHERE id = $1 FOR UPDATE", token_id
        )
        may_revoke = actor is None or actor.is_admin or owner == actor.user_id
        if owner is None or not may_revoke:
            raise NotFoundError("no such API token")
        revoked = await change.connection.fetchval(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL "
            "RETURNING true",
            token_id,
        )
        await change.record(
            object_type="api_token", object_id=str(token_id), details={"revoked": bool(revoked)}
        )
    # Committed: this process's authenticators forget the token now, before its next request,
    # which may come before PostgreSQL's announcement of the change does.
    for _, authenticator in platform.authenticators:
        await authenticator.refresh()
    return bool(revoked)


@dataclass(frozen=True)
class ApiToken:
    """A token as listings show it: never its secret."""

    id: UUID
    user_id: UUID
    name: str
    prefix: str
    kind: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


_TOKEN_COLUMNS = "id, user_id, name, prefix, kind, created_at, expires_at, revoked_at, last_used_at"
MAX_TOKEN_NAME_LENGTH = 100


async def create_api_token(
    platform: Platform,
    actor: Principal | None,
    *,
    name: str,
    expires_at: datetime | None = None,
    user_id: UUID | None = None,
    request_id: str | None = None,
) -> IssuedToken:
    """A new API token for the actor, or for `user_id` when an operator (`actor` None, from
    `aiaas tokens create`) makes it. Its secret is in the result and nowhere else."""
    owner = user_id if user_id is not None else actor.user_id if actor is not None else None
    if owner is None:
        raise ValueError("a token needs an owner: an actor or a user_id")
    async with AuditedChange(platform, actor, "api_token.create", request_id) as change:
        # Checked inside the change, so that bad input is audited as a failed attempt.
        problems = {}
        if not name.strip() or len(name) > MAX_TOKEN_NAME_LENGTH:
            problems["name"] = f"must be 1 to {MAX_TOKEN_NAME_LENGTH} characters and not blank"
        if expires_at is not None and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)  # without an offset it is read as UTC
        if expires_at is not None and expires_at <= datetime.now(UTC):
            problems["expiresAt"] = "must be in the future"
        if problems:
            raise InputError("invalid API token", field_errors=problems)
        issued = await insert_token(change.connection, owner, name.strip(), expires_at)
        await change.record(
            object_type="api_token", object_id=str(issued.id), details={"prefix": issued.prefix}
        )
    return issued


async def list_api_tokens(connection: Connection, user_id: UUID) -> list[ApiToken]:
    rows = await connection.fetch(
        f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY created_at, id",
        user_id,
    )
    return [ApiToken(**dict(row)) for row in rows]


async def find_token_by_prefix(connection: Connection, prefix: str) -> ApiToken | None:
    row = await connection.fetchrow(
        f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE prefix = $1", prefix
    )
    return ApiToken(**dict(row)) if row is not None else None


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
