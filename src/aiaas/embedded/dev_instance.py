"""An `aiaas dev` data dir seen from outside: its lock, where its running PostgreSQL listens, and
what an operator command (`aiaas backup … --data-dir DIR`) needs to reach it, running or not.

`aiaas dev` holds the data dir's lock while it runs and records its PostgreSQL's port in
STATE_FILE (0600), removed as it stops: the port is picked afresh at each start. A command then
connects there. When `aiaas dev` is stopped, the command takes the lock itself, so that
`aiaas dev` cannot start meanwhile and two commands take turns, and runs the embedded PostgreSQL
for its own duration. Either way it connects as the dev instance's own roles (the application
role, and the owner for what migrates or restores), with the data dir's master key and
artifacts, and needs no Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiaas.core.errors import ConfigError
from aiaas.embedded.database_roles import APPLICATION_ROLE, OWNER_ROLE, RoleCredentials
from aiaas.embedded.postgres import DATABASE, HOST, EmbeddedPostgres

LOCK_FILE = "aiaas-dev.lock"
STATE_FILE = "dev-state.json"
MASTER_KEY_FILE = "master.key"
SUPERUSER_PASSWORD_FILE = "postgres.password"
OWNER_PASSWORD_FILE = "postgres-owner.password"
APPLICATION_PASSWORD_FILE = "postgres-application.password"
DEV_COMMAND = "aiaas dev"

BUSY_WAIT_S = 60.0
"""How long a command waits for the data dir while another command holds it, or while
`aiaas dev` starts and has not yet said where its PostgreSQL listens."""
BUSY_POLL_S = 0.2
STOP_TIMEOUT_S = 10.0


class DataDirInUseError(Exception):
    """Another process holds the data dir's lock."""

    def __init__(self, pid: str, command: str) -> None:
        super().__init__(f"{command} (pid {pid})")
        self.pid = pid
        self.command = command


def _lock_holder(handle: IO[str]) -> DataDirInUseError:
    handle.seek(0)
    pid, _, command = handle.read().strip().partition(" ")
    # A lock file an older release wrote holds the pid alone, and only `aiaas dev` wrote it.
    return DataDirInUseError(pid or "unknown", command or DEV_COMMAND)


@contextlib.contextmanager
def hold_data_dir(data_dir: Path, command: str = DEV_COMMAND) -> Iterator[None]:
    """Hold the data dir's lock for `command`, or raise `DataDirInUseError` at once, naming the
    holder, before anything is touched."""
    handle: IO[str] = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _lock_holder(handle)
        handle.close()
        raise holder from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()} {command}")
    handle.flush()
    try:
        yield
    finally:
        handle.close()


def record_running_postgres(data_dir: Path, port: int | None) -> None:
    """Say where the running `aiaas dev` serves its PostgreSQL; None when it uses a configured
    database rather than its own."""
    path = data_dir / STATE_FILE
    partial = path.with_suffix(".partial")  # renamed into place: a reader sees all or nothing
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"pid": os.getpid(), "postgres_port": port}, handle)
    partial.replace(path)


def forget_running_postgres(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / STATE_FILE).unlink()


def _running_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # not written yet, or being written
    return state if isinstance(state, dict) and "pid" in state else None


# What an operator command connects with -------------------------------------------------------


def _secret(data_dir: Path, name: str) -> str:
    path = data_dir / name
    if not path.exists():
        raise ConfigError(
            f"{path} is missing: run `aiaas dev --data-dir {data_dir}` once to bring the data "
            "dir up to this release"
        )
    return path.read_text().strip()


def check_dev_data_dir(data_dir: Path) -> None:
    if not (data_dir / "postgres" / "PG_VERSION").exists():
        raise ConfigError(
            f"{data_dir} holds no `aiaas dev` instance (no embedded PostgreSQL in it); "
            f"`aiaas dev --data-dir {data_dir}` makes one"
        )


