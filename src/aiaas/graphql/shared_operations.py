"""The graphql-transport-ws handler's part in shared subscriptions: a subscriber is authorized
alone, then follows its group (`aiaas.graphql.shared_subscriptions` says what is shared, and
why it is safe)."""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import CompleteMessage
from strawberry.utils.aio import aclosing

from aiaas.core.auth import Principal
from aiaas.graphql.context import RequestContext
from aiaas.graphql.shared_subscriptions import (
    AUTHORIZE_ONLY,
    COMPLETE,
    SHARED_FIELDS,
    SHARED_SUBSCRIPTIONS,
    Errors,
    group_key,
    producer_context,
    shared_field,
    too_slow_errors,
)


class SharedSubscriptionsHandler(BaseGraphQLTransportWSHandler[RequestContext, None]):
    """strawberry's handler, but an operation that subscribes to a field of `SHARED_FIELDS`
    joins the group of those who asked the same as the same caller, once authorized alone."""

    async def run_operation(self, operation: Operation[RequestContext, None]) -> None:
        # A subscription that many sockets may share runs once for all of them
        # (`aiaas.graphql.shared_subscriptions`); anything else runs as strawberry runs it.
        principal = self.context.principal
        field_name = None
        if principal is not None and isinstance(operation.query, str):
            max_tokens = self.context.platform.config.graphql_max_tokens
            field_name = shared_field(operation.query, operation.operation_name, max_tokens)
        if principal is None or field_name is None:
            await super().run_operation(operation)
            return
        try:
            if not await self._answered_alone(operation):
                await self._follow_group(operation, field_name, principal)
        except _OperationStreamClosed:
            return
        except Exception as error:
            # As strawberry's own run_operation ends an operation that failed.
            await self.handle_task_exception(error)
            with contextlib.suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise

    async def _answered_alone(self, operation: Operation[RequestContext, None]) -> bool:
        """The subscriber's own authorize-only pass, with its own context: whatever it answers
        (a refusal, an invalid document or variables) ends the operation, as it would have
        unshared. It answers nothing when the subscriber may join its group."""
        answered = False

        async def noted(results: Any) -> Any:
            nonlocal answered
            async for result in results:
                answered = True
                yield result

        results = await self.schema.stream(
            operation.query,
            variable_values=operation.variables,
            context_value=self.context,
            root_value=AUTHORIZE_ONLY,
            operation_name=operation.operation_name,
        )
        async with aclosing(results):
            await self._send_result_stream(operation, noted(results))
        if answered:
            await operation.send_operation_message(
                CompleteMessage(id=operation.id, type="complete")
            )
        return answered

    async def _follow_group(
        self, operation: Operation[RequestContext, None], field_name: str, principal: Principal
    ) -> None:
        shared = self.context.platform.service(SHARED_SUBSCRIPTIONS)
        key = group_key(
            self.schema, operation.query, operation.operation_name, operation.variables, principal
        )
        context, encode = producer_context(self.context), self.view.encode_json_string
        group, member = shared.join(
            key,
            SHARED_FIELDS[field_name],
            operation.id,
            lambda group: shared.stream(group, self.schema, context, encode),
        )
        try:
            while True:
                item = await member.queue.get()
                if member.cut_off:
                    item = too_slow_errors(field_name)
                if item is COMPLETE:
                    await operation.send_operation_message(
                        CompleteMessage(id=operation.id, type="complete")
                    )
                    return
                if isinstance(item, Errors):
                    await operation.send_operation_message(
                        {"id": operation.id, "type": "error", "payload": item.formatted}
                    )
                    return
                if not operation.completed:
                    await self._send_text(item)
        finally:
            shared.leave(group, member)

    async def _send_text(self, text: str) -> None:
        websocket = self.websocket
        assert isinstance(websocket, ASGIWebSocketAdapter)
        try:
            await websocket.ws.send_text(text)
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc
