"""Alembic environment. The platform always hands in an open connection (see
`aiaas.migrations.upgrade`); the SQL is written by hand in each revision, so there is no
`target_metadata` to autogenerate from."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `aiaas db upgrade`, which provides the connection")

context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
