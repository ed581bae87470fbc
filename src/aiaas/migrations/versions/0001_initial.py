"""Users, API tokens, projects, the append-only audit trail, and jobs.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


UPGRADE = [
    """
CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    display_name  text NOT NULL DEFAULT '',
    is_admin      boolean NOT NULL DEFAULT false,
    password_hash text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
)
""",
    """
-- A token is shown once; only its sha256 is kept. `prefix` is the visible, unique part that
-- identifies a leaked token without revealing it.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    prefix       text NOT NULL UNIQUE,
    token_hash   bytea NOT NULL CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
)
""",
    """
CREATE INDEX api_tokens_user ON api_tokens (user_id)
""",
    """
CREATE TABLE projects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '',
    created_by  uuid REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    archived_at timestamptz
)
""",
    """
-- Keyset pagination walks (created_at, id).
CREATE INDEX projects_page ON projects (created_at, id)
""",
    """
-- Actors and projects are copied by value, without foreign keys: the trail must outlive them.
CREATE TABLE audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_id    uuid,
    actor_name  text,
    action      text NOT NULL,
    object_type text,
    object_id   text,
    project_id  uuid,
    request_id  text,
    outcome     text NOT NULL CHECK (outcome IN ('success', 'denied', 'failed')),
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
)
""",
    """
CREATE INDEX audit_events_project ON audit_events (project_id, occurred_at, id)
""",
    """
CREATE INDEX audit_events_actor ON audit_events (actor_id, occurred_at, id)
""",
    """
-- The database itself keeps the trail append-only, whatever the code does.
CREATE FUNCTION aiaas_refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
""",
    """
CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION aiaas_refuse_audit_change()
""",
    """
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION aiaas_refuse_audit_change()
""",
    """
CREATE TABLE jobs (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id   uuid NOT NULL REFERENCES projects (id),
    kind         text NOT NULL,
    state        text NOT NULL DEFAULT 'QUEUED'
                 CHECK (state IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    payload      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_by   uuid REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at   timestamptz,
    finished_at  timestamptz,
    reason       text,
    attempt      integer NOT NULL DEFAULT 0,
    claimed_by   text,
    heartbeat_at timestamptz
)
""",
    """
CREATE INDEX jobs_active ON jobs (state, heartbeat_at) WHERE state IN ('QUEUED', 'RUNNING')
""",
    """
CREATE INDEX jobs_project_page ON jobs (project_id, created_at, id)
""",
]

DOWNGRADE = [
    "DROP TABLE jobs",
    "DROP TABLE audit_events",
    "DROP FUNCTION aiaas_refuse_audit_change()",
    "DROP TABLE projects",
    "DROP TABLE api_tokens",
    "DROP TABLE users",
]


# One statement per execute: the asyncpg driver prepares each statement, and a prepared
# statement holds exactly one command.
def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
