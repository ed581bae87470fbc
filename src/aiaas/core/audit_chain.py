"""The hash chain that makes the audit trail tamper-evident.

Every audit event carries `row_hash = sha256(previous_hash || canonical content)`, where
`previous_hash` is the `row_hash` of the event before it in the same chain. There is one chain per
project, and one more (the platform chain) for the events that belong to no project. Editing an
event breaks its own hash; removing, inserting or reordering events breaks the link of the event
after. This module defines the canonical content once: `aiaas.core.audit` uses it to write events,
`verify_chains` to check them, and the migration that introduced the chain to hash the events
written before it.

The hash is not keyed: whoever can rewrite the whole table can also recompute every hash after
the row they changed. What the chain proves is that the trail is the one that was written, as
long as a recent head hash (`TrailVerification.heads`) is kept somewhere the database's owner
cannot reach.

Kept free of SQL on purpose: the kernel's `audit` module owns the `audit_events` table and hands
this module its rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

CHAIN_FORMAT = "aiaas-audit-chain-1"
"""Named in every hashed serialization, so that a future format cannot be mistaken for this one."""
GENESIS_HASH = bytes(32)
"""The `previous_hash` of the first event of every chain."""
PLATFORM_CHAIN = UUID(int=0)
"""The key of the chain of events without a project (a real project id is never all zeros)."""
PLATFORM_CHAIN_SQL = "'00000000-0000-0000-0000-000000000000'::uuid"
"""`PLATFORM_CHAIN` as SQL, for the chain-key expression `coalesce(project_id, ...)` that the
chain's indexes are built on: a query must spell the expression as the index does to use it."""


@dataclass(frozen=True)
class ChainedContent:
    """What an event's hash covers: every column of the event except the hashes themselves.

    `details_json` is the event's `details` as PostgreSQL prints a jsonb value (`details::text`):
    jsonb keeps one copy of each key, in a fixed order, with fixed spacing, so the text is already
    canonical, and taking it from the database rather than re-encoding it in Python avoids every
    question of how numbers round-trip. UUIDs are their lowercase text, as PostgreSQL prints them.
    """

    id: int
    occurred_at: datetime
    actor_id: str | None
    actor_name: str | None
    action: str
    outcome: str
    object_type: str | None
    object_id: str | None
    project_id: str | None
    request_id: str | None
    correlation_id: str | None
    details_json: str

    @classmethod
    def of_record(cls, record: Any) -> ChainedContent:
        """From a row read with `CHAINED_COLUMNS`."""
        return cls(**{name: record[name] for name in cls.__dataclass_fields__})

    def canonical(self) -> bytes:
        """One JSON array, in a fixed field order, without spaces, in UTF-8. The time is UTC
        with microseconds (PostgreSQL's precision), so that it reads back identically."""
        fields = [
            CHAIN_FORMAT,
            self.id,
            self.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
            self.actor_id,
            self.actor_name,
            self.action,
            self.outcome,
            self.object_type,
            self.object_id,
            self.project_id,
            self.request_id,
            self.correlation_id,
            self.details_json,
        ]
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()


CHAINED_COLUMNS = """id, occurred_at, actor_id::text AS actor_id, actor_name, action, outcome,
object_type, object_id, project_id::text AS project_id, request_id, correlation_id,
details::text AS details_json, previous_hash, row_hash"""
"""The select list that reads an event as the chain hashes it (see `ChainedContent`)."""


def chained_hash(previous_hash: bytes, content: ChainedContent) -> bytes:
    """The `row_hash` of an event with this content that follows `previous_hash`."""
    if len(previous_hash) != len(GENESIS_HASH):
        raise ValueError(f"a previous hash is {len(GENESIS_HASH)} bytes, not {len(previous_hash)}")
    return hashlib.sha256(previous_hash + content.canonical()).digest()


# Verifying -----------------------------------------------------------------------------------

Problem = Literal["content", "link"]


@dataclass(frozen=True)
class ChainBreak:
    """The first event of a chain that does not hold."""

    project_id: UUID | None
    event_id: int
    problem: Problem
    """`content`: the event is not what was hashed (edited). `link`: it does not follow the
    event before it (one was removed, inserted or moved in between)."""

    def describe(self) -> str:
        chain = f"project {self.project_id}" if self.project_id else "the platform chain"
        if self.problem == "content":
            what = "its content does not match its hash: it was changed after it was written"
        else:
            what = (
                "it does not link to the event before it in the chain: an event was removed, "
                "inserted or moved"
            )
        return f"{chain}, audit event {self.event_id}: {what}"


@dataclass
class TrailVerification:
    """What a walk of every chain found."""

    events: int = 0
    chains: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)
    """The first broken link of each broken chain, if any."""
    heads: dict[UUID | None, bytes] = field(default_factory=dict)
    """The last `row_hash` of each chain: kept elsewhere, it proves later that the tail of a
    chain was not cut off or rewritten."""

    @property
    def intact(self) -> bool:
        return not self.breaks


async def verify_chains(records: AsyncIterable[Any]) -> TrailVerification:
    """Walk the events, read with `CHAINED_COLUMNS` and ordered by chain and then by id (the
    order they were appended in: `aiaas.core.audit` takes the id under the chain's lock).

    Each event must hash to its `row_hash`, and its `previous_hash` must be the `row_hash` of the
    event before it in its chain (the first event's: `GENESIS_HASH`). Only the first break of a
    chain is reported: everything after it is suspect anyway."""
    result = TrailVerification()
    chain: UUID | None = None
    expected_previous = GENESIS_HASH
    broken = False
    started = False
    async for record in records:
        content = ChainedContent.of_record(record)
        project_id = UUID(content.project_id) if content.project_id else None
        if not started or project_id != chain:
            started, chain, expected_previous, broken = True, project_id, GENESIS_HASH, False
            result.chains += 1
        result.events += 1
        previous_hash, row_hash = bytes(record["previous_hash"]), bytes(record["row_hash"])
        result.heads[chain] = row_hash
        if broken:
            continue
        problem: Problem | None = None
        if len(previous_hash) != len(GENESIS_HASH) or chained_hash(previous_hash, content) != (
            row_hash
        ):
            problem = "content"
        elif previous_hash != expected_previous:
            problem = "link"
        if problem is not None:
            result.breaks.append(ChainBreak(chain, content.id, problem))
            broken = True
        expected_previous = row_hash
    return result
