"""`aiaas dev` heals: a child killed with SIGKILL (worker, API, Redis, PostgreSQL) is restarted
and the platform answers again; a training job whose worker was killed finishes with one metric
row per step; a child that keeps dying makes `aiaas dev` give up, stop everything and exit 1."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import psutil
import pyarrow.parquet as pq
import pytest

from aiaas.embedded.healing import ChildProcess, RestartLedger, RestartLimitError, backoff_s
from aiaas.graphql.relay import from_global_id
from dev_support import (
    PRINTED_TOKEN,
    READY,
    DevProcess,
    ask,
    assert_all_gone,
    dev_processes_cleaned_up,
    start,
)
from serving_support import wine_table

pytestmark = pytest.mark.slow

BACK_WITHIN_S = 90.0
"""How long the platform may take to answer again after a kill (a bound, not a measurement)."""

# Claims that go stale in seconds, and frequent checkpoints, so that a killed worker's job is
# resumed quickly and from a late step.
QUICK_RESUME = {
    "AIAAS_JOB_HEARTBEAT_INTERVAL_S": "0.5",
    "AIAAS_JOB_STALE_AFTER_S": "3",
    "AIAAS_CHECKPOINT_EVERY_STEPS": "10",
}

# Which direct child of the supervisor each one is, from its command line.
CHILDREN: dict[str, Callable[[list[str]], bool]] = {
    "api": lambda cmdline: cmdline[2:4] == ["aiaas", "serve"],
    "worker": lambda cmdline: cmdline[2:4] == ["aiaas", "worker"],
    # Redis rewrites its command line ("redis-server 127.0.0.1:port").
    "redis": lambda cmdline: "redis-server" in " ".join(cmdline),
    "postgres": lambda cmdline: cmdline[:1] != [] and cmdline[0].endswith("/postgres"),
}


@dataclass
class RunningDev:
    dev: DevProcess
    data_dir: Path
    base_url: str
    token: str

    def child(self, name: str) -> psutil.Process:
        matches = [
            child
            for child in psutil.Process(self.dev.process.pid).children()
            if CHILDREN[name](child.cmdline())
        ]
        assert len(matches) == 1, (name, [c.cmdline() for c in matches])
        return matches[0]

    def kill(self, name: str) -> int:
        """SIGKILL one child; its pid."""
        child = self.child(name)
        child.kill()
        child.wait(10)
        return child.pid

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        response = httpx.post(
            f"{self.base_url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def answers(self) -> bool:
        """An authenticated query succeeds: the API, PostgreSQL and the token check all work."""
        try:
            response = ask(self.base_url, "{ viewer { username } }", self.token)
        except httpx.HTTPError:
            return False
        answered: bool = response.json() == {"data": {"viewer": {"username": "admin"}}}
        return answered

    def database_url(self) -> str:
        # The embedded server's port is on the fourth line of its lock file; it keeps it
        # across restarts.
        lock = (self.data_dir / "postgres" / "postmaster.pid").read_text().splitlines()
        password = quote((self.data_dir / "postgres.password").read_text().strip(), safe="")
        return f"postgresql://aiaas:{password}@127.0.0.1:{lock[3].strip()}/aiaas"

    def sql(self, query: str, *arguments: Any) -> list[asyncpg.Record]:
        async def fetch() -> list[asyncpg.Record]:
            connection = await asyncpg.connect(self.database_url())
            try:
                return list(await connection.fetch(query, *arguments))
            finally:
                await connection.close()

        return asyncio.run(fetch())


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.1)


def launch(dev_processes: list[DevProcess], data_dir: Path, **variables: str) -> RunningDev:
    dev = start(dev_processes, data_dir, **{**QUICK_RESUME, **variables})
    base_url = dev.wait_for(READY).group(1)
    token = dev.wait_for(PRINTED_TOKEN).group(1)
    return RunningDev(dev, data_dir, base_url, token)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory outside pytest's temporary root, which a pytest session starting meanwhile
    resets to 0700: PostgreSQL, run as its own user under root, must pass through it."""
    with tempfile.TemporaryDirectory(prefix="aiaas-healing-") as directory:
        yield Path(directory)


