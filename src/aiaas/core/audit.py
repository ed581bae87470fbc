"""The append-only audit trail, and `AuditedChange`: one mutation, audited in its own transaction.

Every mutation runs inside an `AuditedChange`. Its effect and its audit event commit together or
not at all; a mutation refused with an expected error leaves a `failed` event instead, and the
enforcement point writes `denied` events. Observers (`aiaas_audit_event`) hear about an event
only after it is durable.

Every event is appended to its project's hash chain (`aiaas.core.audit_chain`), and
`verify_audit_trail` walks the chains. The caller's own id for a request (its correlation id) is
ambient: the request middleware sets it with `correlated`, and every event written while it is set
carries it, without threading it through every domain function as the request id is.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self
from uuid import UUID

from aiaas.core.audit_chain import (
    CHAINED_COLUMNS,
    GENESIS_HASH,
    PLATFORM_CHAIN,
    PLATFORM_CHAIN_SQL,
    ChainedContent,
    TrailVerification,
    chained_hash,
    verify_chains,
)
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
    correlation_id: str | None = None
    """The caller's own id for the request (its `X-Request-ID`), kept apart from ours."""


_correlation_id: ContextVar[str | None] = ContextVar("aiaas_correlation_id", default=None)


@contextmanager
def correlated(correlation_id: str | None) -> Iterator[None]:
    """Within this block (and the tasks it starts), audit events carry `correlation_id`."""
    token = _correlation_id.set(correlation_id)
    try:
        yield
    finally:
        _correlation_id.reset(token)


# The chain key is `coalesce(project_id, PLATFORM_CHAIN)`, spelt as the chain's indexes are.
_CHAIN_KEY = f"coalesce(project_id, {PLATFORM_CHAIN_SQL})"
# Appends to one chain are serialized by a transaction-level advisory lock on the chain, taken
# before the chain's last hash is read and held until commit. A row lock cannot do it (there is
# no row to lock for a chain's first event, and the trigger refuses the UPDATE a lock on the
# head would need), and SERIALIZABLE would turn every concurrent mutation of a project into a
# retry. The id is drawn under the lock, so that within a chain id order is append order, which
# is the order `verify_chains` walks. The unique index on (chain, previous_hash) turns a fork
# that got past the lock anyway (a REPEATABLE READ snapshot older than the head) into an error.
# The lock is held from the event's insert to commit, which is the end of nearly every mutation.
# So a task must not write an event on a second connection while its open transaction holds
# the same chain: it would wait for itself. `AuditedChange` writes its `failed` event only after
# rolling back.
# The two-key form keeps these locks apart from the single-key ones (the migrations' lock).
_AUDIT_LOCK_CLASS = 0x61756474  # "audt"
_LOCK_CHAIN = "SELECT pg_advisory_xact_lock($1::int4, hashtext($2::text))"
_PREPARE_APPEND = f"""
SELECT nextval(pg_get_serial_sequence('audit_events', 'id')) AS id,
       clock_timestamp() AS occurred_at,
       $1::jsonb::text AS details_json,
       (SELECT row_hash FROM audit_events WHERE {_CHAIN_KEY} = $2 ORDER BY id DESC LIMIT 1)
           AS previous_hash
"""
_RETURNED = """id, occurred_at, actor_id, actor_name, action, outcome, object_type, object_id,
project_id, request_id, correlation_id, details"""
_INSERT = f"""
INSERT INTO audit_events
    (id, occurred_at, actor_id, actor_name, action, outcome, object_type, object_id, project_id,
     request_id, correlation_id, details, previous_hash, row_hash)
OVERRIDING SYSTEM VALUE
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
RETURNING {_RETURNED}
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
    """Append an event to its chain, in the connection's transaction."""
    details = details or {}
    chain = project_id or PLATFORM_CHAIN
    await connection.execute(_LOCK_CHAIN, _AUDIT_LOCK_CLASS, str(chain))
    prepared = returned_row(await connection.fetchrow(_PREPARE_APPEND, details, chain))
    previous_hash = prepared["previous_hash"] or GENESIS_HASH
    content = ChainedContent(
        id=prepared["id"],
        occurred_at=prepared["occurred_at"],
        actor_id=str(actor.user_id) if actor and actor.user_id else None,
        actor_name=actor.username if actor else None,
        action=action,
        outcome=outcome,
        object_type=object_type,
        object_id=object_id,
        project_id=str(project_id) if project_id else None,
        request_id=request_id,
        correlation_id=_correlation_id.get(),
        # The same value, encoded the same way, as the row stores: its jsonb text is the same.
        details_json=prepared["details_json"],
    )
    row = await connection.fetchrow(
        _INSERT,
        content.id,
        content.occurred_at,
        actor.user_id if actor else None,
        content.actor_name,
        action,
        outcome,
        object_type,
        object_id,
        project_id,
        request_id,
        content.correlation_id,
        details,
        previous_hash,
        chained_hash(previous_hash, content),
    )
    return AuditEvent(**dict(returned_row(row)))


async def verify_audit_trail(connection: Connection, *, batch: int = 2000) -> TrailVerification:
    """Walk every chain of the trail (see `aiaas.core.audit_chain.verify_chains`)."""
    return await verify_chains(_chained_rows(connection, batch))


async def _chained_rows(connection: Connection, batch: int) -> AsyncIterator[Any]:
    """Every event, by chain and id, read a batch at a time (keyset pagination on the chain
    index), so that a long trail is never held in memory whole."""
    after: tuple[Any, int] = (PLATFORM_CHAIN, -1)
    while True:
        rows = await connection.fetch(
            f"SELECT {CHAINED_COLUMNS}, {_CHAIN_KEY} AS chain_key FROM audit_events "
            f"WHERE ({_CHAIN_KEY}, id) > ($1, $2) ORDER BY {_CHAIN_KEY}, id LIMIT $3",
            *after,
            batch,
        )
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        after = (rows[-1]["chain_key"], rows[-1]["id"])


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
    def platform(self) -> Platform:
        """The platform the change is made on."""
        return self._platform

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
_SELECT_EVENTS = f"""
SELECT {_RETURNED}
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
