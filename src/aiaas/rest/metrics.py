"""`GET /metrics`: this process's serving series in the Prometheus exposition format.

Each process exposes its own requests, latencies, batches and queues (Prometheus scrapes every
replica). Drift is computed by a worker job and stored in PostgreSQL, so every process exposes
the latest reports as gauges, read from the database at most once per `DRIFT_REFRESH_S`.

The series name every project, deployment and version, which is other tenants' business: a
scrape needs the platform grant `metrics:read`, held by admins and by the platform role
`metrics-reader` (docs/monitoring.md).

Beside the serving series it exposes the API's own (`core.api_metrics`: GraphQL operations, HTTP
requests) and the job series (`core.job_metrics`), which are read from PostgreSQL, so that every
replica shows the same figures: read them with `max`, not `sum`, across replicas.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, cast

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aiaas.core.api_metrics import API_METRICS, checked_readiness
from aiaas.core.auth import GLOBAL_DOMAIN
from aiaas.core.errors import PermissionDeniedError
from aiaas.core.job_metrics import JOB_METRICS
from aiaas.core.platform import Platform
from aiaas.core.serving import INFERENCE_SERVER, latest_drift_gauges
from aiaas.request_limits import authenticated
from aiaas.rest.errors import error_response

DRIFT_REFRESH_S = 15.0
READ_GRANT = ("metrics", "read")


class _AllOf:
    """The families of several collectors (registries among them) as one exposition."""

    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


async def metrics(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    # Authenticated here too, not only by `RequirePrincipal`: an operator listing `/metrics`
    # in `public_paths` must not make it public.
    principal = await authenticated(platform, request.scope)
    if isinstance(principal, Response):
        return principal
    try:
        # Before anything else: a refused caller costs no drift query and sees no series.
        await platform.authorize(principal, GLOBAL_DOMAIN, *READ_GRANT)
    except PermissionDeniedError as exc:
        return error_response(exc)
    server = platform.service(INFERENCE_SERVER)
    refreshed_at: float = getattr(request.app.state, "drift_refreshed_at", 0.0)
    if time.monotonic() - refreshed_at >= DRIFT_REFRESH_S:
        request.app.state.drift_refreshed_at = time.monotonic()
        server.metrics.replace_drift(await latest_drift_gauges(platform))
    await checked_readiness(platform)  # `aiaas_ready` as of this scrape, not the last probe
    job_metrics = platform.service(JOB_METRICS)
    await job_metrics.refresh()  # collectors are synchronous: the awaited read happens here
    encode, content_type = choose_encoder(request.headers.get("accept") or "")
    every = _AllOf(server.metrics.registry, platform.service(API_METRICS).registry, job_metrics)
    return Response(encode(cast(CollectorRegistry, every)), media_type=content_type)


ROUTES = [Route("/metrics", metrics, methods=["GET"])]
