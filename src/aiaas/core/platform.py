"""`Platform`: the composition root of one process (API, worker or operator command).

Building a `Platform` does no I/O. `start()` connects to PostgreSQL and Redis within their
timeouts, checks the schema revision, and runs the `aiaas_startup` hooks; `stop()` undoes it.

The kernel names no domain. What a domain needs once per process (the vault, the inference
server, a relay of its event stream) it declares as a `ProcessService` and asks the platform
for: the platform makes it on first use and closes it when it stops.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from arq.connections import ArqRedis, RedisSettings, create_pool

from aiaas import migrations
from aiaas.core.auth import Authenticator, Credentials, PolicyEnforcer, Principal
from aiaas.core.config import Config, ServerRole
from aiaas.core.errors import (
    AuthenticationError,
    ConfigError,
    PermissionDeniedError,
    PluginError,
    RedisUnavailableError,
    SchemaOutdatedError,
)
from aiaas.core.event_streams import EventStreamRelay
from aiaas.core.log_records import bind_log_context
from aiaas.core.plugin_manager import AiaasPluginManager
from aiaas.core.pubsub import EventHub
from aiaas.core.registry import Registries, Registry, load_registries
from aiaas.core.runtimes import ServingRuntime
from aiaas.core.serialization import pack, unpack
from aiaas.core.setting_types import redact_url
from aiaas.core.storage import ArtifactStore, MetadataStore
from aiaas.core.trainers import Trainer
from aiaas.core.validation import Validator

logger = logging.getLogger(__name__)


async def connect_redis(config: Config) -> ArqRedis:
    """An arq Redis pool speaking msgpack, or `RedisUnavailableError` within the timeout."""
    if config.redis_url is None:
        raise ConfigError("redis_url (AIAAS_REDIS_URL) is not set")
    settings = RedisSettings.from_dsn(config.redis_url)
    settings.conn_timeout = max(1, round(config.redis_connect_timeout_s))
    settings.conn_retries = 0
    try:
        async with asyncio.timeout(config.redis_connect_timeout_s):
            pool = await create_pool(
                settings,
                job_serializer=pack,
                job_deserializer=unpack,
                default_queue_name=config.queue_name,
            )
            await pool.ping()
    except Exception as exc:  # redis-py raises its own ConnectionError family, or OSError
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        raise RedisUnavailableError(
            f"cannot connect to Redis at {redact_url(config.redis_url)}: {reason} "
            f"(waited at most {config.redis_connect_timeout_s:g} s)"
        ) from exc
    return pool


async def check_schema_revision(metadata: MetadataStore) -> str:
    """The database's revision if it is this release's head; `SchemaOutdatedError` otherwise."""
    async with metadata.acquire() as connection:
        current = await migrations.current_revision(connection)
    head = migrations.head_revision()
    if current == head:
        return head
    if current is None:
        message = "the database has no aiaas schema yet: run `aiaas db upgrade`"
    elif current in migrations.known_revisions():
        message = (
            f"the database schema is at revision {current}, this release needs {head}: "
            "run `aiaas db upgrade`"
        )
    else:
        message = (
            f"the database schema is at revision {current}, which this release does not know; "
            "it was upgraded by a newer aiaas"
        )
    raise SchemaOutdatedError(message, details={"current": current, "head": head})


async def warn_if_the_trail_is_exposed(metadata: MetadataStore) -> None:
    """Say so when the role the platform connects as could rewrite the audit trail. Not an error:
    a single-role database is how a first try runs, and `aiaas dev` separates them itself."""
    async with metadata.acquire() as connection:
        exposure = await migrations.audit_trail_exposure(connection)
    if exposure is not None:
        logger.warning(
            "the database role of database_url could rewrite the audit trail: %s. Connect the "
            "API and workers as an application role (docs/production.md, database roles)",
            exposure,
        )


BackendT = TypeVar("BackendT")
ServiceT = TypeVar("ServiceT")


@dataclass(frozen=True, eq=False)
class ProcessService(Generic[ServiceT]):
    """A process-wide object that a domain owns and the platform holds for it.

    `platform.service(KEY)` makes it with `build(platform)` on first use and returns the same
    one after that; `stop()` closes every service it made, the last made first, and forgets
    them, so a platform started again makes them afresh. Keys compare by identity: a domain
    declares each once, at module level."""

    name: str
    build: Callable[[Platform], ServiceT]
    close: Callable[[ServiceT], Awaitable[None]] | None = None


class Platform:
    def __init__(self, config: Config, plugin_manager: AiaasPluginManager) -> None:
        """`aiaas.core.bootstrap.create_platform(config)` builds the plugin manager from the
        config and the platform on it; tests pass a manager with plugins of their own."""
        self.config = config
        self.plugins = plugin_manager
        self.registries: Registries = load_registries(self.plugins)
        self.metadata: MetadataStore = self.registries.metadata_stores.get(
            config.metadata_store
        ).factory(config)
        self.artifacts: ArtifactStore = self.registries.artifact_stores.get(
            config.artifact_store
        ).factory(config)
        self.authenticators: list[tuple[str, Authenticator]] = [
            (spec.name, spec.factory(config)) for spec in self.registries.authenticators
        ]
        try:
            # Not isolated: skipping a broken enforcer would fall back to the next, possibly
            # more permissive one. A policy plugin that fails must stop the platform instead.
            enforcer = self.plugins.call_first(
                "aiaas_policy_enforcer", isolate=False, config=config
            )
        except Exception as exc:
            raise PluginError(f"the policy enforcer failed to load: {exc!r}") from exc
        if not isinstance(enforcer, PolicyEnforcer):
            raise PluginError("no plugin provides a policy enforcer")
        self.enforcer: PolicyEnforcer = enforcer
        self._validators: dict[str, Validator] = {}
        self._trainers: dict[str, Trainer] = {}
        self._serving_runtimes: dict[str, ServingRuntime] = {}
        self._services: dict[ProcessService[Any], Any] = {}
        self._redis: ArqRedis | None = None
        self._events: EventHub | None = None
        self._job_events: EventStreamRelay | None = None
        self._started = False

    def validator(self, name: str) -> Validator:
        """The validator registered under `name`, built on first use."""
        return self._built(self._validators, self.registries.validators, name)

    def trainer(self, name: str) -> Trainer:
        """The trainer registered under `name`, built on first use."""
        return self._built(self._trainers, self.registries.trainers, name)

    def serving_runtime(self, name: str) -> ServingRuntime:
        """The serving runtime registered under `name`, built on first use."""
        return self._built(self._serving_runtimes, self.registries.serving_runtimes, name)

    def _built(self, built: dict[str, BackendT], registry: Registry[Any], name: str) -> BackendT:
        if name not in built:
            built[name] = registry.get(name).factory(self.config)
        return built[name]

    def service(self, key: ProcessService[ServiceT]) -> ServiceT:
        """This process's instance of a domain's service, made on first use."""
        if key not in self._services:
            self._services[key] = key.build(self)
        return cast(ServiceT, self._services[key])

    @property
    def redis(self) -> ArqRedis:
        if self._redis is None:
            raise RedisUnavailableError("the platform has not connected to Redis")
        return self._redis

    async def start(
        self,
        *,
        check_schema: bool = True,
        run_startup_hooks: bool = True,
        with_redis: bool = True,
    ) -> None:
        """Connect and check. `run_startup_hooks=False` is for a preflight check that stops right
        away: plugins' start-up work belongs to the process that goes on to serve.
        `with_redis=False` is for operator commands that only touch the database."""
        if self.config.master_key is None and not self.config.is_dev:
            raise ConfigError(
                "AIAAS_MASTER_KEY is required in production: it protects every project's data "
                "key. Make one with `aiaas keys generate` and keep it safe."
            )
        await self.metadata.connect()
        try:
            if check_schema:
                await check_schema_revision(self.metadata)
            if run_startup_hooks:
                await warn_if_the_trail_is_exposed(self.metadata)
            if with_redis:
                self._redis = await connect_redis(self.config)
                self._events = EventHub(self._redis)
                self._job_events = EventStreamRelay(self._redis)
            await self.enforcer.start(self.metadata)
            for _, authenticator in self.authenticators:
                await authenticator.start(self.metadata)
        except BaseException:
            for _, authenticator in self.authenticators:
                await authenticator.close()
            self._events = None
            self._job_events = None
            if self._redis is not None:
                await self._redis.aclose()
                self._redis = None
            await self.metadata.close()
            raise
        self._started = run_startup_hooks
        if run_startup_hooks:
            await self._run_lifecycle_hook("aiaas_startup")

    async def stop(self) -> None:
        await self._close_services()
        if self._started:
            await self._run_lifecycle_hook("aiaas_shutdown")
            self._started = False
        if self._events is not None:
            await self._events.close()
            self._events = None
        if self._job_events is not None:
            await self._job_events.close()
            self._job_events = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        await self.enforcer.close()
        for _, authenticator in self.authenticators:
            await authenticator.close()
        await self.artifacts.close()
        await self.metadata.close()

    async def _close_services(self) -> None:
        # The last made first: a service may use one made before it (rollouts use the
        # inference server), never one made after it.
        made = list(self._services.items())
        self._services.clear()
        for key, service in reversed(made):
            if key.close is not None:
                await key.close(service)

    async def _run_lifecycle_hook(self, hook_name: str) -> None:
        for plugin_name, result in self.plugins.call_each(hook_name, platform=self):
            if inspect.isawaitable(result):
                try:
                    await result
                except Exception as exc:
                    self.plugins.record_failure(plugin_name, f"hook {hook_name}", repr(exc))

    async def readiness(self) -> dict[str, str]:
        """One entry per dependency: `ok`, or what is wrong with it."""
        checks: dict[str, str] = {}
        try:
            async with asyncio.timeout(self.config.database_connect_timeout_s):
                await self.metadata.ping()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {exc or type(exc).__name__}"
        if checks["database"] == "ok":
            try:
                await check_schema_revision(self.metadata)
                checks["schema"] = "ok"
            except SchemaOutdatedError as exc:
                checks["schema"] = exc.message
        else:
            checks["schema"] = "unknown: the database is unavailable"
        try:
            async with asyncio.timeout(self.config.redis_connect_timeout_s):
                await self.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unavailable: {exc or type(exc).__name__}"
        return checks

    async def authenticate(self, credentials: Credentials) -> Principal | None:
        """The caller's principal; None for a request without credentials.

        Credentials that no authenticator recognises are an error, never anonymous access."""
        if not credentials.authorization:
            return None
        for _, authenticator in self.authenticators:
            principal = await authenticator.authenticate(credentials, self.metadata)
            if principal is not None:
                bind_log_context(user=principal.username)  # the rest of the request's lines
                return principal
        raise AuthenticationError("unrecognised credentials: expected `Bearer <API token>`")

    async def authorize(
        self, principal: Principal | None, domain: str, resource: str, action: str
    ) -> Principal:
        """The one enforcement point: return the principal if allowed, raise otherwise."""
        if principal is None:
            raise AuthenticationError("authentication required: send `Bearer <API token>`")
        if not await self.enforcer.enforce(principal, domain, resource, action):
            raise PermissionDeniedError(f"not allowed to {action} {resource}")
        return principal

    @property
    def events(self) -> EventHub:
        if self._events is None:
            raise RedisUnavailableError("the platform has not connected to Redis")
        return self._events

    @property
    def job_events(self) -> EventStreamRelay:
        """This process's relay of jobs' live event streams to their subscribers."""
        if self._job_events is None:
            raise RedisUnavailableError("the platform has not connected to Redis")
        return self._job_events

    @property
    def serves_inference(self) -> bool:
        """Whether this process rolls out deployments (its role is `all` or `inference`)."""
        return self.config.role is not ServerRole.API
