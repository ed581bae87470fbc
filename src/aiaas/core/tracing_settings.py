"""The trace settings, a base of `Config` (docs/configuration.md; docs/guides/operations.md#traces).

They live apart from config.py to keep that module readable; `Config` inherits them, through
`ObservabilitySettings` with the log and metrics settings, so they are plain top-level keys
(`otel_endpoint`, `AIAAS_OTEL_ENDPOINT`) like every other setting.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from aiaas.core.logging_settings import LoggingSettings
from aiaas.core.metrics_settings import MetricsSettings


class TracingSettings(BaseModel):
    """Where OpenTelemetry traces go; unset, nothing is traced and nothing of it is loaded."""

    otel_endpoint: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="Base URL of an OpenTelemetry collector's OTLP/HTTP receiver "
        "(`http://otel-collector:4318`); spans are posted to its `/v1/traces`. Unset, nothing "
        "is traced. Set, it needs the `tracing` extra (`pip install 'aiaas[tracing]'`).",
    )
    otel_service_name: str = Field(
        "aiaas",
        min_length=1,
        description="The `service.name` that this process's spans carry.",
    )
    otel_sample_ratio: float = Field(
        1.0,
        ge=0,
        le=1,
        description="The share of new traces recorded, from 0 to 1. A worker follows the "
        "decision of the request that enqueued its job, so a trace is kept whole or not at all.",
    )


class ObservabilitySettings(LoggingSettings, MetricsSettings, TracingSettings):
    """Logs, metrics and traces: one base of `Config`, so that config.py names one class."""
