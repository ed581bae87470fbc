"""The ASGI application factory."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from aiaas.browser_sessions import CSRF_HEADER
from aiaas.core.api_metrics import checked_readiness
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, ServerRole, load_config
from aiaas.core.data.scratch_area import SCRATCH_AREA
from aiaas.core.errors import AiaasError
from aiaas.core.platform import Platform
from aiaas.core.serving.rollout import wake_rollouts
from aiaas.core.tracing import configure_tracing, traced_asgi, tracing_enabled
from aiaas.graphql import graphiql
from aiaas.graphql.view import GraphQLView
from aiaas.portal import Portal, PortalRoute, portal_answers
from aiaas.request_limits import GraphQLBodyLimit, authenticated
from aiaas.requests import GRAPHQL_PATH, RequestIdMiddleware
from aiaas.rest import browser_session, dataset_download, model_export, model_upload
from aiaas.rest import datasets as dataset_rest
from aiaas.rest import inference as inference_rest
from aiaas.rest import metrics as metrics_rest
from aiaas.rest.http_metrics import HttpMetricsMiddleware

logger = logging.getLogger(__name__)

GIL_SWITCH_INTERVAL_S = 0.0005


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    checks = await checked_readiness(platform)
    ready = all(result == "ok" for result in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


class RequirePrincipal:
    """Authenticated by default: every HTTP route but the public paths needs valid credentials.

    GraphQL is the one exception handled elsewhere: it authorizes each root field, because its
    `health` field is public while every other field is not. `/v1/session` checks its own
    cookie (signing in needs none), and the portal's pages and files, GETs of any path outside
    the API's that no other route answers, are public: they hold no data.
    """

    def __init__(self, app: ASGIApp, platform: Platform, portal: Portal | None = None) -> None:
        self.app = app
        self.platform = platform
        self.portal = portal
        self.public_paths = {
            *platform.config.public_paths,
            *inference_rest.PUBLIC_PATHS,
            GRAPHQL_PATH,
            *(graphiql.asset_paths() if platform.config.is_dev else ()),
            *(browser_session.PUBLIC_PATHS if portal is not None else ()),
        }

    def is_public(self, scope: Scope) -> bool:
        if scope["path"] in self.public_paths:
            return True
        # `serves` first: it is cheap, and false for every API request.
        return self.portal is not None and self.portal.serves(scope) and portal_answers(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_public(scope):
            await self.app(scope, receive, send)
            return
        caller = await authenticated(self.platform, scope)
        if isinstance(caller, JSONResponse):
            await caller(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(
    config: Config | None = None,
    *,
    platform: Platform | None = None,
    portal_dir: Path | None = None,
) -> Starlette:
    """Build the API. The platform connects in the app's lifespan, not here. `portal_dir`: the
    portal bundle to serve at `/`, the package's own by default."""
    if platform is None:
        platform = create_platform(config or load_config())
    config = platform.config
    configure_tracing(config)  # before the schema is built: it holds a span extension if on
    graphql = GraphQLView(platform)
    # The web portal comes with the API, not with a serving process.
    portal = Portal.load(portal_dir) if config.role is not ServerRole.INFERENCE else None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await platform.start()
        except AiaasError as exc:
            logger.error("aiaas cannot start: %s", exc.message)
            raise
        # A serving process rolls out waiting deployments from the start, not only once a
        # request reaches it.
        wake_rollouts(platform)
        # Uploads cut short by a stop left plaintext in scratch: swept now, not at next upload.
        platform.service(SCRATCH_AREA)
        # Everything imported so far (the web stack, numpy, pyarrow; JAX in a serving process)
        # lives as long as the process: out of the collector's sight, a full collection no
        # longer walks millions of objects that can never be garbage, a pause that showed as
        # the p99 of inference requests.
        gc.freeze()
        if config.role is not ServerRole.API:
            # A model's batch runs in a thread that needs the GIL between its numpy and XLA
            # calls; with the default 5 ms switch interval, an event loop busy with requests
            # kept it waiting that long at each hand-over, and a batch of 20 rows took 17 ms
            # instead of 4.
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        try:
            yield
        finally:
            await graphql.sessions.close()
            await platform.stop()

    routes: list[BaseRoute] = []
    if config.role is not ServerRole.API:
        # First: the router tries each route in turn, and predictions are most of the traffic.
        # No other route takes a path under /v2.
        routes += inference_rest.ROUTES
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *metrics_rest.ROUTES,
    ]
    if config.role is not ServerRole.INFERENCE:
        routes += [Route(GRAPHQL_PATH, graphql), WebSocketRoute(GRAPHQL_PATH, graphql)]
        if config.is_dev:
            # GraphiQL's scripts and styles, from the package; GraphiQL is served in dev only.
            routes += graphiql.asset_routes()
        routes += dataset_rest.ROUTES + dataset_download.ROUTES + model_export.ROUTES
        routes += model_upload.ROUTES + browser_session.ROUTES
    if portal is not None:
        routes.append(PortalRoute(portal))  # last: it answers what no other route does
    app = Starlette(
        routes=routes,
        middleware=[
            # Off, no tracing middleware exists; on, its span holds everything the request does.
            *([Middleware(traced_asgi)] if tracing_enabled() else []),
            # Outermost: every answer carries the request id, and every unexpected error is
            # logged, answered and audited with it.
            Middleware(RequestIdMiddleware, platform=platform),
            Middleware(HttpMetricsMiddleware, platform=platform),  # sees every answer
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type", "x-request-id", CSRF_HEADER],
                expose_headers=["x-request-id"],
            ),
            # Before anything reads a /graphql body: its size, and for an upload its caller.
            Middleware(GraphQLBodyLimit, platform=platform, path=GRAPHQL_PATH),
            Middleware(RequirePrincipal, platform=platform, portal=portal),
        ],
        lifespan=lifespan,
    )
    app.state.platform = platform
    return app
