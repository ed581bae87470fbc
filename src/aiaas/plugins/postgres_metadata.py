"""The PostgreSQL metadata store: an asyncpg pool."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg

from aiaas.core.config import Config
from aiaas.core.errors import ConfigError, DatabaseUnavailableError
from aiaas.core.hookspecs import hookimpl
from aiaas.core.setting_types import redact_url
from aiaas.core.specs import MetadataStoreSpec
from aiaas.core.storage import MetadataStore

CLOSE_TIMEOUT_S = 10.0
logger = logging.getLogger(__name__)


async def _init_connection(connection: asyncpg.Connection) -> None:
    # jsonb columns arrive as Python objects, never as strings to parse by hand.
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _leave_session_as_is(connection: asyncpg.Connection) -> None:
    """The pool's reset on release. asyncpg's default sends `RESET ALL; UNLISTEN *; CLOSE ALL`
    and unlocks session advisory locks on every release: one more round trip for every
    `acquire`, about a fifth of a small request's time. aiaas leaves no session state behind
    (no SET, no session-level advisory lock, no cursor outside a transaction, and the policy
    listener removes its LISTEN itself), so there is nothing to reset. asyncpg still rolls back
    a transaction left open and drops listener callbacks before calling this."""


def session_settings(config: Config) -> dict[str, str]:
    """PostgreSQL settings of every session the pool opens.

    `idle_in_transaction_session_timeout`: a process that loses its network mid-transaction
    (a partitioned worker recording a checkpoint, with its job's row locked) leaves the server
    waiting for the rest of the transaction; the row stays locked, and the worker that is to
    take the job over waits on that lock for as long as TCP takes to notice, hours by default.
    The timeout ends such a session, and its locks with it, after a bound far above the pauses
    of aiaas's own transactions, which wait between statements for nothing slower than Redis.
    """
    timeout_ms = round(config.database_idle_transaction_timeout_s * 1000)
    if timeout_ms == 0:
        return {}
    return {"idle_in_transaction_session_timeout": str(timeout_ms)}


def describe_connect_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


class PostgresMetadataStore(MetadataStore):
    def __init__(self, config: Config) -> None:
        self._url = config.database_url
        self._timeout = config.database_connect_timeout_s
        self._min_size = min(config.database_pool_min_size, config.database_pool_max_size)
        self._max_size = config.database_pool_max_size
        self._server_settings = session_settings(config)
        self._pool: asyncpg.Pool | None = None

    async def connect(self) -> None:
        if self._url is None:
            raise ConfigError("database_url (AIAAS_DATABASE_URL) is not set")
        try:
            async with asyncio.timeout(self._timeout):
                self._pool = await asyncpg.create_pool(
                    self._url,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    timeout=self._timeout,
                    init=_init_connection,
                    reset=_leave_session_as_is,
                    server_settings=self._server_settings,
                )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnavailableError(
                f"cannot connect to PostgreSQL at {redact_url(self._url)}: "
                f"{describe_connect_error(exc)} (waited at most {self._timeout:g} s)"
            ) from exc

    async def close(self) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        try:
            # Graceful: waits for connections in use to come back...
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await pool.close()
        except TimeoutError:
            # ...but a connection that never comes back must not hang the shutdown.
            logger.warning("closing the PostgreSQL pool timed out; terminating it")
            pool.terminate()

    def acquire(self) -> AbstractAsyncContextManager[Any]:
        if self._pool is None:
            raise DatabaseUnavailableError("the metadata store is not connected")
        pool_acquire: AbstractAsyncContextManager[Any] = self._pool.acquire()
        return pool_acquire


@hookimpl
def aiaas_metadata_stores() -> Iterable[MetadataStoreSpec]:
    return [
        MetadataStoreSpec(
            name="postgresql",
            factory=PostgresMetadataStore,
            description="PostgreSQL through an asyncpg connection pool.",
        )
    ]
