"""`aiaas dev` as a user runs it: a real process tree on embedded PostgreSQL and Redis."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import stat
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

pytestmark = pytest.mark.slow

READY = re.compile(r"aiaas is ready: (http://\S+)/graphql")
PRINTED_TOKEN = re.compile(r"admin token: (aiaas_\S+)")
STOP_LIMIT_S = 10.0


class DevProcess:
    """`aiaas dev` in the background, with its output read line by line as it comes."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
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
            env=clean_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

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
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def dev_processes() -> Iterator[list[DevProcess]]:
    started: list[DevProcess] = []
    yield started
    for dev in started:
        children = dev.descendants() if dev.process.poll() is None else []
        dev.kill()
        for child in children:
            if child.is_running():
                child.kill()


def start(dev_processes: list[DevProcess], data_dir: Path, port: int = 0) -> DevProcess:
    dev = DevProcess(data_dir, port)
    dev_processes.append(dev)
    return dev


def ask(base_url: str, query: str, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{base_url}/graphql", json={"query": query}, headers=headers, timeout=10)


def assert_all_gone(processes: list[psutil.Process], within: float = STOP_LIMIT_S) -> None:
    _, alive = psutil.wait_procs(processes, timeout=within)
    assert alive == [], f"still running: {[p.pid for p in alive]}"


def test_fresh_start_serves_prints_a_token_and_stops_everything_on_ctrl_c(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    data_dir = tmp_path / "data"
    dev = start(dev_processes, data_dir)

    base_url = dev.wait_for(READY).group(1)
    token = dev.wait_for(PRINTED_TOKEN).group(1)
    token_file = data_dir / "admin-token"
    health = ask(base_url, "{ health { status } }")
    viewer = ask(base_url, "{ viewer { username isAdmin } }", token)
    created = ask(
        base_url,
        'mutation { createProject(input: {slug: "kept", name: "Kept"}) { __typename } }',
        token,
    )
    children = dev.descendants()
    names = " ".join(" ".join(child.cmdline()) for child in children)
    status, took = dev.stop(signal.SIGINT)

    assert health.json() == {"data": {"health": {"status": "ok"}}}
    assert viewer.json() == {"data": {"viewer": {"username": "admin", "isAdmin": True}}}
    assert created.json()["data"]["createProject"]["__typename"] == "CreateProjectSuccess"
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "postgres" in names
    assert "redis-server" in names
    assert "aiaas serve" in names
    assert "aiaas worker" in names
    assert status == 0
    assert took < STOP_LIMIT_S
    assert_all_gone(children, within=1)


def test_a_second_run_reuses_the_data_and_sigterm_stops_it(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    data_dir = tmp_path / "data"
    first = start(dev_processes, data_dir)
    base_url = first.wait_for(READY).group(1)
    token = first.wait_for(PRINTED_TOKEN).group(1)
    ask(
        base_url,
        'mutation { createProject(input: {slug: "kept", name: "Kept"}) { __typename } }',
        token,
    )
    assert first.stop()[0] == 0

    second = start(dev_processes, data_dir)
    base_url = second.wait_for(READY).group(1)
    note = second.wait_for(re.compile(r"admin token: .*"))
    project = ask(base_url, '{ project(slug: "kept") { name } }', token)
    children = second.descendants()
    status, took = second.stop(signal.SIGTERM)

    assert note.group(0).strip() == f"admin token: in {data_dir / 'admin-token'}"
    assert project.json() == {"data": {"project": {"name": "Kept"}}}
    assert status == 0
    assert took < STOP_LIMIT_S
    assert_all_gone(children, within=1)


def test_a_second_dev_on_the_same_data_dir_is_refused_and_the_first_keeps_running(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    data_dir = tmp_path / "data"
    first = start(dev_processes, data_dir)
    base_url = first.wait_for(READY).group(1)

    second = start(dev_processes, data_dir)
    second_status = second.process.wait(timeout=30)
    second_output = second.finish()
    still_healthy = ask(base_url, "{ health { status } }")
    first.stop()

    assert second_status == 1
    assert f"aiaas dev is already running on {data_dir}" in second_output
    assert f"pid {first.process.pid}" in second_output
    assert still_healthy.json() == {"data": {"health": {"status": "ok"}}}


def test_a_port_in_use_is_refused_before_anything_is_created(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    data_dir = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        dev = start(dev_processes, data_dir, port)
        status = dev.process.wait(timeout=30)

    assert status == 1
    assert f"port {port} on 127.0.0.1 is already in use" in dev.finish()
    assert not data_dir.exists()


def test_children_do_not_outlive_a_killed_supervisor(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    dev = start(dev_processes, tmp_path / "data")
    dev.wait_for(READY)
    children = dev.descendants()

    os.kill(dev.process.pid, signal.SIGKILL)
    dev.process.wait()

    # The kernel signals each child when its parent dies; they then stop on their own.
    assert_all_gone(children)