@pytest.fixture(scope="module")
def running() -> Iterator[RunningDev]:
    with (
        tempfile.TemporaryDirectory(prefix="aiaas-healing-") as directory,
        contextlib.contextmanager(dev_processes_cleaned_up)() as dev_processes,
    ):
        running = launch(dev_processes, Path(directory) / "data")
        yield running
        # After all the healing, Ctrl-C still stops everything cleanly.
        assert running.dev.stop(signal.SIGINT)[0] == 0


@pytest.fixture
def dev_processes() -> Iterator[list[DevProcess]]:
    yield from dev_processes_cleaned_up()


# A training job across a worker's death ------------------------------------------------------


def submit_training_job(running: RunningDev, epochs: int) -> uuid.UUID:
    created = running.graphql(
        'mutation { createProject(input: {slug: "healing", name: "Healing"}) { __typename } }'
    )
    assert created["createProject"]["__typename"] == "CreateProjectSuccess", created
    parquet = io.BytesIO()
    pq.write_table(wine_table(), parquet)
    uploaded = httpx.post(
        f"{running.base_url}/v1/projects/healing/datasets/wine/versions?format=parquet",
        content=parquet.getvalue(),
        headers={"authorization": f"Bearer {running.token}"},
        timeout=30,
    )
    assert uploaded.status_code == 201, uploaded.text
    # The upload answers the global id that GraphQL takes as it is.
    version = uploaded.json()["version"]["id"]
    submitted = running.graphql(
        """mutation($input: SubmitTrainingJobInput!) {
          submitTrainingJob(input: $input) {
            __typename ... on TrainingJobSuccess { job { id } }
          }
        }""",
        {
            "input": {
                "datasetVersion": version,
                "trainer": "tabular-classifier",
                "target": "cultivar",
                # Every epoch runs (no early stopping): the tests kill processes mid-run.
                "hyperparameters": {
                    "epochs": epochs,
                    "batch_size": 8,
                    "hidden_size": 16,
                    "patience": 0,
                },
            }
        },
    )["submitTrainingJob"]
    assert submitted["__typename"] == "TrainingJobSuccess", submitted
    return from_global_id(submitted["job"]["id"])[1]


def last_step(running: RunningDev, job_id: uuid.UUID) -> int:
    rows = running.sql("SELECT max(step) AS last FROM metric_points WHERE job_id = $1", job_id)
    return int(rows[0]["last"] or 0)


def job_state(running: RunningDev, job_id: uuid.UUID) -> asyncpg.Record:
    return running.sql("SELECT state, attempt, reason FROM jobs WHERE id = $1", job_id)[0]


def test_a_killed_worker_is_restarted_and_its_training_job_finishes_with_one_row_per_step(
    running: RunningDev,
) -> None:
    job_id = submit_training_job(running, epochs=50)
    wait_until(lambda: last_step(running, job_id) >= 30, 120, "the job passed step 30")
    killed = running.kill("worker")
    assert job_state(running, job_id)["state"] == "RUNNING"

    running.dev.wait_for(re.compile(r"worker restarted \(pid \d+\)"), timeout=BACK_WITHIN_S)
    wait_until(lambda: job_state(running, job_id)["attempt"] >= 2, 60, "the job was resumed")
    wait_until(lambda: job_state(running, job_id)["state"] != "RUNNING", 240, "the job finished")
    finished = job_state(running, job_id)
    rows = running.sql(
        "SELECT key, count(*) AS n, count(DISTINCT step) AS distinct_steps, "
        "min(step) AS first, max(step) AS last FROM metric_points WHERE job_id = $1 "
        "GROUP BY key",
        job_id,
    )

    assert running.child("worker").pid != killed
    assert finished["state"] == "SUCCEEDED", finished["reason"]
    # `loss` at every step, with no gap; no key (the epochs' too) twice at a step.
    loss = next(row for row in rows if row["key"] == "loss")
    assert loss["n"] == loss["last"] - loss["first"] + 1, dict(loss)
    for row in rows:
        assert row["n"] == row["distinct_steps"], dict(row)


