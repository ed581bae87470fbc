"""The long-running processes: `aiaas dev` (everything, on embedded services), `aiaas serve`
(the API server) and `aiaas worker` (an arq worker).

Their heavy imports (uvicorn, the ASGI app, arq, the embedded services) are made inside each
command, so that `aiaas --help` and the other commands do not pay for them."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import click

from aiaas.cli.common import (
    EXIT_FAILURE,
    configure_logging,
    current_config,
    fail,
    preflight,
    reports_errors,
    require_services,
)
from aiaas.core.config import ServerRole
from aiaas.core.logging_settings import LogFormat


@click.command()
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
    os.umask(0o077)  # what this process and its children make is its user's alone
    from aiaas.embedded.dev import DevError, DevSupervisor

    config = current_config(
        mode="dev", host=host, port=port, data_dir=data_dir.absolute() if data_dir else None
    )
    configure_logging(config)
    try:
        sys.exit(DevSupervisor(config).run())
    except DevError as exc:
        fail(str(exc))


@click.command()
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
    os.umask(0o077)  # what this process makes is its user's alone
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

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
            # In JSON, uvicorn's own lines (its access log too) go to our handler; in text
            # they keep uvicorn's format, as before `log_format` existed.
            log_config=LOGGING_CONFIG if config.log_format is LogFormat.TEXT else None,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    )
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(EXIT_FAILURE)


@click.command()
@reports_errors
def worker() -> None:
    """Run an arq worker against the configured PostgreSQL and Redis."""
    os.umask(0o077)  # what this process makes is its user's alone
    from aiaas.workers.outage_tolerant import OutageTolerantWorker
    from aiaas.workers.settings import worker_settings

    config = current_config()
    require_services(config, "database_url", "redis_url")
    configure_logging(config)
    asyncio.run(preflight(config))

    async def run() -> None:
        worker = OutageTolerantWorker(**worker_settings(config))
        try:
            await worker.async_run()
        except asyncio.CancelledError:
            # arq stops on SIGINT/SIGTERM by cancelling its main task: a normal stop.
            pass
        finally:
            await worker.close()

    asyncio.run(run())
