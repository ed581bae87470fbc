"""Live progress of jobs: one Redis Stream per job, replayed from a cursor, then followed live.

Why a stream and not pub/sub (`core/events.py`): a stream keeps its history, and every entry has
an id that orders it. The id is the cursor a client holds: `jobEvents(jobId, after)` replays what
came after it and then follows live, so a client that reconnects, or joins late, misses nothing
and sees nothing twice.

Why one source task per job per process: a blocking XREAD holds a Redis connection for as long as
it waits. A hundred browsers watching one job share one XREAD, whose events `EventStreamRelay` fans
out to a bounded queue per subscriber, so the cost in Redis grows with the jobs being watched,
not with the watchers. A subscriber too slow to keep up is cut off rather than let memory grow;
its client resubscribes from the last cursor it got.

A subscriber never misses an event between its replay and its live part, because it registers
its queue with the source before it replays: whatever the source fans out after that lands in
its queue, and whatever the source had fanned out before is already in the stream that the
replay reads. The overlap of the two is skipped by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aiaas.core.errors import (
    InputError,
    RedisUnavailableError,
    ServiceUnavailableError,
    SubscriberTooSlowError,
)
from aiaas.core.log_records import detached_context

logger = logging.getLogger(__name__)

STREAM_MAX_LENGTH = 100_000
"""Events kept per job. A long job reporting every step could otherwise grow its stream without
bound; the full metric history is in PostgreSQL, so a replay needs only the recent part. The
trim is approximate (`~`): Redis then drops whole internal nodes, which is far cheaper per XADD."""

FINISHED_STREAM_TTL_S = 7 * 24 * 3600
"""How long a finished job's stream stays for replay after its terminal state event."""

TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
# Named here, not in `aiaas.core.jobs`, which publishes through this module; it builds its
# `TERMINAL_STATES` from these.

REPLAY_PAGE_SIZE = 500
LIVE_READ_COUNT = 500
DEFAULT_QUEUE_SIZE = 1000
DEFAULT_BLOCK_MS = 5000
RETRY_DELAYS_S = (0.1, 0.2, 0.5, 1.0, 2.0, 4.0)
"""Backoff of a source whose Redis connection failed. It resumes from the last id it saw, so a
blip costs its subscribers nothing; after these (about 8 s) its subscribers get
`RedisUnavailableError` instead of waiting forever, and may resubscribe from their cursor."""

_EVENT_FIELD = "event"
_MAX_ID_PART = 2**64 - 1
_STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

_Order = tuple[int, int]
_Entry = tuple[_Order, str, dict[str, Any]]


@dataclass(frozen=True)
class EventStream:
    """A family of per-object streams: jobs', or deployments' (which follow the same replay-then-
    follow contract). An object's stream ends with a state event in `terminal_states`."""

    prefix: str
    terminal_states: frozenset[str]

    def key(self, object_id: UUID) -> str:
        return f"{self.prefix}:{object_id}"

    def is_terminal(self, event: Mapping[str, Any]) -> bool:
        return event.get("type") == "state" and event.get("state") in self.terminal_states


JOB_STREAM = EventStream("aiaas:job-events", TERMINAL_STATES)


def job_stream_key(job_id: UUID) -> str:
    return JOB_STREAM.key(job_id)


async def publish_job_events_quietly(
    redis: Redis,
    job_id: UUID,
    events: Sequence[Mapping[str, Any]],
    *,
    stream: EventStream = JOB_STREAM,
) -> None:
    """Publish, logging rather than raising a Redis failure: the stream is for people
    watching, and PostgreSQL holds every state and the metric history, so a Redis failure
    costs live events, never the job."""
    try:
        await publish_job_events(redis, job_id, events, stream=stream)
    except RedisError:
        logger.warning("job %s: %d live event(s) could not be published", job_id, len(events))


def is_terminal_event(event: Mapping[str, Any]) -> bool:
    return JOB_STREAM.is_terminal(event)


def parse_cursor(text: str | None) -> str:
    """The stream id a client's `after` names (`"0-0"`, before every event, for None), or
    `InputError`: a cursor reaches Redis only once it is known to be a stream id."""
    if text is None:
        return "0-0"
    match = _STREAM_ID.fullmatch(text)
    if match is None or any(int(part) > _MAX_ID_PART for part in match.groups()):
        raise InputError(
            "invalid cursor",
            field_errors={"after": "expected a cursor from an earlier event, such as 1712345-0"},
        )
    return f"{int(match[1])}-{int(match[2])}"


async def publish_job_event(redis: Redis, job_id: UUID, event: Mapping[str, Any]) -> str:
    """Append `event` to the job's stream; returns its id, the cursor that follows it."""
    (cursor,) = await publish_job_events(redis, job_id, [event])
    return cursor


