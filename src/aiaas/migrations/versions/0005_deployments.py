"""Serving: deployments of model versions, sampled prediction inputs, drift baselines and reports.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = [
    # A deployment serves a stable version, optionally a canary that takes a share of the
    # requests and a shadow that sees a copy of them. The split lives in columns, not JSON, so
    # that every version it names is a real model version (foreign keys), and a traffic change
    # that must warm a new version first waits in `pending_traffic` while the deployment is
    # UPDATING: until then the old split goes on serving. `generation` grows with every change;
    # serving processes compare it to know that what they cached is stale.
    """
CREATE TABLE deployments (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id               uuid NOT NULL REFERENCES projects (id),
    name                     text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    model_id                 uuid NOT NULL REFERENCES models (id),
    source_alias             text,
    runtime                  text NOT NULL,
    state                    text NOT NULL CHECK (state IN
                                 ('CREATING', 'WARMING', 'READY', 'UPDATING', 'STOPPED', 'FAILED')),
    reason                   text,
    stable_version_id        uuid NOT NULL REFERENCES model_versions (id),
    canary_version_id        uuid REFERENCES model_versions (id),
    canary_percent           smallint NOT NULL DEFAULT 0 CHECK (canary_percent BETWEEN 0 AND 100),
    shadow_version_id        uuid REFERENCES model_versions (id),
    previous_stable_version_id uuid REFERENCES model_versions (id),
    pending_traffic          jsonb,
    max_batch_size           integer NOT NULL CHECK (max_batch_size BETWEEN 1 AND 4096),
    max_wait_ms              double precision NOT NULL CHECK (max_wait_ms BETWEEN 0 AND 1000),
    max_queue_rows           integer NOT NULL CHECK (max_queue_rows >= max_batch_size),
    drift_threshold          double precision CHECK (drift_threshold > 0),
    generation               integer NOT NULL DEFAULT 1,
    rollout_claimed_by       text,
    rollout_heartbeat_at     timestamptz,
    created_by               uuid REFERENCES users (id),
    created_at               timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at               timestamptz NOT NULL DEFAULT clock_timestamp(),
    ready_at                 timestamptz,
    stopped_at               timestamptz,
    CHECK ((canary_version_id IS NULL) = (canary_percent = 0))
)
""",
    # A stopped deployment's name may be used again; a live one's may not.
    "CREATE UNIQUE INDEX deployments_live_name ON deployments (project_id, name) "
    "WHERE state <> 'STOPPED'",
    "CREATE INDEX deployments_page ON deployments (project_id, created_at, id)",
    # What the rollout supervisors of every serving process poll for.
    "CREATE INDEX deployments_rollout ON deployments (updated_at) "
    "WHERE state IN ('CREATING', 'WARMING', 'UPDATING')",
    # A sample of the rows each version answered (inputs and outputs, one row each), for drift
    # and for comparing a shadow's answers with the ones returned. Written in batches.
    """
CREATE TABLE prediction_samples (
    deployment_id uuid NOT NULL REFERENCES deployments (id),
    version_id    uuid NOT NULL REFERENCES model_versions (id),
    role          text NOT NULL CHECK (role IN ('stable', 'canary', 'shadow')),
    sampled_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    inputs        jsonb NOT NULL,
    outputs       jsonb
)
""",
    "CREATE INDEX prediction_samples_recent ON prediction_samples "
    "(deployment_id, version_id, sampled_at)",
    # Each version's training-data distributions, computed once on the first drift check.
    """
CREATE TABLE feature_baselines (
    version_id uuid PRIMARY KEY REFERENCES model_versions (id),
    baseline   jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
""",
    """
CREATE TABLE drift_reports (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    deployment_id uuid NOT NULL REFERENCES deployments (id),
    version_id    uuid NOT NULL REFERENCES model_versions (id),
    computed_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    window_start  timestamptz NOT NULL,
    sample_count  integer NOT NULL CHECK (sample_count >= 0),
    features      jsonb NOT NULL,
    max_psi       double precision,
    threshold     double precision NOT NULL,
    alert         boolean NOT NULL
)
""",
    "CREATE INDEX drift_reports_latest ON drift_reports (deployment_id, version_id, computed_at)",
]

DOWNGRADE = [
    "DROP TABLE drift_reports",
    "DROP TABLE feature_baselines",
    "DROP TABLE prediction_samples",
    "DROP TABLE deployments",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
