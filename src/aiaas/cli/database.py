"""`aiaas db`: the database schema, its revision and its migrations."""

from __future__ import annotations

import asyncio

import click

from aiaas import migrations
from aiaas.cli.common import current_config, on_dev_data_dir, reports_errors, require_services
from aiaas.core.config import Config
from aiaas.core.errors import ConfigError, DatabaseUnavailableError


async def database_revision(config: Config) -> str | None:
    """The schema revision the database is at; None for an empty database."""
    from aiaas.plugins.postgres_metadata import PostgresMetadataStore

    store = PostgresMetadataStore(config)
    await store.connect()
    try:
        async with store.acquire() as connection:
            return await migrations.current_revision(connection)
    finally:
        await store.close()


@click.group()
def db() -> None:
    """Manage the database schema."""


@db.command()
@reports_errors
@on_dev_data_dir()
def upgrade() -> None:
    """Apply every pending migration."""
    config = current_config()
    require_services(config, "database_url")
    before = asyncio.run(database_revision(config))
    try:
        asyncio.run(migrations.upgrade_schema(config))
    except OSError as exc:
        raise DatabaseUnavailableError(f"cannot reach PostgreSQL: {exc}") from exc
    after = asyncio.run(database_revision(config))
    if before == after:
        click.echo(f"already at the latest revision {after}")
    else:
        click.echo(f"upgraded from {before or 'an empty database'} to {after}")


@db.command()
@reports_errors
@on_dev_data_dir()
def current() -> None:
    """Show the database's schema revision and whether it is the latest."""
    config = current_config()
    require_services(config, "database_url")
    revision = asyncio.run(database_revision(config))
    head = migrations.head_revision()
    state = (
        "up to date" if revision == head else f"outdated, latest is {head}: run `aiaas db upgrade`"
    )
    click.echo(f"{revision or 'none'} ({state})")


@db.command()
@reports_errors
@on_dev_data_dir()
def grants() -> None:
    """Print the GRANT statements `db upgrade` gives database_url's role (with an owner role)."""
    config = current_config()
    require_services(config, "database_url")
    if config.database_owner_url is None:
        raise ConfigError(
            "database_owner_url is not set: database_url's role owns the schema and needs no "
            "grant (see docs/production.md for two roles)"
        )
    for statement in asyncio.run(migrations.application_grants_for(config)):
        click.echo(f"{statement};")
