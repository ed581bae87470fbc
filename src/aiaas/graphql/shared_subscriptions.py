"""Subscriptions shared by the sockets that ask for the same thing with the same access.

A hundred people watching one job used to cost the API process, for every event, a hundred
executions of the same selection, a hundred JSON encodings of the same answer, and a hundred
authorization checks a second: with a trainer on the same cores, an event reached the last of
them more than a second late (issue 18). Now the subscribers of a field in `SHARED_FIELDS` that
send the same document, operation name and variables as the same caller (the same `Principal`:
user, admin flag, authenticator and token, hence the same authorization decision at every
moment) are the members of one *group*. The group's producer runs the subscription once, with
the context of the socket that started it, encodes each result once, and every member's socket
is sent the same text (the operation id, which each client picks, is spliced in; clients that
pick the same one get the same bytes).

Every subscriber is still authorized, each with its own context: before it joins, its own
subscribe runs in an authorize-only pass (`authorizing_only`) that applies the field's policy
(`Authorize`, which audits a refusal as before) and starts nothing. The producer checks its
caller's access again as the field always did (jobEvents every second, projectJobChanges at
every change), and a refusal there ends every member: they are all that caller. A socket whose
credentials stop being valid is closed by `SessionGuard`, which takes it out of its group.

A member must see what a subscription of its own would have sent. A `REPLAYED` field starts
with what happened after a cursor (jobEvents): its group keeps what it has sent, up to
`LOG_LIMIT` messages, and a newcomer is sent that first; past the limit the group takes no one
else, and the next subscriber starts a group of its own. A `LIVE` field tells only what happens
from now on (projectJobChanges): a newcomer gets what comes next.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from strawberry.types import Info
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from aiaas.core.auth import Principal
from aiaas.core.log_records import detached_context
from aiaas.core.platform import Platform, ProcessService
from aiaas.graphql.context import RequestContext
from aiaas.graphql.loaders import make_loaders
from graphql import FieldNode, GraphQLError, OperationDefinitionNode, OperationType, parse

logger = logging.getLogger(__name__)


class Sharing(Enum):
    REPLAYED = "replayed"
    """The subscription starts with history: a newcomer is sent what the group has sent."""
    LIVE = "live"
    """Only what happens from now on: a newcomer is sent what comes next."""


SHARED_FIELDS: dict[str, Sharing] = {
    "jobEvents": Sharing.REPLAYED,
    "projectJobChanges": Sharing.LIVE,
}
"""The subscription fields whose answer depends on nothing but the document, its variables, the
caller and the events, and whose resolver returns at once when `authorizing_only(info)`. A
field missing here runs alone for each subscriber, as before."""

LOG_LIMIT = 1000
"""Messages a REPLAYED group keeps for newcomers; past them it takes no new member."""
MEMBER_BACKLOG = 1000
"""Messages a member may fall behind what the group sends before it is cut off; a newcomer's
replayed log does not count against it."""
TOO_SLOW = "fell more than {limit} messages behind and was cut off: subscribe again{hint}"

AUTHORIZE_ONLY = object()
"""The root value of a subscriber's authorize-only pass."""


def authorizing_only(info: Info) -> bool:
    """Whether this run only checks that the caller may subscribe: the resolver of a field in
    `SHARED_FIELDS` returns at once, before any I/O, when this is true (its group runs it)."""
    return info.root_value is AUTHORIZE_ONLY


GroupKey = tuple[Any, str, str | None, str, Principal]
"""(schema, document, operation name, variables as canonical JSON, caller)."""


def shared_field(query: str, operation_name: str | None, max_tokens: int) -> str | None:
    """The name of the one root field of the document's chosen operation if it is a
    subscription to a field of `SHARED_FIELDS`, else None (then it runs alone, and strawberry
    answers whatever is wrong with the document)."""
    try:
        document = parse(query, no_location=True, max_tokens=max_tokens)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1 or operations[0].operation is not OperationType.SUBSCRIPTION:
        return None
    selections = operations[0].selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return None
    name = selections[0].name.value
    return name if name in SHARED_FIELDS else None


def group_key(
    schema: Any, query: str, operation_name: str | None, variables: Any, principal: Principal
) -> GroupKey:
    # The variables came as JSON: sorted, equal variables give equal keys.
    return (schema, query, operation_name, json.dumps(variables, sort_keys=True), principal)


@dataclass(frozen=True)
class Errors:
    """The end of a group that failed before its first result: each member answers its
    operation with these (graphql-transport-ws `error`)."""

    formatted: list[Any]


COMPLETE = "complete"
"""The end of a group whose subscription ended: each member completes its operation."""

Item = str | Errors
"""A frame to send as it is, an `Errors`, or `COMPLETE` (compared by identity)."""


@dataclass(eq=False)
class Member:
    operation_id: str
    queue: asyncio.Queue[Item] = field(default_factory=asyncio.Queue)
    limit: int = MEMBER_BACKLOG
    cut_off: bool = False
    _prefix: str = ""

    def __post_init__(self) -> None:
        self._prefix = '{"id":' + json.dumps(self.operation_id) + ',"type":"next","payload":'

    def frame(self, payload: str) -> str:
        return self._prefix + payload + "}"

    def deliver(self, item: Item) -> None:
        if self.cut_off:
            return
        if self.queue.qsize() >= self.limit:
            # The socket drains slower than the group sends: cut off rather than let memory
            # grow; it may subscribe again (from its last cursor, for jobEvents).
            self.cut_off = True
        self.queue.put_nowait(item)


