"""What every `aiaas` command shares: turning expected failures into one line and an exit code,
the configuration the command runs with, and a platform started for operator commands."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from aiaas.core import log_records
from aiaas.core.config import Config, load_config
from aiaas.core.errors import AiaasError, ConfigError, InputError
from aiaas.core.logging_settings import LogFormat

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_CONFIG = 2


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
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
    """Every logger's lines to stderr, in `log_format` and redacted (aiaas.core.log_records)."""
    log_records.configure_logging(config)
    # In JSON, a warning printed as is would be the one line of stderr that is not an object.
    logging.captureWarnings(config.log_format is LogFormat.JSON)


DEV_INSTANCE = "aiaas.dev_instance"
"""Where `on_dev_data_dir` leaves the settings of the dev instance a command runs against."""


def current_config(**overrides: Any) -> Config:
    context = click.get_current_context()
    config_file: Path | None = context.find_root().params.get("config_file")
    dev_instance: dict[str, Any] = context.meta.get(DEV_INSTANCE, {})
    return load_config(config_file=config_file, overrides={**dev_instance, **overrides})


def on_dev_data_dir(*, database: bool = True) -> Callable[[F], F]:
    """Add `--data-dir DIR`: run the command against the `aiaas dev` instance kept in DIR,
    whether `aiaas dev` runs (its PostgreSQL is used) or not (it is started for the command's
    duration). Apply it below `reports_errors`, which reports what refuses it."""

    def decorate(command: F) -> F:
        @click.option(
            "--data-dir",
            "dev_data_dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Run against the `aiaas dev` instance in this data dir, running or stopped.",
        )
        @functools.wraps(command)
        def wrapper(*args: Any, dev_data_dir: Path | None, **kwargs: Any) -> Any:
            if dev_data_dir is None:
                return command(*args, **kwargs)
            from aiaas.embedded.dev_instance import dev_instance_settings

            context = click.get_current_context()
            configured = current_config()
            named = [
                f"AIAAS_{name.upper()}"
                for name in ("database_url", "database_owner_url")
                if getattr(configured, name) is not None
            ]
            if named:
                raise ConfigError(
                    f"--data-dir reaches the dev instance's own PostgreSQL, but {', '.join(named)} "
                    "(or the config file) names another database: unset it, or drop --data-dir"
                )
            with dev_instance_settings(
                dev_data_dir.absolute(), context.command_path, database=database
            ) as settings:
                # As `aiaas dev` does: a configured master key wins over the data dir's (an
                # override of None leaves the configured value).
                context.meta[DEV_INSTANCE] = (
                    {**settings, "master_key": None}
                    if configured.master_key is not None
                    else settings
                )
                try:
                    return command(*args, **kwargs)
                finally:
                    del context.meta[DEV_INSTANCE]

        return wrapper  # type: ignore[return-value]

    return decorate


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
    from aiaas.core.bootstrap import create_platform

    platform = create_platform(config)
    await platform.start(run_startup_hooks=False)
    await platform.stop()


@asynccontextmanager
async def operator_platform(
    *, check_schema: bool = True, as_schema_owner: bool = False
) -> AsyncIterator[Platform]:
    """A platform on the database alone, for operator commands. Changes they make are audited
    with no actor: they were made by whoever could reach the database, not through the API.
    `as_schema_owner` connects as database_owner_url's role, for what the application's role may
    not do (a restore renumbers sequences)."""
    from aiaas import migrations
    from aiaas.core.bootstrap import create_platform

    config = current_config()
    require_services(config, "database_url")
    if as_schema_owner:
        config = config.model_copy(update={"database_url": migrations.schema_owner_url(config)})
    platform = create_platform(config)
    await platform.start(run_startup_hooks=False, with_redis=False, check_schema=check_schema)
    try:
        yield platform
    finally:
        await platform.stop()
