"""The arq worker against real Redis and PostgreSQL: msgpack only, claims, outcomes, reconcile,
and the jobs a stopping worker hands back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.worker import Worker

from aiaas.core.auth import Principal
from aiaas.core.config import Config
from aiaas.core.identity.accounts import BOOTSTRAP_ADMIN
from aiaas.core.identity.projects import create_project
from aiaas.core.jobs import (
    HANDED_BACK_REASON,
    RUN_JOB_FUNCTION,
    Job,
    JobState,
    claim_job,
    enqueue_job,
    get_job,
    insert_job,
)
from aiaas.core.platform import Platform
from aiaas.workers.outage_tolerant import OutageTolerantWorker
from aiaas.workers.settings import worker_settings

Handler = Callable[[Platform, Job], Awaitable[str | None]]


@pytest.fixture(scope="module")
async def project_id(platform: Platform, admin_token: str) -> uuid.UUID:
    async with platform.metadata.acquire() as connection:
        admin_id = await connection.fetchval(
            "SELECT id FROM users WHERE username = $1", BOOTSTRAP_ADMIN
        )
    admin = Principal(user_id=admin_id, username="admin", is_admin=True, authenticated_by="test")
    project = await create_project(platform, admin, slug="jobs", name="Jobs")
    return project.id


async def submit(platform: Platform, project_id: uuid.UUID, kind: str, **payload: Any) -> Job:
    async with platform.metadata.transaction() as connection:
        job = await insert_job(
            connection, project_id=project_id, kind=kind, payload=payload, created_by=None
        )
    assert await enqueue_job(platform, job.id)
    return job


async def run_worker_until_idle(
    config: Config,
    handlers: dict[str, Handler],
    *,
    reconcile_at_start: bool = False,
    stale_after_s: float = 30,
) -> Worker:
    """A real arq worker in burst mode: it runs what is queued, then returns. With
    `reconcile_at_start` it keeps its real cron job, which reconciles as the worker starts."""
    settings = worker_settings(config, job_handlers=handlers, stale_after_s=stale_after_s)
    if not reconcile_at_start:
        settings["cron_jobs"] = []  # keep the burst to the jobs under test
    worker = Worker(**settings, burst=True, handle_signals=False)
    try:
        await asyncio.wait_for(worker.async_run(), timeout=30)
    finally:
        await worker.close()
    return worker


async def job_state(platform: Platform, job_id: uuid.UUID) -> Job:
    async with platform.metadata.acquire() as connection:
        job = await get_job(connection, job_id)
    assert job is not None
    return job


async def test_a_job_runs_once_through_its_handler_and_succeeds(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    seen: list[dict[str, Any]] = []

    async def handler(_: Platform, job: Job) -> str:
        seen.append(job.payload)
        return "trained"

    job = await submit(platform, project_id, "probe", answer=42)
    await run_worker_until_idle(config, {"probe": handler})

    finished = await job_state(platform, job.id)
    assert seen == [{"answer": 42}]
    assert finished.state is JobState.SUCCEEDED
    assert finished.reason == "trained"
    assert finished.attempt == 1
    assert finished.started_at is not None
    assert finished.finished_at is not None
    assert finished.started_at <= finished.finished_at


async def test_a_handler_that_raises_fails_the_job_with_the_reason(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    async def handler(_: Platform, job: Job) -> None:
        raise ValueError("loss became NaN at step 7")

    job = await submit(platform, project_id, "explodes")
    await run_worker_until_idle(config, {"explodes": handler})

    finished = await job_state(platform, job.id)
    assert finished.state is JobState.FAILED
    assert finished.reason == "loss became NaN at step 7"


async def test_a_job_of_an_unknown_kind_fails_with_a_clear_reason(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    job = await submit(platform, project_id, "nobody-handles-this")
    await run_worker_until_idle(config, {})

    finished = await job_state(platform, job.id)
    assert finished.state is JobState.FAILED
    assert "nobody-handles-this" in (finished.reason or "")


async def test_a_duplicate_delivery_runs_the_job_once(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    runs = 0

    async def handler(_: Platform, job: Job) -> None:
        nonlocal runs
        runs += 1

    job = await submit(platform, project_id, "counted")
    await run_worker_until_idle(config, {"counted": handler})
    # Deliver the same job again, as a lost acknowledgement or a reconcile race would.
    await platform.redis.delete(result_key_prefix + str(job.id))
    assert await enqueue_job(platform, job.id)
    await run_worker_until_idle(config, {"counted": handler})

    assert runs == 1
    assert (await job_state(platform, job.id)).state is JobState.SUCCEEDED


async def test_a_claim_is_refused_while_another_worker_holds_the_job(
    platform: Platform, project_id: uuid.UUID
) -> None:
    async with platform.metadata.transaction() as connection:
        job = await insert_job(
            connection, project_id=project_id, kind="held", payload={}, created_by=None
        )

    first = await claim_job(platform, job.id, "worker-a", stale_after_s=30)
    second = await claim_job(platform, job.id, "worker-b", stale_after_s=30)
    # Once the holder's heartbeat is older than the limit, the job can be taken over.
    takeover = await claim_job(platform, job.id, "worker-b", stale_after_s=0)

    assert first is not None
    assert first.claimed_by == "worker-a"
    assert second is None
    assert takeover is not None
    assert takeover.claimed_by == "worker-b"
    assert takeover.attempt == 2


async def test_a_job_cancelled_while_its_worker_was_dead_ends_cancelled_and_never_runs_again(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    ran: list[str] = []

    async def handler(_: Platform, job: Job) -> None:
        ran.append("again")

    job = await submit(platform, project_id, "abandoned")
    assert await claim_job(platform, job.id, "dead-worker", stale_after_s=30) is not None
    async with platform.metadata.acquire() as connection:
        await connection.execute(
            "UPDATE jobs SET cancel_requested_at = clock_timestamp(), reason = 'cancelled by ada' "
            "WHERE id = $1",
            job.id,
        )
    # Stale now, but cancelled: no worker may take it over.
    assert await claim_job(platform, job.id, "heir", stale_after_s=0) is None
    await run_worker_until_idle(
        config, {"abandoned": handler}, reconcile_at_start=True, stale_after_s=0
    )

    finished = await job_state(platform, job.id)
    assert ran == []
    assert finished.state is JobState.CANCELLED
    assert finished.reason is not None and finished.reason.startswith("cancelled by ada")


async def test_reconcile_re_enqueues_queued_jobs_after_redis_loses_its_data(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    ran: list[uuid.UUID] = []

    async def handler(_: Platform, job: Job) -> None:
        ran.append(job.id)

    job = await submit(platform, project_id, "survivor")
    await platform.redis.flushdb()
    assert not await platform.redis.exists(job_key_prefix + str(job.id))

    # The real cron job, run at start-up, is what brings the job back.
    await run_worker_until_idle(config, {"survivor": handler}, reconcile_at_start=True)
    # The re-enqueued job lands in the queue during the burst; drain it.
    await run_worker_until_idle(config, {"survivor": handler})

    assert ran == [job.id]
    assert (await job_state(platform, job.id)).state is JobState.SUCCEEDED


async def test_reconcile_hands_a_job_whose_worker_died_to_another_worker(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    ran: list[str] = []

    async def handler(_: Platform, job: Job) -> None:
        ran.append("second worker")

    job = await submit(platform, project_id, "orphaned")
    # A worker claimed it and died: RUNNING, arq still holding it, heartbeat going stale.
    assert await claim_job(platform, job.id, "dead-worker", stale_after_s=30) is not None
    await run_worker_until_idle(
        config, {"orphaned": handler}, reconcile_at_start=True, stale_after_s=0
    )
    await run_worker_until_idle(config, {"orphaned": handler})

    finished = await job_state(platform, job.id)
    assert ran == ["second worker"]
    assert finished.state is JobState.SUCCEEDED
    assert finished.claimed_by != "dead-worker"


class _Exploit:
    """What an attacker with write access to Redis would queue: unpickling it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (os.mkdir, (str(self.marker),))


