"""Outages: a dependency (PostgreSQL, Redis) lost mid-flight, told apart from a bug.

When PostgreSQL or Redis stops, a request in flight fails with the driver's own exception
(asyncpg's `ConnectionDoesNotExistError` or `AdminShutdownError`, redis-py's `ConnectionError`,
a refused connect), which is no `AiaasError`: left alone it would be answered as an unexpected
error, a 500. `as_outage` recognises those and says which service is gone, so that every
interface answers `503 Service Unavailable` with `Retry-After` and a typed code instead, and the
caller knows to try again. Nothing needs restarting when the service returns: asyncpg's pool
replaces a closed connection on its next acquire, and redis-py reconnects on its next command.
"""

from __future__ import annotations

import asyncpg
from redis import exceptions as redis_errors

from aiaas.core.errors import (
    DatabaseUnavailableError,
    RedisUnavailableError,
    ServiceUnavailableError,
)

OUTAGE_RETRY_AFTER_S = 5
"""The `Retry-After` of an answer that a lost service cut short: a service that restarts is
usually back within seconds, and a client that waits longer than that waits for nothing."""

_DATABASE_OUTAGES: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, starting up
    asyncpg.exceptions.ConnectionDoesNotExistError,  # closed in the middle of an operation
)
_REDIS_OUTAGES: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # refused, reset, still loading its data
    redis_errors.TimeoutError,
)
_DRIVERS = frozenset({"asyncpg", "redis"})
_RETRY = {"retryAfter": OUTAGE_RETRY_AFTER_S}
_CLOSED_CONNECTION = "connection is closed"
"""asyncpg's `InterfaceError` text for a call on a connection the server already closed."""
_LOST_PROTOCOL = (
    "not connected",
    'protocol is in the "failed" state',
    "another operation (2) is in progress",  # PROTOCOL_ERROR_CONSUME: the server's FATAL read
    "another operation (4) is in progress",  # PROTOCOL_TERMINATING: the connection closing
)
"""asyncpg's `InternalClientError` texts for a connection the server closed (terminated while
it sat idle in the pool, handed out before asyncpg noticed; the pool replaces it once it is
released). Its other texts, another operation in progress on the connection (a state of 10 or
more), tell of two uses of one connection at once: a bug, not an outage."""
_MAX_CHAIN = 8


def _database_outage(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.exceptions.QueryCanceledError):
        return False  # class 57 too, but a statement timeout: the database is there
    if isinstance(exc, _DATABASE_OUTAGES):
        return True
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return any(text in str(exc) for text in _LOST_PROTOCOL)
    return isinstance(exc, asyncpg.InterfaceError) and _CLOSED_CONNECTION in str(exc)


def _raised_in(exc: BaseException) -> set[str]:
    """The top-level packages whose code the exception passed through."""
    packages = set()
    frame = exc.__traceback__
    while frame is not None:
        packages.add(str(frame.tb_frame.f_globals.get("__name__", "")).partition(".")[0])
        frame = frame.tb_next
    return packages


def _unreachable(exc: BaseException) -> ServiceUnavailableError | None:
    """A network failure (refused, reset, unreachable, timed out) names no service; the driver it
    came through does: asyncpg raises a refused connect as the bare OSError, and a connect that
    hangs as the bare TimeoutError. One that no driver raised (a file that cannot be read, a
    timeout of the project's own, a peer of some other client gone) is no outage of a service
    this module knows."""
    if not isinstance(exc, OSError):  # TimeoutError is one too
        return None
    raised_in = _raised_in(exc)
    kind = type(exc).__name__
    if "asyncpg" in raised_in:
        return DatabaseUnavailableError(f"PostgreSQL is unavailable ({kind})", details=_RETRY)
    if "redis" in raised_in:
        return RedisUnavailableError(f"Redis is unavailable ({kind})", details=_RETRY)
    return None


def _outage_itself(exc: BaseException) -> ServiceUnavailableError | None:
    """The outage `exc` reports by itself, leaving aside the exceptions it was raised from."""
    if isinstance(exc, ServiceUnavailableError):
        return exc
    if _database_outage(exc):
        return DatabaseUnavailableError(
            f"PostgreSQL is unavailable ({type(exc).__name__})", details=_RETRY
        )
    if isinstance(exc, _REDIS_OUTAGES):
        return RedisUnavailableError(f"Redis is unavailable ({type(exc).__name__})", details=_RETRY)
    return _unreachable(exc)


def _from_a_driver(exc: BaseException) -> bool:
    return type(exc).__module__.partition(".")[0] in _DRIVERS


def _raised_from(exc: BaseException) -> BaseException | None:
    """The exception `exc` stands for: its explicit cause; else the one it was raised while
    handling, only when a driver raised both and that one is a lost connection (a driver that
    reports the loss as its own error without `from`). Any other error raised while handling an
    outage is an error of its own: code that fails in its `except` has a bug, not an outage."""
    if exc.__cause__ is not None:
        return exc.__cause__
    context = exc.__context__
    if context is None or exc.__suppress_context__:
        return None
    if _from_a_driver(exc) and _from_a_driver(context) and _outage_itself(context) is not None:
        return context
    return None


def as_outage(exc: BaseException) -> ServiceUnavailableError | None:
    """The `ServiceUnavailableError` that `exc` stands for when a service it needs is gone:
    itself if it is one already, else one for the lost service it (or an exception it was
    raised from) reports. None for anything else."""
    seen: BaseException | None = exc
    for _ in range(_MAX_CHAIN):
        if seen is None:
            return None
        outage = _outage_itself(seen)
        if outage is not None:
            return outage
        seen = _raised_from(seen)
    return None


def retry_after_s(exc: ServiceUnavailableError) -> int:
    """When the caller may try again: the error's own hint (a full queue computes one), or
    `OUTAGE_RETRY_AFTER_S`."""
    hinted = exc.details.get("retryAfter")
    return int(hinted) if isinstance(hinted, int | float) and hinted >= 1 else OUTAGE_RETRY_AFTER_S


def retry_after_headers(exc: BaseException) -> dict[str, str]:
    """`Retry-After` for the answer to a `ServiceUnavailableError`; no header for others."""
    if isinstance(exc, ServiceUnavailableError):
        return {"Retry-After": str(retry_after_s(exc))}
    return {}
