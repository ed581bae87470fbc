"""The audit trail's hash chain, and the caller's correlation id beside the request id.

Every audit event gets `previous_hash` and `row_hash` (see `aiaas.core.audit_chain`): one chain
per project, and the platform chain for events without one. The events written before this
revision are chained here, in id order, so that the whole trail verifies, not only its newer part.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from aiaas.core.audit_chain import (
    CHAINED_COLUMNS,
    GENESIS_HASH,
    PLATFORM_CHAIN_SQL,
    ChainedContent,
    chained_hash,
)

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

CHAIN_KEY = f"coalesce(project_id, {PLATFORM_CHAIN_SQL})"

ADD_COLUMNS = [
    # The caller's own X-Request-ID; `request_id` is now always the server's.
    "ALTER TABLE audit_events ADD COLUMN correlation_id text",
    "ALTER TABLE audit_events ADD COLUMN previous_hash bytea",
    "ALTER TABLE audit_events ADD COLUMN row_hash bytea",
]

CONSTRAIN = [
    """
ALTER TABLE audit_events
    ALTER COLUMN previous_hash SET NOT NULL,
    ALTER COLUMN row_hash SET NOT NULL,
    ADD CONSTRAINT audit_events_hash_sizes
        CHECK (length(previous_hash) = 32 AND length(row_hash) = 32)
""",
    # Walking a chain, and finding its head when appending to it.
    f"CREATE INDEX audit_events_chain ON audit_events (({CHAIN_KEY}), id)",
    # Two events that follow the same one would fork the chain: refused, whatever the code does.
    f"CREATE UNIQUE INDEX audit_events_chain_link ON audit_events (({CHAIN_KEY}), previous_hash)",
]

DOWNGRADE = [
    "DROP INDEX audit_events_chain_link",
    "DROP INDEX audit_events_chain",
    "ALTER TABLE audit_events DROP CONSTRAINT audit_events_hash_sizes",
    "ALTER TABLE audit_events DROP COLUMN row_hash",
    "ALTER TABLE audit_events DROP COLUMN previous_hash",
    "ALTER TABLE audit_events DROP COLUMN correlation_id",
]


def chain_existing_events() -> None:
    """Hash the events already there, chain by chain in id order. The append-only trigger is
    disabled for this one transaction (the migration runs as the table's owner, and the ALTER
    holds the table's lock until commit, so no event can slip in meanwhile)."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            f"SELECT {CHAINED_COLUMNS}, {CHAIN_KEY} AS chain FROM audit_events ORDER BY chain, id"
        )
    ).mappings()
    hashes: list[dict[str, Any]] = []
    chain: Any = None
    previous = GENESIS_HASH
    for row in rows:
        if row["chain"] != chain:
            chain, previous = row["chain"], GENESIS_HASH
        row_hash = chained_hash(previous, ChainedContent.of_record(row))
        hashes.append({"id": row["id"], "previous_hash": previous, "row_hash": row_hash})
        previous = row_hash
    if not hashes:
        return
    op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
    bind.execute(
        sa.text(
            "UPDATE audit_events SET previous_hash = :previous_hash, row_hash = :row_hash "
            "WHERE id = :id"
        ),
        hashes,
    )
    op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only")


# One statement per execute: the asyncpg driver prepares each statement, and a prepared
# statement holds exactly one command.
def upgrade() -> None:
    for statement in ADD_COLUMNS:
        op.execute(statement)
    chain_existing_events()
    for statement in CONSTRAIN:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
