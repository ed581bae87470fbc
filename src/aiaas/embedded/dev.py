"""`aiaas dev`: the whole platform in one foreground command.

The supervisor takes the data dir's lock, binds the API port, starts whatever services have no
URL configured (embedded PostgreSQL and Redis), applies the migrations, creates the first admin,
then runs the API and a worker as child processes. SIGINT or SIGTERM stops them all, API and
worker first, within seconds. A child that dies once running is restarted (see `healing`); one
that keeps dying makes the supervisor stop the rest and exit non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiaas import migrations
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import ENV_PREFIX, Config, config_environment
from aiaas.core.governance.crypto import MasterKey
from aiaas.core.identity.accounts import bootstrap_admin
from aiaas.embedded.database_roles import (
    APPLICATION_ROLE,
    OWNER_ROLE,
    RoleCredentials,
    provision_roles,
)
from aiaas.embedded.dev_instance import (
    DEV_COMMAND,
    DataDirInUseError,
    forget_running_postgres,
    hold_data_dir,
    record_running_postgres,
)
from aiaas.embedded.healing import (
    ChildProcess,
    EmbeddedService,
    Healer,
    RestartLimitError,
    Supervised,
    describe_exit,
)
from aiaas.embedded.postgres import EmbeddedPostgres, read_or_create_secret
from aiaas.embedded.processes import Child
from aiaas.embedded.redis import EmbeddedRedis

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
CHILD_STOP_TIMEOUT_S = 4.0
ADMIN_TOKEN_FILE = "admin-token"


class DevError(Exception):
    """`aiaas dev` cannot start; the message says why and what to do."""


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold the data dir for this run. A second `aiaas dev` on it, or one while an operator
    command works on it (`--data-dir`), is refused before it touches anything."""
    try:
        with hold_data_dir(data_dir):
            yield
    except DataDirInUseError as holder:
        if holder.command != DEV_COMMAND:
            raise DevError(
                f"{data_dir} is in use by `{holder.command}` (pid {holder.pid}); "
                "start aiaas dev once it is done"
            ) from None
        raise DevError(
            f"aiaas dev is already running on {data_dir} (pid {holder.pid}); stop it first, "
            "or pass another --data-dir"
        ) from None


