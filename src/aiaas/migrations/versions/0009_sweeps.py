"""Sweeps: hyperparameter searches whose trials are training jobs, and Optuna's study storage.

The platform's own tables say what a sweep asked for and which job runs which trial; the search
itself (trials' parameters, intermediate values, states) lives in Optuna's relational storage,
in a schema of its own (`optuna`), so that its tables never mix with the platform's and a
version of Optuna that changes them changes nothing else. This revision creates Optuna's tables
from Optuna's own metadata and stamps them with Optuna's own schema revision, exactly as Optuna
would on first use; the platform then opens the storage without letting Optuna create anything
(`aiaas.core.training.sweep_studies`), and Optuna's compatibility check still guards it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from pathlib import Path

from alembic import op
from alembic.script import ScriptDirectory
from sqlalchemy import text

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OPTUNA_SCHEMA = "optuna"

UPGRADE = [
    """
CREATE TABLE sweeps (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id          uuid NOT NULL REFERENCES projects (id),
    state               text NOT NULL DEFAULT 'RUNNING'
                        CHECK (state IN ('RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    spec                jsonb NOT NULL,
    study_name          text NOT NULL UNIQUE,
    n_trials            integer NOT NULL CHECK (n_trials BETWEEN 1 AND 1000),
    parallelism         integer NOT NULL CHECK (parallelism BETWEEN 1 AND n_trials),
    deadline_at         timestamptz,
    reason              text,
    -- Set when a trial could not start (its dataset version deleted, its project archived):
    -- no trial starts after it, and the sweep ends once the running ones have.
    halted_reason       text,
    best_trial_number   integer,
    promoted_version_id uuid REFERENCES model_versions (id),
    created_by          uuid REFERENCES users (id),
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at         timestamptz,
    cancel_requested_at timestamptz
)
""",
    "CREATE INDEX sweeps_by_project ON sweeps (project_id, created_at DESC, id DESC)",
    # The running ones, which the reconciler advances.
    "CREATE INDEX sweeps_running ON sweeps (id) WHERE state = 'RUNNING'",
    # One row per trial the sweep started, written with the trial's job. State, value and
    # parameters mirror Optuna's trial, copied when the trial ends, so that a page of sweeps
    # and their trials is one query of the platform's own tables.
    """
CREATE TABLE sweep_trials (
    sweep_id        uuid NOT NULL REFERENCES sweeps (id),
    number          integer NOT NULL CHECK (number >= 0),
    optuna_trial_id bigint NOT NULL,
    job_id          uuid NOT NULL UNIQUE REFERENCES jobs (id),
    params          jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'RUNNING'
                    CHECK (state IN ('RUNNING', 'COMPLETE', 'PRUNED', 'FAIL')),
    value           double precision,
    pruned_at_epoch integer,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    PRIMARY KEY (sweep_id, number)
)
""",
    f"CREATE SCHEMA {OPTUNA_SCHEMA}",
]

DOWNGRADE = [
    f"DROP SCHEMA {OPTUNA_SCHEMA} CASCADE",
    "DROP TABLE sweep_trials",
    "DROP TABLE sweeps",
]


def _optuna_head_revision() -> str:
    import optuna.storages._rdb as rdb

    script = ScriptDirectory(str(Path(rdb.__file__).parent / "alembic"))
    head = script.get_current_head()
    assert head is not None
    return head


def _create_optuna_tables() -> None:
    from optuna import version
    from optuna.storages._rdb import models

    bind = op.get_bind()
    # Only for this transaction: Optuna's metadata names no schema, so its tables (and its
    # own `alembic_version`) land where the search path points.
    bind.execute(text(f"SET LOCAL search_path TO {OPTUNA_SCHEMA}"))
    models.BaseModel.metadata.create_all(bind)
    bind.execute(
        text(
            "INSERT INTO version_info (version_info_id, schema_version, library_version) "
            "VALUES (1, :schema_version, :library_version)"
        ),
        {"schema_version": models.SCHEMA_VERSION, "library_version": version.__version__},
    )
    bind.execute(text("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)"))
    bind.execute(
        text("INSERT INTO alembic_version (version_num) VALUES (:head)"),
        {"head": _optuna_head_revision()},
    )
    bind.execute(text("SET LOCAL search_path TO DEFAULT"))


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)
    _create_optuna_tables()


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