def dev_master_key(data_dir: Path) -> str | None:
    """The data dir's own master key, which `aiaas dev` uses unless one is configured."""
    path = data_dir / MASTER_KEY_FILE
    return path.read_text().strip() if path.exists() else None


def role_urls(data_dir: Path, port: int) -> dict[str, str]:
    """database_url (the application role) and database_owner_url (the owner) on `port`."""
    server = f"postgresql://{HOST}:{port}/{DATABASE}"
    application = RoleCredentials(APPLICATION_ROLE, _secret(data_dir, APPLICATION_PASSWORD_FILE))
    owner = RoleCredentials(OWNER_ROLE, _secret(data_dir, OWNER_PASSWORD_FILE))
    return {"database_url": application.url_on(server), "database_owner_url": owner.url_on(server)}


@dataclass
class _PostgresForCommand:
    """The data dir's embedded PostgreSQL while a command runs, on an event loop of its own in
    a thread: the command's own `asyncio.run` calls come and go, and the server outlives each."""

    data_dir: Path
    port: int = 0
    _failure: BaseException | None = None

    def __post_init__(self) -> None:
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(),), name="dev-postgres"
        )

    async def _serve(self) -> None:
        server = EmbeddedPostgres(self.data_dir)
        try:
            try:
                await server.start(_secret(self.data_dir, SUPERUSER_PASSWORD_FILE))
            except BaseException as exc:
                self._failure = exc
                return
            self.port = server.port or 0
            self._ready.set()
            await asyncio.to_thread(self._stopping.wait)
        finally:
            self._ready.set()
            if server.child is not None:
                await server.child.stop(STOP_TIMEOUT_S)

    def __enter__(self) -> int:
        self._thread.start()
        try:
            self._ready.wait()
        except BaseException:  # Ctrl-C while it starts: it stops as soon as it has started
            self.__exit__()
            raise
        if self._failure is not None:
            self._thread.join()
            raise ConfigError(
                f"the embedded PostgreSQL of {self.data_dir} did not start: {self._failure} "
                f"(see {self.data_dir / 'logs' / 'postgres.log'})"
            )
        return self.port

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        self._thread.join()


@contextlib.contextmanager
def reach_dev_postgres(data_dir: Path, command: str) -> Iterator[int]:
    """The port of the data dir's PostgreSQL for as long as the block runs: the running
    `aiaas dev`'s, or one started here (holding the data dir) when it is stopped."""
    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        try:
            with hold_data_dir(data_dir, command):
                forget_running_postgres(data_dir)  # left by an `aiaas dev` that was killed
                with _PostgresForCommand(data_dir) as port:
                    yield port
                return
        except DataDirInUseError as holder:
            busy = holder
        state = _running_state(data_dir)
        # A state left by an `aiaas dev` that was killed names another pid than the holder's.
        if busy.command == DEV_COMMAND and state is not None and str(state["pid"]) == busy.pid:
            running_port = state.get("postgres_port")
            if not isinstance(running_port, int):
                raise ConfigError(
                    f"the running `aiaas dev` on {data_dir} uses a configured database, not its "
                    "own: point this command at it with AIAAS_DATABASE_URL instead of --data-dir"
                )
            yield running_port
            return
        if time.monotonic() > deadline:
            raise ConfigError(
                f"{data_dir} is in use by `{busy.command}` (pid {busy.pid}); "
                "try again once it is done"
            )
        time.sleep(BUSY_POLL_S)


@contextlib.contextmanager
def dev_instance_settings(
    data_dir: Path, command: str, *, database: bool = True
) -> Iterator[dict[str, Any]]:
    """The settings that point a command at the `aiaas dev` instance of `data_dir`, valid for
    as long as the block runs. Without `database`, only its master key and data dir."""
    check_dev_data_dir(data_dir)
    settings: dict[str, Any] = {"data_dir": data_dir, "master_key": dev_master_key(data_dir)}
    if not database:
        yield settings
        return
    with reach_dev_postgres(data_dir, command) as port:
        yield {**settings, **role_urls(data_dir, port)}
