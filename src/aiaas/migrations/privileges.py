"""What the application role may do to the schema: everything it needs, and nothing that would let
it rewrite history.

Two roles share the database. The owner role runs the migrations and owns every table, function
and trigger. The application role, the one the API and the workers connect as, owns nothing: it
cannot `ALTER TABLE … DISABLE TRIGGER`, `DROP TRIGGER`, replace a trigger's function, or set
`session_replication_role` (that takes a superuser), so the audit trail's append-only trigger
holds against it. On top of that, it may only INSERT and SELECT audit events, and only read the
schema's revision.

The grants are written by the owner at the end of every upgrade, from the catalog, so a table a
later revision adds is granted by the same upgrade that adds it. `aiaas db grants` prints them
for a database administrator who would rather run them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

# Tables the application may not change freely, and what it may do on each.
APPEND_ONLY_TABLES = {"audit_events": "SELECT, INSERT"}
# `alembic_version` is the platform's revision, and in the `optuna` schema Optuna's; `version_info`
# is Optuna's record of the schema version, which it only reads once the migrations wrote it.
READ_ONLY_TABLES = {"alembic_version": "SELECT", "version_info": "SELECT"}
OPTUNA_SCHEMA = "optuna"
"""The schema of Optuna's study storage (revision 0009), granted like the platform's own."""
READ_WRITE = "SELECT, INSERT, UPDATE, DELETE"
# nextval for rows that number themselves, currval and reading; never setval (UPDATE), which
# could renumber the audit trail's ids.
SEQUENCE_PRIVILEGES = "USAGE, SELECT"


def quote_identifier(name: str) -> str:
    """`name` as a PostgreSQL identifier, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class SchemaObjects:
    schema: str
    tables: tuple[str, ...]
    sequences: tuple[str, ...]


def application_grants(role: str, objects: SchemaObjects) -> list[str]:
    """The statements that give `role` exactly the application's privileges on `objects`.

    They start by revoking everything, so running them again after a change of policy leaves no
    privilege of the old policy behind."""
    grantee = quote_identifier(role)
    schema = quote_identifier(objects.schema)
    statements = [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {grantee}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {grantee}",
        f"REVOKE CREATE ON SCHEMA {schema} FROM {grantee}",
        f"GRANT USAGE ON SCHEMA {schema} TO {grantee}",
    ]
    for table in objects.tables:
        privileges = APPEND_ONLY_TABLES.get(table) or READ_ONLY_TABLES.get(table) or READ_WRITE
        statements.append(
            f"GRANT {privileges} ON TABLE {schema}.{quote_identifier(table)} TO {grantee}"
        )
    for sequence in objects.sequences:
        statements.append(
            f"GRANT {SEQUENCE_PRIVILEGES} ON SEQUENCE {schema}.{quote_identifier(sequence)} "
            f"TO {grantee}"
        )
    return statements


def schema_objects_query(namespace: str = "current_schema()::regnamespace") -> str:
    """Every table and sequence of a schema, by kind then name. `namespace` is an SQL expression
    of the schema's oid: the current schema's by default, or a constant of this module."""
    return f"""
SELECT 'table', c.relname FROM pg_class c
 WHERE c.relnamespace = {namespace} AND c.relkind IN ('r', 'p')
UNION ALL
SELECT 'sequence', c.relname FROM pg_class c
 WHERE c.relnamespace = {namespace} AND c.relkind = 'S'
ORDER BY 1, 2
"""


SCHEMA_OBJECTS_QUERY = schema_objects_query()
OPTUNA_OBJECTS_QUERY = schema_objects_query(f"to_regnamespace('{OPTUNA_SCHEMA}')")
"""Empty where the schema does not exist (a database below revision 0009)."""


def schema_objects(schema: str, rows: list[tuple[str, str]]) -> SchemaObjects:
    return SchemaObjects(
        schema=schema,
        tables=tuple(name for kind, name in rows if kind == "table"),
        sequences=tuple(name for kind, name in rows if kind == "sequence"),
    )


# Relations, functions and types in the schema that `role` owns: an application role that owns
# one could alter or drop it, whatever it was granted.
OWNED_BY_ROLE_QUERY = """
SELECT c.relname FROM pg_class c
 WHERE c.relnamespace = current_schema()::regnamespace AND c.relowner = to_regrole(:role)
UNION ALL
SELECT p.proname FROM pg_proc p
 WHERE p.pronamespace = current_schema()::regnamespace AND p.proowner = to_regrole(:role)
ORDER BY 1
"""
