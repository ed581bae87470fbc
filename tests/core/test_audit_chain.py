"""The audit trail's hash chain (`aiaas.core.audit_chain`): every event is chained to the one
before it in its project, `verify_audit_trail` names exactly the event that an owner of the
database edited, removed or moved, concurrent appends still make one chain per project, and the
migration that introduced the chain hashed the events written before it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from aiaas import migrations
from aiaas.core.audit import (
    AuditedChange,
    AuditEvent,
    correlated,
    record_outside_change,
    verify_audit_trail,
)
from aiaas.core.audit_chain import (
    GENESIS_HASH,
    ChainBreak,
    ChainedContent,
    TrailVerification,
    chained_hash,
)
from aiaas.core.platform import Platform
from audit_tampering import edited, removed, swapped
from support import Services, create_database_from_template, drop_database, with_database


async def record(
    platform: Platform, project_id: uuid.UUID | None, label: str, **details: Any
) -> AuditEvent:
    return await record_outside_change(
        platform,
        actor=None,
        action=f"test.{label}",
        outcome="success",
        request_id=uuid.uuid4().hex,
        project_id=project_id,
        details={"label": label, **details},
    )


async def chain_of(platform: Platform, project_id: uuid.UUID, count: int) -> list[AuditEvent]:
    return [await record(platform, project_id, f"event-{number}") for number in range(count)]


async def verify(platform: Platform) -> TrailVerification:
    async with platform.metadata.acquire() as connection:
        return await verify_audit_trail(connection)


def breaks_in(verification: TrailVerification, *projects: uuid.UUID) -> list[ChainBreak]:
    return [link for link in verification.breaks if link.project_id in projects]


# Writing the chain ---------------------------------------------------------------------------


async def test_each_event_links_to_the_one_before_it_in_its_project(platform: Platform) -> None:
    first_project, second_project = uuid.uuid4(), uuid.uuid4()
    for number in range(3):
        await record(platform, first_project, f"first-{number}")
        await record(platform, second_project, f"second-{number}")
        await record(platform, None, f"platform-{number}")

    async with platform.metadata.acquire() as connection:
        for project_id in (first_project, second_project):
            rows = await connection.fetch(
                "SELECT id, occurred_at, actor_id::text AS actor_id, actor_name, action, "
                "outcome, object_type, object_id, project_id::text AS project_id, request_id, "
                "correlation_id, details::text AS details_json, previous_hash, row_hash "
                "FROM audit_events WHERE project_id = $1 ORDER BY id",
                project_id,
            )
            # Interleaved with the other chains, yet linked only within its own.
            assert [bytes(row["previous_hash"]) for row in rows] == [
                GENESIS_HASH,
                *(bytes(row["row_hash"]) for row in rows[:-1]),
            ]
            for row in rows:
                previous = bytes(row["previous_hash"])
                assert row["row_hash"] == chained_hash(previous, ChainedContent.of_record(row))
    assert (await verify(platform)).intact


async def test_the_hash_covers_every_column_but_the_hashes(platform: Platform) -> None:
    async with platform.metadata.acquire() as connection:
        columns = {
            row["column_name"]
            for row in await connection.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'audit_events'"
            )
        }
    hashed = {name.removesuffix("_json") for name in ChainedContent.__dataclass_fields__}

    # A column added later without being hashed could be rewritten unseen.
    assert columns - {"previous_hash", "row_hash"} == hashed


async def test_the_correlation_id_in_scope_is_stored_and_hashed(platform: Platform) -> None:
    project_id = uuid.uuid4()

    with correlated("caller-ref-7"):
        event = await record(platform, project_id, "correlated")
    outside = await record(platform, project_id, "uncorrelated")

    assert (event.correlation_id, outside.correlation_id) == ("caller-ref-7", None)
    assert event.request_id != "caller-ref-7"
    assert (await verify(platform)).intact


async def test_many_concurrent_appends_still_make_one_unbroken_chain_per_project(
    platform: Platform,
) -> None:
    projects = [uuid.uuid4() for _ in range(3)]

    async def mutation(number: int) -> None:
        project_id = projects[number % len(projects)] if number % 4 else None
        async with AuditedChange(platform, None, "test.concurrent") as change:
            await change.record(object_type="test", object_id=str(number), project_id=project_id)

    await asyncio.gather(*(mutation(number) for number in range(60)))

    verification = await verify(platform)
    assert verification.intact, verification.breaks
    async with platform.metadata.acquire() as connection:
        for project_id in projects:
            links = await connection.fetch(
                "SELECT previous_hash, row_hash FROM audit_events WHERE project_id = $1",
                project_id,
            )
            assert len(links) == 15
            # One chain, not a fork: every event but the first follows another of the project's.
            hashes = {bytes(link["row_hash"]) for link in links}
            followed = [bytes(link["previous_hash"]) for link in links]
            assert sorted(previous in hashes for previous in followed) == [False] + [True] * 14
            assert len(set(followed)) == len(followed)


# Finding tampering ---------------------------------------------------------------------------


async def test_an_intact_trail_verifies_with_a_count(platform: Platform) -> None:
    await chain_of(platform, uuid.uuid4(), 2)

    verification = await verify(platform)

    async with platform.metadata.acquire() as connection:
        assert verification.events == await connection.fetchval("SELECT count(*) FROM audit_events")
    assert verification.intact
    assert verification.chains >= 2


async def test_an_edited_event_is_named(platform: Platform, database_owner_url: str) -> None:
    project_id = uuid.uuid4()
    events = await chain_of(platform, project_id, 4)

    async with edited(database_owner_url, events[1].id, '{"label": "nothing to see"}'):
        verification = await verify(platform)
    after = await verify(platform)

    assert verification.breaks == [ChainBreak(project_id, events[1].id, "content")]
    assert "changed after it was written" in verification.breaks[0].describe()
    assert after.intact


@pytest.mark.parametrize(("position", "named"), [(0, 1), (2, 3)], ids=["first", "middle"])
async def test_a_removed_event_is_found_at_the_next(
    platform: Platform, database_owner_url: str, position: int, named: int
) -> None:
    project_id = uuid.uuid4()
    events = await chain_of(platform, project_id, 4)

    async with removed(database_owner_url, events[position].id):
        verification = await verify(platform)

    assert verification.breaks == [ChainBreak(project_id, events[named].id, "link")]
    assert "an event was removed" in verification.breaks[0].describe()
    assert (await verify(platform)).intact


async def test_reordered_events_are_found(platform: Platform, database_owner_url: str) -> None:
    project_id = uuid.uuid4()
    events = await chain_of(platform, project_id, 4)

    async with swapped(database_owner_url, events[1].id, events[2].id):
        verification = await verify(platform)

    assert verification.breaks == [ChainBreak(project_id, events[1].id, "content")]
    assert (await verify(platform)).intact


async def test_a_break_in_one_chain_leaves_the_others_verified(
    platform: Platform, database_owner_url: str
) -> None:
    broken, sound = uuid.uuid4(), uuid.uuid4()
    broken_events = await chain_of(platform, broken, 2)
    await chain_of(platform, sound, 2)

    async with edited(database_owner_url, broken_events[0].id, "{}"):
        verification = await verify(platform)

    assert breaks_in(verification, broken, sound) == [
        ChainBreak(broken, broken_events[0].id, "content")
    ]
    assert verification.breaks == breaks_in(verification, broken)


async def test_the_walk_reads_a_long_trail_in_batches(
    platform: Platform, database_owner_url: str
) -> None:
    project_id = uuid.uuid4()
    events = await chain_of(platform, project_id, 7)

    async with removed(database_owner_url, events[5].id), platform.metadata.acquire() as connection:
        # Batches of two: the break sits beyond several page boundaries.
        verification = await verify_audit_trail(connection, batch=2)

    assert verification.breaks == [ChainBreak(project_id, events[6].id, "link")]


# Events from before the chain ----------------------------------------------------------------


async def test_the_migration_chains_the_events_written_before_it(services: Services) -> None:
    name = await create_database_from_template(services, "template1", "test_chain_backfill")
    database_url = with_database(services.server_url, name)
    try:
        await migrations.upgrade(database_url, "0006")
        connection = await asyncpg.connect(database_url)
        try:
            project_id = uuid.uuid4()
            for number, project in enumerate([project_id, None, project_id, project_id, None]):
                await connection.execute(
                    "INSERT INTO audit_events (action, outcome, project_id, request_id, details) "
                    "VALUES ($1, 'success', $2, $3, $4)",
                    f"old.{number}",
                    project,
                    f"request-{number}",
                    '{"b": [1, 2.50, {"c": null}], "a": "\\u00e9t\\u00e9"}',
                )
            await migrations.upgrade(database_url)
            verification = await verify_audit_trail(connection)
            first = await connection.fetchrow(
                "SELECT id, previous_hash FROM audit_events WHERE project_id = $1 ORDER BY id "
                "LIMIT 1",
                project_id,
            )
        finally:
            await connection.close()
    finally:
        await drop_database(services, name)

    assert verification.intact, verification.breaks
    assert (verification.events, verification.chains) == (5, 2)
    assert bytes(first["previous_hash"]) == GENESIS_HASH
