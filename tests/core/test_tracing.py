"""Traces (`aiaas.core.tracing`): one trace from `submitTrainingJob` through the worker to the
model registration, exported to the SDK's in-memory exporter; and, with tracing off (the
default), nothing of OpenTelemetry loaded, installed or on the request path.

The request goes through the ASGI app, the job through a real arq worker in this process.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aiaas.app import create_app
from aiaas.core import tracing
from aiaas.core.config import Config, build_config
from aiaas.core.errors import ConfigError
from aiaas.core.hookspecs import hookimpl
from aiaas.core.identity.access import ProjectRole
from aiaas.core.jobs import TERMINAL_STATES, JobEvent, JobState, jobs_by_ids
from aiaas.core.log_records import JsonFormatter
from aiaas.core.platform import Platform
from aiaas.graphql.operation_spans import OperationSpans
from aiaas.graphql.relay import from_global_id, to_global_id
from aiaas.graphql.schema import schema_extensions
from serving_support import FAST, upload, wine_table
from support import data_of, graphql, new_team, poll_until
from sweep_support import running_worker

JOB_WAIT_S = 240
"""A bound on waiting for the job and its spans, so that a failing test ends."""

SUBMIT = """
mutation SubmitWineTraining($input: SubmitTrainingJobInput!) {
  submitTrainingJob(input: $input) {
    __typename
    ... on TrainingJobSuccess { job { id } }
  }
}
"""

ASYNCPG_SCOPE = "opentelemetry.instrumentation.asyncpg"
REDIS_SCOPE = "opentelemetry.instrumentation.redis"


class JobEventLogger:
    """Logs each job state change where it happens: in the worker, within the job's span."""

    def __init__(self) -> None:
        self.logger = logging.getLogger("tests.tracing")

    @hookimpl
    def aiaas_job_event(self, event: JobEvent) -> None:
        self.logger.info("job %s is %s", event.job_id, event.state.value)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The JSON log lines of `tests.tracing`, as `log_format = "json"` writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.tracing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.install_tracing(exporter, service_name="aiaas-test")
    try:
        yield exporter
    finally:
        tracing.uninstall_tracing()


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, (name, sorted(span.name for span in spans))
    return found[0]


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def _job_state(platform: Platform, job_id: uuid.UUID) -> JobState:
    async with platform.metadata.acquire() as connection:
        return (await jobs_by_ids(connection, [job_id]))[job_id].state


async def test_one_trace_runs_from_the_mutation_through_the_worker_to_the_registration(
    config: Config,
    platform: Platform,
    exporter: InMemorySpanExporter,
    json_lines: io.StringIO,
    tmp_path: Path,
) -> None:
    team = await new_team(platform, "tracing", (ProjectRole.DEVELOPER,))
    developer = team.members[ProjectRole.DEVELOPER]
    wine = await upload(
        platform, developer.principal, team.project_id, wine_table(), "wine", tmp_path
    )
    app = create_app(platform=platform)  # after install_tracing: with its middleware
    observer = JobEventLogger()
    platform.plugins.register(observer)
    exporter.clear()  # what the setup did is not the request's
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
            answer = data_of(
                await graphql(
                    client,
                    SUBMIT,
                    {
                        "input": {
                            "datasetVersion": str(to_global_id("DatasetVersion", wine.id)),
                            "trainer": "tabular-classifier",
                            "target": "cultivar",
                            "hyperparameters": FAST,
                        }
                    },
                    token=developer.token,
                )
            )["submitTrainingJob"]
        assert answer["__typename"] == "TrainingJobSuccess", answer
        job_id = from_global_id(answer["job"]["id"])[1]
        async with running_worker(config, platform):

            async def ended() -> bool:
                return await _job_state(platform, job_id) in TERMINAL_STATES

            assert await poll_until(ended, JOB_WAIT_S, 0.2) is not None, "the job did not end"

            async def job_span_ended() -> bool:  # just after the job's outcome is recorded
                return any(span.name == "run_job" for span in exporter.get_finished_spans())

            assert await poll_until(job_span_ended, JOB_WAIT_S, 0.05) is not None
    finally:
        platform.plugins.unregister(observer)
    assert await _job_state(platform, job_id) is JobState.SUCCEEDED

    spans = exporter.get_finished_spans()
    request = _by_name(spans, "POST /graphql")
    operation = _by_name(spans, "mutation SubmitWineTraining")
    job = _by_name(spans, "run_job")
    registration = _by_name(spans, "register model version")
    trace_id = request.context.trace_id
    assert {span.context.trace_id for span in (operation, job, registration)} == {trace_id}
    assert request.parent is None
    assert request.kind is trace.SpanKind.SERVER
    assert _parent_id(operation) == request.context.span_id
    assert operation.attributes is not None
    assert operation.attributes["graphql.operation.name"] == "SubmitWineTraining"
    assert operation.attributes["graphql.operation.type"] == "mutation"
    # The job's span continues the mutation's, across Redis, and the registration is within it.
    assert _parent_id(job) == operation.context.span_id
    assert job.parent is not None and job.parent.is_remote
    assert job.kind is trace.SpanKind.CONSUMER
    assert job.attributes is not None and job.attributes["aiaas.job_id"] == str(job_id)
    assert _parent_id(registration) == job.context.span_id
    # SQL and Redis, on both sides of the queue.
    in_trace = [span for span in spans if span.context.trace_id == trace_id]
    scopes = {(span.instrumentation_scope.name, _parent_id(span)) for span in in_trace}
    for side in (operation, job):
        assert (ASYNCPG_SCOPE, side.context.span_id) in scopes, side.name
    assert (REDIS_SCOPE, operation.context.span_id) in scopes  # the enqueueing
    assert any(scope == REDIS_SCOPE for scope, _ in scopes if _ is not None)
    assert (ASYNCPG_SCOPE, registration.context.span_id) in scopes
    # The worker's log lines, written within its span, carry the trace's id.
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    by_message = {line["message"]: line for line in lines}
    queued = by_message[f"job {job_id} is QUEUED"]  # in the API, as the mutation submits it
    succeeded = by_message[f"job {job_id} is SUCCEEDED"]  # in the worker
    assert queued["trace_id"] == succeeded["trace_id"] == format(trace_id, "032x")
    assert succeeded["job_id"] == str(job_id)


