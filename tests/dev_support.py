"""`aiaas dev` run as a user runs it, for the tests of tests/e2e: its output read line by line,
its process tree, and the body of a fixture that leaves nothing running."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from support import clean_environment

READY = re.compile(r"aiaas is ready: (http://\S+)/graphql")
PRINTED_TOKEN = re.compile(r"admin token: (aiaas_\S+)")
STOP_LIMIT_S = 10.0


class DevProcess:
    """`aiaas dev` in the background, with its output read line by line as it comes."""

    def __init__(self, data_dir: Path, port: int = 0, **variables: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aiaas",
                "dev",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
            ],
            env=clean_environment(**variables),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.output.append(line)
            if match := pattern.search(line):
                return match
        pytest.fail(f"{pattern.pattern!r} never appeared:\n{''.join(self.output)}")

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(signum)
        status = self.process.wait(timeout=STOP_LIMIT_S + 5)
        return status, time.monotonic() - started

    def finish(self) -> str:
        """All the output, once the process has exited."""
        while (line := self.lines.get(timeout=5)) is not None:
            self.output.append(line)
        return "".join(self.output)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        """Once nothing writes to its output any more (its children share it): stop reading."""
        self.reader.join(timeout=STOP_LIMIT_S)
        if self.process.stdout is not None and not self.reader.is_alive():
            self.process.stdout.close()


def dev_processes_cleaned_up() -> Iterator[list[DevProcess]]:
    """The body of each module's `dev_processes` fixture: the runs a test starts, each killed
    with whatever it left running at the end."""
    started: list[DevProcess] = []
    try:
        yield started
    finally:
        for dev in started:
            children = dev.descendants() if dev.process.poll() is None else []
            dev.kill()
            for child in children:
                if child.is_running():
                    child.kill()
            dev.close()


def start(
    dev_processes: list[DevProcess], data_dir: Path, port: int = 0, **variables: str
) -> DevProcess:
    """`aiaas dev` on `data_dir`, with `variables` (AIAAS_* settings) in its environment."""
    dev = DevProcess(data_dir, port, **variables)
    dev_processes.append(dev)
    return dev


def ask(base_url: str, query: str, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{base_url}/graphql", json={"query": query}, headers=headers, timeout=10)


def assert_all_gone(processes: list[psutil.Process], within: float = STOP_LIMIT_S) -> None:
    _, alive = psutil.wait_procs(processes, timeout=within)
    assert alive == [], f"still running: {[p.pid for p in alive]}"
