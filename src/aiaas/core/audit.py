"""The append-only audit trail, and `AuditedChange`: one mutation, audited in its own transaction.

Every mutation runs inside an `AuditedChange`. Its effect and its audit event commit together or
not at all; a mutation refused with an expected error leaves a `failed` event instead, and the
enforcement point writes `denied` events. Observers (`aiaas_audit_event`) hear about an event
only after it is durable.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self
from uuid import UUID

from aiaas.core.auth import Principal
from aiaas.core.errors import (
    AiaasError,
    AuthenticationError,
    PermissionDeniedError,
    RedisUnavailableError,
)
from aiaas.core.pagination import Order, Page, fetch_page
from aiaas.core.storage import Connection, returned_row

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

Outcome = Literal["success", "denied", "failed"]


@dataclass(frozen=True)
class AuditEvent:
    id: int
    occurred_at: datetime
    actor_id: UUID | None
    actor_name: str | None
    action: str
    outcome: Outcome
    object_type: str | None
    object_id: str | None
    project_id: UUID | None
    request_id: str | None
    details: dict[str, Any] = field(default_factory=dict)


_INSERT = """
INSERT INTO audit_events
    (actor_id, actor_name, action, outcome, object_type, object_id, project_id, request_id, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id, occurred_at, actor_id, actor_name, action, outcome, object_type, object_id,
          project_id, request_id, details
"""


async def insert_audit_event(
    connection: Connection,
    *,
    actor: Principal | None,
    action: str,
    outcome: Outcome,
    object_type: str | None = None,
    object_id: str | None = None,
    project_id: UUID | None = None,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    row = await connection.fetchrow(
        _INSERT,
        actor.user_id if actor else None,
        actor.username if actor else None,
        action,
        outcome,
        object_type,
        object_id,
        project_id,
        request_id,
        details or {},
    )
    return AuditEvent(**dict(returned_row(row)))


def audit_channel(project_id: UUID) -> str:
    """The pub/sub channel of a project's live audit events."""
    return f"aiaas:audit:{project_id}"


async def announce_audit_event(platform: Platform, event: AuditEvent) -> None:
    """Tell the observers (`aiaas_audit_event`), and the live subscribers of the event's
    project, about an event that has been committed."""
    for _ in platform.plugins.call_each("aiaas_audit_event", event=event):
        pass
    if event.project_id is None:
        return
    try:
        await platform.events.publish(audit_channel(event.project_id), asdict(event))
    except RedisUnavailableError:
        return  # an operator command without Redis: there is no live feed to tell
    except Exception:
        # The event is durable already; a live feed that misses it is no reason to fail.
        logger.warning("could not publish audit event %s live", event.id, exc_info=True)


class AuditedChange:
    """Run one mutation and its audit event in a single transaction.

    async with AuditedChange(platform, principal, "project.create", request_id) as change:
        row = await change.connection.fetchrow("INSERT ...")
        await change.record(object_type="project", object_id=str(row["id"]))
    """

    def __init__(
        self,
        platform: Platform,
        actor: Principal | None,
        action: str,
        request_id: str | None = None,
        *,
        project_id: UUID | None = None,
        deferred: bool = False,
    ) -> None:
        """`project_id` files a failed or denied attempt under the project it concerned, so
        that the project's owners see it in its trail. `deferred` opens the transaction only at
        `begin()`: a mutation with slow work to do first (reading an upload) keeps no database
        connection idle meanwhile, and its failures are still audited."""
        self._platform = platform
        self.actor = actor
        self.action = action
        self.request_id = request_id
        self.project_id = project_id
        self.events: list[AuditEvent] = []
        self._unchanged = False
        self._context: AbstractAsyncContextManager[Connection] | None = None
        self._connection: Connection | None = None
        self._deferred = deferred

    async def __aenter__(self) -> Self:
        if not self._deferred:
            await self.begin()
        return self

    async def begin(self) -> Connection:
        """Open the transaction; returns its connection."""
        if self._connection is None:
            self._context = self._platform.metadata.transaction()
            self._connection = await self._context.__aenter__()
        return self._connection

    @property
    def connection(self) -> Connection:
        """The connection of the change's transaction, once it has begun."""
        if self._connection is None:
            raise RuntimeError(f"mutation {self.action} used its connection before begin()")
        return self._connection

    async def record(
        self,
        *,
        object_type: str,
        object_id: str | None,
        project_id: UUID | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        event = await insert_audit_event(
            self.connection,
            actor=self.actor,
            action=self.action,
            outcome="success",
            object_type=object_type,
            object_id=object_id,
            project_id=project_id,
            request_id=self.request_id,
            details=details,
        )
        self.events.append(event)
        return event

    def unchanged(self) -> None:
        """Declare that this mutation turned out to change nothing, so it has nothing to audit
        (for example, an idempotent bootstrap that found its work already done)."""
        self._unchanged = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None and not self.events and not self._unchanged:
            exc = RuntimeError(f"mutation {self.action} changed state without an audit event")
            if self._context is not None:
                await self._context.__aexit__(RuntimeError, exc, None)
            raise exc
        if self._context is not None:
            await self._context.__aexit__(exc_type, exc, traceback)
        if exc is None:
            for event in self.events:
                await announce_audit_event(self._platform, event)
        elif isinstance(exc, AiaasError):
            denied = isinstance(exc, PermissionDeniedError | AuthenticationError)
            await record_outside_change(
                self._platform,
                actor=self.actor,
                action=self.action,
                outcome="denied" if denied else "failed",
                project_id=self.project_id,
                request_id=self.request_id,
                details={"code": exc.code, "message": exc.message},
            )


async def record_outside_change(
    platform: Platform,
    *,
    actor: Principal | None,
    action: str,
    outcome: Outcome,
    request_id: str | None,
    object_type: str | None = None,
    object_id: str | None = None,
    project_id: UUID | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write an event that has no effect to go with it: a denied or failed attempt."""
    async with platform.metadata.transaction() as connection:
        event = await insert_audit_event(
            connection,
            actor=actor,
            action=action,
            outcome=outcome,
            object_type=object_type,
            object_id=object_id,
            project_id=project_id,
            request_id=request_id,
            details=details,
        )
    await announce_audit_event(platform, event)
    return event


AUDIT_ORDER = Order(at="occurred_at", id="id", id_type=int, newest_first=True)
_SELECT_EVENTS = """
SELECT id, occurred_at, actor_id, actor_name, action, outcome, object_type, object_id,
       project_id, request_id, details
FROM audit_events
"""


async def list_audit_events(
    connection: Connection,
    *,
    project_id: UUID,
    first: int | None,
    after: str | None,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[AuditEvent]:
    """A project's audit trail, newest first, optionally narrowed to one actor (by username),
    one action, and a time range (`since` inclusive, `until` exclusive)."""
    conditions = ["project_id = $1"]
    arguments: list[Any] = [project_id]
    for column, operator, value in (
        ("actor_name", "=", actor),
        ("action", "=", action),
        ("occurred_at", ">=", since),
        ("occurred_at", "<", until),
    ):
        if value is not None:
            arguments.append(value)
            conditions.append(f"{column} {operator} ${len(arguments)}")
    return await fetch_page(
        connection,
        query=_SELECT_EVENTS,
        conditions=conditions,
        arguments=arguments,
        first=first,
        after=after,
        to_item=lambda row: AuditEvent(**dict(row)),
        order=AUDIT_ORDER,
    )
