"""Child processes of `aiaas dev`: how they are started, watched and stopped.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only the supervisor, which
then stops the children in order (API and worker before the databases they use). Each child also
asks the kernel to signal it if the supervisor dies without cleaning up, so that no child outlives
a `kill -9` of the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import pwd
import signal
import socket
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _parent_death_signal(signum: int) -> Callable[[], None]:
    libc_name = ctypes.util.find_library("c")

    def set_signal() -> None:
        if libc_name is not None:
            ctypes.CDLL(libc_name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)

    return set_signal


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    stop_signal: int

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self, timeout: float) -> None:
        """Ask the child to stop; kill it if it has not within `timeout` seconds."""
        if self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(self.stop_signal)
        try:
            async with asyncio.timeout(timeout):
                await self.process.wait()
        except TimeoutError:
            logger.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


def sweep_process_group(child: Child) -> None:
    """Kill whatever is left of a dead child's process group (each child leads its own session).
    Called as soon as its death is seen, while the group id cannot have been reused."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)


async def spawn(
    name: str,
    command: Sequence[str],
    *,
    stop_signal: int = signal.SIGTERM,
    env: dict[str, str] | None = None,
    as_service_user: bool = False,
    pass_fds: Sequence[int] = (),
    log_path: Path | None = None,
) -> Child:
    output: Any = None
    if log_path is not None:
        output = open_private_log(log_path)
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            **(service_user_credentials() if as_service_user else {}),
            pass_fds=tuple(pass_fds),
            start_new_session=True,
            preexec_fn=_parent_death_signal(stop_signal),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
        )
    finally:
        if output is not None:
            output.close()
    logger.debug("started %s (pid %d)", name, process.pid)
    return Child(name=name, process=process, stop_signal=stop_signal)


def open_private_log(path: Path) -> Any:
    """`path` for appending, 0600 (made so, or made so again if an older release left it
    readable): the logs in the data dir are its owner's alone."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(descriptor, 0o600)
    return os.fdopen(descriptor, "ab")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_for_port(host: str, port: int, child: Child, timeout: float) -> None:
    """Wait until something accepts connections on the port, or the child exits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if child.process.returncode is not None:
            raise RuntimeError(f"{child.name} exited with status {child.process.returncode}")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise TimeoutError(f"{child.name} did not listen on {host}:{port} within {timeout:.0f} s")


# Running as root ---------------------------------------------------------------------------
# PostgreSQL refuses to run as root. When `aiaas dev` runs as root (containers, CI), PostgreSQL
# runs as a dedicated system user that owns its data directory.

SERVICE_USER = "aiaas-postgres"


def running_as_root() -> bool:
    return os.geteuid() == 0


def ensure_service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "/usr/sbin/useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)


def service_user_credentials() -> dict[str, Any]:
    """`subprocess` arguments that run a command as the service user, with its own group and no
    other: keeping root's group would make group permissions, not the user's, apply to files in
    root-owned directories."""
    entry = ensure_service_user()
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def grant_traversal(path: Path) -> None:
    """Let other users pass through each directory above `path` (search only, never listing),
    so that the service user can reach its own directory inside a root-owned tree."""
    for directory in path.resolve().parents:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            logger.info("allowing other users to traverse %s for %s", directory, SERVICE_USER)
            directory.chmod(mode | stat.S_IXOTH)
