"""`GET /metrics`: this process's serving series in the Prometheus exposition format.

Each process exposes its own requests, latencies, batches and queues (Prometheus scrapes every
replica). Drift is computed by a worker job and stored in PostgreSQL, so every process exposes
the latest reports as gauges, read from the database at most once per `DRIFT_REFRESH_S`.

The series name every project, deployment and version, which is other tenants' business: a
scrape needs the platform grant `metrics:read`, held by admins and by the platform role
`metrics-reader` (docs/monitoring.md).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aiaas.core.auth import GLOBAL_DOMAIN
from aiaas.core.errors import PermissionDeniedError
from aiaas.core.platform import Platform
from aiaas.core.serving import INFERENCE_SERVER, latest_drift_gauges
from aiaas.request_limits import authenticated
from aiaas.rest.errors import error_response

DRIFT_REFRESH_S = 15.0
READ_GRANT = ("metrics", "read")


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
    body, content_type = server.metrics.render(request.headers.get("accept"))
    return Response(body, media_type=content_type)


ROUTES = [Route("/metrics", metrics, methods=["GET"])]
