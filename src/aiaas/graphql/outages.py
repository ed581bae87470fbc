"""GraphQL operations that a lost service (PostgreSQL, Redis) cut short, answered as outages.

graphql-core turns whatever a resolver raises into an error in a 200 result; when the cause is a
service gone away (`aiaas.core.outages`), that would read as an internal error (masked to
`INTERNAL` in production) on a request that succeeded at HTTP level. `OutagesAnswered` replaces
each such error with the typed one (`DATABASE_UNAVAILABLE`, `REDIS_UNAVAILABLE`, with
`retryAfter` in its extensions) and answers the HTTP request with 503 and `Retry-After`, so that
a client, a load balancer and `/metrics` all see an outage, not a bug. It is the innermost
extension: the errors it replaces are neither audited nor masked as unexpected ones.

A mutation of which a root field already returned data keeps its 200: that field's change is
committed, and a 503 would tell the client (and any proxy that retries on it) to do it again.
The typed error stays in `errors` for the fields that did not run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from inspect import isawaitable

from starlette.responses import Response
from strawberry.extensions import SchemaExtension
from strawberry.utils.await_maybe import AwaitableOrValue

from aiaas.core.errors import ServiceUnavailableError
from aiaas.core.outages import as_outage, retry_after_headers
from graphql import GraphQLError, GraphQLResolveInfo, OperationType


def outage_of(error: GraphQLError) -> ServiceUnavailableError | None:
    """The outage that caused `error`, if a lost service did."""
    cause: BaseException | None = error.original_error
    while isinstance(cause, GraphQLError):
        cause = cause.original_error
    return None if cause is None else as_outage(cause)


def _typed(error: GraphQLError, outage: ServiceUnavailableError) -> GraphQLError:
    if error.original_error is outage:
        return error
    return GraphQLError(
        outage.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=outage,
    )


class OutagesAnswered(SchemaExtension):
    _committed = False
    """Whether a root field of this mutation returned something. Told by the fields as they
    resolve, not read from the result: a non-null field that fails nulls the whole `data`."""

    def on_execute(self) -> Iterator[None]:
        self._committed = False
        yield
        result = self.execution_context.result
        errors: list[GraphQLError] = list(getattr(result, "errors", None) or ())
        outages = [outage_of(error) for error in errors]
        first = next((outage for outage in outages if outage is not None), None)
        if result is None or first is None:
            return
        result.errors = [
            error if outage is None else _typed(error, outage)
            for error, outage in zip(errors, outages, strict=True)
        ]
        if self._committed:
            return
        response = getattr(self.execution_context.context, "response", None)
        if isinstance(response, Response):  # over a WebSocket, the error alone tells it
            response.status_code = first.http_status
            response.headers.update(retry_after_headers(first))

    def resolve(
        self,
        _next: Callable[..., object],
        root: object,
        info: GraphQLResolveInfo[object],
        *args: object,
        **kwargs: object,
    ) -> AwaitableOrValue[object]:
        result = _next(root, info, *args, **kwargs)
        if info.path.prev is not None or info.operation.operation is not OperationType.MUTATION:
            return result
        if isawaitable(result):
            return self._noted(result)
        self._committed = self._committed or result is not None
        return result

    async def _noted(self, result: Awaitable[object]) -> object:
        value = await result
        self._committed = self._committed or value is not None
        return value
