"""Job checkpoints in the artifact store: one row per checkpoint a training job keeps there.

A trainer writes its sealed checkpoints into a worker's local scratch directory; the worker then
puts each into the artifact store and records it here, so that a job resumed on another worker,
with no disk shared with the first, starts from the newest one recorded. A row exists only for a
checkpoint completely in the store. A job keeps its two newest; a job that succeeds forgets them
at once, a failed or cancelled one after `checkpoint_retention_s`. The artifacts a row refers to
are live for the garbage collector while the row exists.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = [
    """
CREATE TABLE job_checkpoints (
    job_id       uuid NOT NULL REFERENCES jobs (id),
    step         integer NOT NULL CHECK (step >= 0),
    artifact_key text NOT NULL,
    size_bytes   bigint NOT NULL CHECK (size_bytes >= 0),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (job_id, step)
)
""",
]

DOWNGRADE = ["DROP TABLE job_checkpoints"]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
