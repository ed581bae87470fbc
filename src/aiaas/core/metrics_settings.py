"""The settings of the platform's Prometheus series, a base of `Config` (docs/configuration.md).

They live apart from config.py to keep that module readable; `Config` inherits them, so they are
plain top-level keys (`metrics_refresh_s`, `AIAAS_METRICS_REFRESH_S`) like every other setting.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class MetricsSettings(BaseModel):
    """How `/metrics` reads the job series from PostgreSQL, and bounds its label values."""

    metrics_refresh_s: float = Field(
        15.0,
        ge=0,
        le=300,
        description="The job series of `/metrics` (counts by state, queue depth and age, "
        "durations) are read from PostgreSQL at most once per this many seconds per process, "
        "so that scrapes cannot load the database; `0` reads at every scrape.",
    )
    metrics_graphql_operations_max: int = Field(
        200,
        ge=1,
        le=10_000,
        description="Distinct GraphQL operation names `/metrics` labels its request series "
        "with; later names are counted as `other`, so callers cannot grow the series forever.",
    )
