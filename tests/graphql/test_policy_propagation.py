"""A change of policy made in one process takes effect in every other process within 5 s.

Process 1 is this test process (the `platform` fixture); process 2 is a real `aiaas serve`. A
membership changed in process 1 reaches process 2 through PostgreSQL's LISTEN/NOTIFY, and,
should a notification be lost, through the periodic full reload.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from aiaas.core.config import Config
from aiaas.core.identity import members, projects
from aiaas.core.identity.access import ProjectRole
from aiaas.core.identity.projects import Project
from aiaas.core.platform import Platform
from aiaas.plugins.casbin_policy import NOTIFY_CHANNEL
from support import (
    RunningServer,
    UserWithToken,
    poll_until,
    running_server,
    sees_project,
    server_environment,
    unique,
    user_with_token,
    wait_until_ready,
)

pytestmark = pytest.mark.slow

PROPAGATION_LIMIT_S = 5.0


def serve(
    config: Config, log_path: Path, reload_interval_s: float
) -> AbstractContextManager[RunningServer]:
    environment = server_environment(config, AIAAS_POLICY_RELOAD_INTERVAL_S=str(reload_interval_s))
    return running_server(environment, log_path)


@pytest.fixture(scope="module")
async def notified_server(
    config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    """A server whose periodic reload is an hour away: whatever reaches it within seconds was
    carried by the change notification."""
    with serve(config, tmp_path_factory.mktemp("notified") / "serve.log", 3600) as server:
        await wait_until_ready(server)
        yield server


@pytest.fixture
async def fresh_server(
    config: Config, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[RunningServer]:
    """A server of the test's own, for tests that break its connections; the reload interval
    comes from the test's `reload_interval_s` parameter."""
    with serve(config, tmp_path / "serve.log", request.param) as server:
        await wait_until_ready(server)
        yield server


@dataclass(frozen=True)
class Scene:
    owner: UserWithToken
    member: UserWithToken
    project: Project


@pytest.fixture
async def scene(platform: Platform) -> Scene:
    """User A owns a project; user B, with a token, is not (yet) a member of it."""
    owner = await user_with_token(platform, unique("owner"))
    member = await user_with_token(platform, unique("member"))
    project = await projects.create_project(
        platform, owner.principal, slug=unique("policy"), name="Policy"
    )
    return Scene(owner=owner, member=member, project=project)


async def add_viewer(platform: Platform, scene: Scene) -> None:
    await members.add_member(
        platform,
        scene.owner.principal,
        scene.project.id,
        username=scene.member.principal.username,
        role=ProjectRole.VIEWER,
    )


async def remove_member(platform: Platform, scene: Scene) -> None:
    await members.remove_member(
        platform, scene.owner.principal, scene.project.id, username=scene.member.principal.username
    )


async def seconds_until_seen(server: RunningServer, scene: Scene, *, visible: bool) -> float | None:
    """Seconds until the server shows the member the project (or stops showing it), polled
    for a little longer than the limit so that a slow propagation reads as a number."""

    async def as_wanted() -> bool:
        return await sees_project(server, scene.member.token.secret, scene.project.slug) == visible

    return await poll_until(as_wanted, timeout_s=PROPAGATION_LIMIT_S + 1)


async def project_answer(
    server: RunningServer, user: UserWithToken, project: Project
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
        response = await client.post(
            "/graphql",
            json={
                "query": "query($slug: String!) { project(slug: $slug) { slug } }",
                "variables": {"slug": project.slug},
            },
            headers=user.authorization,
        )
    body: dict[str, Any] = response.json()
    return body


async def test_a_membership_change_in_one_process_reaches_another_within_5_s(
    notified_server: RunningServer, platform: Platform, scene: Scene
) -> None:
    before = await project_answer(notified_server, scene.member, scene.project)
    owner_sees_it = await sees_project(
        notified_server, scene.owner.token.secret, scene.project.slug
    )

    started = time.monotonic()
    await add_viewer(platform, scene)
    granted = await seconds_until_seen(notified_server, scene, visible=True)
    granted_after = time.monotonic() - started

    started = time.monotonic()
    await remove_member(platform, scene)
    revoked = await seconds_until_seen(notified_server, scene, visible=False)
    revoked_after = time.monotonic() - started
    print(f"granted after {granted_after:.3f} s, revoked after {revoked_after:.3f} s")

    assert owner_sees_it, "the server does not even show the owner their project"
    assert before == {"data": {"project": None}}
    assert granted is not None, "the server never let the new member see the project"
    assert granted_after < PROPAGATION_LIMIT_S
    assert revoked is not None, "the server kept showing the project to the removed member"
    assert revoked_after < PROPAGATION_LIMIT_S


# When the notification is lost ----------------------------------------------------------------


async def policy_listeners(platform: Platform, server: RunningServer) -> list[int]:
    """The backend pids of the server's connections that LISTEN for policy changes.

    This test process listens on the same database too; the server's connections are told
    apart by their client port, which the server process holds open."""
    database_port = urlsplit(str(platform.config.database_url)).port or 5432
    server_ports = [
        connection.laddr.port
        for connection in psutil.Process(server.process.pid).net_connections(kind="tcp")
        if connection.raddr and connection.raddr.port == database_port
    ]
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            """
            SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND client_port = ANY($1::int[])
              AND query ILIKE $2
            """,
            server_ports,
            f'LISTEN "{NOTIFY_CHANNEL}"%',
        )
    return [row["pid"] for row in rows]


async def kill_policy_listener(platform: Platform, server: RunningServer) -> None:
    listeners = await policy_listeners(platform, server)
    assert len(listeners) == 1, f"expected one policy listener in the server, found {listeners}"
    async with platform.metadata.acquire() as connection:
        assert await connection.fetchval("SELECT pg_terminate_backend($1)", listeners[0])

    async def gone() -> bool:
        return listeners[0] not in await policy_listeners(platform, server)

    assert await poll_until(gone, timeout_s=5) is not None


@pytest.mark.parametrize("fresh_server", [1], indirect=True, ids=["reload-every-1-s"])
async def test_the_periodic_reload_catches_a_change_whose_notification_was_lost(
    fresh_server: RunningServer, platform: Platform, scene: Scene
) -> None:
    assert not await sees_project(fresh_server, scene.member.token.secret, scene.project.slug)
    await kill_policy_listener(platform, fresh_server)

    started = time.monotonic()
    await add_viewer(platform, scene)
    granted = await seconds_until_seen(fresh_server, scene, visible=True)
    granted_after = time.monotonic() - started
    print(f"granted after {granted_after:.3f} s with no listener")

    assert granted is not None, "the server never let the new member see the project"
    assert granted_after < PROPAGATION_LIMIT_S
    assert fresh_server.process.poll() is None


@pytest.mark.parametrize("fresh_server", [3600], indirect=True, ids=["reload-hourly"])
async def test_the_enforcer_listens_again_after_its_listen_connection_dies(
    fresh_server: RunningServer, platform: Platform, scene: Scene
) -> None:
    await kill_policy_listener(platform, fresh_server)

    async def listening_again() -> bool:
        return len(await policy_listeners(platform, fresh_server)) == 1

    relistened = await poll_until(listening_again, timeout_s=PROPAGATION_LIMIT_S)
    started = time.monotonic()
    await add_viewer(platform, scene)
    granted = await seconds_until_seen(fresh_server, scene, visible=True)
    granted_after = time.monotonic() - started

    assert granted is not None, "the server never let the new member see the project"
    assert granted_after < PROPAGATION_LIMIT_S
    assert relistened is not None, "the server did not LISTEN again"
