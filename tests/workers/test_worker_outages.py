"""The worker through outages of its services, real ones: a job whose PostgreSQL session is
terminated under it goes back to the queue instead of failing, and `aiaas worker`'s arq worker
waits out a Redis restart (a proxy the test cuts and restores) instead of exiting."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from arq.worker import Worker

from aiaas.core.config import Config
from aiaas.core.identity.projects import create_project
from aiaas.core.jobs import Job, JobState, enqueue_job, get_job, insert_job
from aiaas.core.platform import Platform
from aiaas.workers.jobs import OUTAGE_REQUEUE_LIMIT, OUTAGES_FAILED_IT, JobHandler
from aiaas.workers.outage_tolerant import OutageTolerantWorker
from aiaas.workers.settings import worker_settings
from cuttable_proxy import cuttable
from support import bootstrap_admin_principal, poll_until

SETTLES_WITHIN_S = 30.0
"""A bound for the test to fail rather than hang; not a speed claim."""


@pytest.fixture(scope="module")
async def project_id(platform: Platform, admin_token: str) -> uuid.UUID:
    admin = await bootstrap_admin_principal(platform)
    project = await create_project(platform, admin, slug="outages", name="Outages")
    return project.id


async def submit(platform: Platform, project_id: uuid.UUID, kind: str) -> Job:
    async with platform.metadata.transaction() as connection:
        job = await insert_job(
            connection, project_id=project_id, kind=kind, payload={}, created_by=None
        )
    assert await enqueue_job(platform, job.id)
    return job


async def state_of(platform: Platform, job_id: uuid.UUID) -> Job:
    async with platform.metadata.acquire() as connection:
        job = await get_job(connection, job_id)
    assert job is not None
    return job


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """`worker` polling in a task of this loop, stopped and closed on the way out."""
    task = asyncio.create_task(worker.async_run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # A job whose outcome the test already saw in PostgreSQL may still be writing its result
        # to Redis; `close` cancels what is running, which would cut that short.
        if worker.tasks:
            await asyncio.wait(list(worker.tasks.values()), timeout=SETTLES_WITHIN_S)
        await worker.close()


async def succeeds(platform: Platform, job_id: uuid.UUID) -> bool:
    """Whether the job ends SUCCEEDED within `SETTLES_WITHIN_S`."""

    async def succeeded() -> bool:
        return (await state_of(platform, job_id)).state is JobState.SUCCEEDED

    return await poll_until(succeeded, SETTLES_WITHIN_S, 0.1) is not None


async def burst(config: Config, handlers: dict[str, JobHandler], *, reconcile: bool) -> None:
    settings = worker_settings(config, job_handlers=handlers, stale_after_s=30)
    if not reconcile:
        settings["cron_jobs"] = []
    worker = Worker(**settings, burst=True, handle_signals=False)
    try:
        await asyncio.wait_for(worker.async_run(), timeout=60)
    finally:
        await worker.close()


async def test_a_job_that_loses_postgresql_is_queued_again_then_runs(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    deliveries: list[int] = []

    async def handler(platform: Platform, job: Job) -> str:
        deliveries.append(job.attempt)
        if len(deliveries) == 1:
            async with platform.metadata.acquire() as connection:
                # The server ends this session, as a PostgreSQL restart ends them all.
                await connection.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return "done"

    job = await submit(platform, project_id, "interrupted")
    await burst(config, {"interrupted": handler}, reconcile=False)
    handed_back = await state_of(platform, job.id)
    assert handed_back.state is JobState.QUEUED, handed_back
    assert handed_back.claimed_by is None

    await burst(config, {"interrupted": handler}, reconcile=True)  # the reconciler re-enqueues
    finished = await state_of(platform, job.id)
    assert finished.state is JobState.SUCCEEDED, finished
    assert deliveries == [1, 2]


async def test_the_worker_waits_out_a_redis_restart_and_runs_what_comes_after(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    async def handler(platform: Platform, job: Job) -> str:
        return "after the restart"

    async with cuttable(str(config.redis_url)) as proxy:
        through_proxy = config.model_copy(
            update={"redis_url": proxy.url_through(str(config.redis_url))}
        )
        settings = worker_settings(through_proxy, job_handlers={"later": handler})
        settings["cron_jobs"] = []
        async with running(OutageTolerantWorker(**settings, handle_signals=False)) as polling:
            await asyncio.sleep(1.0)  # started and polling
            await proxy.cut()
            await asyncio.sleep(2.0)  # several polls meet no Redis
            assert not polling.done(), polling
            await proxy.restore()
            job = await submit(platform, project_id, "later")
            assert await succeeds(platform, job.id)


async def test_outages_as_jobs_start_leave_the_worker_its_job_slots(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    """arq takes a job slot before it marks the job in progress in Redis: Redis lost right then,
    more times than the worker has slots, must still leave it a slot to run the job in."""
    max_jobs = 2

    async def handler(platform: Platform, job: Job) -> str:
        return "started at last"

    async with cuttable(str(config.redis_url)) as proxy:

        class CutAsJobsStart(OutageTolerantWorker):
            cuts_left = max_jobs + 1

            async def start_jobs(self, job_ids: list[bytes]) -> None:
                if not job_ids or self.cuts_left == 0:
                    await super().start_jobs(job_ids)
                    return
                self.cuts_left -= 1
                await proxy.cut()  # between reading the queue and marking the job in progress
                try:
                    await super().start_jobs(job_ids)
                finally:
                    await proxy.restore()

        through_proxy = config.model_copy(
            update={"redis_url": proxy.url_through(str(config.redis_url))}
        )
        settings = worker_settings(through_proxy, job_handlers={"slotted": handler})
        settings["cron_jobs"] = []
        settings["max_jobs"] = max_jobs
        job = await submit(platform, project_id, "slotted")
        worker = CutAsJobsStart(**settings, handle_signals=False)
        async with running(worker):
            assert await succeeds(platform, job.id), (worker.cuts_left, worker.job_counter)
            assert worker.cuts_left == 0  # every cut met a job starting


async def test_a_job_stopped_by_outages_too_often_fails_saying_so(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    async def handler(platform: Platform, job: Job) -> str:
        async with platform.metadata.acquire() as connection:
            await connection.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return "never"

    job = await submit(platform, project_id, "doomed")
    async with platform.metadata.acquire() as connection:
        # As if it had been handed back for outages on every delivery up to the limit.
        await connection.execute(
            "UPDATE jobs SET attempt = $2 WHERE id = $1", job.id, OUTAGE_REQUEUE_LIMIT
        )
    await burst(config, {"doomed": handler}, reconcile=False)
    failed = await state_of(platform, job.id)
    assert failed.state is JobState.FAILED, failed
    assert failed.attempt == OUTAGE_REQUEUE_LIMIT + 1
    assert failed.reason is not None and failed.reason.startswith(OUTAGES_FAILED_IT), failed.reason
