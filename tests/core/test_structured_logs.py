"""Structured logs: the JSON lines and their fields, the request and job context they carry
through a real server and a real worker, the text format as it always was, and no secret in
any line (docs/guides/operations.md#logs)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import secrets
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from arq.worker import Worker

from aiaas.core.auth import Principal
from aiaas.core.config import Config, build_config, config_environment
from aiaas.core.identity.accounts import BOOTSTRAP_ADMIN
from aiaas.core.identity.projects import create_project
from aiaas.core.jobs import Job, enqueue_job, insert_job
from aiaas.core.log_records import (
    configure_logging,
    detached_context,
    known_secrets,
    log_context,
    redact,
)
from aiaas.core.logging_settings import LogFormat
from aiaas.core.platform import Platform
from aiaas.workers.settings import worker_settings
from support import (
    AIAAS_COMMAND,
    RunningServer,
    poll_until,
    running_server,
    server_environment,
    wait_until_ready,
)

logger = logging.getLogger("aiaas.tests.structured_logs")


@contextlib.contextmanager
def json_logs(config: Config) -> Iterator[io.StringIO]:
    """Every logger at DEBUG, written as JSON to the stream yielded, with the configuration's
    secrets known to the redaction, as `aiaas serve` would run with this `config`."""
    stream = io.StringIO()
    loggers = [
        each
        for each in logging.root.manager.loggerDict.values()
        if isinstance(each, logging.Logger)
    ]
    saved = [(each, each.level, each.disabled) for each in loggers]
    root_level = logging.root.level
    debug = config.model_copy(update={"log_format": LogFormat.JSON, "log_level": "debug"})
    handler = configure_logging(debug, stream)
    for each in loggers:
        each.setLevel(logging.DEBUG)
        each.disabled = False
    try:
        yield stream
    finally:
        logging.root.removeHandler(handler)
        logging.root.setLevel(root_level)
        for each, level, disabled in saved:
            each.setLevel(level)
            each.disabled = disabled


def parsed(text: str) -> list[dict[str, Any]]:
    """Every line as its JSON object: a line that is not one fails the test."""
    lines = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


def test_a_json_line_is_one_flat_object_with_its_context_and_traceback(config: Config) -> None:
    with json_logs(config) as stream:
        logger.info("outside any request")
        with log_context(request_id="r-1", user="ada"), log_context(project="p-1"):
            logger.warning("two\nlines, %s", "formatted")
            try:
                raise ValueError("the cause")
            except ValueError:
                logger.exception("it failed")

    lines = [line for line in parsed(stream.getvalue()) if line["logger"] == logger.name]
    assert [line["message"] for line in lines] == [
        "outside any request",
        "two\nlines, formatted",
        "it failed",
    ]
    outside, warned, failed = lines
    assert set(outside) == {"timestamp", "level", "logger", "message", "process"}
    assert datetime.fromisoformat(outside["timestamp"]).utcoffset() == timedelta(0)
    assert (warned["level"], warned["request_id"], warned["user"]) == ("warning", "r-1", "ada")
    assert warned["project"] == "p-1"
    assert "exc_info" not in warned
    assert failed["level"] == "error"
    assert failed["exc_info"].startswith("Traceback (most recent call last):")
    assert failed["exc_info"].endswith("ValueError: the cause")
    for line in lines:
        # Flat: what a log store indexes as is, no nested objects.
        assert all(isinstance(value, str | int) for value in line.values()), line


async def test_a_task_a_request_starts_keeps_its_context_unless_it_outlives_it(
    config: Config,
) -> None:
    with json_logs(config) as stream, log_context(request_id="r-3", user="ada"):
        await asyncio.create_task(asyncio.to_thread(logger.info, "a part of the request"))
        # A batcher or listener that the request happens to start serves every later one.
        await asyncio.create_task(
            asyncio.to_thread(logger.info, "shared"), context=detached_context()
        )

    lines = {line["message"]: line for line in parsed(stream.getvalue())}
    assert lines["a part of the request"]["request_id"] == "r-3"
    assert "request_id" not in lines["shared"] and "user" not in lines["shared"]


def test_the_text_format_is_the_default_and_what_it_always_was(config: Config) -> None:
    assert config.log_format is LogFormat.TEXT
    stream = io.StringIO()
    handler = configure_logging(config, stream)
    try:
        with log_context(request_id="r-2"):
            logger.warning("hello %s", "world")
    finally:
        logging.root.removeHandler(handler)

    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING aiaas\.tests\.structured_logs: "
        r"hello world\n",
        stream.getvalue(),
    )


@pytest.fixture(scope="module")
async def project_id(platform: Platform, admin_token: str) -> uuid.UUID:
    async with platform.metadata.acquire() as connection:
        admin_id = await connection.fetchval(
            "SELECT id FROM users WHERE username = $1", BOOTSTRAP_ADMIN
        )
    admin = Principal(user_id=admin_id, username="admin", is_admin=True, authenticated_by="test")
    project = await create_project(platform, admin, slug="logs", name="Logs")
    return project.id


async def test_a_worker_job_logs_its_job_and_project_even_from_a_thread(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    async def handler(_: Platform, job: Job) -> None:
        logger.info("working")
        await asyncio.to_thread(logger.info, "working in a thread")
        raise RuntimeError("loss became NaN")

    async with platform.metadata.transaction() as connection:
        job = await insert_job(
            connection, project_id=project_id, kind="logged", payload={}, created_by=None
        )
    assert await enqueue_job(platform, job.id)
    settings = worker_settings(config, job_handlers={"logged": handler})
    settings["cron_jobs"] = []
    worker = Worker(**settings, burst=True, handle_signals=False)
    with json_logs(config) as stream:
        try:
            await asyncio.wait_for(worker.async_run(), timeout=30)
        finally:
            await worker.close()

    lines = parsed(stream.getvalue())
    about_the_job = [line for line in lines if line.get("job_id") == str(job.id)]
    messages = {line["message"]: line for line in about_the_job}
    assert {"working", "working in a thread"} <= set(messages)
    failed = messages[f"job {job.id} (logged) failed"]
    assert failed["logger"] == "aiaas.workers.jobs"
    assert failed["exc_info"].endswith("RuntimeError: loss became NaN")
    for line in (messages["working"], messages["working in a thread"], failed):
        assert line["project"] == str(project_id)
    # The worker's other lines (its start, its polling) belong to no job.
    assert any("job_id" not in line for line in lines)


# Through a real `aiaas serve` ------------------------------------------------------------------

S3_SECRET = "s3-" + secrets.token_urlsafe(24)


def prefix_of(token: str) -> str:
    return token[: len("aiaas_") + 12]


def secret_of(token: str) -> str:
    """What follows the prefix: the token's secret part (which may itself hold `_`)."""
    return token[len(prefix_of(token)) + 1 :]


