"""Image datasets: a version read from an archive of images, and the project setting that keeps
DICOM files' personal tags.

A version's `source_format` may now be `images` (docs/guides/images.md). A project's
`keep_dicom_personal_tags` is false unless its owner sets it: DICOM uploads then drop the
personal tags (`aiaas.core.data.images.dicom.PERSONAL_TAGS`).

A downgrade fails while image versions exist: delete those versions first.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UPGRADE = [
    "ALTER TABLE dataset_versions DROP CONSTRAINT dataset_versions_source_format_check",
    """
ALTER TABLE dataset_versions ADD CONSTRAINT dataset_versions_source_format_check
    CHECK (source_format IN ('csv', 'parquet', 'derived', 'images'))
""",
    "ALTER TABLE projects ADD COLUMN keep_dicom_personal_tags boolean NOT NULL DEFAULT false",
]

DOWNGRADE = [
    "ALTER TABLE projects DROP COLUMN keep_dicom_personal_tags",
    "ALTER TABLE dataset_versions DROP CONSTRAINT dataset_versions_source_format_check",
    """
ALTER TABLE dataset_versions ADD CONSTRAINT dataset_versions_source_format_check
    CHECK (source_format IN ('csv', 'parquet', 'derived'))
""",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