def bind_api_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise DevError(
                f"port {port} on {host} is already in use; choose another with --port"
            ) from None
        raise DevError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def loopback_for(host: str) -> str:
    """Where to reach a server bound to `host` from this machine."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - a comparison


def write_admin_token(data_dir: Path, token: str) -> Path:
    path = data_dir / ADMIN_TOKEN_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    return path


async def http_ready(host: str, port: int) -> bool:
    """True when GET /readyz answers 200."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    try:
        writer.write(f"GET /readyz HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        status_line = await reader.readline()
    except OSError:
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return status_line.split(b" ")[1:2] == [b"200"]


@dataclass
class DevSupervisor:
    config: Config
    services: list[Supervised] = field(default_factory=list)
    """The embedded services, in start order."""
    dependants: list[Supervised] = field(default_factory=list)
    """The API and the worker."""
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def children(self) -> list[Child]:
        return [unit.child for unit in self.services + self.dependants if unit.child is not None]

    def run(self) -> int:
        sock = None
        if not self.data_dir.exists():
            # Nothing to lock yet: check the port before creating anything on disk.
            sock = bind_api_socket(self.config.host, self.config.port)
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.data_dir.chmod(0o700)  # also one an older release made 0701
            with data_dir_lock(self.data_dir):
                sock = sock or bind_api_socket(self.config.host, self.config.port)
                return asyncio.run(self._supervise(sock))
        finally:
            if sock is not None:
                sock.close()

    async def _supervise(self, sock: socket.socket) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop_requested.set)
        try:
            startup = asyncio.create_task(self._start(sock))
            stop = asyncio.create_task(self.stop_requested.wait())
            done, _ = await asyncio.wait({startup, stop}, return_when=asyncio.FIRST_COMPLETED)
            if startup not in done:
                startup.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await startup
                return 0
            stop.cancel()
            startup.result()
            return await self._watch()
        finally:
            await self._stop_children()

    async def _start(self, sock: socket.socket) -> None:
        database_url = self.config.database_url
        owner_url = self.config.database_owner_url
        redis_url = self.config.redis_url
        postgres_port = None
        if database_url is None:
            postgres = EmbeddedPostgres(self.data_dir)
            password = read_or_create_secret(self.data_dir / "postgres.password")
            await asyncio.to_thread(postgres.initialize, password)
            superuser_url = await self._start_service(
                EmbeddedService("postgres", postgres, password)
            )
            # The API and the worker never hold the superuser's or the owner's password.
            urls = await provision_roles(
                superuser_url,
                self._role(OWNER_ROLE, "postgres-owner.password"),
                self._role(APPLICATION_ROLE, "postgres-application.password"),
            )
            database_url, owner_url = urls.application_url, urls.owner_url
            postgres_port = postgres.port
        # Operator commands given this data dir (`--data-dir`) look here for its server.
        record_running_postgres(self.data_dir, postgres_port)
        if redis_url is None:
            redis = EmbeddedRedis(self.data_dir)
            password = read_or_create_secret(self.data_dir / "redis.password")
            redis_url = await self._start_service(EmbeddedService("redis", redis, password))
        # The data dir's own master key, unless one is configured: everything `aiaas dev`
        # stores is encrypted as in production.
        master_key = self.config.master_key or read_or_create_secret(
            self.data_dir / "master.key", lambda: MasterKey.generate().encoded()
        )
        config = self.config.model_copy(
            update={
                "database_url": database_url,
                "database_owner_url": owner_url,
                "redis_url": redis_url,
                "master_key": master_key,
            }
        )
        await migrations.upgrade_schema(config)
        # The children get the whole resolved config, file and flags included, and nothing
        # else of ours: a stray AIAAS_* variable would be refused by their config loader. They
        # connect as the application role only: the owner's URL stays here.
        config = config.model_copy(update={"database_owner_url": None})
        environment = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        environment.update(config_environment(config))

        token_note = await self._bootstrap(config)

        fd = sock.fileno()
        command = [sys.executable, "-m", "aiaas"]
        self.dependants += [
            ChildProcess("api", [*command, "serve", "--fd", str(fd)], environment, pass_fds=[fd]),
            ChildProcess("worker", [*command, "worker"], environment),
        ]
        for unit in self.dependants:
            await unit.start()
        host = loopback_for(self.config.host)
        port = sock.getsockname()[1]
        await self._wait_ready(host, port)
        print(
            f"aiaas is ready: http://{host}:{port}/graphql (GraphiQL in the browser)\n"
            f"{token_note}\nPress Ctrl-C to stop.",
            flush=True,
        )

    def _role(self, name: str, password_file: str) -> RoleCredentials:
        return RoleCredentials(name, read_or_create_secret(self.data_dir / password_file))

    async def _start_service(self, service: EmbeddedService) -> str:
        self.services.append(service)
        await service.start()
        return service.url

    async def _bootstrap(self, config: Config) -> str:
        platform = create_platform(config)
        await platform.start()
        try:
            issued = await bootstrap_admin(platform)
        finally:
            await platform.stop()
        token_path = self.data_dir / ADMIN_TOKEN_FILE
        if issued is None:
            return f"admin token: in {token_path}"
        write_admin_token(self.data_dir, issued.secret)
        return f"admin token: {issued.secret}\n  (saved to {token_path}, mode 0600)"

    async def _wait_ready(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        while not await http_ready(host, port):
            self._raise_if_a_child_died()
            if loop.time() > deadline:
                raise DevError(f"the API was not ready within {READY_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.05)

    def _raise_if_a_child_died(self) -> None:
        for child in self.children:
            if child.process.returncode is not None:
                raise DevError(f"{child.name} exited ({describe_exit(child)})")

    async def _watch(self) -> int:
        """Heal each death until a stop request (0) or until a child died too often (1)."""
        healer = Healer(self.services, self.dependants, CHILD_STOP_TIMEOUT_S)
        while (died := await self._next_death()) is not None:
            healing = asyncio.create_task(healer.heal(died))
            stop = asyncio.create_task(self.stop_requested.wait())
            done, _ = await asyncio.wait({healing, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if healing not in done:
                healing.cancel()
                with contextlib.suppress(asyncio.CancelledError, RestartLimitError):
                    await healing
                break
            try:
                healing.result()
            except RestartLimitError as exc:
                print(exc, file=sys.stderr, flush=True)
                return 1
        print("stopping aiaas ...", flush=True)
        return 0

    async def _next_death(self) -> Supervised | None:
        """The next child to die (a service before a dependant, when both are dead), or None
        once a stop is requested."""
        units = self.services + self.dependants
        stop = asyncio.create_task(self.stop_requested.wait())
        deaths = [asyncio.create_task(u.child.process.wait()) for u in units if u.child is not None]
        done, _ = await asyncio.wait({stop, *deaths}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stop, *deaths):
            task.cancel()
        if stop in done:
            return None
        return next(
            u for u in units if u.child is not None and u.child.process.returncode is not None
        )

    async def _stop_children(self) -> None:
        # Operator commands stop coming, then the API and the worker go first, together;
        # then the services they were using.
        forget_running_postgres(self.data_dir)
        for units in (self.dependants, self.services):
            await asyncio.gather(
                *(unit.child.stop(CHILD_STOP_TIMEOUT_S) for unit in units if unit.child is not None)
            )