def database_password(config: Config) -> str:
    """The password in the module's database URL (its application role has one)."""
    userinfo = str(config.database_url).partition("://")[2].rpartition("@")[0]
    password = userinfo.partition(":")[2]
    assert len(password) >= 6
    return password


@pytest.fixture(scope="module")
async def json_server(
    config: Config, admin_token: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    """`aiaas serve` logging JSON at DEBUG, with a master key, a database URL holding a
    password, and an S3 secret."""
    environment = server_environment(
        config,
        AIAAS_LOG_FORMAT="json",
        AIAAS_LOG_LEVEL="debug",
        AIAAS_S3_SECRET_ACCESS_KEY=S3_SECRET,
    )
    log_path = tmp_path_factory.mktemp("json-server") / "serve.log"
    with running_server(environment, log_path) as server:
        await wait_until_ready(server)
        yield server


async def post(
    client: httpx.AsyncClient, query: str, token: str | None, **variables: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )


async def logged_lines(server: RunningServer, until: str) -> list[dict[str, Any]]:
    """The server's log once a line holds `until` (lines are written as they happen)."""

    async def written() -> bool:
        return until in server.log()

    assert await poll_until(written, timeout_s=10) is not None, server.log()
    return parsed(server.log())


async def test_a_served_request_logs_its_request_id_and_user(
    json_server: RunningServer, admin_token: str
) -> None:
    async with httpx.AsyncClient(base_url=json_server.base_url) as client:
        response = await post(client, "{ viewer { __typename } }", admin_token)
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]

    lines = await logged_lines(json_server, request_id)

    (access,) = [line for line in lines if line.get("request_id") == request_id]
    assert access["logger"] == "uvicorn.access"
    assert access["user"] == BOOTSTRAP_ADMIN
    assert (access["http_method"], access["http_path"], access["http_status"]) == (
        "POST",
        "/graphql",
        200,
    )
    # uvicorn's own lines are JSON too.
    assert any(line["logger"].startswith("uvicorn.error") for line in lines)


