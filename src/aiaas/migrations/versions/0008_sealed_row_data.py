"""Row data at rest is sealed: previews, the row values among column statistics, quality check
details, prediction samples and drift baselines.

Each moves from a jsonb column in clear to a bytea column sealed with its project's data key
(`aiaas.core.governance.sealed_values`). A migration runs without the master key, so it cannot
seal what is there: it drops it, and says how each comes back.

- `dataset_versions`: `preview` is dropped and `sealed_preview` and `sealed_column_values` are
  added, NULL for the versions already there; the first read of either rebuilds both from the
  version's sealed artifact (`aiaas.core.data.datasets.sealed_profile`). `column_stats` keeps
  its aggregates and loses each column's min, max and top values, which the rebuild restores.
- `quality_reports`: `checks` keeps what each check is and how it went, without its message and
  examples; `sealed_check_details` holds them for the reports made from now on. The older ones
  have no details until the version is validated again.
- `prediction_samples` and `feature_baselines` are emptied. The samples are a rolling window
  that fills again with traffic (until `drift_min_samples` have come, drift reports carry no
  PSI); the baselines are computed again at the next drift check. Each sample gets an id, which
  its sealed values are bound to.

The columns that change are rewritten, not only updated (`ALTER COLUMN ... TYPE ... USING`, and
TRUNCATE), so the dropped plaintext does not linger in dead rows of the live table files. Copies
of it outside them (WAL segments not yet recycled, replicas, backups taken before) are the
operator's to age out; docs/architecture.md says so.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Functions for the rewrites (USING takes no subquery), dropped at the end of the revision.
HELPERS = [
    """
CREATE FUNCTION aiaas_0008_aggregates_only(stats jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(name, column_stats - 'min' - 'max' - 'top_values'), '{}')
    FROM jsonb_each(stats) AS each_column (name, column_stats)
$$
""",
    """
CREATE FUNCTION aiaas_0008_checks_without_details(checks jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_agg(one_check - 'message' - 'examples' ORDER BY position), '[]')
    FROM jsonb_array_elements(checks) WITH ORDINALITY AS each_check (one_check, position)
$$
""",
]

UPGRADE = [
    "ALTER TABLE dataset_versions DROP COLUMN preview",
    "ALTER TABLE dataset_versions ADD COLUMN sealed_preview bytea",
    "ALTER TABLE dataset_versions ADD COLUMN sealed_column_values bytea",
    # Rewrites the whole table: the dropped previews go with the old files.
    "ALTER TABLE dataset_versions ALTER COLUMN column_stats TYPE jsonb "
    "USING aiaas_0008_aggregates_only(column_stats)",
    # Both are written together, and rebuilt together.
    "ALTER TABLE dataset_versions ADD CONSTRAINT dataset_versions_sealed_profile "
    "CHECK ((sealed_preview IS NULL) = (sealed_column_values IS NULL))",
    "ALTER TABLE quality_reports ADD COLUMN sealed_check_details bytea",
    "ALTER TABLE quality_reports ALTER COLUMN checks TYPE jsonb "
    "USING aiaas_0008_checks_without_details(checks)",
    "TRUNCATE prediction_samples",
    "ALTER TABLE prediction_samples DROP COLUMN inputs",
    "ALTER TABLE prediction_samples DROP COLUMN outputs",
    # No default: the id is chosen before the sample is sealed, since the seal is bound to it.
    "ALTER TABLE prediction_samples ADD COLUMN id uuid PRIMARY KEY",
    "ALTER TABLE prediction_samples ADD COLUMN sealed_inputs bytea NOT NULL",
    "ALTER TABLE prediction_samples ADD COLUMN sealed_outputs bytea",
    "TRUNCATE feature_baselines",
    "ALTER TABLE feature_baselines DROP COLUMN baseline",
    "ALTER TABLE feature_baselines ADD COLUMN sealed_baseline bytea NOT NULL",
]

DROP_HELPERS = [
    "DROP FUNCTION aiaas_0008_checks_without_details(jsonb)",
    "DROP FUNCTION aiaas_0008_aggregates_only(jsonb)",
]

# The sealed values cannot be opened here either: a downgrade leaves previews empty, checks
# without a message or examples, and no samples or baselines.
DOWNGRADE = [
    "TRUNCATE feature_baselines",
    "ALTER TABLE feature_baselines DROP COLUMN sealed_baseline",
    "ALTER TABLE feature_baselines ADD COLUMN baseline jsonb NOT NULL",
    "TRUNCATE prediction_samples",
    "ALTER TABLE prediction_samples DROP COLUMN sealed_outputs",
    "ALTER TABLE prediction_samples DROP COLUMN sealed_inputs",
    "ALTER TABLE prediction_samples DROP COLUMN id",
    "ALTER TABLE prediction_samples ADD COLUMN inputs jsonb NOT NULL",
    "ALTER TABLE prediction_samples ADD COLUMN outputs jsonb",
    """
UPDATE quality_reports SET checks = (
    SELECT coalesce(
        jsonb_agg(one_check || '{"message": "", "examples": []}' ORDER BY position), '[]'
    )
    FROM jsonb_array_elements(checks) WITH ORDINALITY AS each_check (one_check, position)
)
""",
    "ALTER TABLE quality_reports DROP COLUMN sealed_check_details",
    "ALTER TABLE dataset_versions DROP CONSTRAINT dataset_versions_sealed_profile",
    "ALTER TABLE dataset_versions DROP COLUMN sealed_column_values",
    "ALTER TABLE dataset_versions DROP COLUMN sealed_preview",
    "ALTER TABLE dataset_versions ADD COLUMN preview jsonb NOT NULL DEFAULT '[]'",
    "ALTER TABLE dataset_versions ALTER COLUMN preview DROP DEFAULT",
]


# One statement per execute: the asyncpg driver prepares each statement, and a prepared
# statement holds exactly one command.
def upgrade() -> None:
    for statement in [*HELPERS, *UPGRADE, *DROP_HELPERS]:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
