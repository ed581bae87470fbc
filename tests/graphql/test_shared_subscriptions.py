"""Shared subscriptions (`aiaas.graphql.shared_subscriptions`) against a real uvicorn, Redis and
PostgreSQL: sockets that send the same `jobEvents` subscription as the same caller get the same
bytes from one execution per event; a newcomer still gets the history; the socket that started
a group may leave without ending it; and a caller who loses access hears nothing more while
another caller's sockets go on.

The API runs in a real uvicorn inside the test's event loop, so that the test can read its
process's count of executions: the one thing that tells one execution per event from one per
socket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from aiaas.app import create_app
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config
from aiaas.core.event_streams import publish_job_events
from aiaas.core.identity import members, projects
from aiaas.core.identity.access import ProjectRole
from aiaas.core.identity.projects import Project
from aiaas.core.jobs import Job, insert_job
from aiaas.core.platform import Platform
from aiaas.core.training import TRAINING_JOB
from aiaas.graphql.relay import to_global_id
from aiaas.graphql.shared_subscriptions import SHARED_SUBSCRIPTIONS, SharedSubscriptions
from aiaas.graphql.training.subscriptions import REAUTHORIZE_EVERY_S
from support import (
    GRAPHQL_TRANSPORT_WS,
    UserWithToken,
    poll_until,
    receive,
    send,
    unique,
    until_policy_holds,
    user_with_token,
)

pytestmark = pytest.mark.slow

EVENTS = "subscription($job: ID!) { jobEvents(jobId: $job) { cursor type step } }"


@dataclass(frozen=True)
class Api:
    """The API served in this process, and its platform (not the test's: a process of its own
    would have its own groups)."""

    port: int
    platform: Platform

    @property
    def shared(self) -> SharedSubscriptions:
        return self.platform.service(SHARED_SUBSCRIPTIONS)


@pytest.fixture
async def api(config: Config) -> AsyncIterator[Api]:
    platform = create_platform(config)
    server = uvicorn.Server(
        uvicorn.Config(create_app(platform=platform), host="127.0.0.1", port=0, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag, no event
                await asyncio.sleep(0.05)
        yield Api(server.servers[0].sockets[0].getsockname()[1], platform)
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def owner(platform: Platform) -> UserWithToken:
    return await user_with_token(platform, unique("owner"))


@pytest.fixture
async def project(platform: Platform, owner: UserWithToken) -> Project:
    return await projects.create_project(
        platform, owner.principal, slug=unique("shared"), name="Shared"
    )


@pytest.fixture
async def job(platform: Platform, project: Project) -> Job:
    """A queued training job that nothing runs: its events are published here, as a worker's
    trainer publishes them."""
    async with platform.metadata.transaction() as connection:
        return await insert_job(
            connection, project_id=project.id, kind=TRAINING_JOB, payload={}, created_by=None
        )


async def watching(api: Api, token: str, job: Job) -> ClientConnection:
    websocket = await connect(
        f"ws://127.0.0.1:{api.port}/graphql",
        subprotocols=[GRAPHQL_TRANSPORT_WS],
        open_timeout=5,
        proxy=None,
    )
    await send(
        websocket, {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
    )
    assert (await receive(websocket))["type"] == "connection_ack"
    await send(
        websocket,
        {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": EVENTS, "variables": {"job": to_global_id("TrainingJob", job.id)}},
        },
    )
    return websocket


async def members_following(api: Api, count: int) -> None:
    """Wait until `count` sockets follow a group (the protocol has no "subscribed" message, and
    an event published before would be replayed, not live)."""

    async def joined() -> bool:
        # And the job's stream is followed: an event published now reaches them live.
        return api.shared.member_count >= count and api.platform.job_events.source_count > 0

    assert await poll_until(joined, timeout_s=10) is not None, "the sockets never joined"


async def progress(platform: Platform, job: Job, steps: range) -> list[str]:
    return await publish_job_events(
        platform.redis, job.id, [{"type": "progress", "step": step} for step in steps]
    )


async def raw_messages(websocket: ClientConnection, count: int) -> list[str | bytes]:
    async with asyncio.timeout(10):
        return [await websocket.recv() for _ in range(count)]


def steps_of(messages: list[Any]) -> list[int]:
    return [json.loads(raw)["payload"]["data"]["jobEvents"]["step"] for raw in messages]


async def test_sockets_that_ask_the_same_get_the_same_bytes_from_one_execution_per_event(
    api: Api, platform: Platform, owner: UserWithToken, job: Job
) -> None:
    sockets = [await watching(api, owner.token.secret, job) for _ in range(3)]
    await members_following(api, 3)
    executions = api.shared.executions

    await progress(platform, job, range(5))
    received = [await raw_messages(websocket, 5) for websocket in sockets]

    assert steps_of(received[0]) == [0, 1, 2, 3, 4]
    assert received[1] == received[0] and received[2] == received[0], "not the same bytes"
    assert api.shared.group_count == 1
    assert api.shared.executions - executions == 5, "the selection ran once per socket"
    for websocket in sockets:
        await websocket.close()


async def test_a_newcomer_gets_the_history_and_the_first_socket_may_leave(
    api: Api, platform: Platform, owner: UserWithToken, job: Job
) -> None:
    first = await watching(api, owner.token.secret, job)
    await members_following(api, 1)
    await progress(platform, job, range(3))
    before = await raw_messages(first, 3)

    # Joins the group the first socket started: it is sent what the group has sent so far, as
    # a subscription of its own would have replayed it from the stream.
    newcomer = await watching(api, owner.token.secret, job)
    assert await raw_messages(newcomer, 3) == before
    assert api.shared.group_count == 1
    await first.close()  # the group ran with its context: it goes on without it
    await progress(platform, job, range(3, 5))

    assert steps_of(await raw_messages(newcomer, 2)) == [3, 4]
    await newcomer.close()


async def test_a_caller_who_loses_access_hears_nothing_more_while_another_goes_on(
    api: Api, platform: Platform, owner: UserWithToken, project: Project, job: Job
) -> None:
    member = await user_with_token(platform, unique("member"))
    await members.add_member(
        platform,
        owner.principal,
        project.id,
        username=member.principal.username,
        role=ProjectRole.VIEWER,
    )
    await until_policy_holds(api.platform, member.principal, project.id, ProjectRole.VIEWER)
    owners = [await watching(api, owner.token.secret, job) for _ in range(2)]
    removed = [await watching(api, member.token.secret, job) for _ in range(2)]
    await members_following(api, 4)
    assert api.shared.group_count == 2  # one per caller: they are authorized apart
    await progress(platform, job, range(2))
    for websocket in [*owners, *removed]:
        assert steps_of(await raw_messages(websocket, 2)) == [0, 1]

    await members.remove_member(
        platform, owner.principal, project.id, username=member.principal.username
    )
    await until_policy_holds(api.platform, member.principal, project.id, None)
    # The subscription checks its caller again at most this long after the last check.
    await asyncio.sleep(REAUTHORIZE_EVERY_S)
    await progress(platform, job, range(2, 6))

    for websocket in owners:
        assert steps_of(await raw_messages(websocket, 4)) == [2, 3, 4, 5]
    for websocket in removed:
        messages = [json.loads(raw) for raw in await raw_messages(websocket, 2)]
        assert [message["type"] for message in messages] == ["next", "complete"], messages
        assert messages[0]["payload"]["data"] is None, "an event reached a removed member"
        assert messages[0]["payload"]["errors"], messages
    for websocket in [*owners, *removed]:
        await websocket.close()


async def test_a_refused_newcomer_is_refused_alone(
    api: Api, platform: Platform, owner: UserWithToken, job: Job
) -> None:
    outsider = await user_with_token(platform, unique("outsider"))
    kept = await watching(api, owner.token.secret, job)
    await members_following(api, 1)
    spy = await watching(api, outsider.token.secret, job)

    refusal = await receive(spy)
    assert refusal["type"] == "error", refusal
    await progress(platform, job, range(1))
    assert steps_of(await raw_messages(kept, 1)) == [0]
    assert api.shared.group_count == 1, "the refused caller started or joined a group"
    for websocket in (kept, spy):
        await websocket.close()
