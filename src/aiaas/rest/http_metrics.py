"""Every HTTP request counted and timed for `/metrics`, by route template and status class.

It sits just inside `RequestIdMiddleware`, so that it also sees what the middlewares beneath it
answer themselves (a 401 without credentials, a 413 for a body too large). An exception that
escapes is counted as the 500 that `RequestIdMiddleware` answers it with, unless the response
had started (its own status counts) or the client left mid-body (499). WebSockets are not
HTTP requests here: their operations are counted by the GraphQL series.
"""

from __future__ import annotations

import time

from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiaas.core.api_metrics import API_METRICS, UNMATCHED_ROUTE
from aiaas.core.platform import Platform


def route_template(scope: Scope) -> str:
    """The template of the route the request matched (`/v2/models/{name}/infer`), never its
    path, which holds whatever the caller put there."""
    route = scope.get("route")  # set by Starlette's router when the request reached it
    if route is None:  # answered above the router: find the route it would have reached
        for candidate in getattr(scope.get("app"), "routes", ()):
            if candidate.matches(scope)[0] is Match.FULL:
                route = candidate
                break
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except ClientDisconnect:
            # The caller left before sending its whole body: nothing is answered, and it is no
            # failure of the server's. 499, as ClientGoneError and proxies count it.
            status = 499
            raise
        finally:
            # Looked up each time: a platform stopped and started again makes a new one.
            self.platform.service(API_METRICS).observe_http(
                route_template(scope), scope["method"], status, time.perf_counter() - started
            )
