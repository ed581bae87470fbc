"""Unexpected errors in GraphQL results, audited.

graphql-core catches what a resolver raises and answers it as an error in the result, so an
unexpected error there never reaches the HTTP middleware that audits the others
(`aiaas.requests`). `UnexpectedErrorsAudited` looks at each result before it is sent (and
before production masks its errors) and, when it holds an error that is not an `AiaasError`,
writes one `failed` `request.error` event with the request id. The event names the operation's
type, its root fields as the schema names them, and the exceptions' types: nothing the request
carried (no argument, variable, alias or operation name) and no exception text, which may quote
either.

Results are looked at once each: a query's or a mutation's when its execution ends, each of a
subscription's as it is streamed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from aiaas.core.errors import AiaasError
from aiaas.requests import audit_unexpected_error
from graphql import FieldNode, GraphQLError, get_operation_ast

MAX_NAMED = 10
"""At most this many root fields and exception types are named in one event."""


def unexpected_cause(error: GraphQLError) -> BaseException | None:
    """The exception behind `error` if it is not one of ours (nor GraphQL's own), else None."""
    cause: BaseException | None = error.original_error
    while isinstance(cause, GraphQLError):
        cause = cause.original_error
    return None if cause is None or isinstance(cause, AiaasError) else cause


def _operation_type(execution_context: ExecutionContext) -> OperationType | None:
    try:
        return execution_context.operation_type
    except RuntimeError:  # no operation could be chosen from the document
        return None


def _root_fields(execution_context: ExecutionContext) -> list[str]:
    """The operation's root fields by their schema names (an alias is the caller's text)."""
    document = execution_context.graphql_document
    if document is None:
        return []
    operation = get_operation_ast(document, execution_context.operation_name)
    if operation is None:
        return []
    names = {
        selection.name.value
        for selection in operation.selection_set.selections
        if isinstance(selection, FieldNode)
    }
    return sorted(names)[:MAX_NAMED]


class UnexpectedErrorsAudited(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        yield
        # A subscription's execution only starts its stream; its results come one by one.
        if _operation_type(self.execution_context) is not OperationType.SUBSCRIPTION:
            await self._audit(self.execution_context.result)

    async def on_stream_result(self, result: Any) -> AsyncIterator[None]:
        if _operation_type(self.execution_context) is OperationType.SUBSCRIPTION:
            await self._audit(result)
        yield

    async def _audit(self, result: Any) -> None:
        errors: list[GraphQLError] = list(getattr(result, "errors", None) or ())
        causes = [cause for cause in map(unexpected_cause, errors) if cause is not None]
        if not causes:
            return
        context = self.execution_context.context
        platform = getattr(context, "platform", None)
        if platform is None:
            return
        operation = _operation_type(self.execution_context)
        await audit_unexpected_error(
            platform,
            actor=getattr(context, "principal", None),
            request_id=getattr(context, "request_id", None) or "",
            details={
                "interface": "graphql",
                "operation": operation.value if operation is not None else None,
                "fields": _root_fields(self.execution_context),
                "errors": sorted({type(cause).__name__ for cause in causes})[:MAX_NAMED],
            },
        )
