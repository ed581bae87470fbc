"""The inference side of a serving process: which deployments exist, which models are loaded,
and the path of one prediction through them.

Any `aiaas serve` process can answer for any deployment: it reads the deployment from PostgreSQL
(cached for a moment, and dropped at once when a change is announced), and loads each version
it needs from the artifact store on first use. Loading means decrypting the bundle, handing it
to the deployment's serving runtime, and warming every batch bucket; a request waits for that,
and is never answered by a half-loaded model. Loaded models stay in an LRU cache bounded by a
memory budget; evicting one first drains its queues.

A prediction is routed by the deployment's split (the canary takes its percentage of requests at
random), queued to that version's adaptive batcher, and answered; a shadow version, if any, gets
a copy afterwards, off the caller's path, and its answer is logged with the one returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

import numpy as np

from aiaas.core.compilation_cache import use_compilation_cache
from aiaas.core.errors import ConflictError, InputError, NotFoundError, ServiceUnavailableError
from aiaas.core.governance.vault import VAULT
from aiaas.core.platform import ProcessService
from aiaas.core.runtimes import LoadedModel
from aiaas.core.serving.batching import AdaptiveBatcher, BatcherClosedError, QueueFullError
from aiaas.core.serving.deployments import (
    CHANGES_CHANNEL,
    LOCAL_CHANGES,
    Deployment,
    DeploymentState,
    Role,
    find_live_deployment,
    get_deployment,
)
from aiaas.core.serving.metrics import InferenceProtocol, Outcome, ServedVersion, ServingMetrics
from aiaas.core.serving.prediction_samples import PredictionSampler
from aiaas.core.trainers import ModelSignature
from aiaas.core.training.registry import ModelVersion, model_versions_by_ids

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

DEPLOYMENT_TTL_S = 2.0
"""How long a process trusts its copy of a deployment without an announcement. Changes are
announced on Redis pub/sub, which can lose a message; this bounds how stale a copy can get."""

_NOT_READY_YET = frozenset({DeploymentState.CREATING, DeploymentState.WARMING})

MAX_SHADOWS_IN_FLIGHT = 256
"""Shadow copies are extra work nobody waits for: past this many at once they are skipped."""

LOAD_RETRY_AFTER_S = 5.0
"""How long a model version that failed to load answers with that failure before it is tried
again."""

MAX_LOAD_ATTEMPTS = 3
"""Loads a request may wait for when other loads keep evicting its model (a cache too small
for the models in use) before it is answered 503."""

LARGE_REQUESTS_AT_ONCE = 2

MAX_RECORDS = 4096
"""Most records one GraphQL `predict` takes (each deployment also has its own batch limit)."""


class DeploymentNotReadyError(ConflictError):
    """The deployment exists but does not serve: it is CREATING, WARMING or FAILED."""

    code = "DEPLOYMENT_NOT_READY"


class ModelLoadError(ServiceUnavailableError):
    code = "MODEL_UNAVAILABLE"


@dataclass(frozen=True)
class Prediction:
    deployment: Deployment
    version: ModelVersion
    role: Role
    outputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class _ModelKey:
    version_id: UUID
    runtime: str
    max_batch_size: int


@dataclass(eq=False)
class _LoadedEntry:
    key: _ModelKey
    model: LoadedModel
    size_bytes: int
    batchers: dict[UUID, tuple[AdaptiveBatcher, ServedVersion]] = field(default_factory=dict)
    """The queues on this model, by deployment, with the labels of their metrics."""


@dataclass
class CachedDeployment:
    deployment: Deployment
    project_slug: str
    fetched_at: float


def records_to_columns(records: Sequence[Any]) -> dict[str, list[Any]]:
    """JSON records (one object per row) as columns, or an `InputError` naming the bad rows."""
    if not records:
        raise InputError("send at least one record", field_errors={"inputs": "empty"})
    if len(records) > MAX_RECORDS:
        raise InputError(
            f"at most {MAX_RECORDS} records per request",
            field_errors={"inputs": f"{len(records)} records"},
        )
    problems: dict[str, str] = {}
    names: list[str] | None = None  # the first object's keys; [] when it has none
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            problems[f"inputs.{index}"] = "must be an object of input values"
        elif names is None:
            names = list(record)
        elif record.keys() != set(names):
            problems[f"inputs.{index}"] = "has other fields than the first record"
        if len(problems) >= 5:
            break
    if problems:
        raise InputError("invalid records", field_errors=problems)
    return {name: [record[name] for record in records] for name in names or ()}


def output_records(outputs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Outputs as one JSON object per row. JSON has no NaN or infinity: such values are null."""
    columns = {}
    for name, values in outputs.items():
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            nullable = values.astype(object)
            nullable[~np.isfinite(values)] = None
            columns[name] = nullable.tolist()
        else:
            columns[name] = values.tolist()
    rows = len(next(iter(columns.values()))) if columns else 0
    return [{name: column[row] for name, column in columns.items()} for row in range(rows)]


