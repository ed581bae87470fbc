"""`aiaas audit verify` as a real process: exit 0 with a count when every chain holds, exit 1
naming the first broken link when an owner of the database edited or removed an event, and the
chain heads to keep elsewhere."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from aiaas.core.audit import AuditEvent
from aiaas.core.platform import Platform
from audit_tampering import edited, numbered_events, removed

pytestmark = pytest.mark.slow

AIAAS = [sys.executable, "-m", "aiaas"]


def verify(env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AIAAS, "audit", "verify", *options], env=env, capture_output=True, text=True, timeout=60
    )


async def chain_of(platform: Platform, project_id: uuid.UUID | None) -> list[AuditEvent]:
    return await numbered_events(platform, project_id, "test.cli", 3)


async def event_count(platform: Platform) -> int:
    async with platform.metadata.acquire() as connection:
        return int(await connection.fetchval("SELECT count(*) FROM audit_events"))


async def test_an_intact_trail_exits_0_with_a_count(
    platform: Platform, cli_environment: dict[str, str]
) -> None:
    await chain_of(platform, uuid.uuid4())
    await chain_of(platform, None)

    result = verify(cli_environment)

    assert result.returncode == 0, result
    count = await event_count(platform)
    assert f"the audit trail verifies: {count} event(s) in " in result.stdout
    assert result.stderr == ""


async def test_an_edited_event_is_named_and_exits_1(
    platform: Platform, cli_environment: dict[str, str], database_owner_url: str
) -> None:
    project_id = uuid.uuid4()
    events = await chain_of(platform, project_id)

    async with edited(database_owner_url, events[1].id, '{"number": 99}'):
        result = verify(cli_environment)

    assert result.returncode == 1, result
    assert result.stdout == ""
    [named, summary] = result.stderr.splitlines()
    assert named == (
        f"broken: project {project_id}, audit event {events[1].id}: its content does not match "
        "its hash: it was changed after it was written"
    )
    assert summary.startswith("error: the audit trail does not verify: 1 of ")
    assert verify(cli_environment).returncode == 0


async def test_a_removed_event_is_named_by_the_one_after_it(
    platform: Platform, cli_environment: dict[str, str], database_owner_url: str
) -> None:
    events = await chain_of(platform, None)

    async with removed(database_owner_url, events[1].id):
        result = verify(cli_environment)

    assert result.returncode == 1, result
    assert (
        f"broken: the platform chain, audit event {events[2].id}: it does not link to the event "
        "before it" in result.stderr
    )


async def test_heads_prints_each_chains_last_hash(
    platform: Platform, cli_environment: dict[str, str]
) -> None:
    project_id = uuid.uuid4()
    await chain_of(platform, project_id)
    async with platform.metadata.acquire() as connection:
        head = await connection.fetchval(
            "SELECT row_hash FROM audit_events WHERE project_id = $1 ORDER BY id DESC LIMIT 1",
            project_id,
        )

    result = verify(cli_environment, "--heads")

    assert result.returncode == 0, result
    assert f"head {project_id} {bytes(head).hex()}\n" in result.stdout
    assert "head platform " in result.stdout