async def test_no_token_password_or_key_reaches_a_log_line(
    json_server: RunningServer, admin_token: str, config: Config
) -> None:
    username = f"logged-{uuid.uuid4().hex[:8]}"
    password = "pw-" + secrets.token_urlsafe(16)
    wrong_password = "wrong-" + secrets.token_urlsafe(16)
    unknown_token = f"aiaas_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    garbage_token = "garbage-" + secrets.token_urlsafe(16)
    async with httpx.AsyncClient(base_url=json_server.base_url) as client:
        created = await post(
            client,
            "mutation($input: CreateUserInput!) { createUser(input: $input) { __typename } }",
            admin_token,
            input={"username": username, "password": password},
        )
        assert created.json()["data"]["createUser"]["__typename"] == "CreateUserSuccess"
        login = (
            "mutation($u: String!, $p: String!) { login(username: $u, password: $p) "
            "{ ... on LoginSuccess { token } __typename } }"
        )
        session = (await post(client, login, None, u=username, p=password)).json()
        session_token = session["data"]["login"]["token"]
        failed = await post(client, login, None, u=username, p=wrong_password)
        assert failed.json()["data"]["login"]["__typename"] == "LoginFailedError"
        issued = await post(
            client,
            'mutation { createApiToken(input: {name: "logs"}) '
            "{ ... on CreateApiTokenSuccess { token } } }",
            session_token,
        )
        api_token = issued.json()["data"]["createApiToken"]["token"]
        assert (await post(client, "{ viewer { __typename } }", api_token)).status_code == 200
        for refused in (unknown_token, garbage_token):
            assert (await post(client, "{ viewer { __typename } }", refused)).status_code == 401
        # Request data echoed in errors: a token where a number goes, secrets in a query string.
        echoed = await post(
            client, "query($n: Int!) { users(first: $n) { __typename } }", api_token, n=api_token
        )
        assert "errors" in echoed.json()
        await client.get(
            "/graphql",
            params={"query": "{ viewer { __typename } }", "token": api_token, "p": password},
            headers={"authorization": f"Bearer {api_token}"},
        )
        last = await client.get("/healthz", params={"password": password})
    request_id = last.headers["x-request-id"]

    lines = await logged_lines(json_server, request_id)
    text = "\n".join(json.dumps(line) for line in lines) + json_server.log()

    assert any(line["level"] == "debug" for line in lines), "DEBUG was on"
    assert sum(line["logger"] == "uvicorn.access" for line in lines) >= 9
    assert config.master_key
    for secret in (
        password,
        wrong_password,
        session_token,
        api_token,
        secret_of(api_token),
        secret_of(unknown_token),
        garbage_token,
        config.master_key,
        database_password(config),
        S3_SECRET,
    ):
        assert secret not in text


def test_the_redaction_blanks_configured_secrets_and_secret_shapes(config: Config) -> None:
    """Defence in depth, behind code that logs no secret: what a careless line would leak."""
    owner_password = "own/er?" + secrets.token_urlsafe(8)  # written percent-encoded in a URL
    encoded_password = quote(owner_password, safe="")
    risky = build_config(
        {
            "database_url": config.database_url,
            "database_owner_url": f"postgresql://owner:{encoded_password}@db.internal/aiaas",
            "master_key": config.master_key,
            "s3_secret_access_key": S3_SECRET,
        }
    )
    token = f"aiaas_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    assert {
        database_password(config),
        owner_password,
        encoded_password,
        S3_SECRET,
        config.master_key,
    } <= set(known_secrets(risky))

    with json_logs(risky) as stream:
        logger.debug("the configuration: %r", risky)
        logger.debug("a child's environment: %s", config_environment(risky))
        logger.info("header Authorization: Bearer %s, then %s", "opaque-credential", token)
        try:
            raise ConnectionError(f"could not reach {risky.database_owner_url}")
        except ConnectionError:
            logger.exception("start failed")

    text = stream.getvalue()
    assert len(parsed(text)) >= 4
    assert prefix_of(token) + "_***" in text  # the prefix names the token, harmlessly
    for secret in (
        database_password(config),
        owner_password,
        encoded_password,
        S3_SECRET,
        str(config.master_key),
        token,
        "opaque-credential",
    ):
        assert secret not in text
    assert redact("see https://u:p4ss@example.com/x?password=hunter2") == (
        "see https://u:***@example.com/x?password=***"
    )


async def test_an_aiaas_worker_process_logs_json(
    platform: Platform, config: Config, project_id: uuid.UUID, tmp_path: Path
) -> None:
    async with platform.metadata.transaction() as connection:
        job = await insert_job(
            connection, project_id=project_id, kind="not-a-kind", payload={}, created_by=None
        )
    assert await enqueue_job(platform, job.id)
    environment = server_environment(
        config, AIAAS_LOG_FORMAT="json", AIAAS_QUEUE_NAME=config.queue_name
    )
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen([*AIAAS_COMMAND, "worker"], env=environment, stderr=log)
    try:

        async def ran() -> bool:
            # arq's line for the job's end, which names the job by its id.
            written = log_path.read_text().rpartition("\n")[0]
            return any(f"{job.id}:run_job ●" in line["message"] for line in parsed(written))

        assert await poll_until(ran, timeout_s=60) is not None, log_path.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)

    lines = parsed(log_path.read_text())
    assert {line["logger"] for line in lines} >= {"arq.worker"}
    assert any(str(job.id) in line["message"] for line in lines)
