"""Operator commands against a real `aiaas dev` data dir (`--data-dir`): while it runs, through
its own PostgreSQL, and after it stopped, with the embedded PostgreSQL started for the command
alone; the data dir's roles, master key and artifacts; and refused alongside a configured
database."""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from aiaas.core.governance.crypto import MasterKey
from aiaas.embedded.dev_instance import LOCK_FILE, STATE_FILE, hold_data_dir
from dev_support import PRINTED_TOKEN, READY, DevProcess, ask, dev_processes_cleaned_up, start
from support import clean_environment

pytestmark = pytest.mark.slow

CREATE_PROJECT = 'mutation { createProject(input: {slug: "kept", name: "Kept"}) { __typename } }'


@pytest.fixture
def dev_processes() -> Iterator[list[DevProcess]]:
    yield from dev_processes_cleaned_up()


def aiaas(*arguments: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiaas", *arguments],
        env=clean_environment(**variables),
        capture_output=True,
        text=True,
        timeout=120,
    )


def postgres_servers_of(data_dir: Path) -> list[psutil.Process]:
    cluster = str(data_dir / "postgres")
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = process.info["cmdline"] or []
        if cluster in command and Path(command[0]).name == "postgres":
            found.append(process)
    return found


def test_backup_users_tokens_db_and_gc_reach_a_dev_instance_running_or_stopped(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    data_dir = tmp_path / "data"
    dev = start(dev_processes, data_dir)
    base_url = dev.wait_for(READY).group(1)
    token = dev.wait_for(PRINTED_TOKEN).group(1)
    created = ask(base_url, CREATE_PROJECT, token)
    uploaded = httpx.post(
        f"{base_url}/v1/projects/kept/datasets/cards/versions",
        content=b"id,amount\n1,12.50\n2,3.25\n",
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert created.json()["data"]["createProject"]["__typename"] == "CreateProjectSuccess"
    assert uploaded.status_code == 201, uploaded.text
    state_while_running = stat.S_IMODE((data_dir / STATE_FILE).stat().st_mode)

    archive = tmp_path / "dev.tar"
    made = aiaas("backup", "create", "--data-dir", str(data_dir), str(archive))
    running_verify = aiaas("backup", "verify", "--data-dir", str(data_dir), str(archive))
    still_healthy = ask(base_url, "{ health { status } }")
    status, _ = dev.stop(signal.SIGINT)

    assert made.returncode == 0, made.stderr
    assert re.search(r"wrote .*: \d+ tables, [1-9]\d* artifacts", made.stdout), made.stdout
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert running_verify.returncode == 0, running_verify.stderr
    key_id = MasterKey.parse((data_dir / "master.key").read_text().strip()).id
    assert f"its manifest is authentic (master key {key_id})" in running_verify.stdout
    assert still_healthy.json() == {"data": {"health": {"status": "ok"}}}
    assert status == 0
    assert state_while_running == 0o600
    assert not (data_dir / STATE_FILE).exists()

    # Stopped: each command starts the embedded PostgreSQL for itself, and stops it after.
    users = aiaas("users", "list", "--data-dir", str(data_dir))
    issued = aiaas("tokens", "create", "admin", "--name", "ops", "--data-dir", str(data_dir))
    tokens = aiaas("tokens", "list", "admin", "--data-dir", str(data_dir))
    revision = aiaas("db", "current", "--data-dir", str(data_dir))
    collected = aiaas("gc", "--data-dir", str(data_dir))
    stopped_verify = aiaas("backup", "verify", "--data-dir", str(data_dir), str(archive))
    keyless_verify = aiaas("backup", "verify", str(archive))

    for run in (users, issued, tokens, revision, collected, stopped_verify):
        assert run.returncode == 0, (run.args, run.stdout, run.stderr)
    assert users.stdout.startswith("admin  Administrator  [admin, since ")
    assert token[:18] in tokens.stdout
    assert issued.stdout.strip()[:18] in tokens.stdout
    assert "  ops  [api, expires never]" in tokens.stdout
    assert revision.stdout.strip().endswith("(up to date)")
    assert collected.stdout.startswith("deleted 0 artifact(s); kept 1 in use")
    assert "its manifest is authentic" in stopped_verify.stdout
    assert "its manifest's authenticity was not checked" in keyless_verify.stdout
    assert postgres_servers_of(data_dir) == []
    # The data dir is free again: the commands released its lock.
    with hold_data_dir(data_dir, "test"):
        pass


def test_a_stopped_instance_held_by_a_command_refuses_aiaas_dev_naming_the_command(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    with hold_data_dir(data_dir, "aiaas backup create"):
        dev = start(dev_processes, data_dir)
        status = dev.process.wait(timeout=30)
        holder = (data_dir / LOCK_FILE).read_text()

    assert status == 1
    assert f"{data_dir} is in use by `aiaas backup create`" in dev.finish()
    assert holder.endswith(" aiaas backup create")


@pytest.mark.parametrize(
    "variable", ["AIAAS_DATABASE_URL", "AIAAS_DATABASE_OWNER_URL"], ids=["app", "owner"]
)
def test_data_dir_with_a_configured_database_is_refused_naming_the_variable(
    tmp_path: Path, variable: str
) -> None:
    refused = aiaas(
        "gc", "--data-dir", str(tmp_path), **{variable: "postgresql://ops@db.example/aiaas"}
    )

    assert refused.returncode == 2
    assert refused.stderr.startswith("error: --data-dir reaches the dev instance's own")
    assert variable in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_directory_without_a_dev_instance_is_refused_saying_how_to_make_one(
    tmp_path: Path,
) -> None:
    refused = aiaas("users", "list", "--data-dir", str(tmp_path))

    assert refused.returncode == 2
    assert f"{tmp_path} holds no `aiaas dev` instance" in refused.stderr
    assert not (tmp_path / LOCK_FILE).exists()
