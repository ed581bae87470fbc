"""`GET /metrics`: this process's serving series in the Prometheus exposition format.

Each process exposes its own requests, latencies, batches and queues (Prometheus scrapes every
replica). Drift is computed by a worker job and stored in PostgreSQL, so every process exposes
the latest reports as gauges, read from the database at most once per `DRIFT_REFRESH_S`.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aiaas.core.platform import Platform
from aiaas.core.serving import INFERENCE_SERVER, latest_drift_gauges

DRIFT_REFRESH_S = 15.0


async def metrics(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    server = platform.service(INFERENCE_SERVER)
    refreshed_at: float = getattr(request.app.state, "drift_refreshed_at", 0.0)
    if time.monotonic() - refreshed_at >= DRIFT_REFRESH_S:
        request.app.state.drift_refreshed_at = time.monotonic()
        server.metrics.replace_drift(await latest_drift_gauges(platform))
    body, content_type = server.metrics.render(request.headers.get("accept"))
    return Response(body, media_type=content_type)


ROUTES = [Route("/metrics", metrics, methods=["GET"])]
