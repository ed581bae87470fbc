"""A span per GraphQL operation, named by its type and name (`mutation submitTrainingJob`).

In the schema only while tracing is on (`schema_extensions`). Unlike strawberry's own
`OpenTelemetryExtension`, it makes no span per resolver, and records neither the document nor
the arguments: a literal in either may be a password or a token, and a span is not redacted as
a log line is. The span is current while the operation executes, so that what its resolvers do
(SQL, Redis, enqueueing a job) is traced beneath it.
"""

from __future__ import annotations

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from aiaas.core.tracing import span


def _operation_type(execution_context: object) -> str:
    try:
        kind = getattr(execution_context, "operation_type", None)
    except RuntimeError:  # no operation could be chosen from the document
        return "operation"
    return kind.value if isinstance(kind, OperationType) else "operation"


class OperationSpans(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        operation_type = _operation_type(context)
        if operation_type == OperationType.SUBSCRIPTION.value:
            # It lasts as long as its socket, whose own span (`traced_asgi`) already says so.
            yield
            return
        name = context.operation_name
        attributes = {"graphql.operation.type": operation_type}
        if name:
            attributes["graphql.operation.name"] = name
        with span(f"{operation_type} {name}" if name else operation_type, attributes):
            yield
