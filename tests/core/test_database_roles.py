"""The application's database role cannot rewrite history: every way an owner or a superuser has
to change or remove audit events fails for it, while the platform it runs works.

The platform of these tests connects as the application role, as every test module's does
(tests/conftest.py), so the rest of the suite shows the grants are enough.
"""

from __future__ import annotations

import logging
import uuid

import asyncpg
import pytest

from aiaas import migrations
from aiaas.core.audit import record_outside_change, verify_audit_trail
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config
from aiaas.core.errors import ConfigError
from aiaas.core.platform import Platform
from aiaas.embedded.database_roles import RoleCredentials, ensure_login_role
from aiaas.migrations.privileges import (
    OPTUNA_OBJECTS_QUERY,
    OPTUNA_SCHEMA,
    SCHEMA_OBJECTS_QUERY,
    application_grants,
    schema_objects,
)
from support import (
    TEST_APPLICATION_ROLE,
    TEST_OWNER_ROLE,
    Services,
    admin_connection,
    create_database_from_template,
    drop_database,
    with_database,
)

TAMPERING = {
    "update": "UPDATE audit_events SET action = 'rewritten'",
    "delete": "DELETE FROM audit_events",
    "truncate": "TRUNCATE audit_events",
    "disable the trigger": "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
    "disable every trigger": "ALTER TABLE audit_events DISABLE TRIGGER ALL",
    "drop the trigger": "DROP TRIGGER audit_events_append_only ON audit_events",
    "replace the trigger's function": (
        "CREATE OR REPLACE FUNCTION aiaas_refuse_audit_change() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$"
    ),
    "leave replication role": "SET session_replication_role = replica",
    "drop the table": "DROP TABLE audit_events",
    "rename the table": "ALTER TABLE audit_events RENAME TO audit_events_old",
    "take the table": f'ALTER TABLE audit_events OWNER TO "{TEST_APPLICATION_ROLE.name}"',
    "renumber the events": "SELECT setval('audit_events_id_seq', 1)",
    "a table of its own": "CREATE TABLE shadow_audit (id int)",
    "become the owner": f'SET ROLE "{TEST_OWNER_ROLE.name}"',
}


@pytest.mark.parametrize("statement", TAMPERING.values(), ids=TAMPERING.keys())
async def test_the_application_role_cannot_rewrite_the_audit_trail(
    platform: Platform, statement: str
) -> None:
    event = await record_outside_change(
        platform,
        actor=None,
        action="test.tamper_target",
        outcome="success",
        request_id=f"tamper-{uuid.uuid4().hex[:8]}",
    )
    async with platform.metadata.acquire() as connection:
        assert await connection.fetchval("SELECT current_user") == TEST_APPLICATION_ROLE.name
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with connection.transaction():
                await connection.execute(statement)
        kept = await connection.fetchval("SELECT action FROM audit_events WHERE id = $1", event.id)
        assert kept == "test.tamper_target"
        assert (await verify_audit_trail(connection)).intact


async def test_the_application_role_owns_nothing_and_holds_no_power(platform: Platform) -> None:
    async with platform.metadata.acquire() as connection:
        role = await connection.fetchrow(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname = current_user"
        )
        assert not any(role.values())
        # Without the grant option, PostgreSQL only warns, and grants nothing.
        await connection.execute(
            f'GRANT UPDATE, DELETE ON audit_events TO "{TEST_APPLICATION_ROLE.name}"'
        )
        owned = await connection.fetchval(
            "SELECT count(*) FROM pg_class WHERE relowner = current_user::regrole"
        )
        assert owned == 0
        privileges = await connection.fetchval(
            "SELECT array_agg(privilege_type ORDER BY privilege_type) "
            "FROM information_schema.role_table_grants "
            "WHERE table_name = 'audit_events' AND grantee = current_user"
        )
        assert privileges == ["INSERT", "SELECT"]


async def granted_in(platform: Platform, schema: str) -> tuple[dict[str, list[str]], set[str]]:
    """The application role's privileges on each table of `schema`, and the tables there."""
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT table_name, array_agg(privilege_type ORDER BY privilege_type) AS granted "
            "FROM information_schema.role_table_grants "
            "WHERE grantee = current_user AND table_schema = $1 GROUP BY table_name",
            schema,
        )
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
        )
    return {row["table_name"]: row["granted"] for row in rows}, {r["tablename"] for r in tables}


