"""A process's memory of the API tokens it has verified, so that a request with a token it knows
costs a dictionary lookup instead of a PostgreSQL round trip (a pooled connection, a query, a row
decoded: a large share of a V2 request's CPU outside the model, issue 18).

It is never trusted past what PostgreSQL would answer:

- Any change to a token (revoked, its expiry changed, deleted: migration 0013) or to a user's
  admin flag or disabled state (migration 0002) is announced on the `aiaas_policy` channel, by
  whichever process or operator made it; each announcement empties the cache. A check that began
  before an announcement and ends after it is not remembered (`generation`): it may have read the
  row as it was before the change.
- Entries are kept only while the LISTEN connection is up. Announcements made while it is down
  are lost, so losing it empties the cache, and nothing is remembered until it listens again.
- An entry ends with its token's expiry, counted from PostgreSQL's clock at the check and kept as
  a monotonic deadline (no clock skew or clock step can stretch it), and after `MAX_AGE_S` in any
  case: a backstop for an announcement lost in a way the connection does not show.
- Only tokens that were accepted are remembered: every refusal asks the database, so its reason
  and its audit stay what they were.

Keys are the tokens' sha256, as the database keeps them, so that memory holds no token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from aiaas.core.auth import Principal
from aiaas.core.outages import as_outage
from aiaas.core.storage import MetadataStore

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "aiaas_policy"
MAX_AGE_S = 30.0
MAX_ENTRIES = 10_000
"""Past it, every entry is dropped and taken afresh (a bound on memory, not an eviction policy:
the tokens in use at once number far fewer)."""
RETRY_S = 1.0
"""How long to wait before listening again after a failed attempt."""


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    good_until: float
    """time.monotonic() past which the entry is not used."""


class TokenCache:
    def __init__(self, *, max_age_s: float = MAX_AGE_S, max_entries: int = MAX_ENTRIES) -> None:
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self.generation = 0
        """Counts the times the cache was emptied; a check remembers its answer only if none
        happened while it ran."""
        self._entries: dict[bytes, _Entry] = {}
        self._metadata: MetadataStore | None = None
        self._listener: contextlib.AsyncExitStack | None = None
        # An asyncpg connection: its is_closed() is no part of the `Connection` protocol.
        self._listening_on: Any = None
        self._watcher: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    def serves(self, metadata: MetadataStore) -> bool:
        """Whether answers may be kept for (or taken from) this cache for `metadata`'s tokens:
        only while the announcements of that database reach it. Finding the listener gone
        empties the cache at once, before its termination callback has run."""
        if metadata is self._metadata and self._listening():
            return True
        if self._entries:
            self.forget_all()
        return False

    def _listening(self) -> bool:
        try:
            return self._listening_on is not None and not self._listening_on.is_closed()
        except asyncpg.InterfaceError:
            # The pool takes back a connection that closed, and its proxy then refuses every
            # call: it is no longer this cache's to listen on.
            return False

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Principal | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() >= entry.good_until:
            self._entries.pop(key, None)
            return None
        return entry.principal

    def put(
        self, key: bytes, principal: Principal, valid_for_s: float | None, generation: int
    ) -> None:
        """Remember a check that began at `generation` and found the token valid for
        `valid_for_s` more seconds (None: no expiry)."""
        if generation != self.generation:
            return  # emptied while the check ran: what it read may be out of date
        lifetime = self.max_age_s if valid_for_s is None else min(valid_for_s, self.max_age_s)
        if lifetime <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries = {}
        self._entries[key] = _Entry(principal, time.monotonic() + lifetime)

    def forget_all(self, *_: Any) -> None:
        """Empty the cache; also the listener of every announcement on the channel."""
        self._entries = {}
        self.generation += 1

    async def start(self, metadata: MetadataStore) -> None:
        self._metadata = metadata
        self._lost = asyncio.Event()  # of this event loop: a platform may start again in another
        try:
            await self._listen(metadata)
        except Exception as exc:
            # Not fatal: without a listener the cache stays empty and every token is checked
            # in the database, as without a cache; the watcher keeps trying.
            logger.warning("the API token cache is off until it can listen: %s", exc)
            await self._drop_listener()
        self._watcher = asyncio.create_task(self._watch(metadata), name="token-cache-watcher")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._drop_listener()
        self._metadata = None

    def _on_lost(self, *_: Any) -> None:
        self._listening_on = None
        self.forget_all()
        self._lost.set()

    async def _listen(self, metadata: MetadataStore) -> None:
        # Kept before anything is acquired: a cancellation at any await below must still find
        # the connection to give back, or closing the pool would wait for it forever.
        self._listener = stack = contextlib.AsyncExitStack()
        connection = await stack.enter_async_context(metadata.acquire())
        stack.push_async_callback(connection.remove_listener, NOTIFY_CHANNEL, self.forget_all)
        await connection.add_listener(NOTIFY_CHANNEL, self.forget_all)
        connection.add_termination_listener(self._on_lost)
        # Taken off when the connection goes back to the pool: its later end, in another
        # user's hands, says nothing about this cache.
        stack.callback(connection.remove_termination_listener, self._on_lost)
        # What was learned before this LISTEN took effect was not watched for changes.
        self.forget_all()
        self._listening_on = connection

    async def _drop_listener(self) -> None:
        self._listening_on = None
        self.forget_all()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(Exception):
                await listener.aclose()

    async def _watch(self, metadata: MetadataStore) -> None:
        while True:
            try:
                if not self.serves(metadata):
                    await self._drop_listener()
                    await self._listen(metadata)
                # Woken when the connection ends; checked now and then as well, should it end
                # in a way that calls no termination listener.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5 * RETRY_S):
                        await self._lost.wait()
                self._lost.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outage = as_outage(exc)
                if outage is None:
                    logger.exception("the API token cache cannot listen; retrying")
                else:  # expected while the database is away; tokens are checked there meanwhile
                    logger.warning("the API token cache waits: %s", outage.message)
                await self._drop_listener()
                await asyncio.sleep(RETRY_S)