def test_ctrl_c_hands_a_running_training_job_back_and_the_next_run_resumes_it_at_once(
    dev_processes: list[DevProcess], scratch: Path
) -> None:
    # Claims go stale only after ten minutes: the next run can resume the job at once only if
    # the stopping worker handed it back.
    patient = {"AIAAS_JOB_STALE_AFTER_S": "600"}
    first = launch(dev_processes, scratch / "data", **patient)
    job_id = submit_training_job(first, epochs=50)
    wait_until(lambda: last_step(first, job_id) >= 30, 120, "the job passed step 30")
    status, _ = first.dev.stop(signal.SIGINT)
    first_output = first.dev.finish()

    again = start(dev_processes, scratch / "data", **{**QUICK_RESUME, **patient})
    second = RunningDev(again, first.data_dir, again.wait_for(READY).group(1), first.token)
    wait_until(lambda: job_state(second, job_id)["attempt"] >= 2, 60, "the job was resumed")
    wait_until(lambda: job_state(second, job_id)["state"] != "RUNNING", 240, "the job finished")
    finished = job_state(second, job_id)
    rows = second.sql(
        "SELECT key, count(*) AS n, count(DISTINCT step) AS distinct_steps, "
        "min(step) AS first, max(step) AS last FROM metric_points WHERE job_id = $1 "
        "GROUP BY key",
        job_id,
    )
    assert second.dev.stop(signal.SIGINT)[0] == 0

    assert status == 0
    assert "Traceback" not in first_output
    assert "can not serialize" not in first_output
    assert f"job {job_id} (training): QUEUED, as its worker stops" in first_output
    assert finished["state"] == "SUCCEEDED", finished["reason"]
    assert finished["attempt"] == 2
    loss = next(row for row in rows if row["key"] == "loss")
    assert loss["n"] == loss["last"] - loss["first"] + 1, dict(loss)
    for row in rows:
        assert row["n"] == row["distinct_steps"], dict(row)


# Each child ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["api", "redis", "postgres"])
def test_a_killed_child_is_restarted_and_the_platform_answers_again(
    running: RunningDev, name: str
) -> None:
    assert running.answers()
    killed = running.kill(name)

    restarted = running.dev.wait_for(
        re.compile(rf"{name} restarted \(pid (\d+)\)"), timeout=BACK_WITHIN_S
    )
    if name in ("redis", "postgres"):
        # Its dependants are restarted after it, onto the service's new process.
        running.dev.wait_for(re.compile(rf"api restarted after {name}"), timeout=BACK_WITHIN_S)
        running.dev.wait_for(re.compile(rf"worker restarted after {name}"), timeout=BACK_WITHIN_S)
    wait_until(running.answers, BACK_WITHIN_S, "an authenticated query succeeded")

    log = "".join(running.dev.output)
    assert f"{name} (pid {killed}) exited unexpectedly (killed by SIGKILL)" in log
    assert int(restarted.group(1)) == running.child(name).pid != killed


# Giving up ----------------------------------------------------------------------------------


def test_a_child_that_keeps_dying_makes_dev_give_up_and_stop_everything(
    scratch: Path, dev_processes: list[DevProcess]
) -> None:
    running = launch(dev_processes, scratch / "data")
    children = running.dev.descendants()
    # Redis refuses to start when its log file cannot be opened: every restart fails.
    log_file = scratch / "data" / "logs" / "redis.log"
    log_file.rename(log_file.with_suffix(".old"))
    log_file.mkdir()
    running.kill("redis")

    status = running.dev.process.wait(timeout=120)
    output = running.dev.finish()

    assert status == 1
    assert "restarting redis in" in output
    assert re.search(
        r"redis keeps dying: restarted \d+ times within \d+ s and it needs restarting again; "
        r"giving up and stopping aiaas\. Its output: .*redis\.log",
        output,
    ), output
    assert_all_gone(children)


# The restart policy, on its own ------------------------------------------------------------


def test_the_backoff_doubles_from_half_a_second_up_to_its_cap() -> None:
    assert [backoff_s(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_the_ledger_gives_up_past_the_limit_and_forgets_restarts_older_than_the_window() -> None:
    now = [0.0]
    ledger = RestartLedger(limit=2, window_s=10.0, clock=lambda: now[0])
    worker = ChildProcess("worker", ["true"], {})

    first, second = ledger.admit(worker), ledger.admit(worker)
    with pytest.raises(
        RestartLimitError, match="worker keeps dying: restarted 2 times within 10 s"
    ):
        ledger.admit(worker)
    now[0] = 10.5
    after_the_window = ledger.admit(worker)

    assert (first, second, after_the_window) == (1, 2, 1)
    assert ledger.admit(ChildProcess("api", ["true"], {})) == 1
