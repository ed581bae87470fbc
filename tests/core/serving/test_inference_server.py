"""The inference server (`aiaas.core.serving.inference`) on real PostgreSQL, Redis and trained
models: its model cache under a memory budget, one load per model however many requests wait for
it, deployments refreshed by announcements, and the JSON records of the GraphQL `predict`.

A throwaway serving runtime, registered as a plugin, wraps the JAX runtime to count its loads and
to hold a batch inside the model while the test acts. Each test that looks at the cache gets a
platform of its own, with the budget it needs, beside the module's.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import numpy as np
import pytest

from aiaas.core.auth import Principal
from aiaas.core.config import Config, build_config
from aiaas.core.errors import InputError, ModelLoadError, NotFoundError
from aiaas.core.governance.vault import VAULT
from aiaas.core.hookspecs import hookimpl
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.plugin_manager import AiaasPluginManager
from aiaas.core.plugins import create_plugin_manager
from aiaas.core.runtimes import LoadedModel
from aiaas.core.serving import (
    INFERENCE_SERVER,
    MAX_RECORDS,
    InferenceServer,
    Prediction,
    deployments,
    inference,
    output_records,
    records_to_columns,
)
from aiaas.core.serving.deployments import CHANGES_CHANNEL, Batching, Deployment, NewDeployment
from aiaas.core.serving.rollout import RolloutSupervisor
from aiaas.core.specs import ServingRuntimeSpec
from aiaas.core.training import registry as models
from aiaas.plugins.jax_serving import JaxServingRuntime
from serving_support import train_version, upload, wine_table
from support import Team, new_team, poll_until

HOLD_TIMEOUT_S = 60
"""A held batch never waits longer than this: a failing test must not hang the run."""

MIB = 1024**2


class HeldModel(LoadedModel):
    """A loaded JAX model whose batches wait while its runtime's `batch_gate` is closed."""

    def __init__(self, model: LoadedModel, runtime: CountingRuntime) -> None:
        super().__init__(model.signature, model.max_batch_size)
        self.model = model
        self.runtime = runtime

    def warm_up(self) -> None:
        self.model.warm_up()

    def predict_batch(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.runtime.batch_gate.is_set():
            self.runtime.batch_held.set()
            if not self.runtime.batch_gate.wait(HOLD_TIMEOUT_S):
                raise TimeoutError("the test never let the batch go")
        return self.model.predict_batch(columns)

    @property
    def compilations(self) -> int:
        return self.model.compilations


class CountingRuntime(JaxServingRuntime):
    """The JAX runtime, counting its loads; its models' batches can be held (see HeldModel)."""

    def __init__(self, config: Config | None = None) -> None:
        super().__init__(config)
        self.loads = 0
        self.failing = False
        self.batch_gate = threading.Event()
        self.batch_gate.set()
        self.batch_held = threading.Event()

    def load(self, bundle: bytes, *, max_batch_size: int) -> LoadedModel:
        self.loads += 1
        if self.failing:
            raise RuntimeError("cannot read /srv/secret/weights")
        return HeldModel(super().load(bundle, max_batch_size=max_batch_size), self)


class CountingRuntimePlugin:
    @hookimpl
    def aiaas_serving_runtimes(self) -> Iterable[ServingRuntimeSpec]:
        return [
            ServingRuntimeSpec(
                name="counting",
                factory=CountingRuntime,
                description="The JAX runtime, counting loads and holding batches for tests.",
            )
        ]


def manager_with_plugin(config: Config) -> AiaasPluginManager:
    manager = create_plugin_manager(config)
    manager.register_plugin(CountingRuntimePlugin(), "CountingRuntimePlugin")
    return manager


@pytest.fixture(scope="module")
async def platform(config: Config) -> AsyncIterator[Platform]:
    platform = Platform(config, manager_with_plugin(config))
    await platform.start()
    yield platform
    await platform.stop()


@contextlib.asynccontextmanager
async def serving_process(config: Config, **settings: Any) -> AsyncIterator[Platform]:
    """Another process's platform on the same database and Redis, with `settings`: its own
    inference server, model cache and counting runtime."""
    own = Platform(build_config({**config.model_dump(), **settings}), manager_with_plugin(config))
    await own.start()
    runtime = counting(own)
    try:
        yield own
    finally:
        runtime.batch_gate.set()  # whatever happened, no batch thread stays held
        await own.stop()


def counting(platform: Platform) -> CountingRuntime:
    runtime = platform.serving_runtime("counting")
    assert isinstance(runtime, CountingRuntime)
    return runtime


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "inference", (ProjectRole.DEVELOPER,))


@pytest.fixture(scope="module")
def developer(team: Team) -> Principal:
    return team.members[ProjectRole.DEVELOPER].principal