async def test_the_worker_refuses_a_pickled_payload_without_running_anything(
    platform: Platform, config: Config, project_id: uuid.UUID, tmp_path: Path
) -> None:
    ran: list[uuid.UUID] = []

    async def handler(_: Platform, job: Job) -> None:
        ran.append(job.id)

    async with platform.metadata.transaction() as connection:
        job = await insert_job(
            connection, project_id=project_id, kind="target", payload={}, created_by=None
        )
    marker = tmp_path / "pwned"
    arq_id = str(job.id)
    pickled = pickle.dumps(
        {
            "f": RUN_JOB_FUNCTION,
            "a": (arq_id, _Exploit(marker)),
            "k": {},
            "t": 1,
            "et": int(time.time() * 1000),
        }
    )
    # Queue it the way arq does, byte for byte, but pickled as arq's default would be.
    await platform.redis.psetex(job_key_prefix + arq_id, 60_000, pickled)
    await platform.redis.zadd(config.queue_name, {arq_id: int(time.time() * 1000)})

    worker = await run_worker_until_idle(config, {"target": handler})

    assert not marker.exists(), "the pickle was executed"
    assert ran == []
    assert worker.jobs_failed == 1
    assert (await job_state(platform, job.id)).state is JobState.QUEUED
    result = await platform.redis.get(result_key_prefix + arq_id)
    assert result is not None
    assert msgpack.unpackb(result, raw=False)["s"] is False


