"""`as_outage`: the exceptions that real drivers raise when their service is gone, told apart
from every other failure. Each outage is made for real: a connection refused by a closed port,
a PostgreSQL session terminated by the server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import asyncpg
import pytest
from redis.asyncio import Redis

from aiaas.core.errors import (
    DatabaseUnavailableError,
    QueueFullError,
    RedisUnavailableError,
)
from aiaas.core.outages import OUTAGE_RETRY_AFTER_S, as_outage, retry_after_headers
from support import Services, admin_connection, free_port, with_database


async def raised_by(awaitable: Awaitable[object]) -> Exception:
    """What `awaitable` raises; the test fails if it raises nothing."""
    try:
        await awaitable
    except Exception as exc:
        return exc
    pytest.fail("no exception was raised")


async def test_a_refused_postgresql_connection_is_the_database_unavailable() -> None:
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    outage = as_outage(await raised_by(asyncpg.connect(url)))
    assert isinstance(outage, DatabaseUnavailableError)
    assert outage.http_status == 503
    assert outage.extensions["retryAfter"] == OUTAGE_RETRY_AFTER_S


async def test_a_postgresql_connect_that_hangs_is_the_database_unavailable() -> None:
    """A server that accepts and never answers, as behind a network cut that drops packets."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        hung = await raised_by(
            asyncpg.connect(f"postgresql://nobody@127.0.0.1:{port}/x", timeout=0.3)
        )
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()
    assert isinstance(hung, TimeoutError), repr(hung)
    assert isinstance(as_outage(hung), DatabaseUnavailableError)


async def test_a_session_the_server_terminates_is_the_database_unavailable(
    services: Services,
) -> None:
    victim = await asyncpg.connect(with_database(services.server_url, "postgres"))
    admin = await admin_connection(services)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", victim.get_server_pid())
        first = await raised_by(victim.fetchval("SELECT 1"))
        again = await raised_by(victim.fetchval("SELECT 1"))  # on the closed connection
    finally:
        await admin.close()
        victim.terminate()
    assert isinstance(as_outage(first), DatabaseUnavailableError), repr(first)
    assert isinstance(as_outage(again), DatabaseUnavailableError), repr(again)


async def test_a_statement_timeout_is_no_outage(services: Services) -> None:
    connection = await asyncpg.connect(with_database(services.server_url, "postgres"))
    try:
        await connection.execute("SET statement_timeout = 10")
        cancelled = await raised_by(connection.execute("SELECT pg_sleep(1)"))
    finally:
        await connection.close()
    assert isinstance(cancelled, asyncpg.exceptions.QueryCanceledError)
    assert as_outage(cancelled) is None


async def test_a_refused_redis_connection_is_redis_unavailable() -> None:
    client = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=2)
    try:
        outage = as_outage(await raised_by(client.ping()))
    finally:
        await client.aclose()
    assert isinstance(outage, RedisUnavailableError)


async def test_an_error_raised_from_an_outage_is_that_outage() -> None:
    client = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=2)
    try:
        try:
            await client.ping()
        except Exception as cause:
            raise RuntimeError("writing the batch failed") from cause
    except RuntimeError as exc:
        outage = as_outage(exc)
    finally:
        await client.aclose()
    assert isinstance(outage, RedisUnavailableError)


def test_a_connection_error_that_no_driver_raised_is_no_outage() -> None:
    """Another client's peer gone (a webhook's, a model server's) says nothing of PostgreSQL or
    Redis, even as the cause of the error that reports it."""

    def post_webhook() -> None:
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as cause:
            raise RuntimeError("posting the webhook failed") from cause

    with pytest.raises(RuntimeError) as raised:
        post_webhook()
    assert isinstance(raised.value.__cause__, ConnectionResetError)
    assert as_outage(raised.value.__cause__) is None
    assert as_outage(raised.value) is None


async def test_a_bug_raised_while_handling_an_outage_is_no_outage(services: Services) -> None:
    victim = await asyncpg.connect(with_database(services.server_url, "postgres"))
    admin = await admin_connection(services)
    retries: dict[str, int] = {}

    async def query_then_count_the_retry() -> None:
        try:
            await victim.fetchval("SELECT 1")
        except Exception:
            retries["attempts"] += 1  # the handler's own bug: a KeyError

    try:
        await admin.execute("SELECT pg_terminate_backend($1)", victim.get_server_pid())
        with pytest.raises(KeyError) as raised:
            await query_then_count_the_retry()
    finally:
        await admin.close()
        victim.terminate()
    lost = raised.value.__context__
    assert lost is not None
    assert isinstance(as_outage(lost), DatabaseUnavailableError), repr(lost)
    assert as_outage(raised.value) is None


def test_a_misused_connection_is_no_outage() -> None:
    """asyncpg's text for two operations at once on one connection: a bug of its caller's."""
    misuse = asyncpg.exceptions.InternalClientError(
        "cannot switch to state 11; another operation (15) is in progress"
    )
    assert as_outage(misuse) is None
    lost = asyncpg.exceptions.InternalClientError("not connected")
    assert isinstance(as_outage(lost), DatabaseUnavailableError)


async def test_other_failures_are_no_outage() -> None:
    assert as_outage(ValueError("bad")) is None
    assert as_outage(FileNotFoundError("missing")) is None
    with pytest.raises(TimeoutError) as own_timeout:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)
    assert as_outage(own_timeout.value) is None


def test_retry_after_is_the_errors_own_hint_when_it_has_one() -> None:
    assert retry_after_headers(QueueFullError("full", retry_after_s=12)) == {"Retry-After": "12"}
    assert retry_after_headers(DatabaseUnavailableError("gone")) == {
        "Retry-After": str(OUTAGE_RETRY_AFTER_S)
    }
    assert retry_after_headers(ValueError("bad")) == {}
