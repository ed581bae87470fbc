"""Platform roles: narrow platform-wide grants a user holds besides their project roles.

They live in `users.platform_roles`, beside `is_admin`. A change of them is a change of policy,
which the users trigger announces to every process like a change of admin. Granting and revoking
are idempotent, so that a provisioning script may run them again; each is audited either way,
saying whether it changed anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import GLOBAL_DOMAIN, Principal
from aiaas.core.errors import InputError
from aiaas.core.identity.access import PlatformRole
from aiaas.core.storage import Connection

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

MANAGE_GRANT = ("platform-role", "manage")


@dataclass(frozen=True)
class PlatformRoleHolding:
    """One user holding one platform role: a line of the access policy."""

    user_id: UUID
    role: PlatformRole


def parse_platform_role(name: str) -> PlatformRole:
    """The role called `name`; `InputError` naming the known ones for anything else."""
    try:
        return PlatformRole(name)
    except ValueError:
        known = ", ".join(role.value for role in PlatformRole)
        raise InputError(
            f"no platform role named {name[:100]!r}", field_errors={"role": f"one of: {known}"}
        ) from None


async def all_platform_roles(connection: Connection) -> list[PlatformRoleHolding]:
    """Every platform role of every enabled user, for a policy enforcer to load whole. As with
    memberships, a disabled user's roles are left out."""
    rows = await connection.fetch(
        "SELECT id, unnest(platform_roles) AS role FROM users WHERE disabled_at IS NULL"
    )
    return [PlatformRoleHolding(user_id=row["id"], role=PlatformRole(row["role"])) for row in rows]


async def platform_roles_of(connection: Connection, username: str) -> tuple[PlatformRole, ...]:
    roles: list[str] | None = await connection.fetchval(
        "SELECT platform_roles FROM users WHERE username = $1", username
    )
    return tuple(PlatformRole(role) for role in roles or ())


async def grant_platform_role(
    platform: Platform,
    actor: Principal | None,
    *,
    username: str,
    role: PlatformRole,
    request_id: str | None = None,
) -> bool:
    """Give `username` the role. False if they held it already. `actor` is None when an
    operator runs `aiaas users grant-platform-role`; anyone else needs `platform-role:manage`."""
    return await _change(platform, actor, username, role, holds=True, request_id=request_id)


async def revoke_platform_role(
    platform: Platform,
    actor: Principal | None,
    *,
    username: str,
    role: PlatformRole,
    request_id: str | None = None,
) -> bool:
    """Take the role from `username`. False if they did not hold it."""
    return await _change(platform, actor, username, role, holds=False, request_id=request_id)


_GRANT = """
UPDATE users SET platform_roles = array_append(platform_roles, $2::text)
WHERE id = $1 AND NOT $2::text = ANY (platform_roles)
RETURNING true
"""
_REVOKE = """
UPDATE users SET platform_roles = array_remove(platform_roles, $2::text)
WHERE id = $1 AND $2::text = ANY (platform_roles)
RETURNING true
"""


async def _change(
    platform: Platform,
    actor: Principal | None,
    username: str,
    role: PlatformRole,
    *,
    holds: bool,
    request_id: str | None,
) -> bool:
    action = "platform_role.grant" if holds else "platform_role.revoke"
    async with AuditedChange(platform, actor, action, request_id) as change:
        if actor is not None:
            await platform.authorize(actor, GLOBAL_DOMAIN, *MANAGE_GRANT)
        # A disabled user can lose a role but not be given one, as with project memberships.
        user_id: UUID | None = await change.connection.fetchval(
            "SELECT id FROM users WHERE username = $1 AND (disabled_at IS NULL OR NOT $2) "
            "FOR UPDATE",
            username,
            holds,
        )
        if user_id is None:
            raise InputError(
                f"no user named {username[:100]!r}", field_errors={"username": "no such user"}
            )
        changed = bool(
            await change.connection.fetchval(_GRANT if holds else _REVOKE, user_id, role.value)
        )
        await change.record(
            object_type="user",
            object_id=str(user_id),
            details={"username": username, "role": role.value, "changed": changed},
        )
    await platform.enforcer.refresh()
    return changed