@pytest.fixture(scope="module")
async def version(
    platform: Platform, team: Team, developer: Principal, tmp_path_factory: pytest.TempPathFactory
) -> models.ModelVersion:
    """A wine classifier wide enough that its bundle outweighs the smallest cache budget
    (1 MiB): budgets can then be set to hold exactly one or two copies of it."""
    directory = tmp_path_factory.mktemp("inference")
    wine = await upload(platform, developer, team.project_id, wine_table(), "wine", directory)
    return await train_version(
        platform,
        developer,
        wine,
        target="cultivar",
        model_name="wine",
        hyperparameters={"epochs": 1, "batch_size": 64, "hidden_size": 600, "hidden_layers": 2},
    )


@pytest.fixture(scope="module")
async def model_bytes(platform: Platform, version: models.ModelVersion) -> int:
    """What one loaded copy of the version weighs in the cache."""
    chunks = [
        chunk
        async for chunk in platform.service(VAULT).open(version.project_id, version.artifact_key)
    ]
    size = sum(len(chunk) for chunk in chunks)
    assert size > MIB, f"the model must outweigh the smallest budget, not {size} bytes"
    return size


async def ready_deployment(
    platform: Platform, actor: Principal, version: models.ModelVersion, *, max_batch_size: int
) -> Deployment:
    """A READY deployment of the version on the counting runtime. A loaded model is one
    version for one runtime and batch size, so deployments of different `max_batch_size`
    are different models in the cache, each as heavy as the bundle."""
    created = await deployments.create_deployment(
        platform,
        actor,
        NewDeployment(
            name=f"d-{uuid.uuid4().hex[:10]}",
            version_id=version.id,
            runtime="counting",
            batching=Batching(max_batch_size=max_batch_size, max_wait_ms=1.0),
        ),
    )
    rollouts = RolloutSupervisor(
        platform, platform.service(INFERENCE_SERVER), poll_interval_s=60.0, stale_after_s=30.0
    )
    assert await rollouts.roll_out_one() is True
    async with platform.metadata.acquire() as connection:
        ready = await deployments.get_deployment(connection, created.id)
    assert ready.state is deployments.DeploymentState.READY, ready.reason
    return ready


@pytest.fixture(scope="module")
async def cached_models(
    platform: Platform, developer: Principal, version: models.ModelVersion
) -> dict[str, Deployment]:
    """Three deployments of the one version, each its own model in a cache: `a`, `b`, `c`."""
    return {
        name: await ready_deployment(platform, developer, version, max_batch_size=size)
        for name, size in (("a", 1), ("b", 2), ("c", 4))
    }


def wine_columns(count: int) -> dict[str, list[Any]]:
    return records_to_columns(wine_table().drop_columns(["cultivar"]).slice(0, count).to_pylist())


async def predict(server: InferenceServer, deployment: Deployment, rows: int = 1) -> Prediction:
    prediction = await server.predict(deployment.id, wine_columns(rows), protocol="graphql")
    assert len(prediction.outputs["label"]) == rows
    return prediction


def tracked_deployments(server: InferenceServer) -> set[str]:
    """The deployments whose queues `/metrics` shows: those with a live batcher."""
    exposition = server.metrics.render()[0].decode()
    return {
        line.split('deployment="', 1)[1].split('"', 1)[0]
        for line in exposition.splitlines()
        if line.startswith("aiaas_inference_queue_depth_rows{")
    }


