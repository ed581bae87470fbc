"""What an insider with the database owner's password can do to the audit trail, for the tests
that check the hash chain finds it: edit an event, remove one, or swap two. Each is a context
manager that undoes itself, so a module's trail verifies again afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from aiaas.core.audit import AuditEvent, record_outside_change
from aiaas.core.platform import Platform

APPEND_ONLY = "audit_events_append_only"


@asynccontextmanager
async def as_owner(owner_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the database's owner with the append-only trigger off, for one
    transaction: what an insider with the owner's password can do."""
    connection = await asyncpg.connect(owner_url)
    try:
        async with connection.transaction():
            await connection.execute(f"ALTER TABLE audit_events DISABLE TRIGGER {APPEND_ONLY}")
            yield connection
            await connection.execute(f"ALTER TABLE audit_events ENABLE TRIGGER {APPEND_ONLY}")
    finally:
        await connection.close()


@asynccontextmanager
async def edited(database_url: str, event_id: int, details: str) -> AsyncIterator[None]:
    """The event's details rewritten, then put back as they were."""
    async with as_owner(database_url) as owner:
        original = await owner.fetchval("SELECT details FROM audit_events WHERE id = $1", event_id)
        await owner.execute("UPDATE audit_events SET details = $2 WHERE id = $1", event_id, details)
    try:
        yield
    finally:
        async with as_owner(database_url) as owner:
            await owner.execute(
                "UPDATE audit_events SET details = $2 WHERE id = $1", event_id, original
            )


@asynccontextmanager
async def removed(database_url: str, event_id: int) -> AsyncIterator[None]:
    """The event deleted, then inserted back whole."""
    async with as_owner(database_url) as owner:
        row = await owner.fetchrow("DELETE FROM audit_events WHERE id = $1 RETURNING *", event_id)
    try:
        yield
    finally:
        columns = list(row.keys())
        placeholders = ", ".join(f"${number}" for number in range(1, len(columns) + 1))
        async with as_owner(database_url) as owner:
            await owner.execute(
                f"INSERT INTO audit_events ({', '.join(columns)}) OVERRIDING SYSTEM VALUE "
                f"VALUES ({placeholders})",
                *row.values(),
            )


@asynccontextmanager
async def swapped(database_url: str, first_id: int, second_id: int) -> AsyncIterator[None]:
    """Two events exchanged whole, hashes included, each keeping its id (which cannot change):
    the order of the trail rewritten. Swapped back afterwards."""

    async def swap() -> None:
        async with as_owner(database_url) as owner:
            rows = {
                row["id"]: dict(row)
                for row in await owner.fetch(
                    "SELECT * FROM audit_events WHERE id = ANY($1)", [first_id, second_id]
                )
            }
            columns = [column for column in rows[first_id] if column != "id"]
            assignments = ", ".join(
                f"{column} = ${number}" for number, column in enumerate(columns, start=2)
            )
            # No two events of a chain may share a previous hash, even for a moment: the first
            # holds a placeholder until the second has given its own up.
            placeholder = {**rows[second_id], "previous_hash": uuid.uuid4().bytes * 2}
            for target, values in (
                (first_id, placeholder),
                (second_id, rows[first_id]),
                (first_id, rows[second_id]),
            ):
                await owner.execute(
                    f"UPDATE audit_events SET {assignments} WHERE id = $1",
                    target,
                    *(values[column] for column in columns),
                )

    await swap()
    try:
        yield
    finally:
        await swap()


async def numbered_events(
    platform: Platform, project_id: uuid.UUID | None, action: str, count: int
) -> list[AuditEvent]:
    """`count` events appended to the project's chain (the platform's for None), numbered in
    their details."""
    return [
        await record_outside_change(
            platform,
            actor=None,
            action=action,
            outcome="success",
            request_id=uuid.uuid4().hex,
            project_id=project_id,
            details={"number": number},
        )
        for number in range(count)
    ]
