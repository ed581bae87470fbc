"""The `aiaas` command."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from aiaas import __version__, migrations
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, ServerRole, load_config
from aiaas.core.errors import (
    AiaasError,
    ConfigError,
    DatabaseUnavailableError,
    InputError,
    NotFoundError,
)
from aiaas.core.governance.vault import VAULT
from aiaas.core.plugins import create_plugin_manager
from aiaas.core.registry import load_registries

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_CONFIG = 2


def fail(message: str, code: int = EXIT_FAILURE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def reports_errors(command: F) -> F:
    """Turn expected failures into one clear line on stderr and a non-zero exit, no traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            fail(exc.message, EXIT_CONFIG)
        except InputError as exc:
            problems = "; ".join(
                f"{field}: {problem}" for field, problem in exc.field_errors.items()
            )
            fail(f"{exc.message}: {problems}" if problems else exc.message)
        except AiaasError as exc:
            fail(exc.message)

    return wrapper  # type: ignore[return-value]


def configure_logging(config: Config) -> None:
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # Casbin logs its whole model at INFO each time an enforcer is built.
    logging.getLogger("casbin").setLevel(max(logging.WARNING, logging.root.level))


def current_config(**overrides: Any) -> Config:
    context = click.get_current_context()
    config_file: Path | None = context.find_root().params.get("config_file")
    return load_config(config_file=config_file, overrides=overrides)


def require_services(config: Config, *names: str) -> None:
    missing = [name for name in names if getattr(config, name) is None]
    if missing:
        variables = ", ".join(f"AIAAS_{name.upper()}" for name in missing)
        raise ConfigError(
            f"{variables} must be set for this command; `aiaas dev` runs the platform on "
            "embedded services instead"
        )


async def preflight(config: Config) -> None:
    """Connect to every service and check the schema, so that a misconfiguration fails here
    with one clear message instead of inside the server."""

    platform = create_platform(config)
    await platform.start(run_startup_hooks=False)
    await platform.stop()


class AiaasGroup(click.Group):
    """The built-in commands, plus those plugins add through `aiaas_cli_commands`."""

    def _plugin_commands(self, context: click.Context) -> dict[str, click.Command]:
        cached: dict[str, click.Command] | None = context.meta.get("aiaas.plugin_commands")
        if cached is not None:
            return cached
        commands: dict[str, click.Command] = {}
        try:
            config = load_config(config_file=context.params.get("config_file"))
        except ConfigError:
            config = None  # the command that runs will report it
        if config is not None:
            manager = create_plugin_manager(config)
            for plugin_name, result in manager.call_each("aiaas_cli_commands"):
                for command in result or ():
                    if command.name in self.commands or command.name in commands:
                        manager.record_failure(
                            plugin_name,
                            "hook aiaas_cli_commands",
                            f"command {command.name!r} already exists",
                        )
                        continue
                    commands[str(command.name)] = command
        context.meta["aiaas.plugin_commands"] = commands
        return commands

    def list_commands(self, context: click.Context) -> list[str]:
        return [*super().list_commands(context), *sorted(self._plugin_commands(context))]

    def get_command(self, context: click.Context, name: str) -> click.Command | None:
        return super().get_command(context, name) or self._plugin_commands(context).get(name)


@click.group(cls=AiaasGroup)
@click.version_option(__version__, prog_name="aiaas")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML config file (also AIAAS_CONFIG_FILE).",
)
def cli(config_file: Path | None) -> None:
    """aiaas: datasets, training jobs, a model registry and serving behind one GraphQL API."""


