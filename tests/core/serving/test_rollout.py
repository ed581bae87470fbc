"""Rollouts (`aiaas.core.serving.rollout`) on real PostgreSQL and Redis, with real trained models.

A throwaway serving runtime, registered as a plugin like any other, wraps the JAX runtime with a
gate: while the test holds the gate closed, a load waits, so the test can look at (and act on) a
deployment in the middle of its rollout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

import asyncpg
import pytest

from aiaas.core.auth import Principal
from aiaas.core.config import Config
from aiaas.core.errors import DeploymentNotReadyError
from aiaas.core.hookspecs import hookimpl
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.plugins import create_plugin_manager
from aiaas.core.runtimes import LoadedModel
from aiaas.core.serving import INFERENCE_SERVER, deployments, records_to_columns
from aiaas.core.serving.deployments import Batching, Deployment, DeploymentState, NewDeployment
from aiaas.core.serving.rollout import RolloutSupervisor
from aiaas.core.specs import ServingRuntimeSpec
from aiaas.core.training import registry as models
from aiaas.plugins.jax_serving import JaxServingRuntime
from serving_support import register_bytes_as_version, train_version, upload, wine_table
from support import Team, audit_mark, new_team, poll_until

GATE_TIMEOUT_S = 60
"""A load never waits longer than this for its gate: a failing test must not hang the run."""


class GatedRuntime(JaxServingRuntime):
    """The JAX runtime, except that a load waits while the test holds `gate` closed."""

    def __init__(self, config: Config | None = None) -> None:
        super().__init__(config)
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()
        """Set once a load waits at the closed gate."""

    def load(self, bundle: bytes, *, max_batch_size: int) -> LoadedModel:
        if not self.gate.is_set():
            self.waiting.set()
        if not self.gate.wait(GATE_TIMEOUT_S):
            raise TimeoutError("the test never opened the gate")
        return super().load(bundle, max_batch_size=max_batch_size)


class GatedRuntimePlugin:
    @hookimpl
    def aiaas_serving_runtimes(self) -> Iterable[ServingRuntimeSpec]:
        return [
            ServingRuntimeSpec(
                name="gated",
                factory=GatedRuntime,
                description="The JAX runtime, with loads a test can hold up.",
            )
        ]


@pytest.fixture(scope="module")
async def platform(config: Config) -> AsyncIterator[Platform]:
    """A platform with the gated runtime installed. No rollout supervisor runs on its own: each
    test makes the ones it needs, so that it knows who claims what."""
    manager = create_plugin_manager(config)
    manager.register_plugin(GatedRuntimePlugin(), "GatedRuntimePlugin")
    platform = Platform(config, manager)
    await platform.start()
    yield platform
    await platform.stop()


@pytest.fixture
def gated(platform: Platform) -> Iterator[GatedRuntime]:
    runtime = platform.serving_runtime("gated")
    assert isinstance(runtime, GatedRuntime)
    runtime.waiting.clear()
    yield runtime
    runtime.gate.set()  # whatever happened, no load thread stays stuck


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "rollouts", (ProjectRole.DEVELOPER,))


@pytest.fixture(scope="module")
def developer(team: Team) -> Principal:
    return team.members[ProjectRole.DEVELOPER].principal


@pytest.fixture(scope="module")
async def versions(
    platform: Platform,
    team: Team,
    developer: Principal,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, models.ModelVersion]:
    """`wine` and `wine2`: two real versions of a classifier. `junk`: a version of the same
    model and signature whose bundle is no model at all, so that every load of it fails."""
    directory = tmp_path_factory.mktemp("rollouts")
    wine = await upload(platform, developer, team.project_id, wine_table(), "wine", directory)
    trained = await train_version(platform, developer, wine, target="cultivar", model_name="wine")
    retrained = await train_version(
        platform, developer, wine, target="cultivar", model_name="wine", seed=1
    )
    return {
        "wine": trained,
        "wine2": retrained,
        # The wine model's signature, and a bundle no runtime can load.
        "junk": await register_bytes_as_version(
            platform,
            developer,
            trained.dataset_version_id,
            b"these bytes are no model",
            model_name="wine",
            like=trained,
        ),
    }


@pytest.fixture(autouse=True)
async def nothing_left_waiting(platform: Platform, team: Team) -> AsyncIterator[None]:
    """Stop every deployment a test leaves live: a supervisor claims any deployment that waits,
    and the next test must find only its own."""
    yield
    owner = team.members[ProjectRole.OWNER].principal
    async with platform.metadata.acquire() as connection:
        live = await connection.fetch(
            "SELECT id FROM deployments WHERE project_id = $1 AND state <> 'STOPPED'",
            team.project_id,
        )
    for row in live:
        await deployments.stop_deployment(platform, owner, row["id"])


def supervisor(platform: Platform, *, stale_after_s: float = 30.0) -> RolloutSupervisor:
    return RolloutSupervisor(
        platform,
        platform.service(INFERENCE_SERVER),
        poll_interval_s=60.0,
        stale_after_s=stale_after_s,
    )


async def create(
    platform: Platform,
    actor: Principal,
    version: models.ModelVersion,
    *,
    runtime: str = "jax",
    max_batch_size: int = 4,
) -> Deployment:
    """A new deployment. `max_batch_size` is part of what identifies a loaded model, so a test
    that needs a load to really happen picks a size no other test uses with that runtime."""
    return await deployments.create_deployment(
        platform,
        actor,
        NewDeployment(
            name=f"d-{uuid.uuid4().hex[:10]}",
            version_id=version.id,
            runtime=runtime,
            batching=Batching(max_batch_size=max_batch_size, max_wait_ms=1.0),
        ),
    )


async def row_of(platform: Platform, deployment_id: uuid.UUID) -> asyncpg.Record:
    async with platform.metadata.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT state, reason, generation, rollout_claimed_by, rollout_heartbeat_at, "
            "ready_at, stopped_at, pending_traffic, stable_version_id, canary_version_id, "
            "canary_percent FROM deployments WHERE id = $1",
            deployment_id,
        )
    assert row is not None
    return row


async def rollout_events(platform: Platform, mark: int) -> list[dict[str, Any]]:
    """The `deployment.rollout` audit events since `mark`, oldest first."""
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT object_id, outcome, details FROM audit_events "
            "WHERE id > $1 AND action = 'deployment.rollout' ORDER BY id",
            mark,
        )
    return [
        {
            "object_id": row["object_id"],
            "outcome": row["outcome"],
            **(json.loads(row["details"]) if isinstance(row["details"], str) else row["details"]),
        }
        for row in rows
    ]


async def until_claimed(platform: Platform, deployment_id: uuid.UUID, claimant: str) -> None:
    async def claimed() -> bool:
        return (await row_of(platform, deployment_id))["rollout_claimed_by"] == claimant

    assert await poll_until(claimed, timeout_s=30) is not None


@contextlib.asynccontextmanager
async def held_rollout(
    gated: GatedRuntime, rollouts: RolloutSupervisor
) -> AsyncIterator[asyncio.Task[bool]]:
    """`rollouts.roll_out_one()` running while the gate is closed; on the way out the gate
    opens and the rollout is awaited to its end, whatever happened inside."""
    gated.gate.clear()
    gated.waiting.clear()
    rolling = asyncio.create_task(rollouts.roll_out_one())
    try:
        yield rolling
    finally:
        gated.gate.set()
        await asyncio.wait({rolling})


async def until_the_server_sees(
    platform: Platform, deployment_id: uuid.UUID, state: DeploymentState
) -> None:
    """Wait for the inference server's copy of the deployment to catch up with a change (it
    learns of changes from announcements, a moment after they commit)."""

    async def caught_up() -> bool:
        cached = await platform.service(INFERENCE_SERVER).deployment(deployment_id)
        return cached.deployment.state is state

    assert await poll_until(caught_up, timeout_s=30) is not None


def until_set(event: threading.Event) -> Callable[[], Awaitable[bool]]:
    async def is_set() -> bool:
        return event.is_set()

    return is_set


def wine_columns(count: int) -> dict[str, list[Any]]:
    return records_to_columns(wine_table().drop_columns(["cultivar"]).slice(0, count).to_pylist())


# The happy path --------------------------------------------------------------------------------


async def test_a_created_deployment_is_claimed_warmed_and_then_ready(
    platform: Platform,
    developer: Principal,
    versions: dict[str, models.ModelVersion],
    gated: GatedRuntime,
) -> None:
    created = await create(platform, developer, versions["wine"], runtime="gated")
    assert created.state is DeploymentState.CREATING
    mark = await audit_mark(platform)
    rollouts = supervisor(platform)
    async with held_rollout(gated, rollouts) as rolling:
        await until_claimed(platform, created.id, rollouts.claimant)
        warming = await row_of(platform, created.id)
        assert warming["state"] == "WARMING"
        assert warming["rollout_heartbeat_at"] is not None
        assert warming["ready_at"] is None
        assert warming["generation"] > created.generation
        assert await poll_until(until_set(gated.waiting), timeout_s=30) is not None
        assert not rolling.done(), "the rollout ended before its model could load"
    assert rolling.result() is True

    ready = await row_of(platform, created.id)
    assert ready["state"] == "READY"
    assert ready["reason"] is None
    assert ready["ready_at"] is not None
    assert ready["rollout_claimed_by"] is None
    assert ready["rollout_heartbeat_at"] is None
    [event] = await rollout_events(platform, mark)
    assert event["object_id"] == str(created.id)
    assert event["outcome"] == "success"
    assert event["state"] == "READY"
    assert event["claimant"] == rollouts.claimant
    await until_the_server_sees(platform, created.id, DeploymentState.READY)
    prediction = await platform.service(INFERENCE_SERVER).predict(
        created.id, wine_columns(3), protocol="graphql"
    )
    assert len(prediction.outputs["label"]) == 3
    assert await rollouts.roll_out_one() is False, "nothing else waits for a rollout"


async def test_a_woken_supervisor_rolls_out_in_the_background(
    platform: Platform, developer: Principal, versions: dict[str, models.ModelVersion]
) -> None:
    rollouts = supervisor(platform)
    try:
        created = await create(platform, developer, versions["wine"])
        rollouts.wake()

        async def ready() -> bool:
            return (await row_of(platform, created.id))["state"] == "READY"

        assert await poll_until(ready, timeout_s=60) is not None
    finally:
        await rollouts.close()


async def test_the_claim_is_renewed_while_the_rollout_warms(
    platform: Platform,
    developer: Principal,
    versions: dict[str, models.ModelVersion],
    gated: GatedRuntime,
) -> None:
    created = await create(platform, developer, versions["junk"], runtime="gated")
    rollouts = supervisor(platform, stale_after_s=0.3)
    async with held_rollout(gated, rollouts) as rolling:
        await until_claimed(platform, created.id, rollouts.claimant)
        first = (await row_of(platform, created.id))["rollout_heartbeat_at"]

        async def renewed() -> bool:
            return bool((await row_of(platform, created.id))["rollout_heartbeat_at"] > first)

        assert await poll_until(renewed, timeout_s=30) is not None
    assert rolling.result() is True


async def test_two_supervisors_racing_for_one_deployment_roll_it_out_once(
    platform: Platform, developer: Principal, versions: dict[str, models.ModelVersion]
) -> None:
    created = await create(platform, developer, versions["wine"], max_batch_size=2)
    mark = await audit_mark(platform)
    first, second = supervisor(platform), supervisor(platform)
    assert first.claimant != second.claimant

    outcomes = await asyncio.gather(first.roll_out_one(), second.roll_out_one())

    assert sorted(outcomes) == [False, True]
    winner = first if outcomes[0] else second
    [event] = await rollout_events(platform, mark)
    assert event["claimant"] == winner.claimant
    final = await row_of(platform, created.id)
    assert final["state"] == "READY"
    assert final["generation"] == created.generation + 2, "one claim and one finish, no more"


# Claims of dead processes ----------------------------------------------------------------------


async def claim_as(
    platform: Platform, deployment_id: uuid.UUID, claimant: str, *, heartbeat_age_s: float
) -> None:
    """Make the deployment look as if `claimant` claimed it and last renewed the claim
    `heartbeat_age_s` ago."""
    async with platform.metadata.acquire() as connection:
        await connection.execute(
            "UPDATE deployments SET state = 'WARMING', rollout_claimed_by = $2, "
            "rollout_heartbeat_at = clock_timestamp() - $3 * interval '1 second' WHERE id = $1",
            deployment_id,
            claimant,
            heartbeat_age_s,
        )


async def test_a_rollout_whose_claimant_died_is_taken_over(
    platform: Platform, developer: Principal, versions: dict[str, models.ModelVersion]
) -> None:
    created = await create(platform, developer, versions["wine"])
    await claim_as(platform, created.id, "gone-host:4242:deadbeef", heartbeat_age_s=3600)
    mark = await audit_mark(platform)
    rollouts = supervisor(platform, stale_after_s=30)

    assert await rollouts.roll_out_one() is True

    final = await row_of(platform, created.id)
    assert final["state"] == "READY"
    assert final["ready_at"] is not None
    [event] = await rollout_events(platform, mark)
    assert event["claimant"] == rollouts.claimant


async def test_a_rollout_whose_claimant_is_alive_is_left_to_it(
    platform: Platform, developer: Principal, versions: dict[str, models.ModelVersion]
) -> None:
    created = await create(platform, developer, versions["wine"])
    await claim_as(platform, created.id, "busy-host:4242:cafecafe", heartbeat_age_s=1)
    before = await row_of(platform, created.id)

    assert await supervisor(platform, stale_after_s=30).roll_out_one() is False

    assert await row_of(platform, created.id) == before


# Failures ----------------------------------------------------------------------------------------


async def test_a_first_rollout_whose_model_cannot_load_fails_with_the_reason(
    platform: Platform, developer: Principal, versions: dict[str, models.ModelVersion]
) -> None:
    created = await create(platform, developer, versions["junk"])
    mark = await audit_mark(platform)
    rollouts = supervisor(platform)

    assert await rollouts.roll_out_one() is True

    failed = await row_of(platform, created.id)
    assert failed["state"] == "FAILED"
    assert "could not be loaded" in failed["reason"]
    assert failed["ready_at"] is None
    assert failed["rollout_claimed_by"] is None
    [event] = await rollout_events(platform, mark)
    assert event["state"] == "FAILED"
    assert event["reason"] == failed["reason"]
    await until_the_server_sees(platform, created.id, DeploymentState.FAILED)
    with pytest.raises(DeploymentNotReadyError, match="could not be loaded"):
        await platform.service(INFERENCE_SERVER).predict(
            created.id, wine_columns(1), protocol="graphql"
        )
    assert await rollouts.roll_out_one() is False, "a failed deployment is not retried"


async def ready_deployment(
    platform: Platform, actor: Principal, version: models.ModelVersion, **options: Any
) -> Deployment:
    created = await create(platform, actor, version, **options)
    assert await supervisor(platform).roll_out_one() is True
    async with platform.metadata.acquire() as connection:
        ready = await deployments.get_deployment(connection, created.id)
    assert ready.state is DeploymentState.READY, ready.reason
    return ready


async def with_canary(
    platform: Platform, actor: Principal, deployment: Deployment, canary: models.ModelVersion
) -> Deployment:
    updating = await deployments.update_traffic(
        platform,
        actor,
        deployment.id,
        stable_percent=90,
        canary_version_id=canary.id,
        canary_percent=10,
        shadow_version_id=None,
    )
    assert updating.state is DeploymentState.UPDATING
    assert updating.pending is not None
    return updating


async def test_an_update_whose_canary_loads_takes_the_pending_split(
    platform: Platform, developer: Principal, versions: dict[str, models.ModelVersion]
) -> None:
    ready = await ready_deployment(platform, developer, versions["wine"])
    updating = await with_canary(platform, developer, ready, versions["wine2"])
    mark = await audit_mark(platform)

    assert await supervisor(platform).roll_out_one() is True

    final = await row_of(platform, ready.id)
    assert final["state"] == "READY"
    assert final["reason"] is None
    assert final["pending_traffic"] is None
    assert final["stable_version_id"] == versions["wine"].id
    assert final["canary_version_id"] == versions["wine2"].id
    assert final["canary_percent"] == 10
    assert final["ready_at"] == ready.ready_at
    assert updating.pending is not None
    [event] = await rollout_events(platform, mark)
    assert event["traffic"] == updating.pending.as_json()


async def test_an_update_whose_canary_cannot_load_stays_ready_on_its_old_split(
    platform: Platform, developer: Principal, versions: dict[str, models.ModelVersion]
) -> None:
    ready = await ready_deployment(platform, developer, versions["wine"])
    await with_canary(platform, developer, ready, versions["junk"])
    mark = await audit_mark(platform)

    assert await supervisor(platform).roll_out_one() is True

    final = await row_of(platform, ready.id)
    assert final["state"] == "READY"
    assert final["reason"].startswith("update failed: ")
    assert "could not be loaded" in final["reason"]
    assert final["pending_traffic"] is None
    assert final["stable_version_id"] == versions["wine"].id
    assert final["canary_version_id"] is None
    assert final["canary_percent"] == 0
    assert final["ready_at"] == ready.ready_at, "it never stopped being ready"
    [event] = await rollout_events(platform, mark)
    assert event["state"] == "READY"
    assert event["reason"] == final["reason"]
    # The stable version goes on answering, every request of it.
    await until_the_server_sees(platform, ready.id, DeploymentState.READY)
    for _ in range(5):
        prediction = await platform.service(INFERENCE_SERVER).predict(
            ready.id, wine_columns(2), protocol="graphql"
        )
        assert prediction.version.id == versions["wine"].id


# The user's change wins over a rollout in flight ------------------------------------------------


async def test_a_deployment_stopped_while_it_warms_stays_stopped(
    platform: Platform,
    developer: Principal,
    versions: dict[str, models.ModelVersion],
    gated: GatedRuntime,
) -> None:
    # A size no other test loads with this runtime: the load must really wait at the gate.
    created = await create(platform, developer, versions["wine"], runtime="gated", max_batch_size=3)
    rollouts = supervisor(platform)
    async with held_rollout(gated, rollouts) as rolling:
        await until_claimed(platform, created.id, rollouts.claimant)
        assert await poll_until(until_set(gated.waiting), timeout_s=30) is not None
        stopped = await deployments.stop_deployment(platform, developer, created.id)
        mark = await audit_mark(platform)
    assert rolling.result() is True  # the model loaded: the rollout would have made it READY

    final = await row_of(platform, created.id)
    assert final["state"] == "STOPPED"
    assert final["generation"] == stopped.generation
    assert final["ready_at"] is None
    assert final["stopped_at"] is not None
    assert await rollout_events(platform, mark) == [], "a rollout that changed nothing"


async def test_a_rollback_while_the_canary_warms_leaves_the_old_split(
    platform: Platform,
    developer: Principal,
    versions: dict[str, models.ModelVersion],
    gated: GatedRuntime,
) -> None:
    ready = await ready_deployment(platform, developer, versions["wine"], runtime="gated")
    await with_canary(platform, developer, ready, versions["junk"])
    rollouts = supervisor(platform)
    async with held_rollout(gated, rollouts) as rolling:
        await until_claimed(platform, ready.id, rollouts.claimant)
        assert await poll_until(until_set(gated.waiting), timeout_s=30) is not None
        rolled_back = await deployments.rollback(platform, developer, ready.id)
        mark = await audit_mark(platform)
    assert rolling.result() is True  # the canary failed to load: the rollout would say so

    final = await row_of(platform, ready.id)
    assert final["state"] == "READY"
    assert final["reason"] is None
    assert final["generation"] == rolled_back.generation
    assert final["pending_traffic"] is None
    assert final["canary_version_id"] is None
    assert final["stable_version_id"] == versions["wine"].id
    assert await rollout_events(platform, mark) == []
    assert await rollouts.roll_out_one() is False
