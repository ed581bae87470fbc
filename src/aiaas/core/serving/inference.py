"""The inference server of a serving process: the path of one prediction through the
deployments it knows (`deployment_cache`, which also routes) and the models it has loaded
(`model_cache`).

A prediction is routed by the deployment's split (the canary takes its percentage of requests at
random), its encoded images, if it sent any for an image input, decoded in a thread and fitted
to that version's size (`image_requests`), queued to the version's adaptive batcher (in chunks of
the deployment's batch size, when it has more rows than a batch, up to its `maxQueueRows`), and
answered; a shadow version, if any, gets a copy afterwards, off the caller's path, and its answer
is logged with the one returned.

The routes of the APIs ask the `InferenceServer` for what they need and nothing more: a
deployment by the name a protocol gives it, the `ServingTarget` it resolves to (its signature,
the versions it serves in their roles), a prediction, and a slot to parse a large request body
in. Stopping a deployment (`stop_and_drain`) answers what this process has queued for it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import numpy as np

from aiaas.core.auth import Principal
from aiaas.core.errors import (
    BatcherClosedError,
    DeploymentNotReadyError,
    InputError,
    ModelLoadError,
    NotFoundError,
    QueueFullError,
    ServiceUnavailableError,
)
from aiaas.core.log_records import bind_log_context, detached_context
from aiaas.core.platform import ProcessService
from aiaas.core.runtimes import LoadedModel
from aiaas.core.serving.batching import AdaptiveBatcher
from aiaas.core.serving.deployment_cache import CachedDeployment, DeploymentCache, ServingTarget
from aiaas.core.serving.deployments import (
    CHANGES_CHANNEL,
    LOCAL_CHANGES,
    Deployment,
    DeploymentState,
    Role,
    stop_deployment,
)
from aiaas.core.serving.image_requests import (
    IMAGE_REQUESTS_AT_ONCE,
    ImageLimits,
    decoded_columns,
)
from aiaas.core.serving.metrics import InferenceProtocol, Outcome, ServedVersion, ServingMetrics
from aiaas.core.serving.model_cache import ModelCache, ModelKey
from aiaas.core.serving.prediction_samples import PredictionSampler
from aiaas.core.serving.request_chunks import check_request_rows
from aiaas.core.signatures import ModelSignature
from aiaas.core.training.registry import ModelVersion

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEPLOYMENT_TTL_S = 2.0
"""How long a process trusts its copy of a deployment without an announcement. Changes are
announced on Redis pub/sub, which can lose a message; this bounds how stale a copy can get."""

MAX_SHADOWS_IN_FLIGHT = 256
"""Shadow copies are extra work nobody waits for: past this many at once they are skipped."""

MAX_LOAD_ATTEMPTS = 3
"""Loads a request may wait for when other loads keep evicting its model (a cache too small
for the models in use) before it is answered 503."""

LARGE_REQUESTS_AT_ONCE = 2
"""Large request bodies parsed at once (in threads), which bounds their memory."""


@dataclass(frozen=True)
class Prediction:
    deployment: Deployment
    version: ModelVersion
    role: Role
    outputs: dict[str, np.ndarray]
    signature: ModelSignature
    """The answering version's, which names and types `outputs`."""


