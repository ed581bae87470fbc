"""Datasets, their immutable versions, quality reports, and projects' data keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = [
    # Only the wrapped form of a data key is stored; the master key never is.
    """
CREATE TABLE data_keys (
    project_id    uuid PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    wrapped_key   bytea NOT NULL,
    master_key_id text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    rotated_at    timestamptz
)
""",
    """
CREATE TABLE datasets (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id   uuid NOT NULL REFERENCES projects (id),
    name         text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9._-]{0,98}[a-z0-9])?$'),
    description  text NOT NULL DEFAULT '',
    expectations jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_by   uuid REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (project_id, name)
)
""",
    "CREATE INDEX datasets_page ON datasets (project_id, created_at, id)",
    # A version never changes once written; deleting one only marks it (deleted_at), and the
    # garbage collector later removes the artifact that nothing live refers to.
    """
CREATE TABLE dataset_versions (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    dataset_id        uuid NOT NULL REFERENCES datasets (id),
    project_id        uuid NOT NULL REFERENCES projects (id),
    number            integer NOT NULL,
    content_sha256    text NOT NULL CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    artifact_key      text NOT NULL CHECK (artifact_key ~ '^[0-9a-f]{64}$'),
    source_format     text NOT NULL CHECK (source_format IN ('csv', 'parquet', 'derived')),
    row_count         bigint NOT NULL CHECK (row_count >= 0),
    size_bytes        bigint NOT NULL CHECK (size_bytes >= 0),
    columns           jsonb NOT NULL,
    column_stats      jsonb NOT NULL,
    preview           jsonb NOT NULL,
    parent_version_id uuid REFERENCES dataset_versions (id),
    transformation    jsonb,
    created_by        uuid REFERENCES users (id),
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at        timestamptz,
    UNIQUE (dataset_id, number)
)
""",
    # The same content uploaded again is the same version, unless that one was deleted.
    """
CREATE UNIQUE INDEX dataset_versions_content ON dataset_versions (dataset_id, content_sha256)
    WHERE deleted_at IS NULL
""",
    "CREATE INDEX dataset_versions_page ON dataset_versions (dataset_id, created_at, id)",
    """
CREATE TABLE quality_reports (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    version_id         uuid NOT NULL REFERENCES dataset_versions (id),
    project_id         uuid NOT NULL REFERENCES projects (id),
    job_id             uuid REFERENCES jobs (id),
    expectations       jsonb NOT NULL,
    checks             jsonb NOT NULL,
    q_consistency      double precision NOT NULL CHECK (q_consistency BETWEEN 0 AND 1),
    q_completeness     double precision NOT NULL CHECK (q_completeness BETWEEN 0 AND 1),
    q_accuracy         double precision NOT NULL CHECK (q_accuracy BETWEEN 0 AND 1),
    q                  double precision NOT NULL CHECK (q BETWEEN 0 AND 3),
    passed             boolean NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp()
)
""",
    "CREATE INDEX quality_reports_version ON quality_reports (version_id, created_at)",
]

DOWNGRADE = [
    "DROP TABLE quality_reports",
    "DROP TABLE dataset_versions",
    "DROP TABLE datasets",
    "DROP TABLE data_keys",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
