"""Alembic migrations, shipped inside the package, and the small API the platform uses on them.

Migrations run through SQLAlchemy's asyncpg dialect on one connection, inside one transaction that
first takes an advisory lock, so that several processes upgrading at once apply each revision
exactly once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from aiaas.core.storage import Connection

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import Connection as SyncConnection

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


async def _migrate(database_url: str, action: str, revision: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK_KEY})"))
            await connection.run_sync(_run, action, revision)
    finally:
        await engine.dispose()


async def upgrade(database_url: str, revision: str = "head") -> None:
    await _migrate(database_url, "upgrade", revision)


async def downgrade(database_url: str, revision: str) -> None:
    await _migrate(database_url, "downgrade", revision)