class InferenceServer(ModelCache):
    """One process's deployments, model cache, batchers and metrics (see the module doc). It is
    the process's `ModelCache`, with the deployments that use it and the path of a prediction."""

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform, ServingMetrics())
        self.samples = PredictionSampler(platform, rate=platform.config.prediction_sample_rate)
        # Routing needs a fair coin, not a secret.
        self._random = random.Random()  # noqa: S311
        self._deployments = DeploymentCache(
            platform,
            ttl_s=DEPLOYMENT_TTL_S,
            on_refreshed=self._let_go_of_unserved,
            coin=self._random,
        )
        self._shadows: set[asyncio.Task[None]] = set()
        self._large_requests = asyncio.Semaphore(LARGE_REQUESTS_AT_ONCE)
        self._image_requests = asyncio.Semaphore(IMAGE_REQUESTS_AT_ONCE)
        self._image_limits = ImageLimits(
            max_request_bytes=platform.config.inference_max_image_bytes,
            max_request_pixels=platform.config.inference_max_image_pixels,
        )
        self._listener: asyncio.Task[None] | None = None
        self._closed = False
        platform.service(LOCAL_CHANGES).listen(self.refresh)

    # Lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen for announced changes. Idempotent; needs a running event loop."""
        if self._listener is None and not self._closed:
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name="deployment-changes", context=detached_context()
            )

    async def close(self) -> None:
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.wait({self._listener})
        await self._unload_all()
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
        return await self._deployments.get(deployment_id)

    async def refresh(self, deployment_id: UUID) -> CachedDeployment:
        """Re-read the deployment, and let go of the queues of versions it no longer serves."""
        return await self._deployments.refresh(deployment_id)

    def _let_go_of_unserved(self, cached: CachedDeployment) -> None:
        deployment = cached.deployment
        served = set(deployment.traffic.versions()) if deployment.is_serving else set()
        if deployment.state is DeploymentState.UPDATING and deployment.pending is not None:
            served |= set(deployment.pending.versions())
        self.retire_queues(deployment.id, keeping=served)
        if deployment.state is DeploymentState.STOPPED:
            self.metrics.forget(cached.project_slug, deployment.name)

    async def deployment_named(self, project_slug: str, name: str) -> Deployment | None:
        """The live deployment `name` of the project `project_slug`, as a protocol names it;
        None if there is none."""
        return await self._deployments.named(project_slug, name)

    async def target(self, deployment: Deployment) -> ServingTarget:
        """What the deployment serves, resolved for a route."""
        return await self._deployments.target(deployment)

    async def drain(self, deployment_id: UUID) -> None:
        """Answer every request this process has queued for the deployment, then drop its
        queues (after the deployment was stopped)."""
        await self.refresh(deployment_id)
        await self.queues_retired(deployment_id)

    async def version(self, version_id: UUID) -> ModelVersion:
        """A model version; they never change, so each is read once."""
        return await self._deployments.version(version_id)

    def signature(self, version: ModelVersion) -> ModelSignature:
        """The version's signature as a `ModelSignature`, made once per version."""
        return self._deployments.signature(version)

    # Models ------------------------------------------------------------------------------------

    async def warm(self, deployment: Deployment, version_id: UUID) -> LoadedModel:
        """The version loaded for this deployment's runtime and batch size, every bucket
        compiled and run: what READY promises."""
        version = await self.version(version_id)
        key = ModelKey(version.id, deployment.runtime, deployment.max_batch_size)
        # A rollout is a deliberate attempt: it loads afresh even if a request failed to.
        entry = await self.loaded(key, version, afresh=True)
        return entry.model

    async def parse_large_body(self, parse: Callable[[], T]) -> T:
        """`parse`, seconds of work on a request body of many megabytes, in a thread, so that
        the event loop (every other request, every batcher) does not wait; and a few at a time,
        so that their memory (JSON numbers as Python objects) stays bounded."""
        async with self._large_requests:
            return await asyncio.to_thread(parse)

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
        key = ModelKey(version_id, deployment.runtime, deployment.max_batch_size)
        for _ in range(MAX_LOAD_ATTEMPTS):
            entry = await self.loaded(key, version)
            served = await self._served(cached, version_id, role)
            # Another load may have evicted it between its load and now: a queue attached to
            # a model no longer in the cache would never be closed.
            if self.holds(entry):
                break
        else:
            raise ModelLoadError("the model cache is too small for the models in use; retry")
        found = entry.batchers.get(deployment.id)
        if found is not None:
            return found
        current = (self._deployments.current(deployment.id) or cached).deployment
        if not current.is_serving or version_id not in current.traffic.versions():
            # Stopped, or the split moved on, while the model loaded: a queue made now would
            # serve what is no longer deployed.
            raise BatcherClosedError("the deployment changed while its model loaded")
        return self.open_queue(entry, deployment, served), served

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
        must be one the split serves to callers). It may have any number of rows up to the
        deployment's `max_queue_rows`: the batcher splits it into batches."""
        bind_log_context(deployment_id=deployment_id)
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
        role, version_id = await self._deployments.route(deployment, version_number)
        started = time.perf_counter()
        outcome: Outcome = "error"
        served: ServedVersion | None = None
        try:
            for attempt in (1, 2):
                try:
                    batcher, served = await self._batcher(cached, version_id, role)
                    checked, image_sizes = await self._checked(batcher, columns)
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
                    role, version_id = await self._deployments.route(
                        cached.deployment, version_number
                    )
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
            self.samples.record(
                deployment.id, version_id, role.value, checked, outputs, image_sizes
            )
        shadow_id = cached.deployment.shadow_version_id
        if shadow_id is not None and len(self._shadows) < MAX_SHADOWS_IN_FLIGHT:
            task = asyncio.get_running_loop().create_task(
                self._shadow(cached, shadow_id, columns, outputs, str(version.number))
            )
            self._shadows.add(task)
            task.add_done_callback(self._shadows.discard)
        return Prediction(cached.deployment, version, role, outputs, self.signature(version))

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
            checked, image_sizes = await self._checked(batcher, columns)
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
        self.samples.record(
            cached.deployment.id, shadow_id, Role.SHADOW.value, checked, outputs, image_sizes
        )

    async def _checked(
        self, batcher: AdaptiveBatcher, columns: Mapping[str, Any]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The request's inputs as the batcher's model takes them, encoded images decoded (in
        a thread) and fitted to the size its signature says, and the size each encoded image
        was sent at (for the sampled statistics)."""
        check_request_rows(columns, batcher.max_request_rows)  # before decoding anything
        decoded, image_sizes = await decoded_columns(
            batcher.model.signature, columns, self._image_limits, self._image_requests
        )
        return batcher.check(decoded), image_sizes


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


async def stop_and_drain(
    platform: Platform,
    principal: Principal,
    deployment_id: UUID,
    *,
    request_id: str | None = None,
) -> Deployment:
    """Stop the deployment (`deleteDeployment`), then answer what this process has queued for
    it before returning; other processes drain as soon as they hear of the change."""
    stopped = await stop_deployment(platform, principal, deployment_id, request_id=request_id)
    await platform.service(INFERENCE_SERVER).drain(stopped.id)
    return stopped
