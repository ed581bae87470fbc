"""The worker through outages of its services, real ones: a job whose PostgreSQL session is
terminated under it goes back to the queue instead of failing, and `aiaas worker`'s arq worker
waits out a Redis restart (a proxy the test cuts and restores) instead of exiting."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from arq.worker import Worker

from aiaas.core.config import Config
from aiaas.core.identity.projects import create_project
from aiaas.core.jobs import Job, JobState, enqueue_job, get_job, insert_job
from aiaas.core.platform import Platform
from aiaas.workers.jobs import JobHandler
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
        worker = OutageTolerantWorker(**settings, handle_signals=False)
        running = asyncio.create_task(worker.async_run())
        try:
            await asyncio.sleep(1.0)  # started and polling
            await proxy.cut()
            await asyncio.sleep(2.0)  # several polls meet no Redis
            assert not running.done(), running
            await proxy.restore()
            job = await submit(platform, project_id, "later")

            async def succeeded() -> bool:
                return (await state_of(platform, job.id)).state is JobState.SUCCEEDED

            assert await poll_until(succeeded, SETTLES_WITHIN_S, 0.1) is not None
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await worker.close()
