"""Alembic migrations, shipped inside the package, and the small API the platform uses on them.

Migrations run through SQLAlchemy's asyncpg dialect on one connection, inside one transaction that
first takes an advisory lock, so that several processes upgrading at once apply each revision
exactly once.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

from aiaas.core.config import Config
from aiaas.core.errors import ConfigError
from aiaas.core.storage import Connection
from aiaas.migrations.privileges import (
    OPTUNA_OBJECTS_QUERY,
    OPTUNA_SCHEMA,
    OWNED_BY_ROLE_QUERY,
    SCHEMA_OBJECTS_QUERY,
    application_grants,
    schema_objects,
)

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import Connection as SyncConnection
    from sqlalchemy.ext.asyncio import AsyncConnection

# Alembic and SQLAlchemy are imported where they are used: together they take most of a second
# to import, and every process imports this module (backups name the version table) while only
# `aiaas migrate` and a fresh start run a migration.

MIGRATIONS_DIR = Path(__file__).parent
VERSION_TABLE = "alembic_version"
# An arbitrary constant shared by every aiaas process: the key of the upgrade advisory lock.
_UPGRADE_LOCK_KEY = 0x6169_6161_73


def alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package ships at least one revision"
    return head


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }


def sqlalchemy_url(database_url: str) -> str:
    """The same database as a SQLAlchemy URL on the asyncpg driver."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(scheme="postgresql+asyncpg"))


def role_of(database_url: str) -> str:
    """The role a URL logs in as; libpq's default, the operating system's user, when it names
    none."""
    username = urlsplit(database_url).username
    return unquote(username) if username else getpass.getuser()


def schema_owner_url(config: Config) -> str:
    """The URL to migrate or restore with: the owner's, or the only one there is."""
    url = config.database_owner_url or config.database_url
    if url is None:
        raise ConfigError("database_url (AIAAS_DATABASE_URL) is not set")
    return str(url)


async def upgrade_schema(config: Config, revision: str = "head") -> None:
    """Upgrade as the configured owner, granting database_url's role when the two differ."""
    application_role = (
        role_of(str(config.database_url))
        if config.database_owner_url is not None and config.database_url is not None
        else None
    )
    await upgrade(schema_owner_url(config), revision, application_role=application_role)


async def application_grants_for(config: Config) -> list[str]:
    """The statements `upgrade_schema` runs to grant database_url's role, from the schema as it
    is now."""
    import asyncpg

    connection = await asyncpg.connect(schema_owner_url(config))
    try:
        schema = await connection.fetchval("SELECT current_schema()")
        rows = [tuple(row) for row in await connection.fetch(SCHEMA_OBJECTS_QUERY)]
        optuna_rows = [tuple(row) for row in await connection.fetch(OPTUNA_OBJECTS_QUERY)]
    finally:
        await connection.close()
    role = role_of(str(config.database_url))
    statements = application_grants(role, schema_objects(schema, rows))
    if optuna_rows:
        statements += application_grants(role, schema_objects(OPTUNA_SCHEMA, optuna_rows))
    return statements


async def audit_trail_exposure(connection: Connection) -> str | None:
    """Why the connected role could rewrite the audit trail, or None when it cannot: a superuser
    or the table's owner may turn its append-only trigger off."""
    row = await connection.fetchrow(
        "SELECT r.rolsuper AS superuser, pg_has_role(current_user, c.relowner, 'USAGE') AS owner "
        "FROM pg_roles r, pg_class c "
        "WHERE r.rolname = current_user AND c.oid = to_regclass('audit_events')"
    )
    if row is None:
        return None
    if row["superuser"]:
        return "it is a superuser"
    if row["owner"]:
        return "it owns the audit_events table"
    return None


async def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (an asyncpg connection), or None if never migrated."""
    exists = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", VERSION_TABLE)
    if not exists:
        return None
    revision: str | None = await connection.fetchval(f"SELECT version_num FROM {VERSION_TABLE}")
    return revision


def _run(sync_connection: SyncConnection, action: str, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = sync_connection
    getattr(command, action)(config, revision)


async def _migrate(
    database_url: str, action: str, revision: str, application_role: str | None
) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK_KEY})"))
            await connection.run_sync(_run, action, revision)
            if application_role is not None:
                await _grant_application_role(connection, application_role)
    finally:
        await engine.dispose()


async def _grant_application_role(connection: AsyncConnection, role: str) -> None:
    """Give `role` the application's privileges, in the upgrade's own transaction: a revision
    and the grants on what it adds commit together."""
    from sqlalchemy import text

    owner, schema, exists = (
        await connection.execute(
            text("SELECT current_user, current_schema(), to_regrole(:role) IS NOT NULL"),
            {"role": role},
        )
    ).one()
    if role == owner:
        return  # One role does both: nothing to separate.
    if not exists:
        raise ConfigError(
            f"the application role {role} (the user of database_url) does not exist: create it "
            "first, see docs/production.md"
        )
    owned = (await connection.execute(text(OWNED_BY_ROLE_QUERY), {"role": role})).scalars().all()
    if owned:
        raise ConfigError(
            f"the application role {role} owns {', '.join(owned)}, so it could alter them "
            f'whatever it is granted: as {role}, run REASSIGN OWNED BY "{role}" TO "{owner}", '
            "then upgrade again"
        )
    rows = [tuple(row) for row in await connection.execute(text(SCHEMA_OBJECTS_QUERY))]
    statements = application_grants(role, schema_objects(schema, list(rows)))
    optuna_rows = [tuple(row) for row in await connection.execute(text(OPTUNA_OBJECTS_QUERY))]
    if optuna_rows:
        statements += application_grants(role, schema_objects(OPTUNA_SCHEMA, list(optuna_rows)))
    for statement in statements:
        await connection.execute(text(statement))


async def upgrade(
    database_url: str, revision: str = "head", *, application_role: str | None = None
) -> None:
    """Migrate as the role of `database_url` (the schema's owner), then grant `application_role`,
    when given, what the API and the workers need (`aiaas.migrations.privileges`)."""
    await _migrate(database_url, "upgrade", revision, application_role)


async def downgrade(
    database_url: str, revision: str, *, application_role: str | None = None
) -> None:
    await _migrate(database_url, "downgrade", revision, application_role)
