"""An arq worker that rides out a Redis or PostgreSQL outage instead of exiting.

arq's poll loop reads the queue, records its health and runs its cron jobs in Redis, and lets
any error end the worker: a Redis restart would take every `aiaas worker` down with it, and
whatever supervises it would have to start it again. This worker waits instead, polling again
every `OUTAGE_POLL_S`, and carries on where it was once the service is back (redis-py
reconnects on the next command). Its running jobs are left alone: a job that a lost service
stops goes back to the queue by itself (`workers.jobs`).

arq takes a job slot (its semaphore, its `job_counter`) before it marks a job in progress in
Redis, and gives it back only when the job's task ends: an error in between leaves the slot
taken, since arq expects the worker to die of it. This worker starts its jobs one at a time and
gives back the slot of any that an outage kept from starting; without that, `max_jobs` outages
at the wrong moment would leave it polling with no slot to run anything in.

arq's `close` cancels the job tasks still running and then gathers them without
`return_exceptions`: a task caught in arq's own bookkeeping (writing a finished job's result)
ends cancelled, the gather raises `CancelledError`, and the shutdown hook that stops the
worker's platform never runs, leaving its pools and listeners behind. And arq writes that
result under `asyncio.shield`, so the write goes on after its job's task has ended cancelled,
on a Redis pool that `close` is about to shut. This worker's `close` waits for the cancelled
tasks to end whichever way they end, and for the shielded writes, then shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from arq.worker import Worker

from aiaas.core.outages import as_outage

logger = logging.getLogger(__name__)

OUTAGE_POLL_S = 1.0


class OutageTolerantWorker(Worker):
    _outage: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._finishing: set[asyncio.Task[Any]] = set()

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except Exception as exc:
            outage = as_outage(exc)
            if outage is None:
                raise
            if self._outage is None:
                logger.warning("the worker waits for its services: %s", outage.message)
            self._outage = outage.message
            await asyncio.sleep(OUTAGE_POLL_S)
            return
        if self._outage is not None:
            logger.warning("the worker's services are back; it polls again")
            self._outage = None

    async def close(self) -> None:
        if not self._handle_signals:
            # What arq's stop (`handle_sig`, which its close calls next) would cancel.
            for task in self.tasks.values():
                task.cancel()
        await asyncio.gather(*self.tasks.values(), *self._finishing, return_exceptions=True)
        self.tasks.clear()  # each has ended and been waited for; arq's close gathers none again
        await super().close()

    async def finish_job(self, *args: Any, **kwargs: Any) -> None:
        async with self._finishing_in(asyncio.current_task()):
            await super().finish_job(*args, **kwargs)

    async def finish_failed_job(self, *args: Any, **kwargs: Any) -> None:
        async with self._finishing_in(asyncio.current_task()):
            await super().finish_failed_job(*args, **kwargs)

    @contextlib.asynccontextmanager
    async def _finishing_in(self, task: asyncio.Task[Any] | None) -> AsyncIterator[None]:
        # The task is the one `asyncio.shield` made for the write, not the job's own.
        if task is not None:
            self._finishing.add(task)
        try:
            yield
        finally:
            self._finishing.discard(task)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        for job_id in job_ids:
            if self.job_counter >= self.max_jobs:
                return  # as arq's own loop stops: no slot for this job or the ones after it
            task_before = self.tasks.get(job_id.decode())
            try:
                await super().start_jobs([job_id])
            except Exception:
                if self.tasks.get(job_id.decode()) is task_before:
                    # arq took a slot for this job (before any await that can fail) and started
                    # no task, whose end is all that gives a slot back.
                    self.job_counter -= 1
                    self.sem.release()
                raise
