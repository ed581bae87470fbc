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
from contextvars import ContextVar
from inspect import isawaitable
from weakref import WeakSet

from starlette.responses import Response
from strawberry.extensions import SchemaExtension

from aiaas.core.errors import ServiceUnavailableError
from aiaas.core.outages import as_outage, retry_after_headers
from graphql import GraphQLError, GraphQLResolveInfo, GraphQLSchema


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


_COMMITTED: ContextVar[list[bool] | None] = ContextVar("mutation_committed", default=None)
"""Whether a root field of the mutation being executed returned something, one box per
execution. Told by the fields as they resolve, not read from the result: a non-null field that
fails nulls the whole `data`."""


_NOTING: WeakSet[GraphQLSchema] = WeakSet()
"""The schemas whose mutations already tell when they return."""


def noting_commits(schema: GraphQLSchema) -> None:
    """Make each root field of `schema`'s mutations tell `OutagesAnswered` when it returns,
    once per schema.

    Only those fields are wrapped: a `resolve` hook on the extension instead would put a
    middleware around every field of every operation, the leaves of a 10,000-point series
    included, to learn about the few that open a mutation."""
    if schema in _NOTING:
        return
    _NOTING.add(schema)
    if schema.mutation_type is None:
        return
    for field in schema.mutation_type.fields.values():
        if field.resolve is not None:
            field.resolve = _noting(field.resolve)


def _noting(resolve: Callable[..., object]) -> Callable[..., object]:
    def resolved(
        root: object, info: GraphQLResolveInfo[object], *args: object, **kwargs: object
    ) -> object:
        result = resolve(root, info, *args, **kwargs)
        if isawaitable(result):
            return _noted(result)
        _note(result)
        return result

    return resolved


async def _noted(result: Awaitable[object]) -> object:
    value = await result
    _note(value)
    return value


def _note(value: object) -> None:
    box = _COMMITTED.get()
    if box is not None and value is not None:
        box[0] = True


class OutagesAnswered(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        # A fresh box each time, never reset: the hook's two halves may run in different
        # contexts, and a box left behind is replaced by the next execution's.
        noting_commits(self.execution_context.schema._schema)
        committed = [False]
        _COMMITTED.set(committed)
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
        if committed[0]:
            return
        response = getattr(self.execution_context.context, "response", None)
        if isinstance(response, Response):  # over a WebSocket, the error alone tells it
            response.status_code = first.http_status
            response.headers.update(retry_after_headers(first))
