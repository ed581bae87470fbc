"""`aiaas dev` as a user runs it: a real process tree on embedded PostgreSQL and Redis."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev_support import (
    PRINTED_TOKEN,
    READY,
    STOP_LIMIT_S,
    DevProcess,
    ask,
    assert_all_gone,
    dev_processes_cleaned_up,
    start,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def dev_processes() -> Iterator[list[DevProcess]]:
    yield from dev_processes_cleaned_up()


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
