from __future__ import annotations

import time
from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from aiaas.core.event_streams import parse_cursor
from aiaas.core.serving.deployments import (
    DEPLOYMENT_EVENTS,
    DEPLOYMENT_STREAM,
    DeploymentState,
    get_deployment,
    state_event,
)
from aiaas.graphql.context import RequestContext
from aiaas.graphql.deployments.types import DeploymentEvent
from aiaas.graphql.permissions import (
    authorize_in_project,
    project_by_global_id,
    requires_in_project,
)
from aiaas.graphql.relay import uuid_of
from aiaas.graphql.training.subscriptions import REAUTHORIZE_EVERY_S


@strawberry.type
class DeploymentSubscription:
    @strawberry.subscription(
        extensions=requires_in_project(
            "deployment", "read", project_by_global_id("deployment_id", of="Deployment")
        ),
        description="A deployment's changes of state and traffic: every one after the cursor "
        "`after` (all without it), then live ones, until it is STOPPED.",
    )
    async def deployment_events(
        self, info: Info, deployment_id: strawberry.ID, after: str | None = None
    ) -> AsyncGenerator[DeploymentEvent, None]:
        context: RequestContext = info.context
        deployment_uuid = uuid_of(deployment_id, "Deployment", "deploymentId")
        cursor = parse_cursor(after)
        async with context.platform.metadata.acquire() as connection:
            deployment = await get_deployment(connection, deployment_uuid)
        relay = context.platform.service(DEPLOYMENT_EVENTS)
        if deployment.state is DeploymentState.STOPPED:
            ended = False
            async for stream_cursor, event in relay.history(deployment_uuid, cursor):
                ended = ended or DEPLOYMENT_STREAM.is_terminal(event)
                yield DeploymentEvent.from_stream(stream_cursor, event)
            if not ended:
                yield DeploymentEvent.from_stream(cursor, state_event(deployment))
            return
        checked_at = time.monotonic()
        async for stream_cursor, event in relay.subscribe(deployment_uuid, cursor):
            if time.monotonic() - checked_at >= REAUTHORIZE_EVERY_S:
                await authorize_in_project(context, deployment.project_id, "deployment", "read")
                checked_at = time.monotonic()
            yield DeploymentEvent.from_stream(stream_cursor, event)
