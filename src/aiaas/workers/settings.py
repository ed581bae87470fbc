"""arq worker settings, built from the config."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

import msgpack
from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import func

from aiaas.core.bootstrap import create_platform
from aiaas.core.compilation_cache import use_compilation_cache
from aiaas.core.config import Config
from aiaas.core.data.scratch_area import SCRATCH_AREA
from aiaas.core.job_kinds import handlers_by_kind
from aiaas.core.jobs import RUN_JOB_FUNCTION
from aiaas.core.platform import Platform
from aiaas.core.plugin_manager import AiaasPluginManager
from aiaas.core.serialization import unpack
from aiaas.core.tracing import configure_tracing
from aiaas.workers.jobs import (
    JobHandler,
    check_drift_job,
    collect_garbage_job,
    reconcile,
    run_job,
)

RECONCILE_EVERY_S = 15
JOB_TIMEOUT_S = 24 * 3600


def _exception_text(value: Any) -> str:
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    raise TypeError(f"can not serialize {type(value).__name__!r} object")


def pack_job_data(value: Any) -> bytes:
    """msgpack, as for payloads (`core.serialization`), except that the result arq stores for
    a job that failed before our code ran (it expired, or was delivered too often) holds the
    exception, which is kept as its text rather than failing to serialize."""
    packed: bytes = msgpack.packb(value, use_bin_type=True, default=_exception_text)
    return packed


def worker_settings(
    config: Config,
    *,
    job_handlers: Mapping[str, JobHandler] | None = None,
    heartbeat_interval_s: float | None = None,
    stale_after_s: float | None = None,
    plugin_manager: AiaasPluginManager | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `arq.worker.Worker`. Without `plugin_manager` the worker loads
    the plugins its config names, as every process does. Without `job_handlers` it runs the
    job kinds those plugins register (`aiaas_job_kinds`), each payload validated first; given,
    they replace the registered kinds, and get the job with its payload unchecked."""
    if config.redis_url is None:
        from aiaas.core.errors import ConfigError

        raise ConfigError("redis_url (AIAAS_REDIS_URL) is not set")

    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_tracing(config)  # nothing unless otel_endpoint is set
        use_compilation_cache(config)
        platform = create_platform(config, plugin_manager)
        await platform.start()
        platform.service(SCRATCH_AREA)  # what a stopped process left in scratch, swept now
        ctx.update(
            platform=platform,
            job_handlers=(
                handlers_by_kind(platform) if job_handlers is None else dict(job_handlers)
            ),
            worker_id=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            heartbeat_interval_s=(
                config.job_heartbeat_interval_s
                if heartbeat_interval_s is None
                else heartbeat_interval_s
            ),
            stale_after_s=config.job_stale_after_s if stale_after_s is None else stale_after_s,
            hand_backs=set(),
        )

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        # The jobs this worker was running go back to the queue before its connections close.
        await asyncio.gather(*ctx.get("hand_backs", ()))
        platform: Platform | None = ctx.get("platform")
        if platform is not None:
            await platform.stop()

    return {
        "functions": [func(run_job, name=RUN_JOB_FUNCTION, timeout=JOB_TIMEOUT_S, max_tries=1)],
        "cron_jobs": [
            cron(
                reconcile,
                name="reconcile",
                second=set(range(0, 60, RECONCILE_EVERY_S)),
                run_at_startup=True,
            ),
            # Hourly; any one worker runs each tick (arq's cron jobs are unique).
            cron(collect_garbage_job, name="collect_garbage", minute=17, second=0),
            cron(
                check_drift_job,
                name="check_drift",
                minute=set(range(0, 60, config.drift_check_every_minutes)),
                second=30,
            ),
        ],
        "redis_settings": RedisSettings.from_dsn(config.redis_url),
        "queue_name": config.queue_name,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "poll_delay": config.worker_poll_delay_s,
        "max_jobs": config.worker_max_jobs,
        "job_serializer": pack_job_data,
        "job_deserializer": unpack,
        "keep_result": 3600,
        "health_check_interval": 10,
    }
