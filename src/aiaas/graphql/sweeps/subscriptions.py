"""The `sweepEvents` subscription: a sweep's stream replayed from a cursor, then followed live."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from aiaas.core.event_streams import parse_cursor
from aiaas.core.training import SWEEP_EVENTS, SWEEP_STREAM, SweepState
from aiaas.graphql.context import RequestContext
from aiaas.graphql.permissions import (
    authorize_in_project,
    project_by_global_id,
    requires_in_project,
)
from aiaas.graphql.relay import uuid_of
from aiaas.graphql.sweeps.types import SweepEvent
from aiaas.graphql.training.subscriptions import REAUTHORIZE_EVERY_S


@strawberry.type
class SweepSubscription:
    @strawberry.subscription(
        extensions=requires_in_project(
            "sweep", "read", project_by_global_id("sweep_id", of="Sweep")
        ),
        description="A sweep's events: trials started, their objective at each epoch, prunes "
        "and ends, its promotion and its state; every one after the cursor `after` (all "
        "without it), then live ones, until the sweep ends.",
    )
    async def sweep_events(
        self, info: Info, sweep_id: strawberry.ID, after: str | None = None
    ) -> AsyncGenerator[SweepEvent, None]:
        context: RequestContext = info.context
        sweep_uuid = uuid_of(sweep_id, "Sweep", "sweepId")
        cursor = parse_cursor(after)
        sweep = await context.loader("sweep").load(sweep_uuid)
        relay = context.platform.service(SWEEP_EVENTS)
        if sweep.state is not SweepState.RUNNING:
            ended = False
            async for stream_cursor, event in relay.history(sweep_uuid, cursor):
                ended = ended or SWEEP_STREAM.is_terminal(event)
                yield SweepEvent.from_stream(stream_cursor, event)
            if not ended:
                final = {"type": "state", "state": sweep.state.value, "reason": sweep.reason}
                yield SweepEvent.from_stream(cursor, final)
            return
        checked_at = time.monotonic()
        async for stream_cursor, event in relay.subscribe(sweep_uuid, cursor):
            if time.monotonic() - checked_at >= REAUTHORIZE_EVERY_S:
                await authorize_in_project(context, sweep.project_id, "sweep", "read")
                checked_at = time.monotonic()
            yield SweepEvent.from_stream(stream_cursor, event)