class InferenceServer:
    """One process's deployments, model cache, batchers and metrics (see the module doc)."""

    def __init__(self, platform: Platform) -> None:
        config = platform.config
        self.platform = platform
        self.metrics = ServingMetrics()
        self.samples = PredictionSampler(platform, rate=config.prediction_sample_rate)
        self.budget_bytes = config.model_cache_bytes
        self._deployments: dict[UUID, CachedDeployment] = {}
        self._v2_names: dict[tuple[str, str], tuple[UUID | None, float]] = {}
        self._versions: dict[UUID, ModelVersion] = {}
        self._signatures: dict[UUID, ModelSignature] = {}
        self._models: OrderedDict[_ModelKey, _LoadedEntry] = OrderedDict()
        self._loading: dict[_ModelKey, asyncio.Task[_LoadedEntry]] = {}
        self._shadows: set[asyncio.Task[None]] = set()
        self._retiring: dict[UUID, set[asyncio.Task[None]]] = {}
        self._load_failures: dict[_ModelKey, tuple[float, str]] = {}
        self.large_request_slots = asyncio.Semaphore(LARGE_REQUESTS_AT_ONCE)
        """Large request bodies parsed at once (in threads), which bounds their memory."""
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="aiaas-model-loader")
        self._listener: asyncio.Task[None] | None = None
        # Routing needs a fair coin, not a secret.
        self._random = random.Random()  # noqa: S311
        self._closed = False
        platform.service(LOCAL_CHANGES).listen(self.refresh)

    # Lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen for announced changes. Idempotent; needs a running event loop."""
        if self._listener is None and not self._closed:
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name="deployment-changes"
            )

    async def close(self) -> None:
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.wait({self._listener})
        for task in list(self._loading.values()):
            task.cancel()
        for entry in list(self._models.values()):
            self._evict(entry)
        retiring = [task for tasks in self._retiring.values() for task in tasks]
        if retiring:
            await asyncio.wait(retiring)
        if self._shadows:
            await asyncio.wait(self._shadows)
        await self.samples.close()
        self._loader.shutdown(wait=False)

    async def _listen(self) -> None:
        while True:
            try:
                async for change in self.platform.events.subscribe(CHANGES_CHANNEL):
                    # NotFoundError: a deployment of another database. Redis pub/sub ignores
                    # database numbers, so platforms sharing a Redis server hear each other.
                    with contextlib.suppress(KeyError, ValueError, NotFoundError):
                        deployment_id = UUID(change["deployment_id"])
                        # Only what this process has cached can be stale here; a deployment
                        # it has not used yet is read when first asked for.
                        if deployment_id in self._deployments:
                            await self.refresh(deployment_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("deployment changes: listening failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)

    # Deployments -------------------------------------------------------------------------------

    async def deployment(self, deployment_id: UUID) -> CachedDeployment:
        cached = self._deployments.get(deployment_id)
        if (
            cached is not None
            and time.monotonic() - cached.fetched_at < DEPLOYMENT_TTL_S
            # One that is still being rolled out may have become READY a moment ago, the word
            # not heard here yet: "not ready" must not rest on a stale copy.
            and cached.deployment.state not in _NOT_READY_YET
        ):
            return cached
        return await self.refresh(deployment_id)

    async def refresh(self, deployment_id: UUID) -> CachedDeployment:
        """Re-read the deployment, and let go of the queues of versions it no longer serves."""
        async with self.platform.metadata.acquire() as connection:
            deployment = await get_deployment(connection, deployment_id)
            slug = await connection.fetchval(
                "SELECT slug FROM projects WHERE id = $1", deployment.project_id
            )
        current = self._deployments.get(deployment_id)
        if current is not None and current.deployment.generation > deployment.generation:
            # A slower read that another, newer one overtook: keep the newer.
            return current
        cached = CachedDeployment(deployment, slug, time.monotonic())
        self._deployments[deployment_id] = cached
        served = set(deployment.traffic.versions()) if deployment.is_serving else set()
        if deployment.state is DeploymentState.UPDATING and deployment.pending is not None:
            served |= set(deployment.pending.versions())
        for entry in list(self._models.values()):
            if deployment_id in entry.batchers and entry.key.version_id not in served:
                self._retire(deployment_id, *entry.batchers.pop(deployment_id))
        if deployment.state is DeploymentState.STOPPED:
            self.metrics.forget(slug, deployment.name)
        return cached

    async def deployment_by_v2_name(self, slug: str, name: str) -> CachedDeployment | None:
        """The live deployment `name` of the project `slug`; None if there is none. Names
        are looked up again after the TTL, since a stopped name can be deployed anew."""
        key = (slug, name)
        found = self._v2_names.get(key)
        if found is None or time.monotonic() - found[1] >= DEPLOYMENT_TTL_S:
            async with self.platform.metadata.acquire() as connection:
                deployment = await find_live_deployment(connection, slug, name)
            if len(self._v2_names) > 10_000:
                self._v2_names.clear()  # bounded: names are user input
            found = (deployment.id if deployment else None, time.monotonic())
            self._v2_names[key] = found
        return await self.deployment(found[0]) if found[0] is not None else None

    async def drain(self, deployment_id: UUID) -> None:
        """Answer every request this process has queued for the deployment, then drop its
        queues (after the deployment was stopped)."""
        await self.refresh(deployment_id)
        retiring = self._retiring.get(deployment_id)
        if retiring:
            await asyncio.wait(set(retiring))

    def _retire(self, deployment_id: UUID, batcher: AdaptiveBatcher, served: ServedVersion) -> None:
        """Close a queue once it has answered what it holds. In the background: nothing (a
        change announcement, a model load) waits behind a slow model's queue; `drain` waits
        for it where that is the point."""

        async def close() -> None:
            await batcher.close(drain=True)
            self.metrics.untrack_model(served)

        task = asyncio.get_running_loop().create_task(close())
        tasks = self._retiring.setdefault(deployment_id, set())
        tasks.add(task)

        def forget(done: asyncio.Task[None]) -> None:
            tasks.discard(done)
            if not tasks and self._retiring.get(deployment_id) is tasks:
                del self._retiring[deployment_id]

        task.add_done_callback(forget)

    async def version(self, version_id: UUID) -> ModelVersion:
        """A model version; they never change, so each is read once."""
        found = self._versions.get(version_id)
        if found is None:
            async with self.platform.metadata.acquire() as connection:
                found = (await model_versions_by_ids(connection, [version_id])).get(version_id)
            if found is None:
                raise NotFoundError("no such model version")
            self._versions[version_id] = found
        return found

    def signature(self, version: ModelVersion) -> ModelSignature:
        """The version's signature as a `ModelSignature`, made once per version."""
        found = self._signatures.get(version.id)
        if found is None:
            found = self._signatures[version.id] = ModelSignature.from_json(version.signature)
        return found

    # Models ------------------------------------------------------------------------------------

    async def warm(self, deployment: Deployment, version_id: UUID) -> LoadedModel:
        """The version loaded for this deployment's runtime and batch size, every bucket
        compiled and run: what READY promises."""
        version = await self.version(version_id)
        key = _ModelKey(version.id, deployment.runtime, deployment.max_batch_size)
        # A rollout is a deliberate attempt: it loads afresh even if a request failed to.
        self._load_failures.pop(key, None)
        entry = await self._entry(key, version)
        return entry.model

    async def _entry(self, key: _ModelKey, version: ModelVersion) -> _LoadedEntry:
        entry = self._models.get(key)
        if entry is not None:
            self._models.move_to_end(key)
            return entry
        failure = self._load_failures.get(key)
        if failure is not None and time.monotonic() < failure[0]:
            raise ModelLoadError(failure[1])
        task = self._loading.get(key)
        if task is None:
            # One load per model however many requests wait for it.
            task = asyncio.get_running_loop().create_task(self._load(key, version))
            self._loading[key] = task
            task.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(task)

    async def _load(self, key: _ModelKey, version: ModelVersion) -> _LoadedEntry:
        started = time.perf_counter()
        try:
            chunks = [
                chunk
                async for chunk in self.platform.service(VAULT).open(
                    version.project_id, version.artifact_key
                )
            ]
            bundle = b"".join(chunks)
            runtime = self.platform.serving_runtime(key.runtime)
            use_compilation_cache(self.platform.config)
            loop = asyncio.get_running_loop()
            model = await loop.run_in_executor(
                self._loader, lambda: runtime.load(bundle, max_batch_size=key.max_batch_size)
            )
            await loop.run_in_executor(self._loader, model.warm_up)
        except Exception as error:
            logger.exception("could not load model version %s", version.id)
            # The detail (paths, keys, a runtime's internals) is for the log, not for callers.
            message = (
                f"the model version could not be loaded ({type(error).__name__}); the server "
                "log has the details"
            )
            # Remembered for a moment: every request retrying a broken model at once would
            # fetch, decrypt and load it again and again.
            self._load_failures[key] = (time.monotonic() + LOAD_RETRY_AFTER_S, message)
            raise ModelLoadError(message) from error
        self._load_failures.pop(key, None)
        entry = _LoadedEntry(key, model, size_bytes=len(bundle))
        # No await from making room to inserting: the budget holds against concurrent loads.
        self._make_room(entry.size_bytes)
        self._models[key] = entry
        logger.info(
            "loaded model version %s (%d bytes) in %.2f s",
            version.id,
            entry.size_bytes,
            time.perf_counter() - started,
        )
        return entry

    @property
    def loaded_bytes(self) -> int:
        return sum(entry.size_bytes for entry in self._models.values())

    def loaded_versions(self) -> list[UUID]:
        return [key.version_id for key in self._models]

    def _make_room(self, size_bytes: int) -> None:
        """Evict least recently used models until `size_bytes` more fit the budget. A model
        larger than the whole budget still loads, alone: refusing it would make it unservable."""
        while self._models and self.loaded_bytes + size_bytes > self.budget_bytes:
            self._evict(next(iter(self._models.values())))

    def _evict(self, entry: _LoadedEntry) -> None:
        """Forget the model now; its queues answer what they hold, then close."""
        logger.info("unloading model version %s", entry.key.version_id)
        self._models.pop(entry.key, None)
        batchers, entry.batchers = entry.batchers, {}
        for deployment_id, (batcher, served) in batchers.items():
            self._retire(deployment_id, batcher, served)

    async def _served(
        self, cached: CachedDeployment, version_id: UUID, role: Role | None
    ) -> ServedVersion:
        version = await self.version(version_id)
        if role is None:
            role = cached.deployment.traffic.versions().get(version_id, Role.STABLE)
        return ServedVersion(
            project=cached.project_slug,
            deployment=cached.deployment.name,
            version=str(version.number),
            role=role.value,
        )

    async def _batcher(
        self, cached: CachedDeployment, version_id: UUID, role: Role
    ) -> tuple[AdaptiveBatcher, ServedVersion]:
        deployment = cached.deployment
        version = await self.version(version_id)
        key = _ModelKey(version_id, deployment.runtime, deployment.max_batch_size)
        for _ in range(MAX_LOAD_ATTEMPTS):
            entry = await self._entry(key, version)
            served = await self._served(cached, version_id, role)
            # Another load may have evicted it between its load and now: a queue attached to
            # a model no longer in the cache would never be closed.
            if self._models.get(key) is entry:
                break
        else:
            raise ModelLoadError("the model cache is too small for the models in use; retry")
        found = entry.batchers.get(deployment.id)
        if found is not None:
            return found
        current = self._deployments.get(deployment.id, cached).deployment
        if not current.is_serving or version_id not in current.traffic.versions():
            # Stopped, or the split moved on, while the model loaded: a queue made now would
            # serve what is no longer deployed.
            raise BatcherClosedError("the deployment changed while its model loaded")
        metrics = self.metrics

        def on_batch(record: Any) -> None:
            metrics.observe_batch(
                served, rows=record.rows, execution_s=record.execution_s, failed=record.failed
            )

        batcher = AdaptiveBatcher(
            entry.model,
            max_batch_size=deployment.max_batch_size,
            max_wait_ms=deployment.max_wait_ms,
            max_queue_size=deployment.max_queue_rows,
            on_batch=on_batch,
        )
        batcher.start()
        entry.batchers[deployment.id] = (batcher, served)
        model = entry.model
        metrics.track_model(
            served,
            queue_depth=lambda: batcher.queued_rows,
            compilations=lambda: model.compilations,
        )
        return batcher, served

    # Predictions -------------------------------------------------------------------------------

    async def predict(
        self,
        deployment_id: UUID,
        columns: Mapping[str, Any],
        *,
        protocol: InferenceProtocol,
        version_number: int | None = None,
    ) -> Prediction:
        """Answer one request through the deployment's split (or the version it names, which
        must be one the split serves to callers)."""
        self.start()
        cached = await self.deployment(deployment_id)
        deployment = cached.deployment
        if deployment.state is DeploymentState.STOPPED:
            raise NotFoundError("no such deployment")
        if not deployment.is_serving:
            raise DeploymentNotReadyError(
                f"the deployment is {deployment.state.value}, not ready"
                + (f": {deployment.reason}" if deployment.reason else "")
            )
        role, version_id = await self._route(deployment, version_number)
        started = time.perf_counter()
        outcome: Outcome = "error"
        served: ServedVersion | None = None
        try:
            for attempt in (1, 2):
                try:
                    batcher, served = await self._batcher(cached, version_id, role)
                    checked = batcher.check(columns)
                    outputs = await batcher.submit_checked(checked)
                    break
                except BatcherClosedError:
                    # The model was evicted, or the split changed, between finding the queue
                    # and joining it: once more, routed by what is current.
                    if attempt == 2:
                        raise
                    cached = await self.refresh(deployment_id)
                    if not cached.deployment.is_serving:
                        raise NotFoundError("no such deployment") from None
                    role, version_id = await self._route(cached.deployment, version_number)
            outcome = "ok"
        except InputError:
            outcome = "invalid_input"
            raise
        except (QueueFullError, ServiceUnavailableError):
            outcome = "rejected"
            raise
        finally:
            if served is not None:
                self.metrics.observe_request(
                    served,
                    protocol=protocol,
                    outcome=outcome,
                    duration_s=time.perf_counter() - started,
                )
        version = await self.version(version_id)
        if self.samples.wants_sample():
            self.samples.record(deployment.id, version_id, role.value, checked, outputs)
        shadow_id = cached.deployment.shadow_version_id
        if shadow_id is not None and len(self._shadows) < MAX_SHADOWS_IN_FLIGHT:
            task = asyncio.get_running_loop().create_task(
                self._shadow(cached, shadow_id, columns, outputs, str(version.number))
            )
            self._shadows.add(task)
            task.add_done_callback(self._shadows.discard)
        return Prediction(cached.deployment, version, role, outputs)

    async def _route(self, deployment: Deployment, version_number: int | None) -> tuple[Role, UUID]:
        split = deployment.traffic
        if version_number is not None:
            for version_id, role in split.versions().items():
                if (
                    role is not Role.SHADOW
                    and (await self.version(version_id)).number == version_number
                ):
                    return role, version_id
            raise NotFoundError(f"the deployment does not serve version {version_number}")
        if (
            split.canary_version_id is not None
            and self._random.random() * 100 < split.canary_percent
        ):
            return Role.CANARY, split.canary_version_id
        return Role.STABLE, split.stable_version_id

    async def _shadow(
        self,
        cached: CachedDeployment,
        shadow_id: UUID,
        columns: Mapping[str, Any],
        answered: Mapping[str, np.ndarray],
        answered_version: str,
    ) -> None:
        """Run the copy of a request on the shadow version and log its answer beside the one
        returned; nothing here can reach the caller."""
        served: ServedVersion | None = None
        try:
            batcher, served = await self._batcher(cached, shadow_id, Role.SHADOW)
            checked = batcher.check(columns)
            outputs = await batcher.submit_checked(checked)
        except Exception as error:
            if served is not None:
                self.metrics.observe_shadow(
                    served, answered_version=answered_version, outcome="error", agreed=None
                )
            logger.info("shadow version %s failed: %s", shadow_id, error)
            return
        agreed = _agree(answered, outputs)
        self.metrics.observe_shadow(
            served, answered_version=answered_version, outcome="ok", agreed=agreed
        )
        logger.info(
            "shadow version %s of deployment %s answered (%s the returned answer)",
            shadow_id,
            cached.deployment.name,
            "same as" if agreed else "unlike",
        )
        self.samples.record(cached.deployment.id, shadow_id, Role.SHADOW.value, checked, outputs)


def _agree(first: Mapping[str, np.ndarray], second: Mapping[str, np.ndarray]) -> bool | None:
    """Whether two versions gave the same answer: the same labels, or values within 1e-3
    relative; None when their outputs cannot be compared."""
    for name in ("label", "value"):
        if name in first and name in second:
            one, other = first[name], second[name]
            if one.shape != other.shape:
                return False
            if one.dtype.kind == "f":
                return bool(np.allclose(one, other, rtol=1e-3, atol=1e-6))
            return bool((one == other).all())
    return None


INFERENCE_SERVER: ProcessService[InferenceServer] = ProcessService(
    "inference-server", InferenceServer, close=InferenceServer.close
)
"""This process's deployments, model cache and batchers, made on first use."""
