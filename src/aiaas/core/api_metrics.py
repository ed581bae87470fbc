"""Prometheus series of the API of one process: GraphQL operations, HTTP requests, and its
readiness (`aiaas_ready`, one gauge per check of `Platform.readiness()`, kept from the latest
/readyz probe or scrape, so that an alert can name the dependency a process lacks).

Like `ServingMetrics`, `ApiMetrics` owns a private `CollectorRegistry`: two apps in one process
(every test) would otherwise double-register one set of series.

Label values come from callers, so each is bounded here:

- a GraphQL operation is labelled with its name only if the name is a GraphQL name of at most
  `OPERATION_NAME_MAX_CHARS` characters, and only while fewer than
  `metrics_graphql_operations_max` names have been seen; an anonymous operation is
  `anonymous`, and every other name `other`. A request refused before it ran (no valid
  credentials, an invalid document) never adds a name: anyone can send those, and they must
  not crowd out the operations of the platform's own clients;
- an HTTP request is labelled with the route template that matched it (`/v2/models/{name}/infer`),
  never its path, or `unmatched`, and with its status class (`2xx` .. `5xx`).

The outcome of a GraphQL operation is what happened to it, not its HTTP status, which is 200 for
nearly everything: see `GraphQLOutcome`. An expected failure given as a result union
(`InvalidInputResult`) is an answer, so `ok`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aiaas.core.platform import Platform, ProcessService

GraphQLOutcome = Literal[
    "ok",  # no error in the result
    "invalid",  # refused before it ran: a document, operation or variables that do not fit
    "unauthenticated",  # no valid credentials (AuthenticationError)
    "forbidden",  # denied by the policy (PermissionDeniedError)
    "failed",  # another expected error raised by a field: not found, conflict, bad input
    "unavailable",  # a service it needs was not usable (ServiceUnavailableError): a 503
    "error",  # an unexpected error, masked in production: a 500
]
OperationType = Literal["query", "mutation", "subscription", "unknown"]

ANONYMOUS = "anonymous"
OTHER = "other"
OPERATION_NAME_MAX_CHARS = 64
_GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
_REFUSED_OUTCOMES = frozenset({"invalid", "unauthenticated"})
UNMATCHED_ROUTE = "unmatched"

LATENCY_BUCKETS_SECONDS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


def status_class(status: int) -> str:
    """`2xx` for 204; statuses outside 100..599 are `other`."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class OperationNames:
    """The operation names this process labels series with: the first `limit` seen."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._known: set[str] = set()
        self._lock = threading.Lock()  # a sync schema may run operations in threads

    def label(self, name: str | None, outcome: GraphQLOutcome) -> str:
        if not name:
            return ANONYMOUS
        if name in self._known:
            return name
        if (
            outcome in _REFUSED_OUTCOMES
            or len(name) > OPERATION_NAME_MAX_CHARS
            or not _GRAPHQL_NAME.fullmatch(name)
            or name in (ANONYMOUS, OTHER)  # a name must not pass for one of these
        ):
            return OTHER
        with self._lock:
            if len(self._known) >= self.limit:
                return OTHER
            self._known.add(name)
        return name


class ApiMetrics:
    """The API series of one server process, in a registry of their own."""

    def __init__(self, operation_names_max: int) -> None:
        self.registry = registry = CollectorRegistry()
        self.operation_names = OperationNames(operation_names_max)
        operation = ("operation", "type")
        self._operations = Counter(
            "aiaas_graphql_requests_total",
            "GraphQL operations by name, type and outcome (ok, invalid, unauthenticated, "
            "forbidden, failed, unavailable, error).",
            (*operation, "outcome"), registry=registry,
        )  # fmt: skip
        self._operation_duration = Histogram(
            "aiaas_graphql_request_duration_seconds",
            "From parsing a GraphQL query or mutation to its result, by name and type.",
            operation, buckets=LATENCY_BUCKETS_SECONDS, registry=registry,
        )  # fmt: skip
        http = ("route", "method")
        self._http_requests = Counter(
            "aiaas_http_requests_total",
            "HTTP requests by route template, method and status class (2xx .. 5xx).",
            (*http, "status_class"), registry=registry,
        )  # fmt: skip
        self._http_duration = Histogram(
            "aiaas_http_request_duration_seconds",
            "From receiving an HTTP request to the end of its answer, by route template.",
            http, buckets=LATENCY_BUCKETS_SECONDS, registry=registry,
        )  # fmt: skip
        self._http_series: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self._ready = Gauge(
            "aiaas_ready",
            "1 while the dependency a readiness check names (database, schema, redis) is usable, "
            "0 while not; refreshed by every /readyz probe and every scrape.",
            ("check",), registry=registry,
        )  # fmt: skip

    def observe_operation(
        self,
        name: str | None,
        operation_type: OperationType,
        outcome: GraphQLOutcome,
        duration_s: float | None,
    ) -> None:
        """Count one GraphQL operation; `duration_s` is None for a subscription, which lasts
        as long as its socket and would only blur the latency of the others."""
        label = self.operation_names.label(name, outcome)
        self._operations.labels(label, operation_type, outcome).inc()
        if duration_s is not None:
            self._operation_duration.labels(label, operation_type).observe(duration_s)

    def observe_http(self, route: str, method: str, status: int, duration_s: float) -> None:
        method = method if method in _METHODS else "other"
        key = (route, method, status_class(status))
        series = self._http_series.get(key)
        if series is None:
            # `labels()` checks and converts the values and takes a lock on every call, a large
            # part of what a request costs outside the model: each series is looked up once.
            # Routes are templates and methods and classes few, so the dictionary stays small.
            series = self._http_requests.labels(*key), self._http_duration.labels(route, method)
            self._http_series[key] = series
        series[0].inc()
        series[1].observe(duration_s)

    def observe_readiness(self, checks: Mapping[str, str]) -> None:
        for check, result in checks.items():
            self._ready.labels(check).set(1 if result == "ok" else 0)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

API_METRICS: ProcessService[ApiMetrics] = ProcessService(
    "API metrics",
    lambda platform: ApiMetrics(platform.config.metrics_graphql_operations_max),
)
"""This process's API series: `platform.service(API_METRICS)`."""


async def checked_readiness(platform: Platform) -> dict[str, str]:
    """`platform.readiness()`, its results also kept as this process's `aiaas_ready` series."""
    checks = await platform.readiness()
    platform.service(API_METRICS).observe_readiness(checks)
    return checks
