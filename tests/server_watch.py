"""A real server's memory and files, watched while a request runs: its RSS (sampled, and its
kernel high-water mark), the temp files it holds open, and the bytes it writes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from aiaas.core.config import Config
from support import (
    AIAAS_COMMAND,
    RunningServer,
    running_server,
    server_environment,
    wait_until_ready,
)


@dataclass
class Server:
    running: RunningServer
    temp_dir: Path
    data_dir: Path

    @property
    def process(self) -> psutil.Process:
        return psutil.Process(self.running.process.pid)

    def files_left(self) -> list[Path]:
        return [path for root in (self.temp_dir, self.data_dir / "scratch") for path in walk(root)]

    def temp_descriptors(self) -> list[str]:
        """What the server's open file descriptors point at under its temp and data dirs; an
        unlinked spool file shows here as `<path> (deleted)` while it is held open."""
        found = []
        fd_dir = Path(f"/proc/{self.running.process.pid}/fd")
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if target.startswith((str(self.temp_dir), str(self.data_dir / "scratch"))):
                found.append(target)
        return found


def walk(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


class Watch:
    """Samples the server's RSS and open temp files in a thread while a request runs. The peak
    RSS also comes from the kernel's high-water mark (VmHWM), reset before the request, so that
    a peak between two samples is not missed."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.process = server.process
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self.temp_descriptors: set[str] = set()
        self.write_chars_before = self.process.io_counters().write_chars
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._hwm_reset = self._reset_high_water_mark()

    def _reset_high_water_mark(self) -> bool:
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def _high_water_mark(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.temp_descriptors.update(self.server.temp_descriptors())
            self._stop.wait(0.002)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._hwm_reset:
            self.peak = max(self.peak, self._high_water_mark())
        self.written = self.process.io_counters().write_chars - self.write_chars_before

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@contextlib.asynccontextmanager
async def watched_server(
    config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """An `aiaas serve` on the config's database, with temp and data dirs of its own to watch."""
    temp_dir = tmp_path_factory.mktemp("server-tmp")
    data_dir = tmp_path_factory.mktemp("server-data")
    environment = server_environment(config, TMPDIR=str(temp_dir), AIAAS_DATA_DIR=str(data_dir))
    with running_server(environment, tmp_path_factory.mktemp("server") / "serve.log") as running:
        await wait_until_ready(running)
        yield Server(running=running, temp_dir=temp_dir, data_dir=data_dir)


@contextlib.asynccontextmanager
async def served_with_worker(
    config: Config, tmp_path_factory: pytest.TempPathFactory, name: str
) -> AsyncIterator[Server]:
    """`aiaas serve` and one `aiaas worker` on the module's database and queue, with a temp dir
    and a data dir of their own, so that what the server keeps can be listed."""
    temp_dir = tmp_path_factory.mktemp(f"{name}-tmp")
    data_dir = tmp_path_factory.mktemp(f"{name}-data")
    logs = tmp_path_factory.mktemp(f"{name}-logs")
    environment = server_environment(
        config,
        TMPDIR=str(temp_dir),
        AIAAS_DATA_DIR=str(data_dir),
        AIAAS_QUEUE_NAME=config.queue_name,
    )
    with (logs / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [*AIAAS_COMMAND, "worker"], env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        with running_server(environment, logs / "serve.log") as running:
            await wait_until_ready(running, timeout_s=60)
            yield Server(running=running, temp_dir=temp_dir, data_dir=data_dir)
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