async def test_a_stopping_worker_hands_its_running_job_back_for_the_next_worker_at_once(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    started = asyncio.Event()
    runs: list[str] = []

    async def until_stopped(_: Platform, job: Job) -> None:
        runs.append("first")
        started.set()
        await asyncio.Event().wait()  # runs until the worker stops

    async def finishes(_: Platform, job: Job) -> str:
        runs.append("second")
        return "done"

    job = await submit(platform, project_id, "long")
    settings = worker_settings(config, job_handlers={"long": until_stopped}, stale_after_s=600)
    settings["cron_jobs"] = []
    first = Worker(**settings, handle_signals=False)
    running = asyncio.create_task(first.async_run())
    await asyncio.wait_for(started.wait(), timeout=30)
    first.handle_sig(signal.SIGTERM)  # what arq does on SIGTERM or SIGINT
    with pytest.raises(asyncio.CancelledError):
        await running
    await first.close()

    handed_back = await job_state(platform, job.id)
    arq_id = str(job.id)
    redis = platform.redis
    queued_in_redis = await redis.zscore(config.queue_name, arq_id) is not None
    held = [
        await redis.exists(prefix + arq_id)
        for prefix in (job_key_prefix, in_progress_key_prefix, retry_key_prefix)
    ]
    # With claims that go stale only after ten minutes, the next worker can only run it now
    # because it was handed back.
    second = await run_worker_until_idle(config, {"long": finishes}, stale_after_s=600)
    finished = await job_state(platform, job.id)

    assert handed_back.state is JobState.QUEUED
    assert handed_back.claimed_by is None
    assert handed_back.heartbeat_at is None
    assert handed_back.reason == HANDED_BACK_REASON
    assert handed_back.attempt == 1
    assert queued_in_redis
    assert held == [1, 0, 0]
    assert runs == ["first", "second"]
    assert second.jobs_failed == 0
    assert finished.state is JobState.SUCCEEDED
    assert finished.reason == "done"
    assert finished.attempt == 2


async def test_a_job_cancelled_while_its_worker_stops_ends_cancelled(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    started = asyncio.Event()

    async def until_stopped(_: Platform, job: Job) -> None:
        started.set()
        await asyncio.Event().wait()

    job = await submit(platform, project_id, "doomed")
    settings = worker_settings(config, job_handlers={"doomed": until_stopped}, stale_after_s=600)
    settings["cron_jobs"] = []
    worker = Worker(**settings, handle_signals=False)
    running = asyncio.create_task(worker.async_run())
    await asyncio.wait_for(started.wait(), timeout=30)
    async with platform.metadata.acquire() as connection:
        await connection.execute(
            "UPDATE jobs SET cancel_requested_at = clock_timestamp(), reason = 'cancelled by ada' "
            "WHERE id = $1",
            job.id,
        )
    worker.handle_sig(signal.SIGINT)
    with pytest.raises(asyncio.CancelledError):
        await running
    await worker.close()

    finished = await job_state(platform, job.id)
    assert finished.state is JobState.CANCELLED
    assert finished.reason == "cancelled by ada; its worker stopped before it did"
    assert finished.finished_at is not None


async def test_a_delivery_arq_refuses_stores_its_reason_as_text(
    platform: Platform, config: Config, project_id: uuid.UUID
) -> None:
    """arq's own failures (max tries, an expired job) store the exception as the result: it is
    kept as text, where it used to fail with "can not serialize 'JobExecutionFailed' object"."""
    ran: list[uuid.UUID] = []

    async def handler(_: Platform, job: Job) -> None:
        ran.append(job.id)

    job = await submit(platform, project_id, "over-delivered")
    arq_id = str(job.id)
    await platform.redis.set(retry_key_prefix + arq_id, 5)  # delivered too often already

    worker = await run_worker_until_idle(config, {"over-delivered": handler})

    result = await platform.redis.get(result_key_prefix + arq_id)
    assert result is not None
    stored = msgpack.unpackb(result, raw=False)
    assert ran == []
    assert worker.jobs_failed == 1
    assert stored["s"] is False
    assert stored["r"] == "JobExecutionFailed: max 1 retries exceeded"


@pytest.mark.parametrize("ending", ["returns", "raises"])
async def test_a_worker_whose_job_was_taken_over_records_nothing_and_says_so(
    platform: Platform,
    config: Config,
    project_id: uuid.UUID,
    caplog: pytest.LogCaptureFixture,
    ending: str,
) -> None:
    """As a worker whose host was cut off finds when it is back: another worker holds its job
    now. Whatever its run ended with, it writes over nothing, and its log says why (before its
    next heartbeat would have)."""

    async def handler(_: Platform, job: Job) -> str:
        assert await claim_job(platform, job.id, "heir", stale_after_s=0) is not None
        if ending == "raises":
            raise RuntimeError("a run cut short")
        return "trained"

    job = await submit(platform, project_id, f"taken-{ending}")
    with caplog.at_level("WARNING", logger="aiaas.workers.jobs"):
        await run_worker_until_idle(config, {f"taken-{ending}": handler})

    now = await job_state(platform, job.id)
    assert now.state is JobState.RUNNING and now.claimed_by == "heir"
    assert any("claim lost" in record.getMessage() for record in caplog.records), caplog.text


async def test_a_worker_stopped_while_a_job_task_ends_cancelled_still_shuts_down(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """arq cancels the job tasks a stop finds running; one caught in arq's own bookkeeping
    (writing a finished job's result, under `asyncio.shield`) ends cancelled while the write
    goes on. The worker's close must wait for both and still run its shutdown hook, which
    stops the worker's platform: without that, its pools and listeners outlive it."""
    written = asyncio.Event()
    arq_finish_job = Worker.finish_job

    async def slow_finish_job(self: Worker, *args: Any) -> None:
        await asyncio.sleep(0.3)  # long enough for the stop to come while it writes
        await arq_finish_job(self, *args)
        written.set()

    monkeypatch.setattr(Worker, "finish_job", slow_finish_job)
    settings = worker_settings(config, job_handlers={})
    settings["cron_jobs"] = []
    start_platform, stop_platform = settings["on_startup"], settings["on_shutdown"]
    started, shut_down = asyncio.Event(), asyncio.Event()

    async def recording_startup(ctx: dict[str, Any]) -> None:
        await start_platform(ctx)
        started.set()

    async def recording_shutdown(ctx: dict[str, Any]) -> None:
        assert written.is_set(), "shut down while a result was still being written"
        await stop_platform(ctx)
        shut_down.set()

    settings.update(on_startup=recording_startup, on_shutdown=recording_shutdown)
    worker = OutageTolerantWorker(**settings, handle_signals=False)
    running = asyncio.create_task(worker.async_run())
    await asyncio.wait_for(started.wait(), timeout=30)

    async def job_writing_its_result() -> None:  # as arq's run_job ends
        await asyncio.shield(
            worker.finish_job(f"no-such-job-{uuid.uuid4()}", True, None, None, False, None, None)
        )

    caught_finishing = asyncio.create_task(job_writing_its_result())
    worker.tasks["caught-finishing"] = caught_finishing
    await asyncio.sleep(0.05)  # the write has begun

    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    await worker.close()

    assert caught_finishing.cancelled()
    assert written.is_set()
    assert shut_down.is_set()
    assert worker.tasks == {}
