"""Platform roles: narrow platform-wide grants a user holds besides admin (`metrics-reader`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = [
    # A column of users, beside `is_admin`, rather than a table: a user holds few of them, the
    # policy loads them with the users it already reads, and the users trigger below announces
    # a change of them like a change of admin. The CHECK names every role the code knows.
    """
ALTER TABLE users
    ADD COLUMN platform_roles text[] NOT NULL DEFAULT '{}'
    CONSTRAINT users_platform_roles_known CHECK (platform_roles <@ ARRAY['metrics-reader'])
""",
    "DROP TRIGGER users_policy_change ON users",
    """
CREATE TRIGGER users_policy_change
    AFTER UPDATE OF is_admin, disabled_at, platform_roles OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION aiaas_notify_policy_change()
""",
]

DOWNGRADE = [
    "DROP TRIGGER users_policy_change ON users",
    """
CREATE TRIGGER users_policy_change
    AFTER UPDATE OF is_admin, disabled_at OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION aiaas_notify_policy_change()
""",
    "ALTER TABLE users DROP COLUMN platform_roles",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