@cli.command()
@click.option("--host", help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [default: 8000; 0 picks a free one].")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the embedded services keep their data [default: ~/.local/share/aiaas].",
)
@reports_errors
def dev(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Run the whole platform in the foreground, on embedded PostgreSQL and Redis unless
    AIAAS_DATABASE_URL / AIAAS_REDIS_URL are set."""
    from aiaas.embedded.dev import DevError, DevSupervisor

    config = current_config(
        mode="dev", host=host, port=port, data_dir=data_dir.absolute() if data_dir else None
    )
    configure_logging(config)
    try:
        sys.exit(DevSupervisor(config).run())
    except DevError as exc:
        fail(str(exc))


@cli.command()
@click.option("--host", help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [default: 8000].")
@click.option("--fd", type=int, help="Serve on this already-bound socket instead.")
@click.option(
    "--role",
    type=click.Choice([role.value for role in ServerRole]),
    help="all: everything [default]; api: GraphQL and uploads; inference: the V2 inference "
    "REST API, /metrics and health only (also AIAAS_ROLE).",
)
@reports_errors
def serve(host: str | None, port: int | None, fd: int | None, role: str | None) -> None:
    """Run the API server (uvicorn) against the configured PostgreSQL and Redis."""
    import uvicorn

    from aiaas.app import create_app
    from aiaas.embedded.dev import DevError, bind_api_socket

    config = current_config(host=host, port=port, role=role)
    require_services(config, "database_url", "redis_url")
    configure_logging(config)
    if fd is not None:
        sock = socket.socket(fileno=fd)
    else:
        try:
            sock = bind_api_socket(config.host, config.port)
        except DevError as exc:
            fail(str(exc))
    asyncio.run(preflight(config))
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            log_level=config.log_level,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    )
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(EXIT_FAILURE)


@cli.command()
@reports_errors
def worker() -> None:
    """Run an arq worker against the configured PostgreSQL and Redis."""
    from arq.worker import Worker

    from aiaas.workers.settings import worker_settings

    config = current_config()
    require_services(config, "database_url", "redis_url")
    configure_logging(config)
    asyncio.run(preflight(config))

    async def run() -> None:
        worker = Worker(**worker_settings(config))
        try:
            await worker.async_run()
        except asyncio.CancelledError:
            # arq stops on SIGINT/SIGTERM by cancelling its main task: a normal stop.
            pass
        finally:
            await worker.close()

    asyncio.run(run())


@cli.group()
def db() -> None:
    """Manage the database schema."""


async def _database_revision(config: Config) -> str | None:
    from aiaas.plugins.postgres_metadata import PostgresMetadataStore

    store = PostgresMetadataStore(config)
    await store.connect()
    try:
        async with store.acquire() as connection:
            return await migrations.current_revision(connection)
    finally:
        await store.close()


@db.command()
@reports_errors
def upgrade() -> None:
    """Apply every pending migration."""
    config = current_config()
    require_services(config, "database_url")
    assert config.database_url is not None
    before = asyncio.run(_database_revision(config))
    try:
        asyncio.run(migrations.upgrade(config.database_url))
    except OSError as exc:
        raise DatabaseUnavailableError(f"cannot reach PostgreSQL: {exc}") from exc
    after = asyncio.run(_database_revision(config))
    if before == after:
        click.echo(f"already at the latest revision {after}")
    else:
        click.echo(f"upgraded from {before or 'an empty database'} to {after}")


@db.command()
@reports_errors
def current() -> None:
    """Show the database's schema revision and whether it is the latest."""
    config = current_config()
    require_services(config, "database_url")
    revision = asyncio.run(_database_revision(config))
    head = migrations.head_revision()
    state = (
        "up to date" if revision == head else f"outdated, latest is {head}: run `aiaas db upgrade`"
    )
    click.echo(f"{revision or 'none'} ({state})")


@asynccontextmanager
async def operator_platform(*, check_schema: bool = True) -> AsyncIterator[Platform]:
    """A platform on the database alone, for operator commands. Changes they make are audited
    with no actor: they were made by whoever could reach the database, not through the API."""

    config = current_config()
    require_services(config, "database_url")
    platform = create_platform(config)
    await platform.start(run_startup_hooks=False, with_redis=False, check_schema=check_schema)
    try:
        yield platform
    finally:
        await platform.stop()


@cli.group()
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


@cli.group()
def tokens() -> None:
    """Manage API tokens, straight in the database."""


def _parse_expiry(days: int | None) -> datetime | None:
    return datetime.now(UTC) + timedelta(days=days) if days is not None else None


@tokens.command("create")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for.")
@click.option("--expires-in-days", type=click.IntRange(min=1), help="Never expires if unset.")
@reports_errors
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


@cli.group()
def keys() -> None:
    """Master keys: make one, or re-wrap every data key with the current one."""


@keys.command("generate")
def generate_key() -> None:
    """Print a new random master key for AIAAS_MASTER_KEY. Keep it safe: without it, no
    artifact can be opened."""
    from aiaas.core.governance.crypto import MasterKey

    click.echo(MasterKey.generate().encoded())


@keys.command("rotate")
@reports_errors
def rotate_keys() -> None:
    """Re-wrap every project's data key with AIAAS_MASTER_KEY. Put the old key in
    AIAAS_PREVIOUS_MASTER_KEYS for this run; no artifact is rewritten."""

    async def rotate() -> int:
        async with operator_platform() as platform:
            return await platform.service(VAULT).rotate(platform)

    click.echo(f"re-wrapped {asyncio.run(rotate())} data key(s)")


@cli.command()
@click.option("--grace-seconds", type=click.IntRange(min=0), help="Default: gc_grace_s.")
@reports_errors
def gc(grace_seconds: int | None) -> None:
    """Remove artifacts that nothing live refers to (deleted versions' data)."""
    from aiaas.core.governance.garbage import collect_garbage

    async def collect() -> Any:
        async with operator_platform() as platform:
            return await collect_garbage(platform, grace_s=grace_seconds)

    result = asyncio.run(collect())
    click.echo(
        f"deleted {result.deleted} artifact(s); kept {result.kept_referenced} in use and "
        f"{result.kept_young} too young; discarded {result.discarded_incomplete} incomplete"
    )


@cli.group()
def backup() -> None:
    """Back up and restore the whole instance: database and artifacts."""


@backup.command("create")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@reports_errors
def create_backup_command(file: Path) -> None:
    """Write one archive: every table from one snapshot, every artifact, and a manifest."""
    from aiaas.core.governance.backup import create_backup

    async def create() -> Any:
        async with operator_platform() as platform:
            return await create_backup(platform, file)

    manifest = asyncio.run(create())
    click.echo(f"wrote {file}: {len(manifest.tables)} tables, {len(manifest.artifacts)} artifacts")


@backup.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@reports_errors
def verify_backup_command(file: Path) -> None:
    """Check every member of the archive against its manifest."""
    from aiaas.core.governance.backup import verify_archive

    manifest = verify_archive(file)
    rows = sum(table["rows"] for table in manifest.tables)
    click.echo(
        f"{file} is sound: schema {manifest.schema_revision}, {rows} rows in "
        f"{len(manifest.tables)} tables, {len(manifest.artifacts)} artifacts, made "
        f"{manifest.created_at}"
    )


@backup.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@reports_errors
def restore_backup_command(file: Path) -> None:
    """Restore an archive into an empty instance; all or nothing."""
    from aiaas.core.governance.backup import restore_backup, verify_archive

    config = current_config()
    require_services(config, "database_url")
    assert config.database_url is not None
    manifest = verify_archive(file)
    if asyncio.run(_database_revision(config)) is None:
        asyncio.run(migrations.upgrade(config.database_url, manifest.schema_revision))

    async def restore() -> None:
        async with operator_platform(check_schema=False) as platform:
            await restore_backup(platform, file)

    asyncio.run(restore())
    asyncio.run(migrations.upgrade(config.database_url))
    click.echo(f"restored {file} (made {manifest.created_at})")


@cli.command("export-schema")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the SDL to this file instead of standard output.",
)
def export_schema(output: Path | None) -> None:
    """Print the GraphQL schema (SDL) of the built-in plugins, as schema.graphql holds it."""
    sdl = builtin_schema_sdl()
    if output is None:
        click.echo(sdl, nl=False)
    else:
        output.write_text(sdl, encoding="utf-8")