@dataclass(eq=False)
class Group:
    key: GroupKey
    sharing: Sharing
    members: set[Member] = field(default_factory=set)
    log: list[str] | None = None
    """The payloads sent so far, for a REPLAYED group that still takes newcomers."""
    joinable: bool = True
    task: asyncio.Task[None] | None = None

    def add(self, member: Member) -> None:
        for payload in self.log or ():
            member.queue.put_nowait(member.frame(payload))
        member.limit = member.queue.qsize() + MEMBER_BACKLOG
        self.members.add(member)

    def send(self, payload: str) -> int:
        """Hand one encoded `next` payload to every member; how many were handed it."""
        if self.log is not None:
            if len(self.log) < LOG_LIMIT:
                self.log.append(payload)
            else:
                self.joinable, self.log = False, None
        frames: dict[str, str] = {}
        for member in self.members:
            # Most clients number their operations alike ("1"): the frame is built once per id.
            frame = frames.get(member.operation_id)
            if frame is None:
                frame = frames[member.operation_id] = member.frame(payload)
            member.deliver(frame)
        return len(self.members)

    def end(self, item: Item) -> None:
        self.joinable = False
        for member in self.members:
            member.queue.put_nowait(item)  # past any limit: a member always learns the end


class SharedSubscriptions:
    """This process's groups (see the module doc), by `GroupKey`."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._groups: dict[GroupKey, Group] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.executions = 0
        """Results the groups' producers have computed and encoded, since the process began."""
        self.deliveries = 0
        """Frames handed to members, since the process began."""

    @property
    def group_count(self) -> int:
        """Groups that take newcomers."""
        return len(self._groups)

    @property
    def member_count(self) -> int:
        """Sockets' operations that follow a group that takes newcomers."""
        return sum(len(group.members) for group in self._groups.values())

    def join(
        self,
        key: GroupKey,
        sharing: Sharing,
        operation_id: str,
        start: Callable[[Group], Any],
    ) -> tuple[Group, Member]:
        """A new member of the group of `key`; `start(group)` is the producer's coroutine, run
        if no group of that key takes newcomers. No await: a group can't end mid-join."""
        group = self._groups.get(key)
        if group is None or not group.joinable:
            group = Group(key, sharing, log=[] if sharing is Sharing.REPLAYED else None)
            self._groups[key] = group
            group.task = asyncio.create_task(
                self._produce(group, start), name="shared-subscription", context=detached_context()
            )
            self._tasks.add(group.task)
            group.task.add_done_callback(self._tasks.discard)
        member = Member(operation_id)
        group.add(member)
        return group, member

    def leave(self, group: Group, member: Member) -> None:
        group.members.discard(member)
        if not group.members:
            self._forget(group)
            if group.task is not None:
                group.task.cancel()

    def _forget(self, group: Group) -> None:
        group.joinable = False
        if self._groups.get(group.key) is group:
            del self._groups[group.key]

    async def _produce(self, group: Group, start: Callable[[Group], Any]) -> None:
        ending: Item = COMPLETE
        try:
            ending = await start(group)
        except asyncio.CancelledError:
            raise
        except Exception:
            # As strawberry does for an operation of its own: logged, and its members complete.
            logger.exception("a shared subscription failed")
        finally:
            self._forget(group)
            group.end(ending)

    async def stream(
        self,
        group: Group,
        schema: Any,
        context: RequestContext,
        encode: Callable[[object], str],
    ) -> Item:
        """The producer: the subscription run once with `context`, each result encoded once and
        sent to every member; returns how the members end."""
        query, operation_name = group.key[1], group.key[2]
        results = await schema.stream(
            query,
            variable_values=json.loads(group.key[3]),
            context_value=context,
            operation_name=operation_name,
        )
        async with aclosing(results):
            first = True
            async for result in results:
                if first and isinstance(result, PreExecutionError):
                    return Errors([error.formatted for error in result.errors or ()])
                first = False
                if not isinstance(result, ExecutionResult):
                    return Errors([{"message": "incremental delivery is not supported"}])
                # The `next` payload strawberry's own operation would send.
                payload: dict[str, Any] = {"data": result.data}
                if result.errors:
                    payload["errors"] = [error.formatted for error in result.errors]
                if result.extensions:
                    payload["extensions"] = result.extensions
                self.executions += 1
                self.deliveries += group.send(encode(payload))
        return COMPLETE

    async def close(self) -> None:
        for group in list(self._groups.values()):
            self._forget(group)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


def producer_context(context: RequestContext) -> RequestContext:
    """The group's context: the starting socket's caller and request, with loaders of its own,
    so that nothing one socket's other operations read is answered to the group."""
    return dataclasses.replace(context, loaders=make_loaders(context.platform))


async def _close(shared: SharedSubscriptions) -> None:
    await shared.close()


SHARED_SUBSCRIPTIONS: ProcessService[SharedSubscriptions] = ProcessService(
    "graphql-shared-subscriptions", SharedSubscriptions, _close
)


def too_slow_errors(field_name: str) -> Errors:
    hint = " from the last cursor seen" if SHARED_FIELDS.get(field_name) is Sharing.REPLAYED else ""
    return Errors([{"message": TOO_SLOW.format(limit=MEMBER_BACKLOG, hint=hint)}])