async def test_every_table_but_the_trail_and_the_revision_is_read_write(platform: Platform) -> None:
    granted, tables = await granted_in(platform, "public")
    assert set(granted) == tables
    assert granted.pop("audit_events") == ["INSERT", "SELECT"]
    assert granted.pop("alembic_version") == ["SELECT"]
    assert all(value == ["DELETE", "INSERT", "SELECT", "UPDATE"] for value in granted.values())


async def test_optunas_tables_are_granted_but_its_schema_versions_are_read_only(
    platform: Platform,
) -> None:
    granted, tables = await granted_in(platform, OPTUNA_SCHEMA)
    assert "trials" in tables
    assert set(granted) == tables
    assert granted.pop("alembic_version") == ["SELECT"]
    assert granted.pop("version_info") == ["SELECT"]
    assert all(value == ["DELETE", "INSERT", "SELECT", "UPDATE"] for value in granted.values())


async def test_an_upgrade_refuses_an_application_role_that_owns_part_of_the_schema(
    services: Services, template_database: str
) -> None:
    intruder = RoleCredentials(f"aiaas_test_owning_{uuid.uuid4().hex[:6]}", "owning")
    name = await create_database_from_template(
        services, template_database, "test_owning_role", owner=TEST_OWNER_ROLE
    )
    admin = await admin_connection(services)
    try:
        await ensure_login_role(admin, intruder)
        await admin.execute(f'GRANT "{intruder.name}" TO "{TEST_OWNER_ROLE.name}"')
        owner_url = TEST_OWNER_ROLE.url_on(with_database(services.server_url, name))
        owner = await asyncpg.connect(owner_url)
        try:
            # As when one role owned the schema before the two were split.
            await owner.execute(f'GRANT CREATE ON SCHEMA public TO "{intruder.name}"')
            await owner.execute(f'ALTER TABLE metric_points OWNER TO "{intruder.name}"')
        finally:
            await owner.close()
        with pytest.raises(ConfigError, match=r"owns metric_points.*REASSIGN OWNED"):
            await migrations.upgrade(owner_url, application_role=intruder.name)
        with pytest.raises(ConfigError, match="does not exist"):
            await migrations.upgrade(owner_url, application_role="aiaas_test_no_such_role")
    finally:
        await drop_database(services, name)
        await admin.execute(f'DROP ROLE IF EXISTS "{intruder.name}"')
        await admin.close()


async def test_db_grants_prints_what_the_upgrade_granted(config: Config) -> None:
    statements = await migrations.application_grants_for(config)
    connection = await asyncpg.connect(str(config.database_owner_url))
    try:
        schema = await connection.fetchval("SELECT current_schema()")
        rows = [tuple(row) for row in await connection.fetch(SCHEMA_OBJECTS_QUERY)]
        optuna_rows = [tuple(row) for row in await connection.fetch(OPTUNA_OBJECTS_QUERY)]
    finally:
        await connection.close()
    assert statements == application_grants(
        TEST_APPLICATION_ROLE.name, schema_objects(schema, rows)
    ) + application_grants(TEST_APPLICATION_ROLE.name, schema_objects(OPTUNA_SCHEMA, optuna_rows))
    assert (
        f'GRANT SELECT, INSERT ON TABLE "public"."audit_events" TO "{TEST_APPLICATION_ROLE.name}"'
        in statements
    )


@pytest.mark.parametrize(
    ("role", "warned"),
    [("owner", "it owns the audit_events table"), ("application", None)],
)
async def test_a_platform_on_a_role_that_could_rewrite_the_trail_says_so(
    config: Config, role: str, warned: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    url = config.database_owner_url if role == "owner" else config.database_url
    platform = create_platform(config.model_copy(update={"database_url": url}))
    with caplog.at_level(logging.WARNING, logger="aiaas.core.platform"):
        await platform.start()
        await platform.stop()
    warnings = [r.getMessage() for r in caplog.records if "audit trail" in r.getMessage()]
    if warned is None:
        assert warnings == []
    else:
        [warning] = warnings
        assert warned in warning
