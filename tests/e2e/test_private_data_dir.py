"""The data directory is its user's alone: after a real `aiaas dev` start that stores something,
no file or directory in it is open to group or others (the logs, the embedded services' data,
the keys, the artifacts, the scratch space), and the embedded PostgreSQL's cluster is 0700."""

from __future__ import annotations

import grp
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aiaas.embedded.processes import SERVICE_USER, running_as_root
from dev_support import PRINTED_TOKEN, READY, DevProcess, dev_processes_cleaned_up, start

pytestmark = pytest.mark.slow

CREATE_PROJECT = (
    'mutation { createProject(input: {slug: "private", name: "Private"}) { __typename } }'
)


@pytest.fixture
def dev_processes() -> Iterator[list[DevProcess]]:
    yield from dev_processes_cleaned_up()


@pytest.fixture
def dev(tmp_path: Path, dev_processes: list[DevProcess]) -> DevProcess:
    return start(dev_processes, tmp_path / "data")


def open_to_others(data_dir: Path) -> list[str]:
    """Every path under `data_dir` with any permission for group or others, and its mode."""
    found = []
    for root, directories, files in os.walk(data_dir):
        for name in [*directories, *files]:
            path = Path(root) / name
            try:
                mode = stat.S_IMODE(path.lstat().st_mode)
            except FileNotFoundError:
                continue  # a server's temporary file, gone meanwhile
            if mode & 0o077 and not path.is_symlink():
                found.append(f"{path.relative_to(data_dir)} {mode:o}")
    return found


def test_nothing_in_the_data_dir_is_open_to_other_users(tmp_path: Path, dev: DevProcess) -> None:
    data_dir = tmp_path / "data"
    base_url = dev.wait_for(READY).group(1)
    headers = {"authorization": f"Bearer {dev.wait_for(PRINTED_TOKEN).group(1)}"}
    created = httpx.post(
        f"{base_url}/graphql", json={"query": CREATE_PROJECT}, headers=headers, timeout=10
    )
    assert created.json()["data"]["createProject"]["__typename"] == "CreateProjectSuccess"
    uploaded = httpx.post(
        f"{base_url}/v1/projects/private/datasets/cards/versions",
        content=b"card_number,amount\n4111111111111111,12.50\n",
        headers=headers,
        timeout=30,
    )
    assert uploaded.status_code == 201, uploaded.text

    # While it runs, and after it stopped.
    running = open_to_others(data_dir)
    dev.process.send_signal(signal.SIGINT)
    assert dev.process.wait(timeout=30) == 0
    assert running == []
    assert open_to_others(data_dir) == []

    for made in ("logs/postgres.log", "logs/redis.log", "master.key", "admin-token", "artifacts"):
        assert (data_dir / made).exists(), made
    assert stat.S_IMODE((data_dir / "postgres").stat().st_mode) == 0o700
    data_dir_stat = data_dir.stat()
    if running_as_root():
        # PostgreSQL runs as its own user, which reaches its cluster as the data dir's group;
        # that group may only pass through.
        assert stat.S_IMODE(data_dir_stat.st_mode) == 0o710
        assert grp.getgrgid(data_dir_stat.st_gid).gr_name == SERVICE_USER
    else:
        assert stat.S_IMODE(data_dir_stat.st_mode) == 0o700
