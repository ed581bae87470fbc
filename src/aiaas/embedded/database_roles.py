"""The two roles the platform connects as: an owner for the schema, an application role for the
API and the workers (see `aiaas.migrations.privileges` for what each may do).

`aiaas dev` and the test suite make them with a superuser connection, as a database administrator
would by hand on a managed PostgreSQL (docs/production.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

# Neither may create roles or databases, replicate, bypass row security, or be a superuser.
_LEAST_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"


@dataclass(frozen=True)
class RoleCredentials:
    name: str
    password: str

    def url_on(self, server_url: str) -> str:
        """`server_url` (any database of the server) logged in as this role instead."""
        parts = urlsplit(server_url)
        host = parts.hostname or ""
        netloc = f"{quote(self.name, safe='')}:{quote(self.password, safe='')}@{host}"
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))


async def ensure_login_role(connection: asyncpg.Connection, role: RoleCredentials) -> None:
    """Create the role, or bring an existing one back to these attributes and this password.

    Two processes may race to create it (test sessions share a server): the loser's
    `duplicate_object` just means it exists."""
    exists = await connection.fetchval("SELECT to_regrole($1) IS NOT NULL", role.name)
    verb = "ALTER" if exists else "CREATE"
    # Neither statement takes parameters; format() quotes the name and the password.
    statement = await connection.fetchval(
        f"SELECT format('{verb} ROLE %I {_LEAST_ATTRIBUTES} PASSWORD %L', $1::text, $2::text)",
        role.name,
        role.password,
    )
    try:
        await connection.execute(statement)
    except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
        if exists:
            raise


# Everything in the current schema, with the statement that gives it a new owner. Sequences
# that belong to a column move with their table.
_FOREIGN_OWNED_OBJECTS = """
SELECT format('ALTER TABLE %I OWNER TO %I', c.relname, $1::text)
  FROM pg_class c
 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
   AND c.relowner <> to_regrole($1::text)
UNION ALL
SELECT format('ALTER SEQUENCE %I OWNER TO %I', c.relname, $1::text)
  FROM pg_class c
 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'S'
   AND c.relowner <> to_regrole($1::text)
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))
UNION ALL
SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, $1::text)
  FROM pg_proc p
 WHERE p.pronamespace = current_schema()::regnamespace AND p.proowner <> to_regrole($1::text)
"""


async def hand_database_to(connection: asyncpg.Connection, owner: str) -> None:
    """Make `owner` own the connected database and everything in its schema: a data dir made
    before the roles existed has its tables owned by the superuser."""
    async with connection.transaction():
        await connection.execute(
            await connection.fetchval(
                "SELECT format('ALTER DATABASE %I OWNER TO %I', current_database(), $1::text)",
                owner,
            )
        )
        for row in await connection.fetch(_FOREIGN_OWNED_OBJECTS, owner):
            await connection.execute(row[0])


OWNER_ROLE = "aiaas_owner"
APPLICATION_ROLE = "aiaas_app"


@dataclass(frozen=True)
class DatabaseUrls:
    owner_url: str
    application_url: str


async def provision_roles(
    superuser_url: str, owner: RoleCredentials, application: RoleCredentials
) -> DatabaseUrls:
    """Make both roles on the server and give `owner` the database of `superuser_url`."""
    connection = await asyncpg.connect(superuser_url)
    try:
        await ensure_login_role(connection, owner)
        await ensure_login_role(connection, application)
        await hand_database_to(connection, owner.name)
    finally:
        await connection.close()
    return DatabaseUrls(
        owner_url=owner.url_on(superuser_url), application_url=application.url_on(superuser_url)
    )
