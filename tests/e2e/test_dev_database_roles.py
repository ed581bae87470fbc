"""`aiaas dev` separates the schema's owner from the role its API and worker connect as, also for
a data dir made before the roles existed, whose tables its superuser owned."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from aiaas.embedded.database_roles import APPLICATION_ROLE, OWNER_ROLE, RoleCredentials
from aiaas.embedded.postgres import SUPERUSER
from dev_support import READY, DevProcess, dev_processes_cleaned_up, start

pytestmark = pytest.mark.slow


@pytest.fixture
def dev_processes() -> Iterator[list[DevProcess]]:
    yield from dev_processes_cleaned_up()


def child_environments(dev: DevProcess) -> dict[str, dict[str, str]]:
    """The environment of the API and of the worker, by role."""
    found = {}
    for child in dev.descendants():
        command = " ".join(child.cmdline())
        for role in ("serve", "worker"):
            if f"aiaas {role}" in command:
                found[role] = child.environ()
    return found


async def audit_table_owner(url: str) -> str:
    connection = await asyncpg.connect(url)
    try:
        owner: str = await connection.fetchval(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'audit_events'"
        )
        return owner
    finally:
        await connection.close()


async def give_the_trail_to(url: str, role: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'ALTER TABLE audit_events OWNER TO "{role}"')
    finally:
        await connection.close()


def test_the_api_and_the_worker_connect_as_the_application_role_only(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    data_dir = tmp_path / "data"
    first = start(dev_processes, data_dir)
    first.wait_for(READY)
    environments = child_environments(first)
    assert set(environments) == {"serve", "worker"}
    owner = RoleCredentials(OWNER_ROLE, (data_dir / "postgres-owner.password").read_text())
    superuser = RoleCredentials(SUPERUSER, (data_dir / "postgres.password").read_text())
    for environment in environments.values():
        application_url = environment["AIAAS_DATABASE_URL"]
        assert urlsplit(application_url).username == APPLICATION_ROLE
        assert "AIAAS_DATABASE_OWNER_URL" not in environment
        everything = " ".join(environment.values())
        assert owner.password not in everything
        assert superuser.password not in everything
    assert asyncio.run(audit_table_owner(owner.url_on(application_url))) == OWNER_ROLE

    # As a data dir of an earlier release: the superuser owns the schema.
    asyncio.run(give_the_trail_to(superuser.url_on(application_url), SUPERUSER))
    assert first.stop()[0] == 0

    second = start(dev_processes, data_dir)
    second.wait_for(READY)
    application_url = child_environments(second)["serve"]["AIAAS_DATABASE_URL"]
    assert asyncio.run(audit_table_owner(owner.url_on(application_url))) == OWNER_ROLE
    assert "could rewrite the audit trail" not in "".join(second.output)
    assert second.stop()[0] == 0
