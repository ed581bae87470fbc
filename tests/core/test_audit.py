"""The audit trail: append-only in the database, and `AuditedChange`'s all-or-nothing commits."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from aiaas.core.audit import AuditedChange, record_outside_change
from aiaas.core.errors import ConflictError
from aiaas.core.platform import Platform


class SimulatedBugError(Exception):
    """An unexpected failure inside a mutation: a bug, not an `AiaasError`."""


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def user_exists(platform: Platform, username: str) -> bool:
    async with platform.metadata.acquire() as connection:
        found: bool = await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)", username
        )
    return found


async def events_of_request(platform: Platform, request_id: str) -> list[dict[str, Any]]:
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT * FROM audit_events WHERE request_id = $1 ORDER BY id", request_id
        )
    return [dict(row) for row in rows]


async def insert_user(connection: Any, username: str) -> uuid.UUID:
    user_id: uuid.UUID = await connection.fetchval(
        "INSERT INTO users (username) VALUES ($1) RETURNING id", username
    )
    return user_id


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET action = 'rewritten' WHERE id = $1",
        "DELETE FROM audit_events WHERE id = $1",
        "TRUNCATE audit_events",
    ],
    ids=["update", "delete", "truncate"],
)
async def test_database_refuses_to_change_the_audit_trail_even_to_its_owner(
    platform: Platform, database_owner_url: str, statement: str
) -> None:
    request_id = unique_name("append-only")
    # Row triggers fire only on rows that exist: make sure there is one.
    event = await record_outside_change(
        platform, actor=None, action="test.append_only", outcome="success", request_id=request_id
    )

    # The application's role may not even try (tests/core/test_database_roles.py); the
    # trigger holds against the owner unless the owner turns it off.
    connection = await asyncpg.connect(database_owner_url)
    try:
        arguments = [event.id] if "$1" in statement else []
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await connection.execute(statement, *arguments)
    finally:
        await connection.close()

    [row] = await events_of_request(platform, request_id)
    assert row["id"] == event.id
    assert row["action"] == "test.append_only"


async def test_effect_and_event_commit_together(platform: Platform) -> None:
    username = unique_name("committed")
    request_id = unique_name("commit")

    async with AuditedChange(platform, None, "test.user_create", request_id) as change:
        user_id = await insert_user(change.connection, username)
        event = await change.record(
            object_type="user", object_id=str(user_id), details={"username": username}
        )
        # Until the change exits, another connection sees neither the effect nor its event.
        assert not await user_exists(platform, username)
        assert await events_of_request(platform, request_id) == []

    assert await user_exists(platform, username)
    [row] = await events_of_request(platform, request_id)
    assert row["id"] == event.id
    assert row["outcome"] == "success"
    assert row["action"] == "test.user_create"
    assert row["object_type"] == "user"
    assert row["object_id"] == str(user_id)
    assert row["details"] == {"username": username}
    assert change.events == [event]


async def test_unexpected_exception_rolls_back_effect_and_event(platform: Platform) -> None:
    username = unique_name("rolled-back")
    request_id = unique_name("unexpected")

    async def change_with_a_bug() -> None:
        async with AuditedChange(platform, None, "test.user_create", request_id) as change:
            user_id = await insert_user(change.connection, username)
            await change.record(object_type="user", object_id=str(user_id))
            raise SimulatedBugError

    with pytest.raises(SimulatedBugError):
        await change_with_a_bug()

    assert not await user_exists(platform, username)
    # A bug is logged, not audited as an outcome of the mutation.
    assert await events_of_request(platform, request_id) == []


async def test_expected_error_leaves_a_failed_event_and_no_effect(platform: Platform) -> None:
    username = unique_name("refused")
    request_id = unique_name("expected")

    async def refused_change() -> None:
        async with AuditedChange(platform, None, "test.user_create", request_id) as change:
            user_id = await insert_user(change.connection, username)
            await change.record(object_type="user", object_id=str(user_id))
            raise ConflictError("that name is taken")

    with pytest.raises(ConflictError):
        await refused_change()

    assert not await user_exists(platform, username)
    [row] = await events_of_request(platform, request_id)
    assert row["outcome"] == "failed"
    assert row["action"] == "test.user_create"
    assert row["details"] == {"code": "CONFLICT", "message": "that name is taken"}


async def test_successful_change_without_an_event_is_refused_and_rolled_back(
    platform: Platform,
) -> None:
    username = unique_name("unaudited")
    request_id = unique_name("unaudited")

    with pytest.raises(
        RuntimeError, match=r"test\.user_create changed state without an audit event"
    ):
        async with AuditedChange(platform, None, "test.user_create", request_id) as change:
            await insert_user(change.connection, username)

    assert not await user_exists(platform, username)
    assert await events_of_request(platform, request_id) == []


async def test_declared_unchanged_change_needs_no_event(platform: Platform) -> None:
    request_id = unique_name("unchanged")

    async with AuditedChange(platform, None, "test.noop", request_id) as change:
        change.unchanged()

    assert change.events == []
    assert await events_of_request(platform, request_id) == []
