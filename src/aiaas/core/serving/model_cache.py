"""The models one serving process has loaded, and the queues in front of them.

A model is a model version loaded for a serving runtime and a batch limit (`ModelKey`): the
same version deployed twice with different limits is two models, each with its own compiled
buckets. Loading means decrypting the bundle, handing it to the serving runtime, and warming
every batch bucket; a request waits for that, and is never answered by a half-loaded model. Many
requests waiting for one model load it once.

Loaded models stay in an LRU cache bounded by a memory budget. Evicting one drops it from the
cache at once, while its queues (one adaptive batcher per deployment that uses it) answer what
they hold, in the background, and then close: nothing waits behind a slow model's queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

from aiaas.core.compilation_cache import use_compilation_cache
from aiaas.core.errors import ModelLoadError
from aiaas.core.governance.vault import VAULT
from aiaas.core.runtimes import LoadedModel
from aiaas.core.serving.batching import AdaptiveBatcher, BatchRecord
from aiaas.core.serving.deployments import Deployment
from aiaas.core.serving.metrics import ServedVersion, ServingMetrics
from aiaas.core.training.registry import ModelVersion

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

LOAD_RETRY_AFTER_S = 5.0
"""How long a model version that failed to load answers with that failure before it is tried
again."""


@dataclass(frozen=True)
class ModelKey:
    version_id: UUID
    runtime: str
    max_batch_size: int


@dataclass(eq=False)
class LoadedEntry:
    key: ModelKey
    model: LoadedModel
    size_bytes: int
    batchers: dict[UUID, tuple[AdaptiveBatcher, ServedVersion]] = field(default_factory=dict)
    """The queues on this model, by deployment, with the labels of their metrics."""


class ModelCache:
    """This process's loaded models, least recently used first, within `budget_bytes`."""

    def __init__(self, platform: Platform, metrics: ServingMetrics) -> None:
        self.platform = platform
        self.metrics = metrics
        self.budget_bytes = platform.config.model_cache_bytes
        self._models: OrderedDict[ModelKey, LoadedEntry] = OrderedDict()
        self._loading: dict[ModelKey, asyncio.Task[LoadedEntry]] = {}
        self._load_failures: dict[ModelKey, tuple[float, str]] = {}
        self._retiring: dict[UUID, set[asyncio.Task[None]]] = {}
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="aiaas-model-loader")

    @property
    def loaded_bytes(self) -> int:
        return sum(entry.size_bytes for entry in self._models.values())

    def loaded_versions(self) -> list[UUID]:
        return [key.version_id for key in self._models]

    def holds(self, entry: LoadedEntry) -> bool:
        """Whether `entry` is still in the cache: another load may have evicted it since."""
        return self._models.get(entry.key) is entry

    async def loaded(
        self, key: ModelKey, version: ModelVersion, *, afresh: bool = False
    ) -> LoadedEntry:
        """The model, from the cache or loaded now. A load that failed a moment ago fails again
        at once, unless `afresh` (a rollout is a deliberate attempt)."""
        if afresh:
            self._load_failures.pop(key, None)
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

    async def _load(self, key: ModelKey, version: ModelVersion) -> LoadedEntry:
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
        entry = LoadedEntry(key, model, size_bytes=len(bundle))
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

    def _make_room(self, size_bytes: int) -> None:
        """Evict least recently used models until `size_bytes` more fit the budget. A model
        larger than the whole budget still loads, alone: refusing it would make it unservable."""
        while self._models and self.loaded_bytes + size_bytes > self.budget_bytes:
            self._evict(next(iter(self._models.values())))

    def _evict(self, entry: LoadedEntry) -> None:
        """Forget the model now; its queues answer what they hold, then close."""
        logger.info("unloading model version %s", entry.key.version_id)
        self._models.pop(entry.key, None)
        batchers, entry.batchers = entry.batchers, {}
        for deployment_id, (batcher, served) in batchers.items():
            self._retire(deployment_id, batcher, served)

    # Queues ------------------------------------------------------------------------------------

    def open_queue(
        self, entry: LoadedEntry, deployment: Deployment, served: ServedVersion
    ) -> AdaptiveBatcher:
        """A queue on the model for the deployment, with its batch limits, its batches and its
        depth counted in the metrics labelled `served`."""
        metrics = self.metrics

        def on_batch(record: BatchRecord) -> None:
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
        return batcher

    def retire_queues(self, deployment_id: UUID, *, keeping: set[UUID]) -> None:
        """Close the deployment's queues on models of versions other than `keeping`."""
        for entry in list(self._models.values()):
            if deployment_id in entry.batchers and entry.key.version_id not in keeping:
                self._retire(deployment_id, *entry.batchers.pop(deployment_id))

    async def queues_retired(self, deployment_id: UUID) -> None:
        """Wait until the deployment's closing queues have answered what they held."""
        retiring = self._retiring.get(deployment_id)
        if retiring:
            await asyncio.wait(set(retiring))

    def _retire(self, deployment_id: UUID, batcher: AdaptiveBatcher, served: ServedVersion) -> None:
        """Close a queue once it has answered what it holds. In the background: nothing (a
        change announcement, a model load) waits behind a slow model's queue;
        `queues_retired` waits for it where that is the point."""

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

    async def _unload_all(self) -> None:
        """Cancel the loads under way, evict every model and wait for its queues to close."""
        for task in list(self._loading.values()):
            task.cancel()
        for entry in list(self._models.values()):
            self._evict(entry)
        retiring = [task for tasks in self._retiring.values() for task in tasks]
        if retiring:
            await asyncio.wait(retiring)