@cli.command("export-access-control")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the page to this file instead of standard output.",
)
def export_access_control(output: Path | None) -> None:
    """Print docs/access-control.md: the grants of each role and the grant of each field."""
    from aiaas.access_matrix import render_access_control

    page = render_access_control(builtin_schema())
    if output is None:
        click.echo(page, nl=False)
    else:
        output.write_text(page, encoding="utf-8")


def builtin_schema() -> Any:
    from aiaas.core.config import build_config
    from aiaas.graphql.schema import build_schema

    return build_schema(create_platform(build_config({"disable_plugin_autoload": True})))


def builtin_schema_sdl() -> str:
    return str(builtin_schema().as_str()) + "\n"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@reports_errors
def plugins(as_json: bool) -> None:
    """List the plugins, their versions and hooks, and any that failed to load."""
    manager = create_plugin_manager(current_config())
    load_registries(manager)  # a hook that raises is reported by this, not hidden
    report = manager.report()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": status.name,
                        "version": status.version,
                        "source": status.source,
                        "state": status.status,
                        "hooks": list(status.hooks),
                        "failures": [
                            {"stage": f.stage, "reason": f.reason} for f in status.failures
                        ],
                    }
                    for status in report
                ],
                indent=2,
            )
        )
        return
    for status in report:
        click.echo(f"{status.name} {status.version} [{status.source}, {status.status}]")
        if status.hooks:
            click.echo(f"    hooks: {', '.join(status.hooks)}")
        for failure in status.failures:
            click.echo(f"    FAILED at {failure.stage}: {failure.reason}")


def main() -> None:
    cli(prog_name="aiaas")
