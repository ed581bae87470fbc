"""GraphQL operations counted and timed for `/metrics`, by operation name, type and outcome.

An extension, not the HTTP view: it sees each operation's name (from the request, or from the
document's only operation), its type and the errors of its result, and it runs for operations
over WebSockets too. It is the innermost extension, so that it sees errors before production
masks them (`ProductionErrors`); a masked error (`INTERNAL`) would still count as `error`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType as StrawberryOperationType

from aiaas.core.api_metrics import API_METRICS, GraphQLOutcome, OperationType
from aiaas.core.errors import (
    AiaasError,
    AuthenticationError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from aiaas.graphql.error_audit import unexpected_cause
from graphql import GraphQLError

_SEVERITY: tuple[GraphQLOutcome, ...] = (
    "invalid", "failed", "forbidden", "unauthenticated", "unavailable", "error",
)  # fmt: skip
"""When a result holds several errors, the operation's outcome is the gravest of them."""

_EXPECTED: tuple[tuple[type[AiaasError], GraphQLOutcome], ...] = (
    (ServiceUnavailableError, "unavailable"),
    (AuthenticationError, "unauthenticated"),
    (PermissionDeniedError, "forbidden"),
    (AiaasError, "failed"),
)


def error_outcome(error: GraphQLError) -> GraphQLOutcome:
    if unexpected_cause(error) is not None or (error.extensions or {}).get("code") == "INTERNAL":
        return "error"
    cause: BaseException | None = error.original_error
    while isinstance(cause, GraphQLError):
        cause = cause.original_error
    for kind, outcome in _EXPECTED:
        if isinstance(cause, kind):
            return outcome
    return "invalid"  # GraphQL's own: syntax, validation, variables, limits


def result_outcome(errors: list[GraphQLError] | None) -> GraphQLOutcome:
    outcomes = {error_outcome(error) for error in errors or ()}
    return max(outcomes, key=_SEVERITY.index, default="ok")


def _operation_type(execution_context: Any) -> OperationType:
    try:
        kind = execution_context.operation_type
    except RuntimeError:  # no operation could be chosen from the document
        return "unknown"
    if isinstance(kind, StrawberryOperationType):
        return kind.value
    return "unknown"


class OperationMetrics(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        raised = True
        try:
            yield
            raised = False
        finally:
            self._observe(time.perf_counter() - started, raised=raised)

    def _observe(self, duration_s: float, *, raised: bool) -> None:
        context = self.execution_context
        platform = getattr(context.context, "platform", None)
        if platform is None:  # a schema executed outside the app, as some tests do
            return
        result = context.result
        errors = getattr(result, "errors", None) or context.pre_execution_errors
        # What escapes the operation (no operation to choose, a mutation over GET) is a refusal
        # of the request as sent: strawberry answers it with a 400.
        outcome: GraphQLOutcome = "invalid" if raised else result_outcome(errors)
        operation_type = _operation_type(context)
        platform.service(API_METRICS).observe_operation(
            context.operation_name,
            operation_type,
            outcome,
            None if operation_type == "subscription" else duration_s,
        )