def queue_depth(server: InferenceServer, deployment: Deployment) -> float | None:
    """The rows queued for the deployment, as `/metrics` shows them."""
    exposition = server.metrics.render()[0].decode()
    for line in exposition.splitlines():
        if line.startswith("aiaas_inference_queue_depth_rows{") and (
            f'deployment="{deployment.name}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return None


def holds(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return condition()

    return check


# The model cache ---------------------------------------------------------------------------------


async def test_the_cache_evicts_the_least_recently_used_model(
    config: Config, cached_models: dict[str, Deployment], model_bytes: int
) -> None:
    a, b, c = cached_models["a"], cached_models["b"], cached_models["c"]
    async with serving_process(config, model_cache_bytes=int(2.5 * model_bytes)) as own:
        server, runtime = own.service(INFERENCE_SERVER), counting(own)
        await predict(server, a)
        await predict(server, b)
        assert (runtime.loads, server.loaded_bytes) == (2, 2 * model_bytes)
        await predict(server, a)  # now b is the least recently used
        assert runtime.loads == 2

        await predict(server, c)

        assert (runtime.loads, server.loaded_bytes) == (3, 2 * model_bytes)
        assert tracked_deployments(server) == {a.name, c.name}, "b's queue was closed"
        await predict(server, a)
        assert runtime.loads == 3, "a was used more recently than b: it stayed"
        await predict(server, b)
        assert runtime.loads == 4, "b was evicted: it loads again"
        assert tracked_deployments(server) == {a.name, b.name}


async def test_predictions_in_flight_on_an_evicted_model_complete_on_it(
    config: Config, cached_models: dict[str, Deployment], model_bytes: int
) -> None:
    a, b = cached_models["a"], cached_models["b"]
    async with serving_process(config, model_cache_bytes=int(1.5 * model_bytes)) as own:
        server, runtime = own.service(INFERENCE_SERVER), counting(own)
        await predict(server, a)
        runtime.batch_gate.clear()
        # a takes one row per batch: the first request runs (held), the second queues behind it.
        running = asyncio.create_task(predict(server, a))
        assert await poll_until(holds(runtime.batch_held.is_set), timeout_s=30) is not None
        queued = asyncio.create_task(predict(server, a))
        assert await poll_until(holds(lambda: queue_depth(server, a) == 1), timeout_s=30)

        loading = asyncio.create_task(predict(server, b))
        # Once b is loaded, a leaves the cache at once, while its queue answers what it holds
        # in the background: nothing waits behind a slow model.
        # a and b serve the one version with different batch limits: two models.
        assert await poll_until(
            holds(lambda: [key.max_batch_size for key in server._models] == [b.max_batch_size]),
            timeout_s=60,
        )
        assert server.loaded_bytes == model_bytes
        assert runtime.loads == 2
        assert not running.done() and not queued.done()
        runtime.batch_gate.set()

        for answered in await asyncio.gather(running, queued):
            assert answered.deployment.id == a.id
        assert (await loading).deployment.id == b.id
        assert runtime.loads == 2, "both were answered by the evicted model, not a reload"
        assert server.loaded_bytes == model_bytes
        assert await poll_until(
            holds(lambda: tracked_deployments(server) == {b.name}), timeout_s=30
        ), "a's queue is closed"


async def test_a_model_larger_than_the_whole_budget_still_loads_alone(
    config: Config, cached_models: dict[str, Deployment], model_bytes: int
) -> None:
    a, b = cached_models["a"], cached_models["b"]
    async with serving_process(config, model_cache_bytes=MIB) as own:
        server, runtime = own.service(INFERENCE_SERVER), counting(own)
        assert model_bytes > server.budget_bytes

        await predict(server, a)
        assert server.loaded_bytes == model_bytes
        await predict(server, b)
        assert server.loaded_bytes == model_bytes, "one model at a time, the newest"
        await predict(server, b)
        assert runtime.loads == 2


async def test_concurrent_first_requests_load_the_model_once(
    config: Config, cached_models: dict[str, Deployment]
) -> None:
    c = cached_models["c"]
    async with serving_process(config) as own:
        server, runtime = own.service(INFERENCE_SERVER), counting(own)
        answers = await asyncio.gather(*(predict(server, c, rows=2) for _ in range(8)))
        assert len(answers) == 8
        assert runtime.loads == 1


async def test_a_failed_load_is_remembered_for_a_moment_and_its_detail_kept_from_callers(
    config: Config, cached_models: dict[str, Deployment]
) -> None:
    c = cached_models["c"]
    async with serving_process(config) as own:
        server, runtime = own.service(INFERENCE_SERVER), counting(own)
        runtime.failing = True
        for _ in range(3):
            with pytest.raises(ModelLoadError) as refused:
                await predict(server, c)
            assert "secret" not in refused.value.message
            assert "RuntimeError" in refused.value.message
        assert runtime.loads == 1, "a broken model is not loaded again at every request"

        runtime.failing = False
        server._load_failures.clear()  # as once LOAD_RETRY_AFTER_S has passed
        await predict(server, c)
        assert runtime.loads == 2


# Deployments as a process sees them ------------------------------------------------------------


@pytest.fixture
def no_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached deployment is trusted for an hour: only an announcement can refresh it."""
    monkeypatch.setattr(inference, "DEPLOYMENT_TTL_S", 3600.0)


async def until_listening(own: Platform, deployment: Deployment) -> None:
    """Wait until the server's listener receives announcements: pub/sub drops whatever is
    published before the subscription. Announcing an unchanged deployment changes nothing but
    the moment it was last read."""
    server = own.service(INFERENCE_SERVER)
    server.start()
    before = await server.deployment(deployment.id)

    async def refreshed() -> bool:
        await own.events.publish(
            CHANGES_CHANNEL,
            {"deployment_id": str(deployment.id), "generation": deployment.generation},
        )
        return await server.deployment(deployment.id) is not before

    assert await poll_until(refreshed, timeout_s=30, interval_s=0.1) is not None


async def test_an_announced_change_refreshes_a_cached_deployment_at_once(
    config: Config,
    platform: Platform,
    developer: Principal,
    version: models.ModelVersion,
    no_ttl: None,
) -> None:
    deployment = await ready_deployment(platform, developer, version, max_batch_size=4)
    async with serving_process(config) as own:
        server = own.service(INFERENCE_SERVER)
        await predict(server, deployment)
        await until_listening(own, deployment)

        # Changed by another process, which announces it.
        await deployments.stop_deployment(platform, developer, deployment.id)

        async def stopped() -> bool:
            cached = await server.deployment(deployment.id)
            return cached.deployment.state is deployments.DeploymentState.STOPPED

        assert await poll_until(stopped, timeout_s=30) is not None
        with pytest.raises(NotFoundError):
            await predict(server, deployment)
        assert tracked_deployments(server) == set(), "its queue was drained and closed"


async def test_announcements_of_deployments_unknown_here_do_not_stop_the_listener(
    config: Config,
    platform: Platform,
    developer: Principal,
    version: models.ModelVersion,
    no_ttl: None,
) -> None:
    """Pub/sub channels span every database of a Redis server, and a deployment may be gone:
    an announcement the process cannot look up must not cost it the ones after it."""
    deployment = await ready_deployment(platform, developer, version, max_batch_size=4)
    async with serving_process(config) as own:
        server = own.service(INFERENCE_SERVER)
        await predict(server, deployment)
        await until_listening(own, deployment)
        for strange in (str(uuid.uuid4()), "not a uuid"):
            await own.events.publish(CHANGES_CHANNEL, {"deployment_id": strange, "generation": 1})
        await own.events.publish(CHANGES_CHANNEL, {"generation": 1})

        await deployments.stop_deployment(platform, developer, deployment.id)

        async def stopped() -> bool:
            cached = await server.deployment(deployment.id)
            return cached.deployment.state is deployments.DeploymentState.STOPPED

        assert await poll_until(stopped, timeout_s=10) is not None


# JSON records ------------------------------------------------------------------------------------


def test_records_become_columns() -> None:
    records = [{"x": 1.0, "y": "a"}, {"y": "b", "x": 2.0}]
    assert records_to_columns(records) == {"x": [1.0, 2.0], "y": ["a", "b"]}


@pytest.mark.parametrize(
    ("records", "field", "problem"),
    [
        ([], "inputs", "empty"),
        ([{"x": 1.0}, [1.0]], "inputs.1", "must be an object"),
        (["x"], "inputs.0", "must be an object"),
        ([{"x": 1.0}, {"x": 2.0, "y": 3.0}], "inputs.1", "other fields"),
        ([{"x": 1.0}, {"y": 2.0}], "inputs.1", "other fields"),
        ([{"x": 1.0}, {}], "inputs.1", "other fields"),
        ([{}, {"x": 1.0}], "inputs.1", "other fields"),
        ([{"x": 1.0}] * (MAX_RECORDS + 1), "inputs", f"{MAX_RECORDS + 1} records"),
    ],
    ids=[
        "empty",
        "a-list",
        "a-string",
        "more-keys",
        "other-keys",
        "no-keys",
        "no-keys-first",
        "too-many",
    ],
)
def test_records_that_are_no_table_are_refused(
    records: list[Any], field: str, problem: str
) -> None:
    with pytest.raises(InputError) as refused:
        records_to_columns(records)
    assert problem in refused.value.field_errors[field]


def test_at_most_five_bad_records_are_named() -> None:
    with pytest.raises(InputError) as refused:
        records_to_columns([{"x": 1.0}, *([7] * 20)])
    assert set(refused.value.field_errors) == {f"inputs.{index}" for index in range(1, 6)}


def test_the_largest_request_is_taken() -> None:
    assert len(records_to_columns([{"x": 1.0}] * MAX_RECORDS)["x"]) == MAX_RECORDS


def test_output_records_are_one_object_per_row_with_null_for_nan() -> None:
    outputs = {
        "label": np.array(["c0", "c1", "c2"], dtype=object),
        "probabilities": np.array(
            [[0.5, 0.5], [math.nan, 1.0], [math.inf, -math.inf]], dtype=np.float32
        ),
        "value": np.array([1.5, math.nan, 2.5], dtype=np.float64),
        "count": np.array([1, 2, 3], dtype=np.int64),
    }
    assert output_records(outputs) == [
        {"label": "c0", "probabilities": [0.5, 0.5], "value": 1.5, "count": 1},
        {"label": "c1", "probabilities": [None, 1.0], "value": None, "count": 2},
        {"label": "c2", "probabilities": [None, None], "value": 2.5, "count": 3},
    ]
    assert output_records({}) == []
