"""`aiaas users` and `aiaas tokens`: accounts, their platform roles and API tokens, straight in
the database.

They are for the first admin and for scripts, from a shell that can reach PostgreSQL; what they
change is audited with no actor."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from aiaas.cli.common import fail, on_dev_data_dir, operator_platform, reports_errors
from aiaas.core.errors import NotFoundError


@click.group()
def users() -> None:
    """Manage users, straight in the database (for the first admin, or scripts)."""


@users.command("create")
@click.argument("username")
@click.option("--display-name", default="", help="How the user is shown.")
@click.option("--admin", "is_admin", is_flag=True, help="Make the user a platform admin.")
@click.option(
    "--password-stdin", is_flag=True, help="Read a password from the first line of stdin."
)
@reports_errors
@on_dev_data_dir()
def create_user_command(
    username: str, display_name: str, is_admin: bool, password_stdin: bool
) -> None:
    """Create a user. Without --password-stdin the user signs in with API tokens only."""
    from aiaas.core.identity.accounts import create_user

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None

    async def create() -> None:
        async with operator_platform() as platform:
            user = await create_user(
                platform,
                None,
                username=username,
                display_name=display_name,
                password=password,
                is_admin=is_admin,
            )
        role = "admin" if user.is_admin else "user"
        click.echo(f"created {role} {user.username} ({user.id})")

    asyncio.run(create())


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@reports_errors
@on_dev_data_dir()
def list_users_command(as_json: bool) -> None:
    """List every user: username, display name, whether an admin, when created."""
    from aiaas.core.identity.accounts import list_users

    async def listing() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        after = None
        async with operator_platform() as platform, platform.metadata.acquire() as connection:
            while True:
                page = await list_users(connection, first=None, after=after)
                rows += [
                    {
                        "username": user.username,
                        "display_name": user.display_name,
                        "is_admin": user.is_admin,
                        "created_at": user.created_at.isoformat(),
                    }
                    for user in page.items
                ]
                if not page.has_next_page:
                    return rows
                after = page.cursors[-1]

    rows = asyncio.run(listing())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        role = "admin" if row["is_admin"] else "user"
        click.echo(f"{row['username']}  {row['display_name']}  [{role}, since {row['created_at']}]")


def _change_platform_role(username: str, role_name: str, *, grant: bool) -> bool:
    from aiaas.core.identity.platform_roles import (
        grant_platform_role,
        parse_platform_role,
        revoke_platform_role,
    )

    role = parse_platform_role(role_name)
    change = grant_platform_role if grant else revoke_platform_role

    async def run() -> bool:
        async with operator_platform() as platform:
            return await change(platform, None, username=username, role=role)

    return asyncio.run(run())


@users.command("grant-platform-role")
@click.argument("username")
@click.argument("role")
@reports_errors
@on_dev_data_dir()
def grant_platform_role_command(username: str, role: str) -> None:
    """Give USERNAME the platform role ROLE. `metrics-reader` may scrape /metrics.

    Running it again changes nothing; either way it is audited."""
    if _change_platform_role(username, role, grant=True):
        click.echo(f"granted {role} to {username}")
    else:
        click.echo(f"{username} already holds {role}")


@users.command("revoke-platform-role")
@click.argument("username")
@click.argument("role")
@reports_errors
@on_dev_data_dir()
def revoke_platform_role_command(username: str, role: str) -> None:
    """Take the platform role ROLE from USERNAME. Their tokens stay valid for everything else."""
    if _change_platform_role(username, role, grant=False):
        click.echo(f"revoked {role} from {username}")
    else:
        click.echo(f"{username} does not hold {role}")


@click.group()
def tokens() -> None:
    """Manage API tokens, straight in the database."""


def _parse_expiry(days: int | None) -> datetime | None:
    return datetime.now(UTC) + timedelta(days=days) if days is not None else None


@tokens.command("create")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for.")
@click.option("--expires-in-days", type=click.IntRange(min=1), help="Never expires if unset.")
@reports_errors
@on_dev_data_dir()
def create_token_command(username: str, name: str, expires_in_days: int | None) -> None:
    """Create an API token for USERNAME and print it. It is shown this once only."""
    from aiaas.core.identity.accounts import create_api_token, user_by_username

    async def create() -> None:
        async with operator_platform() as platform:
            async with platform.metadata.acquire() as connection:
                user = await user_by_username(connection, username)
            if user is None:
                raise NotFoundError(f"no user named {username!r}")
            issued = await create_api_token(
                platform,
                None,
                user_id=user.id,
                name=name,
                expires_at=_parse_expiry(expires_in_days),
            )
        click.echo(issued.secret)

    asyncio.run(create())


@tokens.command("list")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@reports_errors
@on_dev_data_dir()
def list_tokens_command(username: str, as_json: bool) -> None:
    """List USERNAME's tokens: prefixes and dates, never secrets."""
    from aiaas.core.identity.accounts import list_api_tokens, user_by_username

    async def listing() -> list[dict[str, Any]]:
        async with operator_platform() as platform, platform.metadata.acquire() as connection:
            user = await user_by_username(connection, username)
            if user is None:
                raise NotFoundError(f"no user named {username!r}")
            found = await list_api_tokens(connection, user.id)
        return [
            {
                "prefix": token.prefix,
                "name": token.name,
                "kind": token.kind,
                "created_at": token.created_at.isoformat(),
                "expires_at": token.expires_at.isoformat() if token.expires_at else None,
                "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
            }
            for token in found
        ]

    rows = asyncio.run(listing())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "revoked" if row["revoked_at"] else f"expires {row['expires_at'] or 'never'}"
        click.echo(f"{row['prefix']}  {row['name']}  [{row['kind']}, {state}]")


@tokens.command("revoke")
@click.argument("prefix")
@reports_errors
@on_dev_data_dir()
def revoke_token_command(prefix: str) -> None:
    """Revoke the token whose visible prefix is PREFIX (as `aiaas tokens list` shows it)."""
    from aiaas.core.identity.accounts import find_token_by_prefix, revoke_token

    async def revoke() -> bool:
        async with operator_platform() as platform:
            async with platform.metadata.acquire() as connection:
                token = await find_token_by_prefix(connection, prefix)
            if token is None:
                raise NotFoundError(f"no token with prefix {prefix!r}")
            return await revoke_token(platform, None, token.id)

    if asyncio.run(revoke()):
        click.echo(f"revoked {prefix}")
    else:
        fail(f"{prefix} was already revoked")