async def test_once_uninstalled_nothing_is_traced_and_no_provider_is_global(
    config: Config, platform: Platform, json_lines: io.StringIO
) -> None:
    exporter = InMemorySpanExporter()
    tracing.install_tracing(exporter)
    tracing.uninstall_tracing()

    app = create_app(platform=platform)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        status, body = await graphql(client, "query Health { health { status } }")
    await platform.redis.ping()
    logging.getLogger("tests.tracing").info("after a request")

    assert (status, body) == (200, {"data": {"health": {"status": "ok"}}})
    assert exporter.get_finished_spans() == ()
    assert not tracing.tracing_enabled()
    assert tracing.tracer_provider() is None
    # OpenTelemetry's global provider was never set: only the no-op proxy is there.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert not [each for each in app.user_middleware if each.cls is tracing.traced_asgi]
    assert OperationSpans not in schema_extensions(config)
    # The instrumentations are undone: the driver's methods are their own again.
    assert not hasattr(asyncpg.connection.Connection.execute, "__wrapped__")
    assert not hasattr(redis.asyncio.Redis.execute_command, "__wrapped__")
    assert "trace_id" not in json.loads(json_lines.getvalue().splitlines()[-1])


OFF_PROBE = """
import json, sys
from aiaas.app import create_app
from aiaas.core.config import build_config
from aiaas.workers.settings import worker_settings

config = build_config(json.loads(sys.argv[1]))
create_app(config)
worker_settings(config)
print(json.dumps(sorted(name for name in sys.modules if name.startswith("opentelemetry"))))
"""


def test_off_by_default_no_opentelemetry_module_is_even_imported(config: Config) -> None:
    settings = {
        "database_url": str(config.database_url),
        "redis_url": str(config.redis_url),
        "data_dir": str(config.data_dir),
        "disable_plugin_autoload": True,
    }
    assert config.otel_endpoint is None

    probe = subprocess.run(
        [sys.executable, "-c", OFF_PROBE, json.dumps(settings)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout.splitlines()[-1]) == []


def test_tracing_configured_without_the_extra_is_a_clear_config_error(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    traced = config.model_copy(update={"otel_endpoint": "http://127.0.0.1:4318"})
    # As if the `tracing` extra were not installed: importing the exporter fails.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)

    with pytest.raises(ConfigError, match=r"pip install 'aiaas\[tracing\]'"):
        tracing.configure_tracing(traced)

    assert not tracing.tracing_enabled()


def test_the_endpoint_must_be_an_http_url() -> None:
    with pytest.raises(ConfigError, match="otel_endpoint"):
        build_config({"otel_endpoint": "otel-collector:4318"})

    assert build_config({"otel_endpoint": "https://otel.example:4318"}).otel_endpoint
