"""OpenTelemetry traces: off unless `otel_endpoint` is set, and then loaded, installed, used.

Off (the default), no OpenTelemetry module is imported by this one, no provider or middleware
exists, and each helper here costs one module-global test: `span` yields at once, and
`trace_carrier` is None, so a job's arq payload stays what it was before tracing existed.

On, `configure_tracing` builds an SDK tracer provider that exports over OTLP/HTTP, and
instruments asyncpg and redis. The provider stays this module's own rather than becoming
OpenTelemetry's global one, which can be set only once per process: the instrumentations, the
ASGI middleware (`traced_asgi`) and the GraphQL extension are given it explicitly, and
`install_tracing` / `uninstall_tracing` let a test trace into an exporter of its own.

A job's trace context rides in its arq payload as a W3C `traceparent` (`trace_carrier` on the
enqueue side, `continued_trace` in the worker), so one trace runs from the request that
submitted a job through the worker that runs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiaas.core.errors import ConfigError

if TYPE_CHECKING:
    from aiaas.core.config import Config

TRACER_NAME = "aiaas"
UNTRACED_PATHS = r"/healthz$,/readyz$,/metrics$"
"""Probes and scrapes: a span each would bury the requests worth reading."""


@dataclass(frozen=True)
class _Tracing:
    provider: Any  # opentelemetry.sdk.trace.TracerProvider
    tracer: Any  # opentelemetry.trace.Tracer
    instrumentors: tuple[Any, ...]


_installed: _Tracing | None = None


def tracing_enabled() -> bool:
    return _installed is not None


def tracer_provider() -> Any:
    """The provider that spans go to; None while tracing is off."""
    return _installed.provider if _installed is not None else None


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"otel_endpoint is set, but OpenTelemetry is not installed ({exc.name} is missing): "
            "install the tracing extra, `pip install 'aiaas[tracing]'`, or unset otel_endpoint"
        ) from exc


def configure_tracing(config: Config) -> None:
    """Trace this process to `config.otel_endpoint`, once; nothing when it is unset. Raises
    ConfigError when it is set but the `tracing` extra is not installed."""
    if config.otel_endpoint is None or _installed is not None:
        return
    otlp = _import("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    exporter = otlp.OTLPSpanExporter(endpoint=f"{config.otel_endpoint.rstrip('/')}/v1/traces")
    install_tracing(
        exporter,
        service_name=config.otel_service_name,
        sample_ratio=config.otel_sample_ratio,
        batched=True,
    )


def install_tracing(
    exporter: Any, *, service_name: str = "aiaas", sample_ratio: float = 1.0, batched: bool = False
) -> None:
    """Trace into `exporter` (a `SpanExporter`). `configure_tracing` calls it with the OTLP
    exporter, batched; a test calls it with an in-memory one, unbatched, so that each span is
    exported as it ends. Replaces what an earlier call installed."""
    uninstall_tracing()
    sdk = _import("opentelemetry.sdk.trace")
    export = _import("opentelemetry.sdk.trace.export")
    sampling = _import("opentelemetry.sdk.trace.sampling")
    resources = _import("opentelemetry.sdk.resources")
    asyncpg = _import("opentelemetry.instrumentation.asyncpg")
    redis = _import("opentelemetry.instrumentation.redis")
    provider = sdk.TracerProvider(
        resource=resources.Resource.create({"service.name": service_name}),
        # A worker follows the decision carried in its job's traceparent.
        sampler=sampling.ParentBased(sampling.TraceIdRatioBased(sample_ratio)),
    )
    processor = export.BatchSpanProcessor if batched else export.SimpleSpanProcessor
    provider.add_span_processor(processor(exporter))
    instrumentors = (asyncpg.AsyncPGInstrumentor(), redis.RedisInstrumentor())
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)
    global _installed  # noqa: PLW0603 -- the process's one tracing setup
    _installed = _Tracing(provider, provider.get_tracer(TRACER_NAME), instrumentors)


def uninstall_tracing() -> None:
    """Export what is pending, undo the instrumentations, and trace no more."""
    global _installed
    installed, _installed = _installed, None
    if installed is None:
        return
    for instrumentor in installed.instrumentors:
        instrumentor.uninstrument()
    installed.provider.shutdown()


@contextmanager
def span(name: str, attributes: Mapping[str, str] | None = None) -> Iterator[None]:
    """A span around the block, a child of the current one; nothing while tracing is off."""
    if _installed is None:
        yield
        return
    with _installed.tracer.start_as_current_span(name, attributes=attributes):
        yield


def trace_carrier() -> dict[str, str] | None:
    """The current trace context as W3C headers (`traceparent`), for a job's payload; None
    while tracing is off or outside any span."""
    if _installed is None:
        return None
    propagate = importlib.import_module("opentelemetry.propagate")
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


@contextmanager
def continued_trace(
    carrier: Mapping[str, str] | None, name: str, attributes: Mapping[str, str] | None = None
) -> Iterator[None]:
    """A consumer span around the block, continuing the trace that `carrier` names (a new one
    without it); nothing while tracing is off."""
    if _installed is None:
        yield
        return
    propagate = importlib.import_module("opentelemetry.propagate")
    trace = importlib.import_module("opentelemetry.trace")
    parent = propagate.extract(dict(carrier or {}))
    with _installed.tracer.start_as_current_span(
        name, context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ):
        yield


def traced_asgi(app: Any) -> Any:
    """`app` behind OpenTelemetry's ASGI middleware: a server span per HTTP request or
    WebSocket, continuing a caller's `traceparent`. Only for when tracing is on."""
    if _installed is None:
        raise RuntimeError("tracing is off: leave the ASGI app as it is")
    asgi = importlib.import_module("opentelemetry.instrumentation.asgi")
    return asgi.OpenTelemetryMiddleware(
        app,
        excluded_urls=UNTRACED_PATHS,
        tracer_provider=_installed.provider,
        # A span per message received or sent would outnumber the ones worth reading.
        exclude_spans=["receive", "send"],
    )
