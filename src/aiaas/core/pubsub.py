"""Live events across processes: Redis pub/sub, read once per process and fanned out.

Any process publishes; every API process relays to its own subscribers. Each process holds one
pub/sub connection and one reader task however many subscribers it has, and each subscriber gets
a bounded queue: a subscriber too slow to keep up is cut off rather than let memory grow.
Pub/sub keeps no history: what happened before a subscription is read from PostgreSQL. When Redis
restarts, the reader waits for it and subscribes again to every channel it had; what was published
while it was away is not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from aiaas.core.errors import SubscriberTooSlowError
from aiaas.core.log_records import detached_context
from aiaas.core.outages import as_outage

logger = logging.getLogger(__name__)

SUBSCRIBER_QUEUE_SIZE = 1000


_CUT_OFF = object()


UNSUBSCRIBE_TIMEOUT_S = 1.0
RECONNECT_DELAY_S = 0.5


class EventHub:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._queues: dict[str, set[asyncio.Queue[Any]]] = {}
        self._lock = asyncio.Lock()

    async def publish(self, channel: str, event: dict[str, Any]) -> None:
        await self._redis.publish(channel, json.dumps(event, default=str))

    async def subscribe(self, channel: str) -> AsyncIterator[dict[str, Any]]:
        """Every event published on `channel` from now on, until the caller stops iterating."""
        queue: asyncio.Queue[Any] = asyncio.Queue(SUBSCRIBER_QUEUE_SIZE)
        await self._add(channel, queue)
        try:
            while True:
                event = await queue.get()
                if event is _CUT_OFF:
                    raise SubscriberTooSlowError(f"fell too far behind on {channel}")
                yield event
        finally:
            await self._remove(channel, queue)

    async def _add(self, channel: str, queue: asyncio.Queue[Any]) -> None:
        async with self._lock:
            if self._pubsub is None:
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            if channel not in self._queues:
                self._queues[channel] = set()
                await self._pubsub.subscribe(channel)
            self._queues[channel].add(queue)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(
                    self._read(), name="event-hub-reader", context=detached_context()
                )

    async def _remove(self, channel: str, queue: asyncio.Queue[Any]) -> None:
        async with self._lock:
            subscribers = self._queues.get(channel, set())
            subscribers.discard(queue)
            if not subscribers and channel in self._queues:
                del self._queues[channel]
                if self._pubsub is not None:
                    # A courtesy to Redis, not a duty: when Redis is gone (a process stopping
                    # with it) the connection is dead anyway, and waiting on it would only
                    # hold up the shutdown.
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(UNSUBSCRIBE_TIMEOUT_S):
                            await self._pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        while self._queues:
            try:
                await self._relay()
            except Exception as exc:
                outage = as_outage(exc)
                if outage is None:
                    raise
                # Redis went away. The next read connects again, and redis-py subscribes the
                # new connection to every channel of the old; what was published meanwhile is
                # lost, as pub/sub keeps no history.
                logger.warning("live events paused: %s", outage.message)
                await asyncio.sleep(RECONNECT_DELAY_S)

    async def _relay(self) -> None:
        assert self._pubsub is not None
        while self._queues:
            message = await self._pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            event = json.loads(message["data"])
            for queue in list(self._queues.get(channel, ())):
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    self._cut_off(queue)

    @staticmethod
    def _cut_off(queue: asyncio.Queue[Any]) -> None:
        # Make room for the marker: the subscriber stops at it, so the rest is moot.
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
        queue.put_nowait(_CUT_OFF)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        self._queues.clear()