async def publish_job_events(
    redis: Redis,
    job_id: UUID,
    events: Sequence[Mapping[str, Any]],
    *,
    stream: EventStream = JOB_STREAM,
) -> list[str]:
    """Append `events` in one round trip, as one MULTI so that they sit together in the stream."""
    if not events:
        return []
    key = stream.key(job_id)
    async with redis.pipeline(transaction=True) as pipeline:
        for event in events:
            # One JSON field rather than a field per key: nested values and types survive.
            encoded = json.dumps(event, default=str)
            pipeline.xadd(key, {_EVENT_FIELD: encoded}, maxlen=STREAM_MAX_LENGTH, approximate=True)
        if any(stream.is_terminal(event) for event in events):
            pipeline.expire(key, FINISHED_STREAM_TTL_S)
        replies = await pipeline.execute()
    return [_text(reply) for reply in replies[: len(events)]]


@dataclass(eq=False)
class _Subscriber:
    queue: asyncio.Queue[_Entry | None]
    ending: Callable[[], Exception] | None = None
    """Set once the subscriber must stop: it raises what this builds before reading on."""

    def deliver(self, entry: _Entry) -> None:
        if self.ending is not None:
            return
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            limit = self.queue.maxsize
            self.end(lambda: SubscriberTooSlowError(f"fell more than {limit} job events behind"))

    def end(self, error: Callable[[], Exception]) -> None:
        self.ending = self.ending or error
        # Wake it if it waits on an empty queue; a full one has something to wake it already.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


