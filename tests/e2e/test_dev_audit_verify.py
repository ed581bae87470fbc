"""`aiaas audit verify --data-dir` on a real `aiaas dev` instance, as the other operator commands
reach one: through its running PostgreSQL, and after it stopped, with the embedded PostgreSQL
started for the command alone. Without it, a dev instance's trail could not be verified at all:
its database URL and roles are the data dir's own."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev_support import PRINTED_TOKEN, READY, DevProcess, ask, dev_processes_cleaned_up, start
from support import clean_environment

pytestmark = pytest.mark.slow

CREATE_PROJECT = 'mutation { createProject(input: {slug: "audited", name: "A"}) { __typename } }'
VERIFIED = re.compile(r"the audit trail verifies: (\d+) event\(s\) in (\d+) chain\(s\)")


@pytest.fixture
def dev_processes() -> Iterator[list[DevProcess]]:
    yield from dev_processes_cleaned_up()


def verify(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiaas", "audit", "verify", "--heads", "--data-dir", str(data_dir)],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_audit_verify_reaches_a_dev_instance_running_or_stopped(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    data_dir = tmp_path / "data"
    dev = start(dev_processes, data_dir)
    base_url = dev.wait_for(READY).group(1)
    token = dev.wait_for(PRINTED_TOKEN).group(1)
    created = ask(base_url, CREATE_PROJECT, token)
    running = verify(data_dir)
    status, _ = dev.stop(signal.SIGINT)
    stopped = verify(data_dir)

    assert created.json()["data"]["createProject"]["__typename"] == "CreateProjectSuccess"
    assert status == 0
    for run in (running, stopped):
        assert run.returncode == 0, (run.stdout, run.stderr)
    verified = VERIFIED.search(running.stdout)
    assert verified, running.stdout
    # The platform's chain (the first admin) and the new project's (its creation), at least.
    assert int(verified.group(1)) >= 2 and int(verified.group(2)) >= 2
    assert "head platform " in running.stdout
    # Nothing was written in between: the stopped instance proves the same trail, to its heads.
    assert stopped.stdout == running.stdout
