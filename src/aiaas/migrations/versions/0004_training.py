"""Training: cancellation requests, metric history, registered models, their versions and aliases.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = [
    # A running job stops at its next step boundary once this is set; a queued one is
    # cancelled at once and never needs it.
    "ALTER TABLE jobs ADD COLUMN cancel_requested_at timestamptz",
    # One row per (job, key, step): a job resumed from a checkpoint first drops the rows after
    # that checkpoint's step, then writes them again, so history has no gap and no duplicate.
    # Written with COPY in batches; the primary key is the only index, and serves the
    # downsampling query of one key of one job. No foreign key to jobs: its per-row check
    # halves COPY's throughput, and only the worker holding a job's claim writes its points
    # (jobs are never deleted), so nothing could break it anyway.
    """
CREATE TABLE metric_points (
    job_id uuid NOT NULL,
    key    text NOT NULL CHECK (length(key) BETWEEN 1 AND 100),
    step   bigint NOT NULL CHECK (step >= 0),
    value  double precision NOT NULL,
    PRIMARY KEY (job_id, key, step)
)
""",
    """
CREATE TABLE models (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id      uuid NOT NULL REFERENCES projects (id),
    name            text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9._-]{0,98}[a-z0-9])?$'),
    description     text NOT NULL DEFAULT '',
    promotion_gates jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_by      uuid REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (project_id, name)
)
""",
    "CREATE INDEX models_page ON models (project_id, created_at, id)",
    # One version per training job: a job that registers twice (a retried final step) gets
    # the version it already has.
    """
CREATE TABLE model_versions (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    model_id           uuid NOT NULL REFERENCES models (id),
    project_id         uuid NOT NULL REFERENCES projects (id),
    number             integer NOT NULL,
    job_id             uuid NOT NULL UNIQUE REFERENCES jobs (id),
    dataset_version_id uuid NOT NULL REFERENCES dataset_versions (id),
    trainer            text NOT NULL,
    format             text NOT NULL,
    artifact_key       text NOT NULL CHECK (artifact_key ~ '^[0-9a-f]{64}$'),
    size_bytes         bigint NOT NULL CHECK (size_bytes >= 0),
    signature          jsonb NOT NULL,
    metrics            jsonb NOT NULL,
    hyperparameters    jsonb NOT NULL,
    created_by         uuid REFERENCES users (id),
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (model_id, number)
)
""",
    "CREATE INDEX model_versions_page ON model_versions (model_id, created_at, id)",
    "CREATE INDEX model_versions_dataset ON model_versions (dataset_version_id)",
    """
CREATE TABLE model_aliases (
    model_id   uuid NOT NULL REFERENCES models (id),
    alias      text NOT NULL CHECK (alias ~ '^[a-z][a-z0-9-]{0,39}$'),
    version_id uuid NOT NULL REFERENCES model_versions (id),
    updated_by uuid REFERENCES users (id),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (model_id, alias)
)
""",
]

DOWNGRADE = [
    "DROP TABLE model_aliases",
    "DROP TABLE model_versions",
    "DROP TABLE models",
    "DROP TABLE metric_points",
    "ALTER TABLE jobs DROP COLUMN cancel_requested_at",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