@dataclass(eq=False)
class _Source:
    job_id: UUID
    subscribers: set[_Subscriber] = field(default_factory=set)
    last_id: str | None = None
    """The id the next XREAD follows; None until the source has found the stream's end."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class EventStreamRelay:
    """Replays and follows job streams for this process's subscribers (see the module doc)."""

    def __init__(
        self,
        redis: Redis,
        *,
        stream: EventStream = JOB_STREAM,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        block_ms: int = DEFAULT_BLOCK_MS,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._queue_size = queue_size
        self._block_ms = block_ms
        # A read never brings more than a queue holds: one burst alone can't cut off a subscriber
        # that keeps up, and each read is a wait on Redis in which subscribers drain their queues.
        self._read_count = min(LIVE_READ_COUNT, queue_size)
        self._retry_delays_s = tuple(retry_delays_s)
        self._sources: dict[UUID, _Source] = {}
        self._closed = False

    @property
    def source_count(self) -> int:
        """How many jobs this process is reading live, one task each."""
        return len(self._sources)

    async def subscribe(
        self, job_id: UUID, after: str | None
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """(cursor, event) for every event after `after`, then live ones; it returns after a
        terminal state event. Live events are shared by the job's subscribers: don't mutate them.
        Close the iterator (`aclose`) when done with it, so that its source can stop."""
        cursor = parse_cursor(after)
        if self._closed:
            raise ServiceUnavailableError("job events are no longer served: shutting down")
        subscriber = _Subscriber(asyncio.Queue(self._queue_size))
        source = self._join(job_id, subscriber)
        try:
            await source.ready.wait()
            delivered = _order(cursor)
            while subscriber.ending is None:  # the replay, a page at a time
                page = await self._read_page(job_id, cursor)
                for entry_id, event in page:
                    delivered = _order(entry_id)
                    yield entry_id, event
                    if self._stream.is_terminal(event):
                        return
                if len(page) < REPLAY_PAGE_SIZE:
                    break
                cursor = page[-1][0]
            while True:
                if subscriber.ending is not None:
                    raise subscriber.ending()
                entry = await subscriber.queue.get()
                if entry is None or entry[0] <= delivered:
                    continue  # a wake-up, or already replayed
                order, entry_id, event = entry
                delivered = order
                yield entry_id, event
                if self._stream.is_terminal(event):
                    return
        finally:
            await self._leave(source, subscriber)

    async def history(
        self, job_id: UUID, after: str | None
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """(cursor, event) for every event stored after `after`, and nothing live: for a job
        that has ended, whose stream may have expired or lost its last events."""
        cursor = parse_cursor(after)
        while True:
            page = await self._read_page(job_id, cursor)
            for entry_id, event in page:
                yield entry_id, event
            if len(page) < REPLAY_PAGE_SIZE:
                return
            cursor = page[-1][0]

    async def close(self) -> None:
        self._closed = True
        sources, self._sources = list(self._sources.values()), {}
        for source in sources:
            self._end_all(source, lambda: ServiceUnavailableError("job events: shutting down"))
        await asyncio.gather(*(_stop(source) for source in sources))

    def _join(self, job_id: UUID, subscriber: _Subscriber) -> _Source:
        # No await between looking up and registering: two first subscribers can't race.
        source = self._sources.get(job_id)
        if source is None:
            source = self._sources[job_id] = _Source(job_id)
            source.task = asyncio.create_task(
                self._follow(source), name=f"job-events:{job_id}", context=detached_context()
            )
        source.subscribers.add(subscriber)
        return source

    async def _leave(self, source: _Source, subscriber: _Subscriber) -> None:
        source.subscribers.discard(subscriber)
        if not source.subscribers and self._sources.get(source.job_id) is source:
            del self._sources[source.job_id]
            await _stop(source)

    async def _follow(self, source: _Source) -> None:
        """The source task: XREAD from the last id seen, fanned out to every subscriber."""
        key = self._stream.key(source.job_id)
        failures = 0
        while True:
            try:
                if source.last_id is None:
                    # Fixed before any subscriber replays, so that replay and source overlap.
                    newest = await self._redis.xrevrange(key, count=1)
                    source.last_id = _text(newest[0][0]) if newest else "0-0"
                    source.ready.set()
                reply = await self._redis.xread(
                    {key: source.last_id}, count=self._read_count, block=self._block_ms
                )
                failures = 0
                for entry_id, event in _entries(reply):
                    source.last_id = entry_id
                    entry = (_order(entry_id), entry_id, event)
                    for subscriber in source.subscribers:
                        subscriber.deliver(entry)
            except _CONNECTION_ERRORS as error:
                if failures == len(self._retry_delays_s):
                    logger.warning("job %s: events unavailable: %s", source.job_id, error)
                    self._fail(source, _unavailable(error))
                    return
                delay = self._retry_delays_s[failures]
                logger.warning(
                    "job %s: reading events failed (%s); retry in %g s", source.job_id, error, delay
                )
                await asyncio.sleep(delay)
                failures += 1
            except Exception as error:
                logger.exception("job %s: the event source failed", source.job_id)
                self._fail(source, _unavailable(error))
                return

    def _fail(self, source: _Source, error: Callable[[], Exception]) -> None:
        if self._sources.get(source.job_id) is source:
            del self._sources[source.job_id]  # the next subscriber starts afresh
        self._end_all(source, error)

    @staticmethod
    def _end_all(source: _Source, error: Callable[[], Exception]) -> None:
        for subscriber in source.subscribers:
            subscriber.end(error)
        source.ready.set()  # subscribers still waiting for it find `ending` set

    async def _read_page(self, job_id: UUID, after: str) -> list[tuple[str, dict[str, Any]]]:
        start = _next_id(after)
        if start is None:
            return []
        try:
            reply = await self._redis.xrange(
                self._stream.key(job_id), min=start, count=REPLAY_PAGE_SIZE
            )
        except _CONNECTION_ERRORS as error:
            raise _unavailable(error)() from error
        return [_decode(entry_id, fields) for entry_id, fields in reply]


async def _stop(source: _Source) -> None:
    if source.task is not None:
        source.task.cancel()
        # wait(), unlike awaiting the task, leaves a cancellation of our own caller intact.
        await asyncio.wait({source.task})


def _unavailable(cause: BaseException) -> Callable[[], Exception]:
    def build() -> Exception:
        error = RedisUnavailableError(f"job events are unavailable: {cause}")
        error.__cause__ = cause
        return error

    return build


def _entries(reply: Any) -> list[tuple[str, dict[str, Any]]]:
    # XREAD answers [[key, entries]] in RESP2 and {key: entries} in RESP3; None on timeout.
    streams = reply.values() if isinstance(reply, dict) else [entries for _, entries in reply or ()]
    return [_decode(entry_id, fields) for entries in streams for entry_id, fields in entries]


def _decode(entry_id: bytes | str, fields: Mapping[Any, Any]) -> tuple[str, dict[str, Any]]:
    raw = fields.get(_EVENT_FIELD.encode(), fields.get(_EVENT_FIELD))
    event: dict[str, Any] = json.loads(raw)
    return _text(entry_id), event


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _order(stream_id: str) -> _Order:
    milliseconds, _, sequence = stream_id.partition("-")
    return int(milliseconds), int(sequence)


def _next_id(stream_id: str) -> str | None:
    """The smallest id after `stream_id` (an exclusive XRANGE start that any Redis accepts)."""
    milliseconds, sequence = _order(stream_id)
    if sequence < _MAX_ID_PART:
        return f"{milliseconds}-{sequence + 1}"
    return f"{milliseconds + 1}-0" if milliseconds < _MAX_ID_PART else None
