"""Live events across a Redis restart: `EventHub` keeps its subscribers and, once Redis is back,
relays again what is published. Redis is the real one, reached through a proxy the test cuts
and restores, as a restart would."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from aiaas.core.pubsub import EventHub
from cuttable_proxy import cuttable
from support import poll_until

CHANNEL = "aiaas:test:pubsub-outage"
BACK_WITHIN_S = 30.0
"""A bound for the test to fail rather than hang; not a speed claim."""


async def _collect(events: AsyncIterator[dict[str, Any]], into: list[dict[str, Any]]) -> None:
    async for event in events:
        into.append(event)


async def test_a_subscriber_hears_again_once_redis_is_back(redis_url: str) -> None:
    publisher = Redis.from_url(redis_url)
    async with cuttable(redis_url) as proxy:
        hub = EventHub(Redis.from_url(proxy.url_through(redis_url)))
        received: list[dict[str, Any]] = []
        listener = asyncio.create_task(_collect(hub.subscribe(CHANNEL), received))
        try:

            async def hears(marker: str) -> bool:
                await publisher.publish(CHANNEL, json.dumps({"marker": marker}))
                return {"marker": marker} in received

            assert await poll_until(lambda: hears("before"), BACK_WITHIN_S, 0.1) is not None
            await proxy.cut()
            await asyncio.sleep(1.5)  # the reader finds the connection gone and retries
            assert not listener.done()
            await proxy.restore()
            assert await poll_until(lambda: hears("after"), BACK_WITHIN_S, 0.1) is not None
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await hub.close()
            await publisher.aclose()
