"""The production commands as real processes: `aiaas db`, `aiaas serve`, `aiaas worker`."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.constants import result_key_prefix

from aiaas import migrations
from aiaas.core.config import Config
from aiaas.core.governance.crypto import MasterKey
from aiaas.core.jobs import TERMINAL_STATES, JobState, enqueue_job, get_job, insert_job
from aiaas.core.platform import Platform
from support import (
    Services,
    clean_environment,
    create_database_from_template,
    drop_database,
    with_database,
)

pytestmark = pytest.mark.slow

AIAAS = [sys.executable, "-m", "aiaas"]
# Production refuses to start without a master key; these tests are about other refusals.
MASTER_KEY = MasterKey.generate().encoded()


def run_cli(
    *arguments: str, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AIAAS, *arguments], env=env, capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def empty_database(services: Services) -> AsyncIterator[str]:
    """A database with no aiaas schema at all."""
    name = await create_database_from_template(services, "template1", "test_cli_empty")
    yield with_database(services.server_url, name)
    await drop_database(services, name)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts connections and never answers: a hung server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_db_upgrade_and_current_on_an_empty_database(empty_database: str) -> None:
    env = clean_environment(AIAAS_MASTER_KEY=MASTER_KEY, AIAAS_DATABASE_URL=empty_database)

    before = run_cli("db", "current", env=env)
    upgraded = run_cli("db", "upgrade", env=env)
    after = run_cli("db", "current", env=env)
    again = run_cli("db", "upgrade", env=env)

    head = migrations.head_revision()
    assert before.returncode == 0
    assert before.stdout.startswith("none (outdated")
    assert "aiaas db upgrade" in before.stdout
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == f"upgraded from an empty database to {head}"
    assert after.stdout.strip() == f"{head} (up to date)"
    assert again.stdout.strip() == f"already at the latest revision {head}"


def test_serve_refuses_an_outdated_schema_naming_the_fix(
    empty_database: str, redis_url: str
) -> None:
    result = run_cli(
        "serve",
        "--port",
        str(free_port()),
        env=clean_environment(
            AIAAS_MASTER_KEY=MASTER_KEY,
            AIAAS_DATABASE_URL=empty_database,
            AIAAS_REDIS_URL=redis_url,
        ),
    )

    assert result.returncode == 1
    assert "aiaas db upgrade" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_without_service_urls_says_what_to_set() -> None:
    result = run_cli("serve", env=clean_environment())

    assert result.returncode == 2
    assert "AIAAS_DATABASE_URL" in result.stderr
    assert "aiaas dev" in result.stderr


@pytest.mark.parametrize("hung", [False, True], ids=["refused", "hung"])
def test_serve_with_an_unreachable_database_fails_instead_of_hanging(
    redis_url: str, silent_listener: int, hung: bool
) -> None:
    port = silent_listener if hung else free_port()
    env = clean_environment(
        AIAAS_MASTER_KEY=MASTER_KEY,
        AIAAS_DATABASE_URL=f"postgresql://aiaas:secret-password@127.0.0.1:{port}/aiaas",
        AIAAS_REDIS_URL=redis_url,
    )

    # A hung server must not hang the CLI: run_cli's timeout fails the test if it waits.
    result = run_cli("serve", "--port", str(free_port()), env=env, timeout=20)

    assert result.returncode == 1
    assert "cannot connect to PostgreSQL" in result.stderr
    assert "secret-password" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("hung", [False, True], ids=["refused", "hung"])
def test_worker_with_an_unreachable_redis_fails_instead_of_hanging(
    database_url: str, silent_listener: int, hung: bool
) -> None:
    port = silent_listener if hung else free_port()
    env = clean_environment(
        AIAAS_MASTER_KEY=MASTER_KEY,
        AIAAS_DATABASE_URL=database_url,
        AIAAS_REDIS_URL=f"redis://127.0.0.1:{port}/0",
    )

    # A hung server must not hang the CLI: run_cli's timeout fails the test if it waits.
    result = run_cli("worker", env=env, timeout=20)

    assert result.returncode == 1
    assert "cannot connect to Redis" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_port_in_use_is_refused_clearly(cli_environment: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), env=cli_environment)

    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr


@pytest.fixture
def server(cli_environment: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    process = subprocess.Popen(
        [*AIAAS, "serve", "--port", str(port)],
        env=cli_environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process, f"http://127.0.0.1:{port}"
    if process.poll() is None:
        process.kill()
        process.wait()


async def wait_until_ready(base_url: str, process: subprocess.Popen[str]) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        for _ in range(300):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    pytest.fail("the server was not ready within 15 s")


async def test_serve_answers_graphql_over_real_http_and_stops_on_sigterm(
    server: tuple[subprocess.Popen[str], str], admin_token: str
) -> None:
    process, base_url = server
    await wait_until_ready(base_url, process)

    async with httpx.AsyncClient(base_url=base_url) as client:
        anonymous = await client.post("/graphql", json={"query": "{ viewer { username } }"})
        viewer = await client.post(
            "/graphql",
            json={"query": "{ viewer { username } health { status } }"},
            headers={"authorization": f"Bearer {admin_token}"},
        )
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, log = process.communicate(timeout=10)

    assert anonymous.status_code == 401
    assert viewer.json() == {"data": {"viewer": {"username": "admin"}, "health": {"status": "ok"}}}
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why.
    assert "Application shutdown complete" in log
    assert process.returncode in (0, -signal.SIGTERM)
    assert time.monotonic() - started < 10


def test_serve_refuses_an_unknown_role(cli_environment: dict[str, str]) -> None:
    result = run_cli("serve", "--role", "everything", env=cli_environment)

    assert result.returncode == 2
    assert "'all', 'api', 'inference'" in result.stderr


async def test_serve_with_the_inference_role_answers_inference_routes_only(
    cli_environment: dict[str, str], admin_token: str
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*AIAAS, "serve", "--port", str(port), "--role", "inference"],
        env=cli_environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        await wait_until_ready(base_url, process)
        async with httpx.AsyncClient(base_url=base_url) as client:
            graphql = await client.post("/graphql", json={"query": "{ health { status } }"})
            live = await client.get("/v2/health/live")
            anonymous_metrics = await client.get("/metrics")
            metrics = await client.get(
                "/metrics", headers={"authorization": f"Bearer {admin_token}"}
            )
            server_metadata = await client.get("/v2")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)

    assert graphql.status_code == 404, "an inference replica serves no GraphQL"
    assert (live.status_code, live.json()) == (200, {"live": True})
    assert anonymous_metrics.status_code == 401, "the series name every project"
    assert metrics.status_code == 200
    assert server_metadata.status_code == 401, "V2 metadata needs a token like any route"


async def test_worker_process_runs_queued_jobs(
    cli_environment: dict[str, str],
    platform: Platform,
    config: Config,
    admin_token: str,
    tmp_path: Path,
) -> None:
    from aiaas.core.identity.accounts import verify_token
    from aiaas.core.identity.projects import create_project

    async with platform.metadata.acquire() as connection:
        admin = await verify_token(connection, admin_token, "test")
    project = await create_project(platform, admin, slug="cli-jobs", name="CLI jobs")
    async with platform.metadata.transaction() as connection:
        job = await insert_job(
            connection, project_id=project.id, kind="not-a-kind", payload={}, created_by=None
        )
    await enqueue_job(platform, job.id)
    env = dict(cli_environment, AIAAS_QUEUE_NAME=config.queue_name)
    log_path = tmp_path / "worker.log"
    with (
        log_path.open("w") as log,
        subprocess.Popen([*AIAAS, "worker"], env=env, stderr=log) as worker,
    ):
        try:
            finished: Any = None
            for _ in range(400):
                async with platform.metadata.acquire() as connection:
                    finished = await get_job(connection, job.id)
                # Stop only once arq has recorded the run too, not in the middle of it.
                recorded = await platform.redis.exists(result_key_prefix + str(job.id))
                if finished is not None and finished.state in TERMINAL_STATES and recorded:
                    break
                await asyncio.sleep(0.05)
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
    output = log_path.read_text()

    # No handler is registered for that kind: the real worker claimed it and said so.
    assert finished is not None
    assert finished.state is JobState.FAILED, output
    assert "not-a-kind" in finished.reason
    assert worker.returncode == 0, output


ABSL_CHATTER = """
from aiaas.cli.common import configure_logging
from aiaas.core.config import load_config
configure_logging(load_config())
from absl import logging
logging.info("absl chatter")
logging.warning("absl warning")
"""


@pytest.mark.parametrize(
    ("level", "chatter_heard"), [("info", False), ("warning", False), ("debug", True)]
)
def test_the_processes_hear_absl_at_warning_unless_debugging(
    level: str, chatter_heard: bool
) -> None:
    """flax imports absl, whose INFO lines (Orbax's 25 a checkpoint) drowned a worker's log."""
    run = subprocess.run(
        [sys.executable, "-c", ABSL_CHATTER],
        env=clean_environment(AIAAS_LOG_LEVEL=level),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 0, run.stderr
    assert ("absl chatter" in run.stderr) is chatter_heard
    assert "absl warning" in run.stderr
