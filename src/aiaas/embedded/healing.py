"""How `aiaas dev` heals: a child that dies is restarted, with backoff, until it has died too often.

- The API or the worker dies: it alone is restarted. The API gets the same listening socket back
  (the supervisor keeps it open), so clients wait in the backlog rather than being refused.
- PostgreSQL or Redis dies: the API and the worker are stopped, the service is restarted on the
  same port with the same data (so their URLs stay valid), then the API and the worker are started
  again. Restarting them rather than letting them reconnect is deliberate: their pools would
  reconnect, but a job that was writing when the service died would fail half-way, and a
  subscription or a cron loop may not survive a dropped connection. A stopped worker hands its
  job back, or, with PostgreSQL gone, leaves it RUNNING to go stale; either way it is resumed from
  its checkpoint. A fresh process starts from a known state.
- A child restarted RESTART_LIMIT times within RESTART_WINDOW_S that needs restarting again (it
  died, or did not come back) makes the supervisor give up: it stops everything and exits non-zero
  with a message naming the child and where its output went. A restart waits BACKOFF_FIRST_S,
  doubled for each earlier restart in the window, at most BACKOFF_MAX_S. The API and the worker
  restarted because a service died are not counted against them: they did not fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aiaas.embedded.processes import Child, spawn, sweep_process_group

logger = logging.getLogger(__name__)

RESTART_LIMIT = 4
"""Restarts of one child allowed within RESTART_WINDOW_S; one more and `aiaas dev` gives up."""
RESTART_WINDOW_S = 60.0
BACKOFF_FIRST_S = 0.5
"""The wait before a child's first restart in the window; doubled for each further one."""
BACKOFF_MAX_S = 8.0


class RestartLimitError(Exception):
    """A child died too often; the message says which and where its output went."""


class EmbeddedServer(Protocol):
    """EmbeddedPostgres or EmbeddedRedis: a server that keeps its port across restarts."""

    child: Child | None

    @property
    def log_path(self) -> Path: ...

    async def start(self, password: str) -> tuple[Child, str]: ...


class Supervised(Protocol):
    name: str

    @property
    def child(self) -> Child | None: ...

    @property
    def output(self) -> str:
        """Where its output goes, for the give-up message."""
        ...

    async def start(self) -> None:
        """(Re)start it and wait until it serves. The child is recorded as soon as it exists,
        so that a stop request in the middle still finds it."""
        ...


@dataclass
class EmbeddedService:
    name: str
    server: EmbeddedServer
    password: str
    url: str = ""

    @property
    def child(self) -> Child | None:
        return self.server.child

    @property
    def output(self) -> str:
        return str(self.server.log_path)

    async def start(self) -> None:
        _, self.url = await self.server.start(self.password)


@dataclass
class ChildProcess:
    """`aiaas serve` or `aiaas worker`: ready once spawned; one that cannot start dies, and its
    death is seen like any other."""

    name: str
    command: Sequence[str]
    env: dict[str, str]
    pass_fds: Sequence[int] = ()
    child: Child | None = None

    @property
    def output(self) -> str:
        return "the output above"

    async def start(self) -> None:
        self.child = await spawn(self.name, self.command, env=self.env, pass_fds=self.pass_fds)


def describe_exit(child: Child) -> str:
    status = child.process.returncode
    if status is not None and status < 0:
        return f"killed by {signal.Signals(-status).name}"
    return f"status {status}"


def backoff_s(restart_number: int) -> float:
    return float(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (restart_number - 1)))


@dataclass
class RestartLedger:
    """The recent restarts of each child, to tell a child that died once from one that keeps
    dying."""

    limit: int = RESTART_LIMIT
    window_s: float = RESTART_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    _restarts: dict[str, deque[float]] = field(default_factory=dict)

    def admit(self, unit: Supervised) -> int:
        """Record one more restart of `unit`; its number within the window. Raises RestartLimitError
        past the limit."""
        now = self.clock()
        recent = self._restarts.setdefault(unit.name, deque())
        while recent and now - recent[0] > self.window_s:
            recent.popleft()
        if len(recent) >= self.limit:
            raise RestartLimitError(
                f"{unit.name} keeps dying: restarted {len(recent)} times within "
                f"{self.window_s:.0f} s and it needs restarting again; giving up and stopping "
                f"aiaas. Its output: {unit.output}"
            )
        recent.append(now)
        return len(recent)


@dataclass
class Healer:
    services: list[Supervised]
    """The embedded services, in start order; a service the user runs is not ours to heal."""
    dependants: list[Supervised]
    """The API and the worker, which use the services."""
    stop_timeout_s: float
    ledger: RestartLedger = field(default_factory=RestartLedger)

    async def heal(self, died: Supervised) -> None:
        """Bring the platform back after `died` exited. Raises RestartLimitError if it cannot."""
        dead_service = next((s for s in self.services if _is_dead(s)), None)
        if dead_service is not None:
            # A dead service first: a dependant that died with it would only die again.
            await self._heal_service(dead_service)
        else:
            self._report_death(died)
            await self._restart(died)

    async def _heal_service(self, service: Supervised) -> None:
        self._report_death(service, "the API and the worker are stopped until it is back")
        await asyncio.gather(*(_stop(unit, self.stop_timeout_s) for unit in self.dependants))
        await self._restart(service)
        for unit in self.dependants:
            try:
                await unit.start()
            except Exception as exc:  # then it is restarted like a failed child
                logger.warning("%s did not start: %s", unit.name, exc)
                await self._restart(unit)
                continue
            logger.warning("%s restarted after %s (pid %s)", unit.name, service.name, _pid(unit))

    def _report_death(self, unit: Supervised, then: str = "") -> None:
        assert unit.child is not None
        # What it left behind (PostgreSQL's backends, a worker's helpers) goes with it: an
        # orphaned backend would keep the old shared memory and stop the new server starting.
        sweep_process_group(unit.child)
        logger.warning(
            "%s (pid %d) exited unexpectedly (%s)%s",
            unit.name,
            unit.child.pid,
            describe_exit(unit.child),
            f"; {then}" if then else "",
        )

    async def _restart(self, unit: Supervised) -> None:
        while True:
            number = self.ledger.admit(unit)
            delay = backoff_s(number)
            logger.warning(
                "restarting %s in %.1f s (restart %d of %d allowed within %.0f s)",
                unit.name,
                delay,
                number,
                self.ledger.limit,
                self.ledger.window_s,
            )
            await asyncio.sleep(delay)
            try:
                await unit.start()
            except Exception as exc:  # any failure to start: retried
                logger.warning("%s did not come back: %s", unit.name, exc)
                if unit.child is not None:
                    sweep_process_group(unit.child)
                    await _stop(unit, self.stop_timeout_s)
                continue
            logger.warning("%s restarted (pid %s)", unit.name, _pid(unit))
            return


def _is_dead(unit: Supervised) -> bool:
    return unit.child is not None and unit.child.process.returncode is not None


def _pid(unit: Supervised) -> str:
    return str(unit.child.pid) if unit.child is not None else "?"


async def _stop(unit: Supervised, timeout: float) -> None:
    if unit.child is not None:
        with contextlib.suppress(ProcessLookupError):
            await unit.child.stop(timeout)
