"""Project members and their roles, session tokens, and policy change notifications.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = [
    """
CREATE TABLE project_members (
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('viewer', 'developer', 'maintainer', 'owner')),
    added_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    added_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (project_id, user_id)
)
""",
    "CREATE INDEX project_members_user ON project_members (user_id)",
    # Whoever created a project so far owns it.
    """
INSERT INTO project_members (project_id, user_id, role, added_by)
SELECT id, created_by, 'owner', created_by FROM projects WHERE created_by IS NOT NULL
""",
    # A session token (from login) expires by itself; an API token is made on purpose.
    """
ALTER TABLE api_tokens
    ADD COLUMN kind text NOT NULL DEFAULT 'api' CHECK (kind IN ('api', 'session'))
""",
    # Every process holds the policy in memory; any change to who may do what, however it is
    # made, tells them all to reload it.
    """
CREATE FUNCTION aiaas_notify_policy_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aiaas_policy', TG_TABLE_NAME);
    RETURN NULL;
END;
$$
""",
    """
CREATE TRIGGER project_members_policy_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON project_members
    FOR EACH STATEMENT EXECUTE FUNCTION aiaas_notify_policy_change()
""",
    """
CREATE TRIGGER users_policy_change
    AFTER UPDATE OF is_admin, disabled_at OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION aiaas_notify_policy_change()
""",
]

DOWNGRADE = [
    "DROP TRIGGER users_policy_change ON users",
    "DROP TRIGGER project_members_policy_change ON project_members",
    "DROP FUNCTION aiaas_notify_policy_change()",
    "ALTER TABLE api_tokens DROP COLUMN kind",
    "DROP TABLE project_members",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
