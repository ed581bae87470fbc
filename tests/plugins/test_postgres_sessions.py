"""The sessions the PostgreSQL metadata store opens: one that goes quiet inside a transaction
(its host cut off from the network mid-transaction) is ended by the server after
`database_idle_transaction_timeout_s`, and its locks go with it, so the worker taking over a
partitioned worker's job is not held up by that job's locked row."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from aiaas.core.config import Config
from aiaas.plugins.postgres_metadata import PostgresMetadataStore

LOCK = 7_301_117
"""An advisory lock id no other code takes: the lock the quiet transaction holds."""

StoreFactory = Callable[[float], Awaitable[PostgresMetadataStore]]


@pytest.fixture
async def store_with(config: Config) -> AsyncIterator[StoreFactory]:
    opened: list[PostgresMetadataStore] = []

    async def make(timeout_s: float) -> PostgresMetadataStore:
        store = PostgresMetadataStore(
            config.model_copy(update={"database_idle_transaction_timeout_s": timeout_s})
        )
        await store.connect()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


async def lock_taken_by_another_session(database_url: str, within_s: float) -> bool:
    """Whether a session of its own can take `LOCK` at some point within `within_s`."""
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            async with connection.transaction():
                if await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK):
                    return True
            await asyncio.sleep(0.05)
        return False
    finally:
        await connection.close()


async def session_exists(database_url: str, pid: int) -> bool:
    connection = await asyncpg.connect(database_url)
    try:
        found = await connection.fetchval("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid)
        return found is not None
    finally:
        await connection.close()


async def test_a_transaction_gone_quiet_is_ended_and_its_locks_released(
    store_with: StoreFactory, database_url: str
) -> None:
    store = await store_with(0.5)
    async with store.acquire() as connection:
        session = connection.get_server_pid()
        await connection.execute("BEGIN")
        await connection.execute("SELECT pg_advisory_xact_lock($1)", LOCK)
        # Nothing more from this session, as from a host whose link went down.
        assert await lock_taken_by_another_session(database_url, within_s=30)
    assert not await session_exists(database_url, session)
    # The pool replaces what the server ended.
    async with store.acquire() as connection:
        assert await connection.fetchval("SELECT 1") == 1


async def test_without_the_timeout_a_quiet_transaction_keeps_its_locks(
    store_with: StoreFactory, database_url: str
) -> None:
    store = await store_with(0)
    async with store.acquire() as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", LOCK)
        assert not await lock_taken_by_another_session(database_url, within_s=2)
        assert await connection.fetchval("SELECT 1") == 1
