"""Model versions that no training job made: uploaded model files.

An uploaded version has no job, and a training dataset only where the uploader names one as its
reference data (which drift monitoring compares live requests against). `source` says which
kind a version is, and the check keeps a trained version's job required: only an upload may
lack one. The job's uniqueness stays, and PostgreSQL's UNIQUE lets any number of NULLs through.

A downgrade fails while uploaded versions exist, since the columns cannot become required
again: delete those versions first.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = [
    "ALTER TABLE model_versions ALTER COLUMN job_id DROP NOT NULL",
    "ALTER TABLE model_versions ALTER COLUMN dataset_version_id DROP NOT NULL",
    """
ALTER TABLE model_versions
    ADD COLUMN source text NOT NULL DEFAULT 'training'
        CHECK (source IN ('training', 'upload')),
    ADD CONSTRAINT model_versions_trained_by_a_job
        CHECK ((source = 'training') = (job_id IS NOT NULL))
""",
]

DOWNGRADE = [
    "ALTER TABLE model_versions DROP CONSTRAINT model_versions_trained_by_a_job",
    "ALTER TABLE model_versions DROP COLUMN source",
    "ALTER TABLE model_versions ALTER COLUMN dataset_version_id SET NOT NULL",
    "ALTER TABLE model_versions ALTER COLUMN job_id SET NOT NULL",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
