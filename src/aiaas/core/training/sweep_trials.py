"""A sweep's trial as its training job runs it: the objective judged at every epoch's end, the
trial stopped when its pruner says so, and its outcome handed to the sweep when it ends.

The training thread hands each epoch's figures over (`TrialPruning.epoch_ended`); reporting
them to Optuna and asking the pruner happen on the event loop, through a thread for Optuna's
synchronous storage. Only a sweep with a pruner makes the training thread wait for the verdict,
once an epoch. A pruned trial stops at its next step boundary, as a cancelled one does: its job
ends CANCELLED, saying it was pruned, and the trial PRUNED.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiaas.core.errors import JobCancelledError
from aiaas.core.jobs import Job
from aiaas.core.outages import as_outage
from aiaas.core.training.sweep_driver import (
    PRUNED_NOTE,
    TrialOutcome,
    advance_sweep,
    objective_outcome,
)
from aiaas.core.training.sweep_records import (
    Sweep,
    TrialState,
    get_sweep,
    publish_sweep_events,
)
from aiaas.core.training.sweep_studies import STUDY_STORE, report_and_judge

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

EpochListener = Callable[[int, Mapping[str, float]], None]


class TrialPruning:
    """Reports a trial's objective at each epoch's end and stops the trial when it is pruned.

    Where the sweep has a pruner, the training thread waits for the verdict at each epoch's end
    (one round trip to Optuna's storage, milliseconds): a verdict arriving while training went
    on would let a small trial finish before it could be pruned, which is exactly the trial
    that pruning should save the most of. Without one, the value is only recorded, and the
    thread does not wait."""

    VERDICT_TIMEOUT_S = 30.0

    def __init__(self, platform: Platform, sweep: Sweep, number: int, trial_id: int) -> None:
        self._platform = platform
        self.sweep = sweep
        self.number = number
        self._trial_id = trial_id
        self._key = f"val_{sweep.objective_metric}"
        self._loop = asyncio.get_running_loop()
        self._stop: threading.Event | None = None
        self.prunes = sweep.spec.get("pruner", "none") != "none"
        self._recording: list[concurrent.futures.Future[bool]] = []
        self.pruned_at_epoch: int | None = None

    def start(self, stop: threading.Event) -> None:
        self._stop = stop

    def epoch_ended(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """From the training thread: an epoch's figures, judged before it goes on."""
        value = metrics.get(self._key)
        if value is None or self.pruned_at_epoch is not None or self._stop is None:
            return
        verdict = asyncio.run_coroutine_threadsafe(self._judge(epoch, float(value)), self._loop)
        if not self.prunes:
            # Nothing can be pruned: the value is recorded (the trial's curve) without the
            # training thread waiting for it; `close` waits for what is still on its way.
            self._recording.append(verdict)
            return
        try:
            prune = verdict.result(self.VERDICT_TIMEOUT_S)
        except Exception:  # the trial trains on unjudged rather than fail for it
            logger.warning("trial %s: epoch %d not judged", self._trial_id, epoch, exc_info=True)
            return
        if prune:
            self.pruned_at_epoch = epoch
            self._stop.set()

    async def _judge(self, epoch: int, value: float) -> bool:
        prune = await self._platform.service(STUDY_STORE).run(
            report_and_judge, self.sweep.study, self._trial_id, epoch, value
        )
        await publish_sweep_events(
            self._platform,
            self.sweep.id,
            [{"type": "intermediate", "number": self.number, "epoch": epoch, "value": value}],
        )
        return bool(prune)

    async def close(self) -> None:
        """Once `fit` has returned: wait for the values still being recorded."""
        pending = [asyncio.wrap_future(future) for future in self._recording]
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, Exception):
                logger.warning("trial %s: an epoch was not recorded: %s", self._trial_id, outcome)


async def trial_pruning(platform: Platform, job: Job) -> TrialPruning | None:
    """The pruning of the trial `job` runs, or None for a job outside any sweep."""
    link = job.payload.get("sweep")
    if not isinstance(link, Mapping):
        return None
    async with platform.metadata.acquire() as connection:
        sweep = await get_sweep(connection, UUID(link["id"]))
    return TrialPruning(platform, sweep, int(link["number"]), int(link["trial_id"]))


async def run_trial(
    platform: Platform,
    job: Job,
    pruning: TrialPruning | None,
    train: Callable[[], Awaitable[tuple[str, Mapping[str, Any]]]],
) -> str:
    """Run `train` (which returns the job's note and the model version's metrics), and hand the
    trial's outcome to its sweep as it ends, before the job's own outcome is recorded: the sweep
    starts its next trial without waiting for the reconciler. A trial that stops because its
    worker stops, because a service it needs went away, or because another worker took its job
    over, is not settled here: the job runs again and resumes it."""
    if pruning is None:
        note, _ = await train()
        return note
    try:
        note, metrics = await train()
    except JobCancelledError as exc:
        if pruning.pruned_at_epoch is None:
            await _settle(platform, job, pruning, TrialOutcome(TrialState.FAIL))
            raise
        await _settle(
            platform,
            job,
            pruning,
            TrialOutcome(TrialState.PRUNED, pruned_at_epoch=pruning.pruned_at_epoch),
        )
        raise JobCancelledError(f"{PRUNED_NOTE} at epoch {pruning.pruned_at_epoch}") from exc
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if as_outage(exc) is not None:
            # Not the trial's failure: its job goes back to the queue and resumes it, as after
            # a stopped worker (`workers.jobs`), so the sweep still waits for it.
            raise
        await _settle(platform, job, pruning, TrialOutcome(TrialState.FAIL))
        raise
    await _settle(platform, job, pruning, objective_outcome(pruning.sweep, metrics))
    return note


async def _settle(
    platform: Platform, job: Job, pruning: TrialPruning, outcome: TrialOutcome
) -> None:
    sweep_id = pruning.sweep.id
    try:
        # Told under this worker's claim: one that lost the job to another is not heard.
        await advance_sweep(platform, sweep_id, {pruning.number: outcome}, runner=job.claimed_by)
    except Exception:  # the reconciler settles it from the job's outcome instead
        logger.warning("sweep %s: trial %s not settled", sweep_id, pruning.number, exc_info=True)
